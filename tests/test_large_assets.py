"""Large assets: partitioned storage, streamed partition-parallel releases, bounded memory.

The exact aggregates of the partitioned path are compared with OpenDP's own
transformations on the whole table; its releases with the single-process ones (same
distribution); column pruning is shown on the bytes a release reads; the Dask path runs
on a real ``LocalCluster``; the sandbox tests run a real releaser process under a memory
limit smaller than the table.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from datasite.contract.job import ContextOptions, JobSpec, Limits, RequestKind
from datasite.contract.results import decode_result
from datasite.contract.tables import partition_files, write_partitioned
from researcher_kit import dp
from researcher_kit.dp._opendp import opendp
from researcher_kit.dp.aggregates import _clamped, _rows
from researcher_kit.dp.partitioned import (
    BATCH_ROWS,
    PartitionedTable,
    Scan,
    dask_mapper,
    exact,
    quantile_scores,
)
from researcher_kit.releaser import Releaser

MARKER = 31_337.0  # a private value only the real table holds


def people(rows: int = 20_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(0, 100, rows).astype("int64"),
            "income": rng.normal(50.0, 20.0, rows),
            "sex": rng.choice(["F", "M", "X"], rows),
            "secret": rng.normal(0.0, 1.0, rows),
        }
    )
    frame.loc[::13, "income"] = np.nan
    frame.loc[7, "secret"] = MARKER
    return frame


def partitioned(frame: pd.DataFrame, folder: Path, rows_per_file: int = 3_000) -> Path:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    write_partitioned(table.to_batches(max_chunksize=1_000), folder, table.schema, rows_per_file)
    return folder


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return people()


@pytest.fixture(scope="module")
def parts(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> PartitionedTable:
    return PartitionedTable.from_folder(partitioned(frame, tmp_path_factory.mktemp("p") / "t"))


def writable(series: pd.Series) -> np.ndarray:
    return np.array(series.to_numpy(dtype=float, na_value=np.nan), copy=True)


# -- the exact aggregates are OpenDP's -----------------------------------------------------


def test_partials_add_up_to_what_opendp_computes_on_the_whole_table(frame, parts) -> None:  # type: ignore[no-untyped-def]
    od = opendp()
    assert len(parts.files) == 7
    income = writable(frame["income"])
    age = frame["age"].to_numpy().copy()
    assert exact(Scan("count"), parts.column(None)) == [len(frame)]
    int_sum = _clamped(True, (10, 90)) >> od.t.then_sum()
    assert exact(Scan("sum", integer=True, bounds=(10, 90)), parts.column("age"))[0] == int_sum(age)
    float_sum = _clamped(False, (0.0, 100.0)) >> od.t.then_sum()
    total, nonmissing = exact(Scan("mean", bounds=(0.0, 100.0)), parts.column("income"))
    assert total == pytest.approx(float_sum(income), rel=1e-12)
    assert nonmissing == int(frame["income"].notna().sum())
    edges = [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    top = float(np.nextafter(100.0, -np.inf))
    binning = (
        _rows(False)
        >> od.t.then_drop_null()
        >> od.t.then_clamp((0.0, top))
        >> od.t.then_find_bin(edges=edges[1:-1])
        >> od.t.then_count_by_categories(categories=list(range(5)), null_category=False)
    )
    bins = exact(Scan("bins", edges=tuple(edges)), parts.column("income"))[0]
    assert [int(c) for c in bins] == binning(income)
    categories = exact(Scan("categories", categories=("F", "M")), parts.column("sex"))[0]
    assert [int(c) for c in categories] == [
        int((frame["sex"] == "F").sum()), int((frame["sex"] == "M").sum()),
        int((frame["sex"] == "X").sum()),
    ]  # fmt: skip
    grid = list(np.linspace(0.0, 100.0, 51))
    below, above = exact(
        Scan("ranks", bounds=(0.0, 100.0), candidates=tuple(grid)), parts.column("income")
    )
    for alpha in (0.5, 0.1, 0.37):
        scoring = _clamped(False, (0.0, 100.0)) >> od.t.then_quantile_score_candidates(grid, alpha)
        assert quantile_scores(below, above, alpha) == list(scoring(income)), alpha


def test_a_filter_keeps_the_same_rows_in_both_paths(frame, parts) -> None:  # type: ignore[no-untyped-def]
    older = {"and": [{"cmp": ">=", "left": {"col": "age"}, "right": {"lit": 60}},
                     {"cmp": "==", "left": {"col": "sex"}, "right": {"lit": "F"}}]}  # fmt: skip
    expected = int(((frame["age"] >= 60) & (frame["sex"] == "F")).sum())
    assert exact(Scan("count"), parts.column(None, older)) == [expected]


def test_the_partitioned_release_has_the_single_process_distribution(frame, parts) -> None:  # type: ignore[no-untyped-def]
    """Same noise (OpenDP, same scale) on the same exact sum: the two samples of 600
    releases each are indistinguishable (two-sample Kolmogorov-Smirnov at 1e-6: it tells
    apart what 300 each at 1e-3 did, and fails by chance 1 run in a million, not 1 in
    1,250)."""
    whole = frame["age"]
    single = [dp.sum(whole, bounds=(0, 100), epsilon=0.05) for _ in range(600)]
    split = [dp.sum(parts.column("age"), bounds=(0, 100), epsilon=0.05) for _ in range(600)]
    assert stats.ks_2samp(single, split).pvalue > 1e-6
    assert abs(np.mean(split) - np.clip(whole, 0, 100).sum()) < 4 * 2000 / np.sqrt(len(split)) * 1.5
    with dp.track() as spent:
        dp.mean(parts.column("income"), bounds=(0.0, 100.0), epsilon=0.3)
    assert [e.helper for e in spent.entries] == ["mean"] and spent.epsilon == pytest.approx(0.3)


def test_releaser_serves_every_aggregate_from_partitions(frame, parts) -> None:  # type: ignore[no-untyped-def]
    from datasite.contract.release import ReleaseCall

    releaser = Releaser({"df": Path(parts.files[0]).parent}, epsilon=10.0)
    call = ReleaseCall.model_validate
    mean = releaser.handle(call({"op": "mean", "table": "df", "column": "income",
                                 "bounds": [0, 100], "epsilon": 2.0}))  # fmt: skip
    median = releaser.handle(call({"op": "quantile", "table": "df", "column": "age",
                                   "alpha": 0.5, "bounds": [0, 100], "epsilon": 2.0}))  # fmt: skip
    counts = releaser.handle(call({"op": "histogram", "table": "df", "column": "sex",
                                   "categories": ["F", "M"], "epsilon": 2.0}))  # fmt: skip
    n = releaser.handle(call({"op": "count", "table": "df", "epsilon": 2.0}))
    assert abs(mean - frame["income"].mean()) < 1.0 and abs(median - 50) < 5
    assert abs(n - len(frame)) < 20 and list(counts.index) == ["F", "M", "(other)"]
    assert releaser.spent.epsilon == pytest.approx(8.0)


class Direct:
    """A blind Context's channel straight to a releaser in this process."""

    def __init__(self, releaser: Releaser, keep_hint: bool = True) -> None:
        self.releaser, self.keep_hint = releaser, keep_hint

    def call(self, call):  # type: ignore[no-untyped-def]
        if not self.keep_hint:
            call = call.model_copy(update={"column": None, "bounds": None})
        return self.releaser.handle(call)


