"""Releases over tables stored in partitions: exact aggregates per partition, noise once.

A large asset is a folder of Parquet files (``datasite.contract.tables``). For a count,
sum, mean, histogram or quantile the releaser does not load the table: each partition
file is scanned on its own (only the columns the release needs, batch by batch, row
groups a filter excludes skipped by their statistics), giving an *exact partial
aggregate*; the partials are added up; and the kit adds noise once, with OpenDP, to the
combined aggregate (see ``researcher_kit.dp.aggregates``, where each helper uses the
same transformation and the same calibrated scale for both paths). Partitions are
scanned in parallel on the local cores (threads: Arrow and NumPy release the GIL), or on
a Dask cluster (:func:`dask_mapper`).

Why this is the same release as the single-process one: every helper is an OpenDP
chain ``T >> noise``. Its privacy map is ``noise.map(T.map(d_in))``, so applying the
``noise`` measurement (same scale) to ``T(data)`` is the same mechanism, however
``T(data)`` was computed. The partials below compute ``T(data)`` exactly: counts and
integer sums exactly, float sums up to rounding (which OpenDP's float-sum sensitivity
already allows for), quantile scores exactly as OpenDP's ``make_quantile_score_candidates``
(a test compares both on the same data).

>>> import tempfile, pyarrow as pa
>>> from datasite.contract.tables import write_partitioned
>>> folder = tempfile.mkdtemp() + "/ages"
>>> table = pa.table({"age": list(range(100))})
>>> write_partitioned([table], folder, table.schema, rows_per_file=30)
100
>>> ages = PartitionedTable.from_folder(folder).column("age")
>>> len(ages.table.files), exact(Scan(op="sum", column="age", integer=True, bounds=(0, 50)), ages)
(4, [3725, 100])
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from researcher_kit.filters import mask, may_match

BATCH_ROWS = 128 * 1024


class Mapper(Protocol):
    """Runs ``fn(scan, path)`` for every partition path; returns the results in order."""

    def __call__(self, fn: Callable[[Scan, str], list], scan: Scan, paths: Sequence[str]
                 ) -> list[list]: ...  # fmt: skip


def local_mapper(workers: int | None = None) -> Mapper:
    """Partitions scanned by a thread pool of ``workers`` (default: the CPU count)."""

    def run(fn: Callable[[Scan, str], list], scan: Scan, paths: Sequence[str]) -> list[list]:
        if len(paths) <= 1:
            return [fn(scan, p) for p in paths]
        with ThreadPoolExecutor(min(len(paths), workers or os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda p: fn(scan, p), paths))

    return run


def dask_mapper(client: Any) -> Mapper:
    """Partitions scanned as tasks on a ``dask.distributed`` cluster (one per partition).

    The workers read the partition files by path, so they must see the same storage.
    Only the exact partials (a few numbers each) travel back; the noise is added where
    the releaser runs.
    """

    def run(fn: Callable[[Scan, str], list], scan: Scan, paths: Sequence[str]) -> list[list]:
        futures = client.map(fn, [scan] * len(paths), list(paths), pure=False)
        return client.gather(futures)

    return run


@dataclass(frozen=True)
class PartitionedTable:
    """A table stored as Parquet partition files (read by path, never all at once)."""

    files: tuple[str, ...]
    mapper: Mapper = field(default_factory=local_mapper, compare=False, repr=False)

    @classmethod
    def from_folder(cls, folder: str | Path, mapper: Mapper | None = None) -> PartitionedTable:
        files = tuple(sorted(str(p) for p in Path(folder).glob("part-*.parquet")))
        if not files:
            raise ValueError(f"{folder} holds no partition files")
        return cls(files, mapper or local_mapper())

    def schema(self) -> Any:
        import pyarrow.parquet as pq

        return pq.read_schema(self.files[0])

    def num_rows(self) -> int:
        """From the files' footers: no data is read."""
        import pyarrow.parquet as pq

        return int(sum(pq.ParquetFile(f).metadata.num_rows for f in self.files))

    def column(self, name: str | None, filter: dict | None = None) -> PartitionedColumn:
        return PartitionedColumn(self, name, filter)

    def read(self, columns: list[str]) -> pd.DataFrame:
        """The ``columns`` of every row, in memory (for releases that need the rows)."""
        import pyarrow.dataset as ds

        table = ds.dataset(list(self.files), format="parquet").to_table(columns=columns)
        if not columns:
            return pd.DataFrame(index=pd.RangeIndex(table.num_rows))
        return table.to_pandas()


