"""Data-blind execution: the releaser, the blind proxies, and the sandbox path between them.

The unit tests drive ``Releaser`` and the proxies in-process (the researcher's mock path);
the sandbox tests run real jobs through ``LocalExecutor``: a releaser process next to a
jailed job process that holds no input.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from datasite.contract.job import JobSpec, Limits, RequestKind
from datasite.contract.release import ReleaseCall
from datasite.contract.results import decode_result
from researcher_kit import dp
from researcher_kit.blind import BlindFrame, ReleaseError, local_frames
from researcher_kit.dp.budget import BudgetExceeded
from researcher_kit.releaser import Releaser, ReleaseRefused, checked_expression

SECRET = 987_654_321


def table(rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows).astype("int64"),
            "hours": rng.gamma(2.0, 1.0, rows),
            "group": rng.choice(["a", "b"], rows),
            "salary": rng.integers(20_000, 90_000, rows).astype("int64"),
        }
    )


# -- the releaser and the proxies, in-process ----------------------------------------------


def test_helpers_on_a_blind_frame_are_released_within_the_odometer() -> None:
    df = local_frames({"df": table()}, epsilon=1.0)["df"]
    with dp.track() as spent:
        mean = dp.mean(df["age"], bounds=(18, 90), epsilon=0.4)
        older = dp.count(df[(df["age"] >= 60) & (df["group"] == "a")], epsilon=0.3)
        counts = dp.histogram(df["group"], epsilon=0.3, categories=["a", "b"])
    assert 18 <= mean <= 90 and isinstance(older, int)
    assert list(counts.index) == ["a", "b", "(other)"]
    assert round(spent.epsilon, 9) == 1.0
    with pytest.raises(BudgetExceeded):
        dp.count(df, epsilon=0.01)  # nothing left


@pytest.mark.parametrize(
    "touch",
    [
        lambda df: len(df),
        lambda df: list(df["age"]),
        lambda df: np.asarray(df["age"]),
        lambda df: df.head(),
        lambda df: df["age"].mean(),
        lambda df: bool(df["age"] > 3),
    ],
)
def test_a_blind_frame_gives_up_no_row(touch) -> None:  # type: ignore[no-untyped-def]
    df = local_frames({"df": table()}, epsilon=1.0)["df"]
    with pytest.raises((TypeError, AttributeError)):
        touch(df)


def test_refusals_before_the_data_is_read_say_why() -> None:
    releaser = Releaser({"df": table()}, epsilon=1.0)
    bad = [
        ReleaseCall(op="mean", table="df", column="nope", bounds=(0, 1), epsilon=0.1),
        ReleaseCall(op="mean", table="df", column="age", epsilon=0.1),
        ReleaseCall(op="count", table="df", filter={"call": "os.system"}, epsilon=0.1),
        ReleaseCall(op="histogram", table="df", column="group", epsilon=0.1),
        ReleaseCall(
            op="fit_model",
            table="df",
            model="pca",
            features=["age"],
            params={"accountant": "x"},
            epsilon=0.1,
        ),  # fmt: skip
        ReleaseCall(op="context", table="df", steps=[("collect", [])]),
    ]
    for call in bad:
        with pytest.raises(ReleaseRefused):
            releaser.handle(call)
    assert releaser.spent.epsilon == 0


def test_context_expressions_may_not_carry_python_or_foreign_plugins() -> None:
    udf = pl.col("age").map_elements(lambda v: v, return_dtype=pl.Int64)
    with pytest.raises(ReleaseRefused, match="AnonymousFunction|opaque"):
        checked_expression(udf.meta.serialize(format="json"))
    foreign = {
        "Function": {
            "input": [{"Column": "age"}],
            "function": {
                "FfiPlugin": {
                    "flags": {},
                    "lib": "/lib/libc.so.6",
                    "symbol": "system",
                    "kwargs": [],
                }
            },  # fmt: skip
        }
    }
    with pytest.raises(ReleaseRefused, match="plugin"):
        checked_expression(json.dumps(foreign))
    import opendp.prelude as odp

    odp.enable_features("contrib")
    tree = json.loads(pl.col("age").dp.sum((18, 90)).meta.serialize(format="json"))
    tree["Function"]["function"]["FfiPlugin"]["lib"] = "/tmp/evil.so"
    cleaned = json.loads(checked_expression(json.dumps(tree)))
    assert cleaned["Function"]["function"]["FfiPlugin"]["lib"] != "/tmp/evil.so"


def test_the_privacy_unit_is_the_releasers(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_mean = dp.aggregates.mean

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["max_contributions"])
        return real_mean(*args, **kwargs)

    monkeypatch.setattr(dp, "mean", spy)
    df = local_frames({"df": table()}, epsilon=1.0, max_contributions=3)["df"]
    dp.aggregates.mean(df["age"], bounds=(18, 90), epsilon=0.5, max_contributions=1)
    assert seen == [3]


def test_only_the_columns_a_release_needs_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.parquet"
    table().to_parquet(path)
    read: list[list[str]] = []
    real_read = pd.read_parquet

    def spy(source, columns=None, **kwargs):  # type: ignore[no-untyped-def]
        read.append(list(columns or []))
        return real_read(source, columns=columns, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", spy)
    releaser = Releaser({"df": str(path)}, epsilon=1.0)
    releaser.handle(ReleaseCall(op="mean", table="df", column="hours", bounds=(0.0, 10.0),
                                filter={"cmp": ">", "left": {"col": "age"},
                                        "right": {"lit": 40}}, epsilon=0.5))  # fmt: skip
    assert read == [["hours", "age"]]


def test_a_model_is_fitted_by_the_releaser_on_a_condition_label() -> None:
    df = local_frames({"df": table()}, epsilon=1.0)["df"]
    blob = dp.fit_model("logistic_regression", df[["age", "hours"]], df["salary"] > 50_000,
                        epsilon=1.0, data_norm=100.0)  # fmt: skip
    assert dp.load_model(blob).predict([[40.0, 2.0]]).shape == (1,)


def test_the_context_proxy_replays_queries_on_the_releasers_context() -> None:
    ctx = local_frames({"ctx": table()}, epsilon=1.0, context=True, queries=2)["ctx"]
    n = dp.ctx_count(ctx)
    by_group = dp.ctx_histogram(ctx, "group", categories=["a", "b"])
    assert abs(n - 1000) < 100 and list(by_group["group"]) == ["a", "b"]
    with pytest.raises(ReleaseError):  # the Context allows two queries
        dp.ctx_count(ctx)


# -- the sandbox path ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executor():  # type: ignore[no-untyped-def]
    from datasite.execution.executor import LocalExecutor

    with LocalExecutor(concurrency=1) as pool:
        yield pool


@pytest.fixture(scope="module")
def real_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("blind")
    folder.chmod(0o755)
    frame = table()
    frame.loc[3, "salary"] = SECRET
    path = folder / "real.parquet"
    frame.to_parquet(path)
    path.chmod(0o644)
    return str(path)


def run(executor, real_path: str, source: str, kind: str = "blind", epsilon: float = 1.0):  # type: ignore[no-untyped-def]
    spec = JobSpec(job_id="blind-test", source=source, entry="f", kind=RequestKind(kind),
                   inputs={"df": real_path}, epsilon=epsilon,
                   limits=Limits(wall_seconds=60))  # fmt: skip
    return executor.submit(spec).result()


@pytest.mark.integration
@pytest.mark.one_database
def test_release_latency_is_a_multiple_of_the_quantum_and_the_schema_is_not(  # type: ignore[no-untyped-def]
    executor, real_path
) -> None:
    """Code can time its releases and return the figures: every answer that reads the
    data ends on a multiple of the quantum after it was asked, the releaser's start on one
    after the releaser began (so the first answer does not time the table's opening
    either); the public schema, read during the start, is answered at once."""
    source = textwrap.dedent(
        """
        import time
        from datasite.contract.release import ReleaseCall
        from researcher_kit import dp

        EXECUTED = time.perf_counter()  # before the job asks for its inputs' schemas

        def f(df):
            entered = time.perf_counter() - EXECUTED
            def timed(release):
                started = time.perf_counter()
                release()
                return time.perf_counter() - started
            schema = timed(lambda: df.channel.call(ReleaseCall(op="schema", table="df")))
            count = timed(lambda: dp.count(df, epsilon=0.2))
            richer = timed(lambda: dp.count(df[df["salary"] > 50000], epsilon=0.2))
            return entered, schema, count, richer
        """
    )
    spec = JobSpec(job_id="quantum", source=source, entry="f", kind=RequestKind.BLIND,
                   inputs={"df": real_path}, epsilon=1.0,
                   limits=Limits(wall_seconds=60, release_quantum_seconds=1.0))  # fmt: skip
    result = executor.submit(spec).result()
    assert result.ok, (result.error_type, result.error_detail)
    entered, schema, count, richer = decode_result(result.manifest, result.blobs)
    assert entered > 0.2  # the releaser's start, held to 1 s, outlasts the job's own
    assert schema < 0.2
    for latency in (count, richer):
        assert latency >= 1.0 and abs(latency - round(latency)) < 0.2, (count, richer)


@pytest.mark.integration
@pytest.mark.one_database
def test_a_start_given_the_public_schema_reads_no_private_file_and_is_not_held(  # type: ignore[no-untyped-def]
    executor, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The site's jobs carry their inputs' public schemas (the mock's columns): the
    releaser answers the schema from them, so its start opens nothing it reads and needs
    no hold. Shown with an input that is not Parquet at all: the job starts at once and
    gets the public schema, and the first release, which reads the file, fails with the
    generic error a whole quantum after it was asked (held as every answer is)."""
    folder = tmp_path_factory.mktemp("corrupt")
    folder.chmod(0o755)
    path = folder / "real.parquet"
    path.write_bytes(b"not parquet: %d" % SECRET)
    path.chmod(0o644)
    public = {"age": "int64", "salary": "int64"}
    source = textwrap.dedent(
        """
        import time
        from datasite.contract.release import ReleaseCall
        from researcher_kit import dp

        EXECUTED = time.perf_counter()  # before the job asks for its inputs' schemas

        def f(df):
            entered = time.perf_counter() - EXECUTED
            started = time.perf_counter()
            schema = df.channel.call(ReleaseCall(op="schema", table="df"))
            schema_s = time.perf_counter() - started
            started = time.perf_counter()
            try:
                dp.count(df, epsilon=0.2)
                error = None
            except Exception as exc:
                error = str(exc)
            return entered, schema, schema_s, error, time.perf_counter() - started
        """
    )
    spec = JobSpec(job_id="public-schema", source=source, entry="f", kind=RequestKind.BLIND,
                   inputs={"df": str(path)}, schemas={"df": public}, epsilon=1.0,
                   limits=Limits(wall_seconds=60, release_quantum_seconds=1.0))  # fmt: skip
    result = executor.submit(spec).result()
    assert result.ok, (result.error_type, result.error_detail)
    entered, schema, schema_s, error, latency = decode_result(result.manifest, result.blobs)
    assert entered < 0.5 and schema_s < 0.2, (entered, schema_s)  # no 1 s hold at the start
    assert schema == public
    assert error is not None and "ReleaseFailed" in error and str(SECRET) not in error
    assert latency >= 1.0 and abs(latency - round(latency)) < 0.2, latency


