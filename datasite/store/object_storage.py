"""Asset tables in an object store (``s3://bucket/prefix``, any fsspec URL), cached locally.

The store is the system of record; the site's asset folder is a cache of it. Runs read
local files only: the releaser opens its inputs as root and then has no network at all
(``datasite.execution.releasing``), so it can never fetch from a store itself. A table
is therefore written to the cache first (partitioned, as :class:`LocalStorage` does),
uploaded, and marked complete with a ``_COMPLETE`` object written last; a site that
lacks a table in its cache (a new machine, a Dask worker, a cleared disk) downloads it
once, under a ``.partial`` name renamed into place when whole.

An upload interrupted halfway leaves objects with no ``_COMPLETE`` marker and no key in
the database: they are never read (``exists`` is false) and ``delete`` removes them.

Keys are the ones :class:`LocalStorage` makes and guards: the same key names the cached
file and the object under the store's prefix, so the one path guard covers both.

>>> import tempfile
>>> store = ObjectStorage(f"memory://bucket-{tempfile.mktemp()[-8:]}/assets",
...                       Path(tempfile.mkdtemp()))
>>> import pyarrow as pa, pyarrow.parquet as pq
>>> upload = Path(tempfile.mkdtemp()) / "upload.parquet"
>>> pq.write_table(pa.table({"age": [30, 40, 50]}), upload)
>>> key = store.put_table(upload, dataset_id=3, side="real", rows_per_file=2)
>>> store.clear_cache(); store.exists(key)
True
>>> sorted(p.name for p in store.path(key).iterdir())  # downloaded again
['part-00000.parquet', 'part-00001.parquet']
>>> store.delete(key); store.exists(key)
False
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from datasite.contract.tables import PARTITION_ROWS
from datasite.errors import NotFound
from datasite.store.storage import PARTIAL, LocalStorage

COMPLETE = "_COMPLETE"


class ObjectStorage:
    """Asset tables under ``url`` (an fsspec URL), with ``cache`` as the local copy.

    ``options`` go to the fsspec filesystem (for S3: ``endpoint_url``, ``key``,
    ``secret``, ...; from ``DATASITE_STORAGE_OPTIONS`` as JSON on a site).
    """

    def __init__(
        self,
        url: str,
        cache: Path,
        rows_per_file: int = PARTITION_ROWS,
        options: dict[str, Any] | None = None,
    ) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.url, **(options or {}))
        self.base = self.base.rstrip("/")
        self.cache = LocalStorage(cache, rows_per_file)

    def _remote(self, key: str) -> str:
        self.cache.path(key)  # the one guard: a key that climbs out is refused here
        return f"{self.base}/{key}"

    def put_table(
        self, source: Path, dataset_id: int, side: str, rows_per_file: int | None = None
    ) -> str:
        """Partition into the cache, upload, then mark the table complete in the store."""
        key = self.cache.put_table(source, dataset_id, side, rows_per_file)
        local, remote = self.cache.path(key), self._remote(key)
        try:
            if local.is_dir():
                for part in sorted(local.iterdir()):
                    self.fs.put_file(str(part), f"{remote}/{part.name}")
            else:
                self.fs.put_file(str(local), remote)
            self.fs.pipe_file(f"{remote}{COMPLETE}", json.dumps({"key": key}).encode())
        except BaseException:
            self.delete(key)
            raise
        return key

    def path(self, key: str) -> Path:
        """The cached file or folder of ``key``, downloaded first if the cache lacks it."""
        local = self.cache.path(key)
        if local.exists():
            return local
        remote = self._remote(key)
        if not self.fs.exists(f"{remote}{COMPLETE}"):
            raise NotFound(f"There is no stored file {key!r}.")
        partial = local.with_name(f".{local.name}{PARTIAL}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.fs.isdir(remote):
                partial.mkdir()
                for name in sorted(self.fs.ls(remote, detail=False)):
                    self.fs.get_file(name, str(partial / Path(name).name))
            else:
                self.fs.get_file(remote, str(partial))
            partial.rename(local)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            partial.unlink(missing_ok=True)
            raise
        return local

    def exists(self, key: str) -> bool:
        try:
            return self.fs.exists(f"{self._remote(key)}{COMPLETE}")
        except NotFound:
            return False

    def delete(self, key: str) -> None:
        """Remove the table from the store (marker first: it stops being readable at
        once) and from the cache; a missing one is no error."""
        remote = self._remote(key)
        for target in (f"{remote}{COMPLETE}", remote):
            if self.fs.exists(target):
                self.fs.rm(target, recursive=True)
        self.cache.delete(key)

    def sweep_partial(self) -> list[str]:
        """Remove half-written cache folders a crash left behind."""
        return self.cache.sweep_partial()

    def clear_cache(self) -> None:
        """Forget every local copy (the store keeps the tables)."""
        for child in self.cache.root.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
