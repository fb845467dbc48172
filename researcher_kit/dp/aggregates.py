"""Bounded DP aggregates over pandas columns: count, sum, mean, quantile, histogram.

Neighbouring relation (the privacy unit) for every helper here: **add/remove**. Two
datasets are neighbours when one is the other plus or minus all the rows of one
person, at most ``max_contributions`` rows (OpenDP's ``SymmetricDistance``, d_in =
``max_contributions``). The number of rows is therefore private too: ``mean`` is a DP
sum divided by a DP count, never a division by the true length.

Values are clamped to the ``bounds`` you pass (they must come from domain knowledge,
never from the data); missing values are dropped inside OpenDP before clamping, which
is 1-stable under add/remove. Each helper is one OpenDP transformation chain and one
measurement, invoked once on a NumPy array: no Python call per row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from researcher_kit.blind import is_blind, release_from
from researcher_kit.dp._opendp import as_approximate, calibrate, opendp, then_noise
from researcher_kit.dp._release import SELECTION, check_bounds, is_integer_query, run, values
from researcher_kit.dp.budget import Budget
from researcher_kit.dp.partitioned import Scan, exact, is_partitioned, quantile_scores

__all__ = ["count", "histogram", "mean", "quantile", "sum"]

OTHER = "(other)"


def _rows(integer: bool) -> tuple[Any, Any]:
    """The input space: a vector of rows under add/remove (symmetric) distance."""
    dp = opendp()
    atom = dp.atom_domain(T="i64") if integer else dp.atom_domain(T=float, nan=True)
    return dp.vector_domain(atom), dp.symmetric_distance()


def _clamped(integer: bool, bounds: tuple[Any, Any]) -> Any:
    """Rows -> non-missing values clamped to ``bounds`` (an OpenDP transformation)."""
    dp = opendp()
    chain = _rows(integer)
    if integer:
        return chain >> dp.t.then_clamp((int(bounds[0]), int(bounds[1])))
    return chain >> dp.t.then_drop_null() >> dp.t.then_clamp((float(bounds[0]), float(bounds[1])))


def _noised(transformation: Any, mechanism: str, d_in: int) -> Any:
    """``calibrated(eps, delta)`` for ``transformation >> noise`` at the least noise."""
    sensitivity = transformation.map(d_in)

    def calibrated(eps: float, dlt: float) -> tuple[Any, float]:
        def build(scale: float) -> Any:
            return transformation >> then_noise(mechanism, scale)

        guess = float(sensitivity) / eps
        if mechanism == "gaussian":
            guess *= math.sqrt(2 * math.log(1.25 / dlt))  # the classic Gaussian scale
        return calibrate(build, d_in, eps, dlt, guess)

    return calibrated


def _noise_alone(transformation: Any, mechanism: str, d_in: int) -> Any:
    """:func:`_noised`'s calibration, as the noise measurement alone.

    For an aggregate computed outside OpenDP (a partitioned table's exact partials,
    added up): the same scale, on the transformation's output space, so the release is
    ``transformation >> noise`` with the same privacy map.
    """
    chain = _noised(transformation, mechanism, d_in)

    def calibrated(eps: float, dlt: float) -> tuple[Any, float]:
        _, scale = chain(eps, dlt)
        space = (transformation.output_domain, transformation.output_metric)
        noise = space >> then_noise(mechanism, scale)
        return (as_approximate(noise, dlt) if mechanism == "gaussian" else noise), scale

    return calibrated


def _calibration(data: Any) -> Any:
    """How a helper's noise is calibrated for ``data``: the whole chain, or noise alone."""
    return _noise_alone if is_partitioned(data) else _noised


