"""DP machine-learning models: diffprivlib estimators fitted with explicit bounds, as skops.

diffprivlib estimates any bound you leave out *from the data* and only warns
(``PrivacyLeakWarning``); here that warning is an error, so a model is fitted only when
its sensitivity comes from public parameters (``data_norm``, ``bounds``, ``classes``).
The budget diffprivlib's accountant measured during the fit is recorded in the spend
log. Privacy unit: diffprivlib's, adding or removing one training row.

Models cross the trust boundary as skops bytes, never pickle. ``load_model`` is the
site's own loader (``datasite.contract.results.load_model``): it trusts only classes
under sklearn., diffprivlib., numpy. and builtins, never ``trusted=True``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

# One loader for the site and the researcher: allowlisted skops classes only.
from datasite.contract.results import UntrustedModelError, load_model, skops_io
from researcher_kit.dp.budget import Budget, plan
from researcher_kit.dp.spend import SpendEntry, record

__all__ = ["MODELS", "UntrustedModelError", "fit_model", "load_model"]


@dataclass(frozen=True)
class ModelKind:
    """A diffprivlib estimator and the public parameters its guarantee rests on."""

    cls: str
    supervised: bool
    required: tuple[str, ...]


MODELS: dict[str, ModelKind] = {
    "logistic_regression": ModelKind("LogisticRegression", True, ("data_norm",)),
    "linear_regression": ModelKind("LinearRegression", True, ("bounds", "bounds_y")),
    "gaussian_nb": ModelKind("GaussianNB", True, ("bounds",)),
    "random_forest": ModelKind("RandomForestClassifier", True, ("bounds", "classes")),
    "kmeans": ModelKind("KMeans", False, ("bounds",)),
    "pca": ModelKind("PCA", False, ("data_norm",)),
}


def fit_model(
    kind: str,
    X: Any,
    y: Any = None,
    *,
    epsilon: float | None = None,
    budget: Budget | None = None,
    data_norm: float | None = None,
    bounds: tuple[Any, Any] | None = None,
    bounds_y: tuple[float, float] | None = None,
    classes: list[Any] | None = None,
    **params: Any,
) -> bytes:
    """Fit the diffprivlib model ``kind`` (see :data:`MODELS`) and return it as skops bytes.

    ``bounds`` are per-feature ``(lower, upper)`` (scalars or one value per column);
    ``data_norm`` bounds each row's L2 norm (rows are clipped to it); ``bounds_y`` the
    target of a linear regression; ``classes`` the labels of a random forest. Extra
    ``params`` go to the estimator (``n_clusters=``, ``n_components=``, ...).

    >>> import numpy as np
    >>> from researcher_kit import dp
    >>> X = np.random.default_rng(0).uniform(0, 1, (500, 2))
    >>> y = (X[:, 0] > 0.5).astype(int)
    >>> blob = dp.fit_model("logistic_regression", X, y, epsilon=1.0, data_norm=1.5)
    >>> dp.load_model(blob).predict([[0.9, 0.1]]).shape
    (1,)
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose one of {sorted(MODELS)}")
    spec = MODELS[kind]
    from researcher_kit.blind import is_blind, release_model

    if is_blind(X):
        params = {"data_norm": data_norm, "bounds": bounds, "bounds_y": bounds_y,
                  "classes": classes, **params}  # fmt: skip
        return release_model(kind, X, y, epsilon=epsilon, params=params)
    given = {"data_norm": data_norm, "bounds": bounds, "bounds_y": bounds_y, "classes": classes}
    missing = [name for name in spec.required if given[name] is None]
    if missing:
        raise ValueError(f"{kind} needs public {', '.join(missing)}: never derive them from data")
    if spec.supervised and y is None:
        raise ValueError(f"{kind} is supervised: pass y")
    eps, _ = plan(epsilon, 0.0, budget, uses_delta=False)

    import diffprivlib.models as dpl
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.utils import PrivacyLeakWarning

    accountant = BudgetAccountant()
    estimator = getattr(dpl, spec.cls)(
        epsilon=eps, accountant=accountant, **_estimator_args(kind, given), **params
    )
    # A copy: some diffprivlib estimators clip or centre their input in place.
    features = np.array(X, dtype=float, copy=True)
    if budget is not None:
        budget.spend(eps)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrivacyLeakWarning)
        if spec.supervised:
            estimator.fit(features, np.array(y, copy=True))
        else:
            estimator.fit(features)
    spent_eps, spent_delta = accountant.total()
    record(
        SpendEntry(
            helper="fit_model",
            mechanism=f"diffprivlib.{spec.cls}",
            epsilon=float(spent_eps),
            delta=float(spent_delta),
            details={"model": kind, **{k: _plain(v) for k, v in given.items() if v is not None}},
        )
    )
    return skops_io().dumps(estimator)


def _estimator_args(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """The kit's parameter names, spelled the way each diffprivlib estimator wants them."""
    args: dict[str, Any] = {}
    if given["data_norm"] is not None:
        args["data_norm"] = given["data_norm"]
    if given["bounds"] is not None:
        args["bounds_X" if kind == "linear_regression" else "bounds"] = given["bounds"]
    if given["bounds_y"] is not None:
        args["bounds_y"] = given["bounds_y"]
    if given["classes"] is not None:
        args["classes"] = given["classes"]
    return args


def _plain(value: Any) -> Any:
    return np.asarray(value).tolist() if isinstance(value, tuple | list | np.ndarray) else value
