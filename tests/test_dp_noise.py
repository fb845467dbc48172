"""Row-level noise (input privacy): one OpenDP call over the whole column."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from researcher_kit import dp


def test_laplace_noise_matches_the_scale_and_keeps_index_and_name() -> None:
    series = pd.Series(np.full(50_000, 50.0), index=np.arange(50_000) * 2, name="age")
    with dp.track() as spent:
        noisy = dp.noisy_column(series, epsilon=1.0, bounds=(0.0, 10.0))
    assert noisy.name == "age" and noisy.index.equals(series.index)
    noise = noisy.to_numpy() - 10.0  # 50 is clamped to the upper bound 10 first
    assert abs(noise.mean()) < 0.5
    assert noise.std() == pytest.approx(math.sqrt(2) * 10.0, rel=0.05)
    entry = spent.entries[0]
    assert (entry.helper, entry.sensitivity, entry.epsilon) == ("noisy_column", 10.0, 1.0)


def test_sensitivity_mode_follows_the_tutorial_and_refuses_missing_values() -> None:
    series = pd.Series(np.linspace(0, 100, 20_000))
    noisy = dp.noisy_column(series, epsilon=0.9, sensitivity=1.0)
    assert (noisy - series).std() == pytest.approx(math.sqrt(2) / 0.9, rel=0.06)
    with pytest.raises(ValueError, match="missing"):
        dp.noisy_column(pd.Series([1.0, np.nan]), epsilon=1.0, sensitivity=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        dp.noisy_column(series, epsilon=1.0)


def test_missing_values_become_the_midpoint_with_bounds() -> None:
    noisy = dp.noisy_column(pd.Series([np.nan] * 20_000), epsilon=5.0, bounds=(0.0, 10.0))
    assert abs(noisy.mean() - 5.0) < 0.1


def test_integer_columns_get_integer_noise() -> None:
    ages = pd.Series(np.full(20_000, 40))
    for mechanism in ("laplace", "geometric"):
        noisy = dp.noisy_column(ages, epsilon=1.0, bounds=(18, 90), mechanism=mechanism)
        assert noisy.dtype == np.int64
        assert (noisy - 40).std() == pytest.approx(math.sqrt(2) * 72, rel=0.06)


def test_gaussian_noise_matches_the_recorded_scale() -> None:
    series = pd.Series(np.zeros(20_000))
    with dp.track() as spent:
        noisy = dp.noisy_column(
            series, epsilon=1.0, bounds=(-1.0, 1.0), mechanism="gaussian", delta=1e-5
        )
    scale = spent.entries[0].scale
    assert noisy.std() == pytest.approx(scale, rel=0.05)
    assert spent.delta == pytest.approx(1e-5)


def test_a_million_rows_in_one_vectorized_call() -> None:
    series = pd.Series(np.arange(1_000_000) % 100)
    noisy = dp.noisy_column(series, epsilon=1.0, bounds=(0, 99))
    assert len(noisy) == 1_000_000
    assert abs(float((noisy - series).mean())) < 1.0
