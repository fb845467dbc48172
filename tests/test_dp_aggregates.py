"""The pandas DP aggregates: real OpenDP noise, checked statistically with wide margins."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from researcher_kit import dp

RELEASES = 300


def _spread(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1))


def test_sum_is_unbiased_and_noise_matches_the_laplace_scale() -> None:
    series = pd.Series(np.linspace(0.0, 10.0, 1001))
    truth = float(series.sum())
    with dp.track() as spent:
        releases = [dp.sum(series, bounds=(0.0, 10.0), epsilon=1.0) for _ in range(RELEASES)]
    centre, spread = _spread(releases)
    expected_sd = math.sqrt(2) * 10.0  # sensitivity max(|0|, |10|) / epsilon = scale 10
    assert abs(centre - truth) < 6 * expected_sd / math.sqrt(RELEASES)
    assert 0.75 * expected_sd < spread < 1.3 * expected_sd
    entry = spent.entries[0]
    assert entry.mechanism == "laplace" and entry.sensitivity == pytest.approx(10.0, rel=1e-6)
    assert spent.epsilon == pytest.approx(RELEASES * 1.0)


def test_values_are_clamped_to_the_bounds_before_summing() -> None:
    outliers = pd.Series([1_000_000.0] * 100 + [5.0] * 100)
    released = [dp.sum(outliers, bounds=(0.0, 10.0), epsilon=2.0) for _ in range(50)]
    # Clamped truth: 100 * 10 + 100 * 5 = 1500; unclamped it would be 1e8.
    assert abs(np.mean(released) - 1500) < 30


def test_integer_columns_get_integer_noise_and_geometric_works() -> None:
    ages = pd.Series(np.arange(18, 90).repeat(10))
    released = dp.sum(ages, bounds=(18, 90), epsilon=1.0, mechanism="geometric")
    assert isinstance(released, int)
    assert abs(released - int(ages.sum())) < 90 * 20
    with pytest.raises(ValueError, match="integer data"):
        dp.sum(ages.astype(float), bounds=(18.0, 90.0), epsilon=1.0, mechanism="geometric")


def test_count_includes_missing_values_and_is_unbiased() -> None:
    series = pd.Series([1.0, np.nan] * 500)
    centre, spread = _spread([dp.count(series, epsilon=1.0) for _ in range(RELEASES)])
    assert abs(centre - 1000) < 6 * math.sqrt(2) / math.sqrt(RELEASES) + 0.5
    assert 0.7 * math.sqrt(2) < spread < 1.4 * math.sqrt(2)


def test_mean_is_sum_over_count_and_clipped_into_bounds() -> None:
    rng = np.random.default_rng(3)
    series = pd.Series(rng.uniform(20, 80, 20_000))
    series[:100] = np.nan  # dropped inside OpenDP
    releases = [dp.mean(series, bounds=(0.0, 100.0), epsilon=1.0) for _ in range(100)]
    assert abs(np.mean(releases) - series.mean()) < 0.1
    tiny = pd.Series([50.0])
    assert all(0 <= dp.mean(tiny, bounds=(0.0, 100.0), epsilon=0.01) <= 100 for _ in range(20))


def test_gaussian_mean_needs_delta_and_records_it() -> None:
    series = pd.Series(np.full(10_000, 40.0))
    with pytest.raises(ValueError, match="delta"):
        dp.mean(series, bounds=(0.0, 100.0), epsilon=1.0, mechanism="gaussian")
    with dp.track() as spent:
        value = dp.mean(series, bounds=(0.0, 100.0), epsilon=1.0, mechanism="gaussian", delta=1e-6)
    assert abs(value - 40.0) < 5
    assert spent.mechanisms == ["gaussian"] and spent.delta == pytest.approx(1e-6)


def test_quantile_lands_near_the_true_quantile_and_on_a_candidate() -> None:
    series = pd.Series(np.arange(10_000))
    median = dp.quantile(series, 0.5, bounds=(0, 10_000), epsilon=1.0)
    assert abs(median - 5000) < 300
    ninety = dp.quantile(series.astype(float), 0.9, bounds=(0.0, 10_000.0), epsilon=1.0)
    assert abs(ninety - 9000) < 300
    chosen = dp.quantile(series, 0.5, bounds=(0, 10_000), epsilon=1.0, candidates=[0, 4000, 9000])
    assert chosen == 4000


def test_histogram_over_public_categories_counts_the_rest_as_other() -> None:
    sex = pd.Series(["F"] * 600 + ["M"] * 300 + ["X"] * 50 + [None] * 50)
    counts = dp.histogram(sex, epsilon=2.0, categories=["F", "M"])
    assert list(counts.index) == ["F", "M", "(other)"]
    assert np.allclose(counts.to_numpy(), [600, 300, 100], atol=20)
    with pytest.raises(ValueError, match="exactly one"):
        dp.histogram(sex, epsilon=1.0)


def test_histogram_over_bins_clamps_into_the_edges() -> None:
    values = pd.Series([-5.0] * 100 + [10.0] * 200 + [30.0] * 300 + [100.0] * 400)
    counts = dp.histogram(values, epsilon=2.0, bins=[0, 25, 50, 100])
    assert [str(i) for i in counts.index] == ["[0.0, 25.0)", "[25.0, 50.0)", "[50.0, 100.0)"]
    # -5 clamps into the first bin, 100 (the last edge) belongs to the last one.
    assert np.allclose(counts.to_numpy(), [300, 300, 400], atol=20)
    gaussian = dp.histogram(values, 1.0, bins=[0, 50, 100], mechanism="gaussian", delta=1e-6)
    assert np.allclose(gaussian.to_numpy(), [600, 400], atol=60)


def test_contributions_widen_the_sensitivity() -> None:
    series = pd.Series(np.ones(100))
    with dp.track() as spent:
        dp.sum(series, bounds=(0.0, 1.0), epsilon=1.0, max_contributions=5)
        dp.count(series, epsilon=1.0, max_contributions=5)
    assert [round(e.sensitivity) for e in spent] == [5, 5]
    assert spent.entries[1].scale == pytest.approx(5.0)