@pytest.fixture
def plan_never_runs(monkeypatch):  # type: ignore[no-untyped-def]
    """OpenDP's whole-table plan (``OnceFrame.collect``) refuses to run."""
    from opendp.extras.polars import OnceFrame

    def refuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("OpenDP's plan loaded the table")

    monkeypatch.setattr(OnceFrame, "collect", refuse)


def test_context_aggregates_of_a_partitioned_table_are_scanned(
    frame, parts, plan_never_runs
) -> None:  # type: ignore[no-untyped-def]
    """ctx_count/sum/mean of a partitioned table never run OpenDP's plan over the whole
    column: OpenDP resolves and charges them, the exact partials get its noise."""
    from researcher_kit.blind import BlindContext

    releaser = Releaser({"df": Path(parts.files[0]).parent}, epsilon=4e4, queries=4)
    ctx = BlindContext(Direct(releaser), "df", {})
    income = frame["income"].fillna(50.0).clip(0, 100)  # missing: the bounds' midpoint
    assert dp.ctx_count(ctx) == pytest.approx(len(frame), abs=2)
    assert dp.ctx_sum(ctx, "age", (10, 90)) == pytest.approx(frame["age"].clip(10, 90).sum(), abs=2)
    assert dp.ctx_mean(ctx, "income", (0.0, 100.0)) == pytest.approx(income.mean(), abs=1e-3)
    assert dp.ctx_sum(ctx, "income", (0.0, 100.0)) == pytest.approx(income.sum(), abs=1.0)
    entries = releaser.spent.entries
    assert [e.details["aggregates"] for e in entries] == [
        ["Frame Length"],
        ["Sum"],
        ["Sum", "Length"],
        ["Sum"],
    ]
    assert releaser.spent.epsilon == pytest.approx(4e4)
    with pytest.raises(Exception, match="budget|exhausted|queries|consumed"):  # 4 of 4 used
        dp.ctx_count(ctx)