@dataclass(frozen=True)
class PartitionedColumn:
    """What a kit helper receives instead of a Series for a partitioned table.

    It answers the questions the helpers ask of a Series (``name``, ``dtype``,
    ``hasnans``) from the files' schema and statistics, so a helper picks the same
    integer or float release for both paths.
    """

    table: PartitionedTable
    name: str | None
    filter: dict | None = None

    @property
    def dtype(self) -> np.dtype:
        if self.name is None:
            return np.dtype(bool)
        arrow = self.table.schema().field(self.name).type
        return np.dtype(arrow.to_pandas_dtype())

    @property
    def hasnans(self) -> bool:
        """Whether any value is missing, from the row groups' null counts."""
        if self.name is None:
            return False
        return _null_count(self.table.files, self.name) > 0


def is_partitioned(data: Any) -> bool:
    return isinstance(data, PartitionedColumn)


@dataclass(frozen=True)
class Scan:
    """What one partition task computes: the exact partial aggregate of ``op``.

    ``op``: ``count`` (rows), ``sum`` and ``mean`` (clamped sum, non-missing count),
    ``categories`` and ``bins`` (counts per category / bin), ``ranks`` (for each
    candidate, how many clamped values lie below it and above it).
    """

    op: str
    column: str | None = None
    filter: dict | None = None
    integer: bool = False
    bounds: tuple[Any, Any] | None = None
    categories: tuple[Any, ...] | None = None
    edges: tuple[float, ...] | None = None
    candidates: tuple[Any, ...] | None = None


def exact(scan: Scan, data: PartitionedColumn) -> list:
    """The exact aggregate of ``scan`` over every partition: the partials, added up."""
    scan = Scan(**{**scan.__dict__, "column": data.name, "filter": data.filter})
    partials = data.table.mapper(partial, scan, data.table.files)
    total = partials[0]
    for part in partials[1:]:
        total = [a + b for a, b in zip(total, part, strict=True)]
    return total


def partial(scan: Scan, path: str) -> list:
    """The exact aggregate of ``scan`` over one partition file (module-level for Dask)."""
    import pyarrow.parquet as pq

    from datasite.contract.release import filter_columns

    source = pq.ParquetFile(path)
    wanted = list(dict.fromkeys([*([scan.column] if scan.column else []),
                                 *sorted(filter_columns(scan.filter))]))  # fmt: skip
    if scan.op == "count" and scan.filter is None:
        return [int(source.metadata.num_rows)]
    groups = _row_groups(source, scan.filter)
    total = _empty(scan)
    if scan.op in ("sum", "mean") and scan.filter is None and scan.integer:  # no pandas
        return _arrow_integer_sum(scan, source.read_row_groups(groups, columns=wanted).column(0))
    if scan.op in ("sum", "mean") and scan.filter is None:
        return _float_sum(scan, source, groups)
    for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=wanted, row_groups=groups):
        frame = batch.to_pandas()
        if scan.filter is not None:
            frame = frame.loc[mask(scan.filter, frame)]
        if scan.op == "count":
            part = [len(frame)]
        else:
            part = _aggregate(scan, frame[scan.column])
        total = [a + b for a, b in zip(total, part, strict=True)]
    return total


