"""The steps every pandas helper shares: read a column, calibrate, charge, record, release."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from researcher_kit.dp._opendp import check_mechanism
from researcher_kit.dp.budget import Budget, plan
from researcher_kit.dp.spend import SpendEntry, record

Bounds = tuple[float, float]

# Quantiles select a candidate (exponential mechanism) instead of adding noise.
SELECTION = "exponential"


def is_integer_query(series: pd.Series, bounds: tuple[Any, Any] | None) -> bool:
    """Integer data with integer bounds is released with integer (discrete) noise."""
    integer_data = pd.api.types.is_integer_dtype(series.dtype) or pd.api.types.is_bool_dtype(
        series.dtype
    )
    integer_bounds = bounds is None or all(
        isinstance(b, int | np.integer) and not isinstance(b, bool) for b in bounds
    )
    return integer_data and integer_bounds and not series.hasnans


def values(series: pd.Series, integer: bool) -> np.ndarray:
    """The column as a contiguous NumPy array OpenDP reads without a Python loop.

    Missing values become NaN in float columns (the helpers drop or impute them inside
    OpenDP); integer columns never hold missing values (see :func:`is_integer_query`).
    """
    if integer:
        array = series.to_numpy(dtype=np.int64)
    else:
        array = series.to_numpy(dtype=np.float64, na_value=np.nan)
    # pandas' copy-on-write hands out read-only views; OpenDP's ctypes bridge needs writable.
    return np.require(array, requirements=["C", "W"])


def check_bounds(bounds: tuple[Any, Any]) -> None:
    lower, upper = bounds
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise ValueError(f"bounds must be finite with lower < upper, not {bounds!r}")


def run(
    *,
    helper: str,
    mechanism: str,
    column: Any,
    calibrated: Callable[[float, float], tuple[Any, float]],
    sensitivity: float | None,
    epsilon: float | None,
    delta: float | None,
    budget: Budget | None,
    data: Any,
    details: dict[str, Any] | None = None,
    integer: bool = False,
) -> Any:
    """Build the measurement for (epsilon, delta), charge ``budget``, record, then release.

    ``calibrated(epsilon, delta)`` returns the OpenDP measurement and its noise scale;
    it never sees the data, so a refused budget or a bad parameter releases nothing.
    """
    eps, dlt = plan(epsilon, delta, budget, uses_delta=mechanism == "gaussian")
    if mechanism != SELECTION:
        check_mechanism(mechanism, dlt, integer)
    measurement, scale = calibrated(eps, dlt)
    if budget is not None:
        budget.spend(eps, dlt)
    record(
        SpendEntry(
            helper=helper,
            mechanism=mechanism,
            epsilon=float(eps),
            delta=float(dlt),
            sensitivity=sensitivity,
            scale=scale,
            column=None if column is None else str(column),
            details=details or {},
        )
    )
    return measurement(data)
