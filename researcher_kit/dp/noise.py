"""Row-level noise for input privacy: every value of a column noised in one OpenDP call.

Neighbouring relation: **change one row's value**. With ``bounds`` the column is
clamped first, so one person changing their value moves the vector by at most
``upper - lower`` in each of their ``max_contributions`` rows; with ``sensitivity``
(as in PySyft's tutorial, "a change by 1 unit") the guarantee only covers neighbours
whose values differ by at most that much. OpenDP's privacy map over the whole vector
(l1 for Laplace/geometric, l2 for Gaussian) gives the epsilon, so the released column
is epsilon-DP as a whole, and each row is epsilon-local-DP within the bounds.

The column travels to OpenDP as one NumPy buffer and the noise is drawn by OpenDP's
secure sampler in Rust: no Python call per row (see ``bench/bench_dp.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from researcher_kit.dp._opendp import calibrate, float_granularity, opendp
from researcher_kit.dp._release import check_bounds, is_integer_query, run, values
from researcher_kit.dp.budget import Budget

__all__ = ["noisy_column"]


def noisy_column(
    series: pd.Series,
    epsilon: float | None = None,
    *,
    bounds: tuple[float, float] | None = None,
    sensitivity: float | None = None,
    mechanism: str = "laplace",
    delta: float | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> pd.Series:
    """``series`` with DP noise added to every value (same index and name).

    Pass exactly one of ``bounds`` (clamp, then sensitivity ``upper - lower``; missing
    values are replaced by the midpoint) or ``sensitivity`` (no clamping; missing values
    are refused). Integer columns with integer bounds/sensitivity get integer noise
    (discrete Laplace, geometric or discrete Gaussian).

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> ages = pd.Series([23, 45, 67, 34], name="age")
    >>> noisy = dp.noisy_column(ages, epsilon=0.9, bounds=(18, 90))
    >>> noisy.name, len(noisy), str(noisy.dtype)
    ('age', 4, 'int64')
    """
    if (bounds is None) == (sensitivity is None):
        raise ValueError("pass exactly one of bounds=(lower, upper) or sensitivity=...")
    if bounds is not None:
        check_bounds(bounds)
        lower, upper = bounds
        integral = is_integer_query(series[:0], bounds)  # dtype and bounds only
        middle = (lower + upper) // 2 if integral else (lower + upper) / 2
        filled = series.fillna(middle) if series.hasnans else series
        integer = is_integer_query(filled, bounds)
        array = values(filled, integer)
        np.clip(array, lower, upper, out=array)
        per_row = bounds[1] - bounds[0]
    else:
        if not (math.isfinite(sensitivity) and sensitivity > 0):  # type: ignore[arg-type]
            raise ValueError(f"sensitivity must be positive and finite, not {sensitivity!r}")
        if series.hasnans:
            raise ValueError("the column has missing values: fill them or pass bounds=")
        integer = is_integer_query(series, (sensitivity, sensitivity))
        array = values(series, integer)
        per_row = sensitivity
    released = run(
        helper="noisy_column",
        mechanism=mechanism,
        column=series.name,
        calibrated=_vector_noise(mechanism, integer, len(array), per_row, max_contributions),
        sensitivity=float(per_row),
        epsilon=epsilon,
        delta=delta,
        budget=budget,
        data=array,
        details={"rows": len(array), "max_contributions": max_contributions},
        integer=integer,
    )
    out = np.asarray(released, dtype=np.int64 if integer else np.float64)
    return pd.Series(out, index=series.index, name=series.name)


def _vector_noise(
    mechanism: str, integer: bool, n: int, per_row: float, max_contributions: int
) -> Any:
    """``calibrated(eps, delta)``: noise over a vector of ``n`` values, d_in from the unit."""
    dp = opendp()
    gaussian = mechanism == "gaussian"
    atom = dp.atom_domain(T="i64") if integer else dp.atom_domain(T=float, nan=False)
    domain = dp.vector_domain(atom, size=n)
    if gaussian:
        # l2: max_contributions rows each moved by at most per_row.
        metric, d_in = dp.l2_distance(T=float), math.sqrt(max_contributions) * float(per_row)
    elif integer:
        metric, d_in = dp.l1_distance(T="i64"), int(max_contributions * per_row)
    else:
        metric, d_in = dp.l1_distance(T=float), float(max_contributions * per_row)
    k = None if integer or mechanism == "geometric" else float_granularity(float(d_in), n)

    def calibrated(eps: float, dlt: float) -> tuple[Any, float]:
        def build(scale: float) -> Any:
            if mechanism == "laplace":
                return dp.m.make_laplace(domain, metric, scale=scale, k=k)
            if gaussian:
                return dp.m.make_gaussian(domain, metric, scale=scale, k=k)
            return dp.m.make_geometric(domain, metric, scale=scale)

        return calibrate(build, d_in, eps, dlt, float(d_in) / eps)

    return calibrated