def _arrow_integer_sum(scan: Scan, column: Any) -> list:
    """Clamped integer sum and non-missing count of one partition's column, with Arrow
    compute (float columns go through :func:`_float_sum`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    low, high = (pa.scalar(int(b), column.type) for b in scan.bounds)  # type: ignore[union-attr]
    keep = pc.ElementWiseAggregateOptions(skip_nulls=False)  # a missing value stays missing
    raised = pc.max_element_wise(column, low, options=keep)
    clamped = pc.min_element_wise(raised, high, options=keep)
    present = len(clamped) - clamped.null_count
    return [int(pc.sum(clamped, min_count=0).as_py() or 0), present]


def _float_sum(scan: Scan, source: Any, groups: list[int]) -> list:
    """Clamped float sum and non-missing count of one partition's column (null and NaN
    are missing), a batch of Arrow at a time through NumPy.

    A batch (``BATCH_ROWS`` values) stays in the CPU cache while it is clamped and
    summed, and nothing but the column is decoded: on 2 cores the benchmark's releaser
    scans 10M rows in about 25 ms this way, against 65 ms for a Polars scan of each file
    (the releaser's Polars has one thread) and 45 ms for the floor's multi-threaded one.
    """
    import pyarrow as pa

    low, high = (float(b) for b in scan.bounds)  # type: ignore[union-attr]
    total, present = 0.0, 0
    batches = source.iter_batches(batch_size=BATCH_ROWS, columns=[scan.column],
                                  row_groups=groups, use_threads=False)  # fmt: skip
    for batch in batches:
        values = batch.column(0).cast(pa.float64()).to_numpy(zero_copy_only=False)
        clamped = np.clip(values, low, high)  # a missing value (NaN here) stays NaN
        part = float(clamped.sum())
        if math.isnan(part):
            kept = clamped[~np.isnan(clamped)]
            part, count = float(kept.sum()), len(kept)
        else:
            count = len(clamped)
        total, present = total + part, present + count
    return [total, present]


def _empty(scan: Scan) -> list:
    if scan.op == "count":
        return [0]
    if scan.op in ("sum", "mean"):
        return [0 if scan.integer else 0.0, 0]
    if scan.op == "categories":
        return [np.zeros(len(scan.categories or ()) + 1, dtype=np.int64)]
    if scan.op == "bins":
        return [np.zeros(len(scan.edges or ()) - 1, dtype=np.int64)]
    return [np.zeros(len(scan.candidates or ()), dtype=np.int64)] * 2


def _aggregate(scan: Scan, series: pd.Series) -> list:
    if scan.op == "categories":
        codes = pd.Index(list(scan.categories or ())).get_indexer(series)
        counts = np.bincount(codes + 1, minlength=len(scan.categories or ()) + 1)
        return [np.roll(counts, -1)]  # the "other" count (code -1) goes last, as OpenDP's
    if scan.integer:
        values = np.clip(series.to_numpy(dtype=np.int64), scan.bounds[0], scan.bounds[1])
    else:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        if scan.op == "bins":
            edges = scan.edges or ()
            top = float(np.nextafter(edges[-1], -np.inf))
            bins = np.searchsorted(edges[1:-1], np.clip(values, edges[0], top), side="right")
            return [np.bincount(bins, minlength=len(edges) - 1)]
        values = np.clip(values, float(scan.bounds[0]), float(scan.bounds[1]))
    if scan.op in ("sum", "mean"):
        total = int(values.sum()) if scan.integer else float(values.sum())
        return [total, len(values)]
    ordered = np.sort(values)  # ranks: values below / above each candidate
    grid = np.asarray(scan.candidates)
    below = np.searchsorted(ordered, grid, side="left")
    above = len(ordered) - np.searchsorted(ordered, grid, side="right")
    return [below.astype(np.int64), above.astype(np.int64)]


def _row_groups(source: Any, filter: dict | None) -> list[int]:
    """The row groups whose min/max statistics do not rule the filter out."""
    meta = source.metadata
    if filter is None:
        return list(range(meta.num_row_groups))
    names = source.schema_arrow.names
    kept = []
    for index in range(meta.num_row_groups):
        group = meta.row_group(index)
        lows, highs = {}, {}
        for position, name in enumerate(names):
            stats = group.column(position).statistics
            if stats is not None and stats.has_min_max:
                lows[name], highs[name] = stats.min, stats.max
        if may_match(filter, lows, highs):
            kept.append(index)
    return kept


def _null_count(files: Sequence[str], column: str) -> int:
    import pyarrow.parquet as pq

    nulls = 0
    for path in files:
        meta = pq.ParquetFile(path).metadata
        position = meta.schema.to_arrow_schema().get_field_index(column)
        for index in range(meta.num_row_groups):
            stats = meta.row_group(index).column(position).statistics
            if stats is None or not stats.has_null_count:
                return 1  # unknown: treat the column as one that may hold missing values
            nulls += stats.null_count
    return nulls


@cache
def rank_weights(alpha: float) -> tuple[int, int]:
    """OpenDP's integer weights ``(a, b)``: a candidate's score is ``|a*below - b*above|``.

    OpenDP turns ``alpha`` into a fraction of its own choosing; asking its score
    transformation about one value below and one above a candidate reads them off.
    """
    from researcher_kit.dp._opendp import opendp

    dp = opendp()
    scoring = dp.t.make_quantile_score_candidates(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance(),
        [1.0], alpha,
    )  # fmt: skip
    return int(scoring([0.0])[0]), int(scoring([2.0])[0])


def quantile_scores(below: np.ndarray, above: np.ndarray, alpha: float) -> list[int]:
    """OpenDP's quantile scores from the rank counts of :func:`partial`."""
    a, b = rank_weights(alpha)
    return [abs(a * int(lo) - b * int(hi)) for lo, hi in zip(below, above, strict=True)]