def test_a_context_query_whose_hint_lies_runs_opendps_plan(frame, parts) -> None:  # type: ignore[no-untyped-def]
    """Column and bounds come from the researcher's code: steps that are not exactly the
    helper's expression for them (or no hint) take OpenDP's own plan, whatever they say."""
    from datasite.contract.release import ReleaseCall
    from researcher_kit.dp.context import aggregate

    releaser = Releaser({"df": Path(parts.files[0]).parent}, epsilon=2e4, queries=2)
    steps = [["select", [{"expr": aggregate("mean", "income", (0.0, 100.0)).meta.serialize(
        format="json")}]]]  # fmt: skip
    lying = ReleaseCall(op="context", table="df", steps=steps, column="age", bounds=(0, 100))
    released = releaser.handle(lying).item()
    assert released == pytest.approx(frame["income"].fillna(50.0).clip(0, 100).mean(), abs=1e-2)
    from researcher_kit.blind import BlindContext

    unhinted = BlindContext(Direct(releaser, keep_hint=False), "df", {})
    assert dp.ctx_count(unhinted) == pytest.approx(len(frame), abs=2)


def test_a_scanned_context_mean_has_opendps_distribution(frame, parts) -> None:  # type: ignore[no-untyped-def]
    """The same resolved measurement, 800 times by OpenDP's plan on the whole table and
    800 times as exact partials plus its named noise: one distribution (two-sample KS at
    1e-6, as sharp as 400 each at 1e-3)."""
    import polars as pl
    from opendp.accuracy import summarize_polars_measurement

    from datasite.contract.harness import build_context
    from researcher_kit.dp.context import aggregate, answer_from_exact

    whole = pl.from_pandas(frame).lazy()
    ctx = build_context(whole, epsilon=1.0)
    measurement = ctx.query().select(aggregate("mean", "income", (0.0, 100.0))).resolve()
    summary = summarize_polars_measurement(measurement)
    planned = [measurement(whole).collect().item() for _ in range(800)]
    clamped, present = exact(Scan("mean", bounds=(0.0, 100.0)), parts.column("income"))
    total = clamped + (len(frame) - present) * 50.0
    scanned = [answer_from_exact("mean", "income", total, len(frame), summary).item()
               for _ in range(800)]  # fmt: skip
    assert stats.ks_2samp(planned, scanned).pvalue > 1e-6
    assert np.std(scanned) > 0.001  # noised: a Laplace sum of scale ~2,000 over 20,000 rows


# -- only the columns and row groups a release needs are read ------------------------------


class CountingFile(io.RawIOBase):
    """A file that records the byte ranges read from it."""

    def __init__(self, path: str, reads: list[tuple[str, int, int]]) -> None:
        self._file, self._path, self._reads = open(path, "rb"), path, reads  # noqa: SIM115

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        start = self._file.tell()
        n = self._file.readinto(buffer)
        self._reads.append((self._path, start, start + (n or 0)))
        return n or 0

    def close(self) -> None:
        self._file.close()
        super().close()


