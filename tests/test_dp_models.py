"""diffprivlib models fitted with public bounds, shipped as skops, loaded by allowlist."""

from __future__ import annotations

import os

import numpy as np
import pytest
import skops.io
from sklearn.preprocessing import FunctionTransformer

from researcher_kit import dp

RNG = np.random.default_rng(11)
X = RNG.uniform(0, 10, (3000, 3))
LABELS = (X[:, 0] + X[:, 1] > 10).astype(int)
TARGET = X @ np.array([1.0, 2.0, 0.5])
BOUNDS = ([0.0, 0.0, 0.0], [10.0, 10.0, 10.0])

CASES = {
    "logistic_regression": (LABELS, {"data_norm": 18.0}),
    "linear_regression": (TARGET, {"bounds": BOUNDS, "bounds_y": (0.0, 35.0)}),
    "gaussian_nb": (LABELS, {"bounds": BOUNDS}),
    "random_forest": (LABELS, {"bounds": BOUNDS, "classes": [0, 1], "n_estimators": 5}),
    "kmeans": (None, {"bounds": BOUNDS, "n_clusters": 3}),
    "pca": (None, {"data_norm": 18.0, "bounds": BOUNDS, "n_components": 2}),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_fit_returns_skops_bytes_that_load_and_predict(kind: str) -> None:
    target, params = CASES[kind]
    with dp.track() as spent:
        blob = dp.fit_model(kind, X, target, epsilon=2.0, **params)
    assert isinstance(blob, bytes)
    model = dp.load_model(blob)
    if kind == "pca":
        assert model.transform(X[:5]).shape == (5, 2)
    else:
        assert model.predict(X[:5]).shape == (5,)
    entry = spent.entries[0]
    assert entry.mechanism.startswith("diffprivlib.")
    assert entry.epsilon == pytest.approx(2.0)


def test_classifier_learns_something() -> None:
    blob = dp.fit_model("gaussian_nb", X, LABELS, epsilon=5.0, bounds=BOUNDS)
    assert (dp.load_model(blob).predict(X) == LABELS).mean() > 0.8


def test_missing_public_bounds_are_refused_not_estimated_from_data() -> None:
    with pytest.raises(ValueError, match="data_norm"):
        dp.fit_model("logistic_regression", X, LABELS, epsilon=1.0)
    with pytest.raises(ValueError, match="classes"):
        dp.fit_model("random_forest", X, LABELS, epsilon=1.0, bounds=BOUNDS)
    with pytest.raises(ValueError, match="unknown model"):
        dp.fit_model("svm", X, LABELS, epsilon=1.0)


def test_model_spend_comes_out_of_a_budget() -> None:
    budget = dp.Budget(epsilon=1.0)
    dp.fit_model("gaussian_nb", X, LABELS, budget=budget, bounds=BOUNDS)
    with pytest.raises(dp.BudgetExceeded):
        dp.fit_model("gaussian_nb", X, LABELS, epsilon=0.5, budget=budget, bounds=BOUNDS)


@pytest.mark.parametrize("func", [os.system, np.load])
def test_untrusted_types_are_refused(func: object) -> None:
    blob = skops.io.dumps(FunctionTransformer(func=func))
    with pytest.raises(dp.UntrustedModelError, match="allowlist"):
        dp.load_model(blob)


def test_fitting_leaves_the_callers_data_untouched() -> None:
    features = X.copy()
    dp.fit_model("logistic_regression", features, LABELS, epsilon=1.0, data_norm=1.0)
    dp.fit_model("pca", features, epsilon=1.0, data_norm=1.0, bounds=BOUNDS, n_components=2)
    assert np.array_equal(features, X)
