"""Budgets that refuse to be overspent, and the spend log that measures a request."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from researcher_kit import dp

AGES = pd.Series(np.arange(18, 90).repeat(5), name="age")


def test_split_reserves_the_parent_and_children_refuse_overspending() -> None:
    total = dp.Budget(epsilon=1.0, delta=1e-6)
    parts = total.split(3)
    assert total.remaining_epsilon == 0 and total.remaining_delta == 0
    assert [p.epsilon for p in parts] == pytest.approx([1 / 3] * 3)
    for part in parts:
        part.spend(1 / 3, 1e-6 / 3)
    with pytest.raises(dp.BudgetExceeded):
        parts[0].spend(1e-3)
    with pytest.raises(dp.BudgetExceeded):
        total.split(2)[0].spend(0.1)


def test_helpers_spend_from_a_budget_and_refuse_before_releasing() -> None:
    budget = dp.Budget(epsilon=1.0)
    with dp.track() as spent:
        dp.mean(AGES, bounds=(18, 90), epsilon=0.6, budget=budget)
        dp.count(AGES, budget=budget)  # takes everything left: 0.4
        with pytest.raises(dp.BudgetExceeded):
            dp.sum(AGES, bounds=(18, 90), epsilon=0.1, budget=budget)
    assert budget.remaining_epsilon == pytest.approx(0.0)
    assert [e.helper for e in spent] == ["mean", "count"]  # the refused sum left no trace
    assert spent.epsilon == pytest.approx(1.0)


def test_gaussian_takes_delta_from_the_budget_and_pure_mechanisms_do_not() -> None:
    budget = dp.Budget(epsilon=2.0, delta=1e-6)
    dp.count(AGES, epsilon=1.0, budget=budget)
    assert budget.remaining_delta == pytest.approx(1e-6)
    dp.count(AGES, mechanism="gaussian", budget=budget)
    assert budget.remaining_epsilon == pytest.approx(0) and budget.remaining_delta == 0


def test_bad_parameters_charge_nothing() -> None:
    budget = dp.Budget(epsilon=1.0)
    with pytest.raises(ValueError):
        dp.count(AGES, epsilon=0.5, mechanism="cauchy", budget=budget)
    with pytest.raises(ValueError):
        dp.sum(AGES, bounds=(90, 18), epsilon=0.5, budget=budget)
    assert budget.remaining_epsilon == 1.0
    with pytest.raises(ValueError, match="epsilon"):
        dp.count(AGES)


def test_track_totals_nesting_and_records() -> None:
    with dp.track() as outer:
        dp.count(AGES, epsilon=0.25)
        with dp.track() as inner:
            dp.histogram(AGES, epsilon=0.5, bins=[18, 50, 90])
            dp.noisy_column(AGES, epsilon=0.5, bounds=(18, 90), mechanism="geometric")
    assert inner.epsilon == pytest.approx(1.0) and outer.epsilon == pytest.approx(1.25)
    assert outer.mechanisms == ["geometric", "laplace"]
    records = json.loads(json.dumps(outer.to_records()))
    assert records[1]["helper"] == "histogram" and records[1]["sensitivity"] == 1.0
    html = outer._repr_html_()
    assert html.count("<tr>") == 1 + 3 + 1 and "noisy_column" in html
    dp.count(AGES, epsilon=1.0)  # outside any block: recorded nowhere
    assert len(outer) == 3


def test_total_spend_measures_a_function_on_the_mock() -> None:
    def analysis(df: pd.DataFrame) -> dict[str, float]:
        budget = dp.Budget(epsilon=1.5, delta=1e-6)
        first, second, third = budget.split(3)
        return {
            "mean": dp.mean(df["age"], bounds=(18, 90), budget=first),
            "median": dp.quantile(df["age"], 0.5, bounds=(18, 90), budget=second),
            "n": dp.count(df, mechanism="gaussian", budget=third),
        }

    spent = dp.total_spend(analysis, AGES.to_frame())
    assert spent.epsilon == pytest.approx(1.5)
    assert spent.delta == pytest.approx(1e-6 / 3)
    assert spent.mechanisms == ["exponential", "gaussian", "laplace"]


def test_release_helpers_are_exported() -> None:
    assert all(callable(getattr(dp, name)) for name in dp.RELEASE_HELPERS)
    assert "load_model" not in dp.RELEASE_HELPERS and "track" not in dp.RELEASE_HELPERS