def column_chunks(path: str, column: str) -> list[tuple[int, int]]:
    meta = pq.ParquetFile(path).metadata
    position = meta.schema.to_arrow_schema().get_field_index(column)
    spans = []
    for index in range(meta.num_row_groups):
        chunk = meta.row_group(index).column(position)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        spans.append((start, start + chunk.total_compressed_size))
    return spans


def test_untouched_columns_and_excluded_row_groups_are_never_read(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch
) -> None:
    frame = people(rows=80_000).sort_values("age", ignore_index=True)  # row groups by age
    table = pa.Table.from_pandas(frame, preserve_index=False)
    folder = tmp_path / "t"
    folder.mkdir()
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=10_000)
    path = str(folder / "part-00000.parquet")
    reads: list[tuple[str, int, int]] = []
    original = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda p, **kw: original(CountingFile(p, reads), **kw))
    older = {"cmp": ">=", "left": {"col": "age"}, "right": {"lit": 90}}
    released = dp.mean(PartitionedTable((path,)).column("income", older), bounds=(0, 100),
                       epsilon=1.0)  # fmt: skip
    assert 0 <= released <= 100 and reads

    size = Path(path).stat().st_size  # the footer's read-ahead: the last 64 KiB at most
    data_reads = [(a, b) for _, a, b in reads if not (b == size and b - a <= 65_536 + 8)]
    assert size > 1_000_000

    def touched(spans: list[tuple[int, int]]) -> list[int]:
        return [i for i, (a, b) in enumerate(spans)
                if any(start < b and end > a for start, end in data_reads)]  # fmt: skip

    assert touched(column_chunks(path, "secret")) == []
    assert touched(column_chunks(path, "sex")) == []
    read_groups = touched(column_chunks(path, "income"))
    assert read_groups and len(read_groups) < 3  # of 8 row groups, only the oldest ages
    expected = int((frame["age"] >= 90).sum())
    assert exact(Scan("count"), PartitionedTable((path,)).column(None, older)) == [expected]


def test_an_unfiltered_mean_decodes_its_column_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The unfiltered float mean reads its one column: shown by overwriting every other
    column's bytes with garbage, which a reader that touched them could not decode."""
    frame = people(rows=40_000)
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=10_000)
    expected = exact(
        Scan("mean", bounds=(0.0, 100.0)), PartitionedTable((str(path),)).column("income")
    )
    raw = bytearray(path.read_bytes())
    for column in ("age", "sex", "secret"):
        for start, end in column_chunks(str(path), column):
            raw[start:end] = b"\xff" * (end - start)
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception):  # noqa: B017 - whichever error the reader raises
        pq.read_table(path, columns=["secret"])
    assert (
        exact(Scan("mean", bounds=(0.0, 100.0)), PartitionedTable((str(path),)).column("income"))
        == expected
    )
    clamped = frame["income"].dropna().clip(0.0, 100.0)
    assert expected[1] == len(clamped) and expected[0] == pytest.approx(clamped.sum(), rel=1e-12)


