"""Context helpers on a local OpenDP Context built the way the site binds one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from researcher_kit import dp


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 20_000),
            "bmi": rng.uniform(15, 45, 20_000),
            "sex": rng.choice(["F", "M"], 20_000, p=[0.6, 0.4]),
        }
    )
    df.loc[:9, "bmi"] = np.nan
    return df


def test_each_helper_releases_near_the_truth_and_records_its_share(frame: pd.DataFrame) -> None:
    ctx = dp.local_context(frame, epsilon=6.0, queries=6)
    with dp.track() as spent:
        n = dp.ctx_count(ctx)
        total = dp.ctx_sum(ctx, "age", bounds=(18, 90))
        avg = dp.ctx_mean(ctx, "bmi", bounds=(15.0, 45.0))
        median = dp.ctx_quantile(ctx, "age", 0.5, bounds=(18, 90))
        bmi_median = dp.ctx_quantile(ctx, "bmi", 0.5, bounds=(15.0, 45.0))
        counts = dp.ctx_histogram(ctx, "sex", categories=["F", "M", "X"])
    assert isinstance(n, int) and abs(n - 20_000) < 30
    assert isinstance(total, int) and abs(total - frame["age"].sum()) < 2_000
    assert abs(avg - frame["bmi"].mean()) < 0.3
    assert abs(median - frame["age"].median()) <= 3
    assert abs(bmi_median - frame["bmi"].median()) < 1.0
    assert list(counts["sex"]) == ["F", "M", "X"]
    truth = frame["sex"].value_counts()
    assert np.allclose(counts["count"][:2], [truth["F"], truth["M"]], atol=30)
    assert spent.epsilon == pytest.approx(6.0)
    assert all(e.epsilon == pytest.approx(1.0) for e in spent)
    assert spent.mechanisms == ["exponential", "laplace"]
    with pytest.raises(ValueError, match="exhausted"):
        dp.ctx_count(ctx)


def test_private_keys_need_delta_and_are_thresholded(frame: pd.DataFrame) -> None:
    pure = dp.local_context(frame, epsilon=1.0)
    with pytest.raises(Exception, match="key-set"):
        dp.ctx_histogram(pure, "sex")
    approx = dp.local_context(frame, epsilon=1.0, delta=1e-6)
    with dp.track() as spent:
        counts = dp.ctx_histogram(approx, "sex")
    assert set(counts["sex"]) == {"F", "M"}
    assert spent.delta == pytest.approx(1e-6) and "threshold" in spent.entries[0].details


def test_local_context_accepts_polars_and_checks_the_row_bound(frame: pd.DataFrame) -> None:
    lazy = pl.from_pandas(frame).lazy()
    ctx = dp.local_context(lazy, epsilon=1.0, max_contributions=2)
    with dp.track() as spent:
        dp.ctx_count(ctx)
    assert spent.entries[0].scale == pytest.approx(2.0)  # sensitivity 2 / epsilon 1
    with pytest.raises(ValueError, match="max_length"):
        dp.local_context(frame, epsilon=1.0, max_length=100)


@pytest.mark.parametrize("d_out", [0.0123456, 0.75, 40.0])
def test_a_guessed_scale_search_finds_opendps_scale_in_a_few_builds(d_out: float) -> None:
    """The same float as OpenDP's own search, from a third as many measurements when
    the search starts at the power-law guess (Laplace: epsilon ~ 1 / scale)."""
    import opendp.prelude as odp

    from researcher_kit.dp._opendp import bracketed_search, power_law_guess

    odp.enable_features("contrib")
    space = odp.vector_domain(odp.atom_domain(T=int)), odp.symmetric_distance()
    builds: list[float] = []

    def make(scale: float):  # type: ignore[no-untyped-def]
        builds.append(scale)
        return space >> odp.t.then_count() >> odp.m.then_laplace(scale)

    expected = odp.binary_search_param(make, 3, d_out, T=float)
    builds.clear()
    assert bracketed_search(lambda scale: make(scale).check(3, d_out)) == expected
    unguessed, builds[:] = len(builds), []
    guess = power_law_guess(lambda scale: make(scale).map(3), d_out)
    assert guess == pytest.approx(expected, rel=1e-9)
    assert bracketed_search(lambda scale: make(scale).check(3, d_out), guess) == expected
    assert len(builds) < unguessed / 2, (len(builds), unguessed)


@pytest.mark.parametrize("delta", [0.0, 1e-6])
def test_the_bracketed_resolve_gives_opendps_own_measurement(
    frame: pd.DataFrame, delta: float
) -> None:
    """Same noise scales (and threshold), same privacy map as ``query.resolve()``, for a
    count, a mean, a quantile, a histogram with public keys and, with delta, without."""
    import opendp.prelude as odp
    from opendp.accuracy import summarize_polars_measurement

    from researcher_kit.dp.context import aggregate, resolve

    ctx = dp.local_context(frame, epsilon=0.7, delta=delta, queries=5)
    queries = [
        ctx.query().select(aggregate("count")),
        ctx.query().select(aggregate("mean", "bmi", (15.0, 45.0))),
        ctx.query().select(pl.col("age").fill_null(50).dp.quantile(0.5, list(range(18, 91)))),
        ctx.query()
        .group_by("sex")
        .agg(odp.len(signed=True))
        .with_keys(pl.LazyFrame({"sex": ["F", "M"]})),
    ]
    if delta:
        queries.append(ctx.query().group_by("sex").agg(odp.len(signed=True)))  # a threshold
    for query in queries:
        ours, theirs = resolve(query), query.resolve()
        assert summarize_polars_measurement(ours).equals(summarize_polars_measurement(theirs))
        assert ours.map(1) == theirs.map(1)
        assert ours.map(2) == theirs.map(2)
