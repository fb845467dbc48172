"""Where asset tables are kept: a small interface and the local-folder implementation.

Real tables are stored *partitioned*: a folder of Parquet files of at most
``PARTITION_ROWS`` rows each (``datasite.contract.tables.write_partitioned``), so the
releaser can read one file per core (or per Dask worker) and any table, however large,
is read a batch at a time. The folder is written under a hidden ``.partial`` name and
renamed into place when complete: an interrupted write leaves no half asset. Storage
copies an upload and never consumes it; the caller removes the upload once the dataset
is committed, so a failed upload can be retried with the same upload ids. Mocks stay one
file (researchers download them).

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
>>> import pyarrow as pa, pyarrow.parquet as pq
>>> pq.write_table(pa.table({"age": [30, 40, 50]}), upload)
>>> key = store.put_table(upload, dataset_id=3, side="real", rows_per_file=2)
>>> sorted(p.name for p in store.path(key).iterdir()), upload.exists()
(['part-00000.parquet', 'part-00001.parquet'], True)
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Protocol

import pyarrow.parquet as pq

from datasite.contract.tables import BATCH_ROWS, PARTITION_ROWS, write_partitioned
from datasite.errors import NotFound

PARTIAL = ".partial"


class Storage(Protocol):
    """What the site needs from a place that keeps asset tables."""

    def put_table(self, source: Path, dataset_id: int, side: str) -> str:
        """Copy the file ``source`` (an upload) into storage; returns its new key.

        A ``real`` table is partitioned (a folder of Parquet files). ``source`` is left
        in place: the caller removes it once the dataset is committed.
        """
        ...

    def path(self, key: str) -> Path:
        """The local file or partition folder under ``key`` (for the sandbox and pages)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the table under ``key`` (a missing one is no error)."""
        ...


class LocalStorage:
    """Asset tables in a folder: ``<root>/<dataset id>/<uuid>-<real|mock>.parquet``.

    A real table's key names a folder of partition files; a mock's, one file.
    """

    def __init__(self, root: Path, rows_per_file: int = PARTITION_ROWS) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.rows_per_file = rows_per_file

    def put_table(
        self, source: Path, dataset_id: int, side: str, rows_per_file: int | None = None
    ) -> str:
        key = f"{int(dataset_id)}/{uuid.uuid4().hex}-{side}.parquet"
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if side != "real":
            shutil.copyfile(source, target)
            return key
        partial = target.with_name(f".{target.name}{PARTIAL}")
        try:
            upload = pq.ParquetFile(source)
            write_partitioned(
                upload.iter_batches(batch_size=BATCH_ROWS),
                partial,
                upload.schema_arrow,
                rows_per_file or self.rows_per_file,
            )
            partial.rename(target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return key

    def sweep_partial(self) -> list[str]:
        """Remove the ``.partial`` folders a crash left behind; returns what was removed."""
        removed = []
        for folder in self.root.glob(f"*/.*{PARTIAL}"):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder.relative_to(self.root)))
        return removed

    def path(self, key: str) -> Path:
        """The file of ``key``, never outside the root (the one path guard)."""
        root = self.root.resolve()
        found = (root / key).resolve()
        if found == root or not found.is_relative_to(root):
            raise NotFound(f"There is no stored file {key!r}.")
        return found

    def exists(self, key: str) -> bool:
        try:
            return self.path(key).exists()
        except NotFound:
            return False

    def delete(self, key: str) -> None:
        """Remove the file (or partition folder), and its dataset's folder once empty."""
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        if path.parent != self.root.resolve():
            try:
                path.parent.rmdir()
            except OSError:  # other files are still there
                pass
