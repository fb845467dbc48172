"""Asset storage: Parquet files under the site's storage root, or in an object store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from datasite.store.object_storage import ObjectStorage
from datasite.store.storage import LocalStorage, Storage

if TYPE_CHECKING:
    from datasite.config import Settings

__all__ = ["LocalStorage", "ObjectStorage", "Storage", "make_storage"]


def make_storage(settings: Settings) -> Storage:
    """The store ``settings`` name: the data folder's ``assets/``, or an object store
    (``storage_url``) cached there."""
    if settings.storage_url:
        return ObjectStorage(
            settings.storage_url,
            settings.assets_dir,
            settings.partition_rows,
            settings.storage_options,
        )
    return LocalStorage(settings.assets_dir, settings.partition_rows)
