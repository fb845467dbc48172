"""Where asset tables are kept: a small interface and the local-folder implementation.

Every asset file is named by a *key*, the path relative to the storage root that the
database stores (``Asset.real_path``, ``Asset.mock_path``). Nothing outside this module
joins a root and a key: ``path`` is the one guard, so a key that climbs out of the root
(``../``, an absolute path, a link) is refused wherever it is used.

>>> import tempfile
>>> store = LocalStorage(Path(tempfile.mkdtemp()))
>>> upload = store.root.parent / "upload.parquet"
>>> _ = upload.write_bytes(b"PAR1")
>>> key = store.put_table(upload, dataset_id=3, side="mock")
>>> key.startswith("3/") and store.path(key).read_bytes() == b"PAR1"
True
>>> store.path("../etc/passwd")
Traceback (most recent call last):
datasite.errors.NotFound: There is no stored file '../etc/passwd'.
>>> store.delete(key); store.exists(key), (store.root / "3").exists()
(False, False)
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from datasite.errors import NotFound


class Storage(Protocol):
    """What the site needs from a place that keeps asset tables."""

    def put_table(self, source: Path, dataset_id: int, side: str) -> str:
        """Move the file ``source`` (an upload) into storage; returns its new key."""
        ...

    def path(self, key: str) -> Path:
        """A local file with the table under ``key`` (for the sandbox and downloads)."""
        ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the table under ``key`` (a missing one is no error)."""
        ...


class LocalStorage:
    """Asset tables in a folder: ``<root>/<dataset id>/<uuid>-<real|mock>.parquet``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put_table(self, source: Path, dataset_id: int, side: str) -> str:
        key = f"{int(dataset_id)}/{uuid.uuid4().hex}-{side}.parquet"
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)
        return key

    def path(self, key: str) -> Path:
        """The file of ``key``, never outside the root (the one path guard)."""
        root = self.root.resolve()
        found = (root / key).resolve()
        if found == root or not found.is_relative_to(root):
            raise NotFound(f"There is no stored file {key!r}.")
        return found

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).is_file()
        except NotFound:
            return False

    def delete(self, key: str) -> None:
        """Remove the file, and its dataset's folder once that is empty."""
        path = self.path(key)
        path.unlink(missing_ok=True)
        if path.parent != self.root.resolve():
            try:
                path.parent.rmdir()
            except OSError:  # other files are still there
                pass