def count(
    data: pd.Series | pd.DataFrame,
    epsilon: float | None = None,
    *,
    mechanism: str = "laplace",
    delta: float | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> int:
    """DP number of rows (missing values included). Sensitivity: ``max_contributions``.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> n = dp.count(pd.Series(range(1000)), epsilon=1.0)
    >>> abs(n - 1000) < 50
    True
    """
    if is_blind(data):
        return release_from(data, "count", epsilon=epsilon, mechanism=mechanism, delta=delta)
    dp = opendp()
    rows = dp.vector_domain(dp.atom_domain(T=bool)), dp.symmetric_distance()
    counting = rows >> dp.t.then_count()
    released = run(
        helper="count",
        mechanism=mechanism,
        column=data.name if isinstance(data, pd.Series) else None,
        calibrated=_calibration(data)(counting, mechanism, max_contributions),
        sensitivity=float(counting.map(max_contributions)),
        epsilon=epsilon,
        delta=delta,
        budget=budget,
        data=exact(Scan("count"), data)[0]
        if is_partitioned(data)
        else np.ones(len(data), dtype=bool),
        integer=True,
    )
    return int(released)


def sum(
    series: pd.Series,
    bounds: tuple[float, float],
    epsilon: float | None = None,
    *,
    mechanism: str = "laplace",
    delta: float | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> float:
    """DP sum of ``series`` clamped to ``bounds``.

    Sensitivity under add/remove: ``max_contributions * max(|lower|, |upper|)``
    (plus OpenDP's float-rounding allowance). Integer columns with integer bounds get
    integer (discrete) noise and return an int.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> total = dp.sum(pd.Series([1.5, 2.5, 99.0]), bounds=(0.0, 10.0), epsilon=1.0)
    >>> isinstance(total, float)
    True
    """
    check_bounds(bounds)
    if is_blind(series):
        return release_from(
            series, "sum", bounds=bounds, epsilon=epsilon, mechanism=mechanism, delta=delta
        )
    integer = is_integer_query(series, bounds)
    summing = _clamped(integer, bounds) >> opendp().t.then_sum()
    if is_partitioned(series):
        data = exact(Scan("sum", integer=integer, bounds=tuple(bounds)), series)[0]
    else:
        data = values(series, integer)
    released = run(
        helper="sum",
        mechanism=mechanism,
        column=series.name,
        calibrated=_calibration(series)(summing, mechanism, max_contributions),
        sensitivity=float(summing.map(max_contributions)),
        epsilon=epsilon,
        delta=delta,
        budget=budget,
        data=data,
        details={"bounds": list(bounds)},
        integer=integer,
    )
    return int(released) if integer else float(released)


def mean(
    series: pd.Series,
    bounds: tuple[float, float],
    epsilon: float | None = None,
    *,
    mechanism: str = "laplace",
    delta: float | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> float:
    """DP mean of ``series`` clamped to ``bounds``: a DP sum over a DP count.

    Epsilon (and delta) are split evenly between the sum and the count, released
    together by one OpenDP composition. The ratio is clipped back into ``bounds``
    (post-processing, free of privacy cost).

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> ages = pd.Series([20, 30, 40, 50] * 2500)
    >>> abs(dp.mean(ages, bounds=(18, 90), epsilon=1.0) - 35) < 2
    True
    """
    check_bounds(bounds)
    if is_blind(series):
        return release_from(
            series, "mean", bounds=bounds, epsilon=epsilon, mechanism=mechanism, delta=delta
        )
    dp = opendp()
    integer = is_integer_query(series, bounds)
    clamped = _clamped(integer, bounds)
    summing = clamped >> dp.t.then_sum()
    counting = clamped >> dp.t.then_count()
    calibration = _calibration(series)
    sum_part = calibration(summing, mechanism, max_contributions)
    count_part = calibration(counting, mechanism, max_contributions)
    partitioned = is_partitioned(series)

    def calibrated(eps: float, dlt: float) -> tuple[Any, float]:
        noisy_sum, sum_scale = sum_part(eps / 2, dlt / 2)
        noisy_count, _ = count_part(eps / 2, dlt / 2)
        if partitioned:  # the exact (sum, count) pair, each noised by its own half
            return lambda pair: (noisy_sum(pair[0]), noisy_count(pair[1])), sum_scale
        return dp.c.make_composition([noisy_sum, noisy_count]), sum_scale

    total, n = run(
        helper="mean",
        mechanism=mechanism,
        column=series.name,
        calibrated=calibrated,
        sensitivity=float(summing.map(max_contributions)),
        epsilon=epsilon,
        delta=delta,
        budget=budget,
        data=exact(Scan("mean", integer=integer, bounds=tuple(bounds)), series)
        if partitioned
        else values(series, integer),
        details={"bounds": list(bounds), "count_sensitivity": max_contributions},
        integer=integer,
    )
    if n <= 0:
        return float(bounds[0] + bounds[1]) / 2
    return float(np.clip(total / n, bounds[0], bounds[1]))


def quantile(
    series: pd.Series,
    alpha: float,
    bounds: tuple[float, float],
    epsilon: float | None = None,
    *,
    candidates: list[float] | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> float:
    """DP ``alpha``-quantile (0.5 = median) chosen among ``candidates`` within ``bounds``.

    OpenDP's ``make_private_quantile`` scores each candidate by how far its rank is from
    ``alpha * n`` and picks one with exponential-mechanism noise (pure epsilon-DP).
    Candidates default to 1001 evenly spaced points of ``bounds`` (every integer of
    the range for integer data, when that is fewer).

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> median = dp.quantile(pd.Series(range(10_000)), 0.5, bounds=(0, 10_000), epsilon=1.0)
    >>> abs(median - 5000) < 500
    True
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], not {alpha!r}")
    check_bounds(bounds)
    if is_blind(series):
        return release_from(
            series, "quantile", alpha=alpha, bounds=bounds, candidates=candidates, epsilon=epsilon
        )
    dp = opendp()
    integer = is_integer_query(series, bounds)
    grid = _candidates(bounds, integer) if candidates is None else sorted(candidates)
    clamped = _clamped(integer, bounds)

    def calibrated(eps: float, dlt: float) -> tuple[Any, float]:
        def build(scale: float) -> Any:
            return clamped >> dp.m.then_private_quantile(
                dp.max_divergence(), candidates=grid, alpha=alpha, scale=scale
            )

        chain, scale = calibrate(build, max_contributions, eps, dlt, 0.0)
        if not is_partitioned(series):
            return chain, scale
        # the same selection on scores computed from the partitions' rank counts
        scoring = clamped >> dp.t.then_quantile_score_candidates(grid, alpha)
        space = (scoring.output_domain, scoring.output_metric)
        select = dp.m.make_noisy_max(*space, dp.max_divergence(), scale, negate=True)
        return lambda scores: grid[select(scores)], scale

    if is_partitioned(series):
        below, above = exact(Scan("ranks", integer=integer, bounds=tuple(bounds),
                                  candidates=tuple(grid)), series)  # fmt: skip
        data = quantile_scores(below, above, alpha)
    else:
        data = values(series, integer)
    released = run(
        helper="quantile",
        mechanism=SELECTION,
        column=series.name,
        calibrated=calibrated,
        sensitivity=None,
        epsilon=epsilon,
        delta=0.0,
        budget=budget,
        data=data,
        details={"alpha": alpha, "bounds": list(bounds), "candidates": len(grid)},
    )
    return int(released) if integer else float(released)


def _candidates(bounds: tuple[Any, Any], integer: bool) -> list[Any]:
    lower, upper = bounds
    if integer and upper - lower <= 1000:
        return list(range(int(lower), int(upper) + 1))
    grid = np.linspace(float(lower), float(upper), 1001)
    return sorted({int(round(g)) for g in grid}) if integer else grid.tolist()


def histogram(
    series: pd.Series,
    epsilon: float | None = None,
    *,
    categories: list[Any] | None = None,
    bins: list[float] | None = None,
    mechanism: str = "laplace",
    delta: float | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> pd.Series:
    """DP counts per category, or per bin of a numeric column. Pass exactly one of them.

    ``categories`` must be public (never read them off the private data): rows with any
    other value, or missing, are counted under ``"(other)"``. ``bins`` are edges:
    values are clamped into ``[bins[0], bins[-1]]`` and counted per left-closed
    interval (the last one also holds ``bins[-1]``, as in ``numpy.histogram``). One
    row moves one count by one, so the L1 (and L2) sensitivity is ``max_contributions``.
    Counts are integers with integer noise and may be negative; they are not clipped.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> sex = pd.Series(["F", "M", "F", "X"] * 500)
    >>> counts = dp.histogram(sex, epsilon=1.0, categories=["F", "M"])
    >>> list(counts.index)
    ['F', 'M', '(other)']
    """
    if (categories is None) == (bins is None):
        raise ValueError("pass exactly one of categories=[...] or bins=[edges...]")
    if is_blind(series):
        return release_from(
            series, "histogram", categories=categories, bins=bins, epsilon=epsilon,
            mechanism=mechanism, delta=delta,
        )  # fmt: skip
    dp = opendp()
    metric = "L2Distance<int>" if mechanism == "gaussian" else "L1Distance<int>"
    if categories is not None:
        if len(set(categories)) != len(categories) or not categories:
            raise ValueError("categories must be distinct and non-empty")
        counting = _rows(True) >> dp.t.then_count_by_categories(
            categories=list(range(len(categories))), null_category=True, MO=metric
        )
        index = pd.Index([*categories, OTHER], dtype=object)
        if is_partitioned(series):
            data = exact(Scan("categories", categories=tuple(categories)), series)[0]
        else:  # a row-wise relabelling with a public list is 1-stable: vectorized in pandas
            codes = pd.Index(list(categories)).get_indexer(series).astype(np.int64)
            data = np.require(codes, requirements=["C", "W"])
    else:
        edges = [float(b) for b in bins]  # type: ignore[union-attr]
        if len(edges) < 2 or any(a >= b for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError("bins must be at least two strictly increasing edges")
        top = float(np.nextafter(edges[-1], -np.inf))
        counting = (
            _rows(False)
            >> dp.t.then_drop_null()
            >> dp.t.then_clamp((edges[0], top))
            >> dp.t.then_find_bin(edges=edges[1:-1])
            >> dp.t.then_count_by_categories(
                categories=list(range(len(edges) - 1)), null_category=False, MO=metric
            )
        )
        if is_partitioned(series):
            data = exact(Scan("bins", edges=tuple(edges)), series)[0]
        else:
            data = values(series, integer=False)
        index = pd.IntervalIndex.from_breaks(edges, closed="left")
    if is_partitioned(series):
        data = [int(c) for c in data]
    released = run(
        helper="histogram",
        mechanism=mechanism,
        column=series.name,
        calibrated=_calibration(series)(counting, mechanism, max_contributions),
        sensitivity=float(counting.map(max_contributions)),
        epsilon=epsilon,
        delta=delta,
        budget=budget,
        data=data,
        details={"bins": len(index)},
        integer=True,
    )
    return pd.Series(np.asarray(released, dtype=np.int64), index=index, name="count")