@pytest.mark.integration
@pytest.mark.one_database
def test_a_blind_job_holds_no_input_and_its_spend_is_the_releasers(executor, real_path) -> None:  # type: ignore[no-untyped-def]
    source = textwrap.dedent(
        """
        import os
        from researcher_kit import dp

        def f(df):
            import gc
            kinds = ("DataFrame", "Table")
            seen = [repr(o)[:300] for o in gc.get_objects() if type(o).__name__ in kinds]
            try:
                fds = os.listdir("/proc/self/fd")
            except OSError:
                fds = []
            dump = ""
            for fd in fds:
                try:
                    dump += repr(os.pread(int(fd), 1 << 16, 0))
                except OSError:
                    pass
            return dp.mean(df["salary"], bounds=(0, 100000), epsilon=0.5), seen, dump
        """
    )
    result = run(executor, real_path, source)
    assert result.ok, (result.error_type, result.error_detail)
    mean, seen, dump = decode_result(result.manifest, result.blobs)
    assert 0 <= mean <= 100_000 and seen == []
    assert str(SECRET) not in dump and b"PAR1".decode() not in dump
    assert [e["helper"] for e in result.spend] == ["mean"] and result.touched_data


@pytest.mark.integration
@pytest.mark.one_database
def test_a_job_cannot_forge_its_spend(executor, real_path) -> None:  # type: ignore[no-untyped-def]
    source = (
        "from researcher_kit import dp\n"
        "from datasite.contract.harness import current_report\n"
        "def f(df):\n"
        "    current_report().spend.append({'helper': 'mean', 'epsilon': 0.0})\n"
        "    return dp.count(df, epsilon=0.7)\n"
    )
    result = run(executor, real_path, source)
    assert result.ok and [e["epsilon"] for e in result.spend] == [0.7]


@pytest.mark.integration
@pytest.mark.one_database
def test_blind_errors_are_shown_raw_errors_are_not(executor, real_path) -> None:  # type: ignore[no-untyped-def]
    blind = "def f(df):\n    raise ValueError('bounds look wrong: ' + str(df.columns))\n"
    result = run(executor, real_path, blind)
    assert not result.ok and "bounds look wrong" in result.error_message
    raw = (
        "from datasite.contract.results import UnsupportedResult\n"
        "def f(df):\n    raise UnsupportedResult(str(df['salary'].max()))\n"
    )
    result = run(executor, real_path, raw, kind="mechanism")
    assert not result.ok and str(SECRET) not in result.error_message


def test_blind_frames_are_proxies_not_frames() -> None:
    df = local_frames({"df": table()}, epsilon=1.0)["df"]
    assert isinstance(df, BlindFrame) and not isinstance(df, pd.DataFrame)
    assert df.columns == ["age", "hours", "group", "salary"]