def test_a_float_mean_leaves_out_null_and_nan_in_every_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Missing is null or NaN (OpenDP's ``drop_null``), whichever batch it falls in, and an
    integer or boolean column asked for a float mean is summed as floats."""
    rows = 3 * BATCH_ROWS + 5
    rng = np.random.default_rng(3)
    values = rng.normal(50.0, 40.0, rows)
    values[[7, BATCH_ROWS + 1, rows - 1]] = np.nan
    nulls = np.zeros(rows, dtype=bool)
    nulls[[8, 2 * BATCH_ROWS]] = True
    table = pa.table({
        "x": pa.array(values, mask=nulls),  # NaN stays NaN: only ``mask`` makes nulls
        "n": pa.array(rng.integers(-5, 200, rows), mask=nulls),
        "b": pa.array(rng.integers(0, 2, rows).astype(bool)),
    })  # fmt: skip
    folder = tmp_path / "t"
    folder.mkdir()
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=BATCH_ROWS // 2)
    column = PartitionedTable.from_folder(folder).column
    od = opendp()
    for name, bounds in (("x", (0.0, 100.0)), ("n", (0.0, 100.0)), ("b", (0.0, 1.0))):
        data = np.array(table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False))
        expected = (_clamped(False, bounds) >> od.t.then_sum())(data)
        total, present = exact(Scan("mean", bounds=bounds), column(name))
        assert present == int((~np.isnan(data)).sum()), name
        assert total == pytest.approx(expected, rel=1e-12), name
    assert exact(Scan("mean", bounds=(0.0, 100.0)), column("x"))[1] == rows - 5


# -- Dask: the same partials on a real cluster ---------------------------------------------


@pytest.mark.integration
@pytest.mark.one_database
def test_a_dask_local_cluster_computes_the_same_exact_aggregates(parts) -> None:  # type: ignore[no-untyped-def]
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        on_dask = PartitionedTable(parts.files, dask_mapper(client))
        for scan, column in [
            (Scan("count"), None),
            (Scan("sum", integer=True, bounds=(0, 100)), "age"),
            (Scan("bins", edges=(0.0, 50.0, 100.0)), "income"),
        ]:
            local = exact(scan, parts.column(column))
            remote = exact(scan, on_dask.column(column))
            assert [np.asarray(v).tolist() for v in remote] == [
                np.asarray(v).tolist() for v in local
            ]
        mean = dp.mean(on_dask.column("income"), bounds=(0.0, 100.0), epsilon=1.0)
        assert abs(mean - 50) < 2


# -- the sandbox: a real releaser process under a memory limit smaller than the table ------


@pytest.fixture(scope="module")
def executor():  # type: ignore[no-untyped-def]
    from datasite.execution.executor import LocalExecutor

    with LocalExecutor(concurrency=1) as pool:
        yield pool


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """8M rows x 3 float columns (about 190 MB of values) in 8 partitions."""
    root = tmp_path_factory.mktemp("big")
    root.chmod(0o700)  # the releaser reads through its directory descriptor only
    rng = np.random.default_rng(0)
    schema = pa.schema([("x", pa.float64()), ("y", pa.float64()), ("z", pa.float64())])

    def batches():  # type: ignore[no-untyped-def]
        for _ in range(16):
            n = 500_000
            yield pa.table({"x": rng.uniform(0, 10, n), "y": rng.uniform(0, 1, n),
                            "z": rng.normal(0, 1, n)}, schema=schema)  # fmt: skip

    folder = root / "real"
    write_partitioned(batches(), folder, schema, rows_per_file=1_000_000)
    return str(folder)


MEMORY = 256 * 1024**2


def run(executor, folder: str, source: str, kind: str = "blind", memory: int = MEMORY,  # type: ignore[no-untyped-def]
        queries: int = 1):  # fmt: skip
    spec = JobSpec(job_id="large", source=textwrap.dedent(source), entry="f",
                   kind=RequestKind(kind), inputs={"df": folder}, epsilon=1.0,
                   context=ContextOptions(queries=queries),
                   limits=Limits(wall_seconds=120, memory_bytes=memory))  # fmt: skip
    return executor.submit(spec).result()


@pytest.mark.integration
@pytest.mark.one_database
def test_a_blind_release_over_a_table_larger_than_the_memory_limit(executor, big_folder) -> None:  # type: ignore[no-untyped-def]
    assert len(partition_files(big_folder)) == 8
    source = """
        from researcher_kit import dp

        def f(df):
            mean = dp.mean(df["x"], bounds=(0, 10), epsilon=0.5)
            high = dp.count(df[df["y"] > 0.9], epsilon=0.5)
            return mean, high
    """
    result = run(executor, big_folder, source)
    assert result.ok, (result.error_type, result.error_message, result.error_detail)
    mean, high = decode_result(result.manifest, result.blobs)
    assert abs(mean - 5.0) < 0.05 and abs(high - 800_000) < 5_000  # sd 850 + noise
    assert [e["helper"] for e in result.spend] == ["mean", "count"]
    whole = """
        def f(df):
            return float(df["x"].mean())
    """
    result = run(executor, big_folder, whole, kind="mechanism")
    assert not result.ok  # the same table, loaded as a pandas DataFrame, is over the limit
    rows = """
        from researcher_kit import dp

        def f(df):
            return dp.fit_model("linear_regression", df[["x", "y"]], df["z"], epsilon=0.5,
                                bounds=([0, 0], [10, 1]), bounds_y=(-4, 4))
    """
    result = run(executor, big_folder, rows)
    assert not result.ok  # a release that needs the rows in memory meets the limit too
    assert result.error_type in ("ReleaseFailed", "ReleaseError"), result.error_detail


@pytest.mark.integration
@pytest.mark.one_database
def test_a_context_request_over_a_table_larger_than_the_memory_limit(executor, big_folder) -> None:  # type: ignore[no-untyped-def]
    """A Context mean and count of 8M rows in a releaser limited to 256 MiB: OpenDP's own
    plan would load the column (and its filled, clamped copies) whole."""
    source = """
        from researcher_kit import dp

        def f(df):
            return dp.ctx_mean(df, "x", bounds=(0.0, 10.0)), dp.ctx_count(df)
    """
    result = run(executor, big_folder, source, kind="context", queries=2)
    assert result.ok, (result.error_type, result.error_message, result.error_detail)
    mean, rows = decode_result(result.manifest, result.blobs)
    assert abs(mean - 5.0) < 0.01 and abs(rows - 8_000_000) < 100
    # Any other query runs OpenDP's plan, which loads what it reads: past the limit, the
    # researcher is told why the releaser stopped (not a bare closed channel).
    filtered = """
        import polars as pl

        def f(df):
            query = df.query().filter(pl.col("y") > 0.01).select(
                pl.col("x").fill_nan(5.0).fill_null(5.0).dp.mean((0.0, 10.0)))
            return query.release().collect().item()
    """
    result = run(executor, big_folder, filtered, kind="context")
    assert not result.ok and result.error_type == "ReleaseError", result.error_detail
    assert "releaser stopped" in result.error_message and "memory" in result.error_message


@pytest.mark.integration
@pytest.mark.one_database
def test_raw_code_that_asks_for_a_lazy_frame_scans_the_partitions(executor, big_folder) -> None:  # type: ignore[no-untyped-def]
    """Polars' thread pools reserve about 1 GiB of address space, so this run gets 1.5 GiB
    (``RLIMIT_AS``); what it touches is one column, a batch at a time."""
    lazy = """
        import polars as pl

        def f(df: pl.LazyFrame):
            mean = df.select(pl.col("x").clip(0, 10).mean())
            return float(mean.collect(engine="streaming")[0, 0])
    """
    result = run(executor, big_folder, lazy, kind="mechanism", memory=1536 * 1024**2)
    assert result.ok, (result.error_type, result.error_message, result.error_detail)
    assert abs(decode_result(result.manifest, result.blobs) - 5.0) < 0.01


@pytest.mark.integration
@pytest.mark.one_database
def test_raw_code_asking_for_a_dask_frame_gets_one_per_file(executor, big_folder) -> None:  # type: ignore[no-untyped-def]
    """The same table as a Dask DataFrame, computed in the sandbox a partition at a time."""
    source = """
        import dask.dataframe as dd

        def f(df: dd.DataFrame):
            clipped = df["x"].clip(0, 10)
            return df.npartitions, float(clipped.mean().compute(scheduler="synchronous"))
    """
    result = run(executor, big_folder, source, kind="mechanism", memory=1536 * 1024**2)
    assert result.ok, (result.error_type, result.error_message, result.error_detail)
    partitions, mean = decode_result(result.manifest, result.blobs)
    assert partitions == len(partition_files(big_folder)) and abs(mean - 5.0) < 0.01


# -- storage through the site: partitions, streamed uploads, an interrupted upload ---------


@pytest.fixture(scope="module")
def small_parts_site(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An in-process site that stores real tables in partitions of 500 rows."""
    from tests.conftest import inprocess

    yield from inprocess(tmp_path_factory.mktemp("parts"), partition_rows=500)


def owner_of(site):  # type: ignore[no-untyped-def]
    from datasite import admin
    from tests.server import OWNER_EMAIL, OWNER_PASSWORD

    return admin.connect(site.url, OWNER_EMAIL, OWNER_PASSWORD)


def stored(site, name: str) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from datasite.db.models import Asset, Dataset

    with site.site.sessions() as db:
        dataset = db.scalar(select(Dataset).where(Dataset.name == name))
        asset = db.scalar(select(Asset).where(Asset.dataset_id == dataset.id))
        return site.site.store.path(asset.real_path), site.site.store.path(asset.mock_path)


def test_an_upload_is_stored_in_partitions_from_a_csv_file_or_chunks(  # type: ignore[no-untyped-def]
    small_parts_site, tmp_path
) -> None:
    owner = owner_of(small_parts_site)
    frame = people(rows=2_300)
    csv = tmp_path / "people.csv"
    frame.to_csv(csv, index=False)
    chunks = (frame.iloc[i : i + 700] for i in range(0, len(frame), 700))
    mock = people(rows=100, seed=9).drop(columns=[])  # same columns, other people
    mock["secret"] = 0.0
    owner.datasets.upload(name="FromChunks", assets={"t": (chunks, mock)}, progress=False)
    real_path, mock_path = stored(small_parts_site, "FromChunks")
    assert real_path.is_dir() and mock_path.is_file()
    assert [Path(p).name for p in partition_files(real_path)] == [
        f"part-0000{i}.parquet" for i in range(5)
    ]
    assert pd.read_parquet(real_path).equals(frame)
    owner.datasets.upload(name="FromCsv", assets={"t": (csv, mock)}, progress=False)
    assert (
        pd.read_parquet(stored(small_parts_site, "FromCsv")[0])["age"].sum() == frame["age"].sum()
    )
    assert list(small_parts_site.settings.uploads_dir.iterdir()) == []  # uploads are done


def test_an_interrupted_partitioned_write_keeps_nothing_and_can_be_retried(  # type: ignore[no-untyped-def]
    small_parts_site, monkeypatch
) -> None:
    import errno

    from datasite.client.http import DatasiteError
    from datasite.store import storage

    owner = owner_of(small_parts_site)
    session = owner.session
    real, mock = people(rows=1_800), people(rows=100, seed=5)
    real_id = session.upload_table(real, progress=False)["upload_id"]
    mock_id = session.upload_table(mock, progress=False)["upload_id"]
    body = {"name": "Halfway", "assets": [{"name": "t", "real_upload": real_id,
                                            "mock_upload": mock_id}]}  # fmt: skip
    original = storage.write_partitioned

    def disk_full_after_two_parts(batches, folder, schema, rows_per_file):  # type: ignore[no-untyped-def]
        def some():  # type: ignore[no-untyped-def]
            for i, batch in enumerate(batches):
                if i * 1024 >= 2 * rows_per_file:
                    raise OSError(errno.ENOSPC, "No space left on device")
                yield batch

        return original(some(), folder, schema, rows_per_file)

    monkeypatch.setattr(storage, "write_partitioned", disk_full_after_two_parts)
    monkeypatch.setattr(storage, "BATCH_ROWS", 1024)
    with pytest.raises(DatasiteError) as refused:
        session.post("/datasets", json=body)
    assert refused.value.status == 503
    assert "No space left on device" in str(refused.value) and "try again" in str(refused.value)
    assert "Halfway" not in [d["name"] for d in owner.datasets.list()]
    assets = small_parts_site.settings.assets_dir
    assert not [p for p in assets.rglob("*") if p.name.endswith(".partial")]
    monkeypatch.setattr(storage, "write_partitioned", original)
    session.post("/datasets", json=body)  # the same uploads, again
    real_path, _ = stored(small_parts_site, "Halfway")
    assert len(partition_files(real_path)) == 4 and pd.read_parquet(real_path).equals(real)


def test_a_crash_mid_write_leaves_a_partial_folder_the_next_start_removes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datasite.store.storage import LocalStorage

    store = LocalStorage(tmp_path / "assets")
    leftover = store.root / "4" / ".abc-real.parquet.partial"
    leftover.mkdir(parents=True)
    (leftover / "part-00000.parquet").write_bytes(b"PAR1")
    assert store.sweep_partial() == ["4/.abc-real.parquet.partial"] and not leftover.exists()


# -- the scan broker of a Dask site (datasite.execution.cluster_scans) ------------------------


def test_the_scan_broker_scans_only_the_jobs_own_partitions(parts) -> None:  # type: ignore[no-untyped-def]
    from datasite.execution.cluster_scans import ScanRefused, encode_scan, resolve

    folder = str(Path(parts.files[0]).parent)
    inputs = {"df": folder}
    first = Path(parts.files[0]).name
    assert resolve(inputs, {"input": "df", "files": [first]}) == [parts.files[0]]
    for request, message in [
        ({"input": "other", "files": [first]}, "no such partitioned input"),
        ({"input": "df", "files": []}, "no such partitioned input"),
        ({"input": "df", "files": ["../../etc/passwd"]}, "not a partition name"),
        ({"input": "df", "files": ["part-../x.parquet"]}, "not a partition name"),
        ({"input": "df", "files": ["part-99999.parquet"]}, "no partition part-99999"),
    ]:
        with pytest.raises(ScanRefused, match=message):
            resolve(inputs, request)
    fields = encode_scan(Scan("sum", column="age", integer=True, bounds=(0, 100)))
    with pytest.raises(ScanRefused, match="not a scan"):
        from datasite.execution.cluster_scans import decode_scan

        decode_scan({**fields, "code": "import os"})


@pytest.mark.integration
@pytest.mark.one_database
def test_the_scan_broker_gives_the_releaser_the_same_exact_aggregates(parts) -> None:  # type: ignore[no-untyped-def]
    """The broker's side (tasks on a real in-process cluster, partials added up) and the
    releaser's side (``cluster_mapper`` over a socket) give what the local threads give."""
    import socket
    import threading

    from distributed import Client, LocalCluster

    from datasite.contract.framing import read_message, write_message
    from datasite.execution.cluster_scans import ScanChannel, cluster_mapper, scan_on

    folder = str(Path(parts.files[0]).parent)
    releaser_end, broker_end = socket.socketpair()
    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):

        def broker() -> None:  # broker_main's loop, in a thread of this test
            stream = broker_end.makefile("rwb", buffering=0)
            while True:
                try:
                    request, _ = read_message(stream)
                except EOFError:
                    return
                write_message(stream, {"total": scan_on(client, {"df": folder}, request)})

        thread = threading.Thread(target=broker, daemon=True)
        thread.start()
        channel = ScanChannel(releaser_end.detach())
        remote = PartitionedTable(parts.files, cluster_mapper(channel, "df"))
        for scan, column in [
            (Scan("count"), None),
            (Scan("sum", integer=True, bounds=(0, 100)), "age"),
            (Scan("mean", bounds=(0.0, 100.0)), "income"),
            (Scan("categories", categories=("F", "M")), "sex"),
            (Scan("ranks", bounds=(0.0, 100.0), candidates=(25.0, 50.0, 75.0)), "income"),
        ]:
            local = exact(scan, parts.column(column))
            far = exact(scan, remote.column(column))
            assert [np.asarray(v).tolist() for v in far] == [np.asarray(v).tolist() for v in local]
        assert abs(dp.mean(remote.column("income"), bounds=(0.0, 100.0), epsilon=1.0) - 50) < 2
        broker_end.close()


def test_a_releaser_whose_broker_cannot_reach_the_cluster_scans_on_its_own(parts) -> None:  # type: ignore[no-untyped-def]
    import socket
    import threading

    from datasite.contract.framing import read_message, write_message
    from datasite.execution.cluster_scans import ScanChannel, cluster_mapper

    releaser_end, broker_end = socket.socketpair()

    def broker() -> None:  # what broker_main answers when the scheduler is out of reach
        stream = broker_end.makefile("rwb", buffering=0)
        read_message(stream)
        write_message(stream, {"unavailable": True})

    threading.Thread(target=broker, daemon=True).start()
    channel = ScanChannel(releaser_end.detach())
    remote = PartitionedTable(parts.files, cluster_mapper(channel, "df"))
    scan = Scan("sum", integer=True, bounds=(0, 100))
    assert exact(scan, remote.column("age")) == exact(scan, parts.column("age"))
    assert channel.unavailable
    assert exact(scan, remote.column("age")) == exact(scan, parts.column("age"))  # no more asks
