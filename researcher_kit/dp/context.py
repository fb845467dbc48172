"""Context requests made short: OpenDP ``Context`` queries as one-line helpers.

In a Context request the site hands the function an OpenDP ``Context`` bound to the
private data and the declared budget, split evenly over ``queries`` releases; the
function never sees a row. :func:`local_context` builds the same Context on a
DataFrame you hold (the mock), with the same parameters as the site's ``JobSpec``
(``epsilon``, ``delta``, ``context.queries``, ``context.max_contributions``), so a
request can be tried before it is submitted.

Privacy unit: add/remove one person's rows, at most ``max_contributions`` of them.
Each ``ctx_*`` helper is one ``ctx.query()...release()`` (one of the ``queries``
shares) and returns plain Python numbers or a pandas DataFrame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from researcher_kit.dp._opendp import opendp
from researcher_kit.dp.spend import SpendEntry, record

__all__ = [
    "ctx_count",
    "ctx_histogram",
    "ctx_mean",
    "ctx_quantile",
    "ctx_sum",
    "local_context",
]


def local_context(
    data: Any,
    epsilon: float,
    delta: float = 0.0,
    queries: int = 1,
    max_contributions: int = 1,
    max_length: int | None = None,
) -> Any:
    """An OpenDP Context over ``data`` exactly as the site binds a Context request.

    ``data`` is a pandas DataFrame, a Polars DataFrame or LazyFrame. The privacy loss
    is ``epsilon`` (pure DP) or ``(epsilon, delta)`` when ``delta > 0``, split evenly
    over ``queries`` releases. ``max_length`` is the public bound on the row count that
    OpenDP's sums and means need; by default it is the site's own rule
    (``datasite.contract.harness.rows_bound``: the count rounded up to one significant
    digit), so noise scales on the mock match what the site will use on its data.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> mock = pd.DataFrame({"age": [23, 45, 67, 34] * 100})
    >>> ctx = dp.local_context(mock, epsilon=1.0, queries=2)
    >>> abs(dp.ctx_count(ctx) - 400) < 50
    True
    >>> 18 <= dp.ctx_mean(ctx, "age", bounds=(18, 90)) <= 90
    True
    """
    import polars as pl

    from datasite.contract.harness import build_context

    if not isinstance(data, pd.DataFrame | pl.DataFrame | pl.LazyFrame):
        raise TypeError(f"expected a pandas or Polars frame, not {type(data).__name__}")
    return build_context(
        data,
        epsilon=epsilon,
        delta=delta,
        queries=queries,
        max_contributions=max_contributions,
        max_length=max_length,
    )


def ctx_count(ctx: Any) -> int:
    """DP number of rows, released through ``ctx``.

    Sensitivity: ``max_contributions`` (signed integer noise, never clamped at zero).

    >>> import pandas as pd
    >>> ctx = local_context(pd.DataFrame({"age": [23, 45, 67, 34] * 100}), epsilon=1.0)
    >>> abs(ctx_count(ctx) - 400) < 50
    True
    """
    frame = record_context_release(ctx, ctx.query().select(aggregate("count")), "ctx_count", None)
    return int(frame.item())


def ctx_sum(ctx: Any, column: str, bounds: tuple[float, float]) -> float:
    """DP sum of ``column`` clamped to ``bounds`` (missing values count as the midpoint).

    >>> import pandas as pd
    >>> ctx = local_context(pd.DataFrame({"hours": [1.5, 2.5] * 200}), epsilon=1.0)
    >>> abs(ctx_sum(ctx, "hours", bounds=(0.0, 10.0)) - 800) < 200
    True
    """
    query = ctx.query().select(aggregate("sum", column, bounds))
    value = record_context_release(ctx, query, "ctx_sum", column, bounds).item()
    return value if isinstance(value, int) else float(value)


def ctx_mean(ctx: Any, column: str, bounds: tuple[float, float]) -> float:
    """DP mean of ``column`` clamped to ``bounds``: OpenDP's noisy sum over noisy length.

    >>> import pandas as pd
    >>> ctx = local_context(pd.DataFrame({"age": [23, 45, 67, 34] * 100}), epsilon=1.0)
    >>> 18 <= ctx_mean(ctx, "age", bounds=(18, 90)) <= 90
    True
    """
    query = ctx.query().select(aggregate("mean", column, bounds))
    return float(record_context_release(ctx, query, "ctx_mean", column, bounds).item())


def ctx_quantile(
    ctx: Any,
    column: str,
    alpha: float,
    bounds: tuple[float, float],
    candidates: list[float] | None = None,
) -> float:
    """DP ``alpha``-quantile of ``column`` among ``candidates`` (default: 1001 in ``bounds``).

    >>> import pandas as pd
    >>> ctx = local_context(pd.DataFrame({"age": list(range(20, 80)) * 10}), epsilon=1.0)
    >>> 18 <= ctx_quantile(ctx, "age", alpha=0.5, bounds=(18, 90)) <= 90
    True
    """
    lower, upper = _typed(bounds)
    if candidates is None:
        grid = np.linspace(lower, upper, 1001)
        candidates = (
            sorted({int(round(g)) for g in grid}) if isinstance(lower, int) else grid.tolist()
        )
    expr = _filled(column, bounds).clip(lower, upper).dp.quantile(alpha, list(candidates))
    value = record_context_release(ctx, ctx.query().select(expr), "ctx_quantile", column).item()
    return value if isinstance(value, int) else float(value)


def ctx_histogram(ctx: Any, column: str, categories: list[Any] | None = None) -> pd.DataFrame:
    """DP count of rows per value of ``column``, as a DataFrame ``[column, "count"]``.

    With public ``categories`` every one of them is released (pure DP works). Without
    them the key set is private: the Context must allow delta > 0, and OpenDP releases
    only keys whose noisy count clears a threshold.

    >>> import pandas as pd
    >>> ctx = local_context(pd.DataFrame({"sex": ["F", "M", "F"] * 100}), epsilon=1.0)
    >>> ctx_histogram(ctx, "sex", categories=["F", "M"]).columns.tolist()
    ['sex', 'count']
    """
    import polars as pl

    dp = opendp()
    query = ctx.query().group_by(column).agg(dp.len(signed=True).alias("count"))
    if categories is not None:
        query = query.with_keys(pl.LazyFrame({column: list(categories)}))
    frame = record_context_release(ctx, query, "ctx_histogram", column)
    return frame.sort(column).to_pandas()


#: The Context aggregates a site may answer from a partitioned table's exact partials
#: (``researcher_kit.releaser``): OpenDP resolves and charges them, the site adds the
#: noise OpenDP's summary names to the exact values, so no table is loaded whole.
SCANNABLE = ("count", "sum", "mean")


def aggregate(kind: str, column: str | None = None, bounds: tuple[Any, Any] | None = None) -> Any:
    """The one Polars expression of ``ctx_count`` / ``ctx_sum`` / ``ctx_mean``.

    Missing values count as the bounds' midpoint; the sum and mean are clamped to
    ``bounds``; the count is signed (never clamped at zero).

    >>> aggregate("mean", "age", (18, 90)).meta.root_names()
    ['age']
    """
    dp = opendp()  # also registers the ``.dp`` expression namespace
    if kind == "count":
        return dp.len(signed=True)
    if kind not in SCANNABLE or column is None or bounds is None:
        raise ValueError(f"{kind!r} needs a column and bounds")
    filled = _filled(column, bounds)
    return filled.dp.sum(_typed(bounds)) if kind == "sum" else filled.dp.mean(_typed(bounds))


def answer_from_exact(kind: str, column: str | None, total: Any, rows: int, summary: Any) -> Any:
    """``kind``'s released frame from its exact values, with the noise OpenDP resolved.

    ``total`` is the filled, clamped sum (None for a count), ``rows`` the row count;
    ``summary`` is ``summarize_polars_measurement`` of the query's measurement: one row
    per noised aggregate (``Sum``, ``Length`` / ``Frame Length``) with its distribution
    and scale. Each is drawn by OpenDP's own Laplace sampler at that scale (integer noise
    on integers), once, on the combined exact value: the mechanism of the whole-table
    plan. A mean is the noisy sum over the noisy length, as OpenDP's ``dp.mean``.
    """
    import polars as pl

    dp = opendp()
    noisy: dict[str, Any] = {}
    for row in summary.iter_rows(named=True):
        exact_value = total if row["aggregate"] == "Sum" else rows
        integer = "integer" in str(row["distribution"]).lower()
        domain = dp.atom_domain(T="i64") if integer else dp.atom_domain(T=float, nan=False)
        distance = dp.absolute_distance(T="i64" if integer else float)
        sampler = dp.m.make_laplace(domain, distance, scale=float(row["scale"]))
        noisy[row["aggregate"]] = sampler(int(exact_value) if integer else float(exact_value))
    if kind == "count":
        (value,) = noisy.values()
        return pl.DataFrame({"len": [int(value)]})
    if kind == "sum":
        return pl.DataFrame({column: [noisy["Sum"]]})
    length = next(v for k, v in noisy.items() if k != "Sum")
    return pl.DataFrame({column: [noisy["Sum"] / length]})


def _typed(bounds: tuple[float, float]) -> tuple[Any, Any]:
    """Bounds as both ints (integer column) or both floats: OpenDP matches the dtype."""
    lower, upper = bounds
    if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
        raise ValueError(f"bounds must be finite with lower < upper, not {bounds!r}")
    if all(isinstance(b, int | np.integer) and not isinstance(b, bool) for b in bounds):
        return int(lower), int(upper)
    return float(lower), float(upper)


def typed_with_midpoint(bounds: tuple[float, float]) -> tuple[Any, Any, Any]:
    """The bounds as OpenDP types them and the midpoint that stands for a missing value
    (public, data-free): the one definition for the Context expressions and for the
    site's partition scan of the same aggregates.

    >>> typed_with_midpoint((18, 91)), typed_with_midpoint((0, 1.0))
    ((18, 91, 54), (0.0, 1.0, 0.5))
    """
    lower, upper = _typed(bounds)
    middle = (lower + upper) // 2 if isinstance(lower, int) else (lower + upper) / 2
    return lower, upper, middle


def _filled(column: str, bounds: tuple[float, float]) -> Any:
    """``column`` with NaN and nulls imputed by the bounds' midpoint."""
    import polars as pl

    lower, _, middle = typed_with_midpoint(bounds)
    if isinstance(lower, int):
        return pl.col(column).fill_null(middle)
    return pl.col(column).fill_nan(middle).fill_null(middle)


def record_context_release(
    ctx: Any,
    query: Any,
    helper: str,
    column: str | None,
    bounds: tuple[Any, Any] | None = None,
    *,
    answer: Any = None,
) -> Any:
    """Release ``query`` through ``ctx`` and record the share of the budget it used.

    A query of a data-blind Context (``researcher_kit.blind``) is released by the site's
    releaser, which does the recording on its side; ``column`` and ``bounds`` travel with
    it so that the site can recognise a :data:`SCANNABLE` aggregate. ``answer``, given
    the measurement's summary, computes the released frame instead of OpenDP's plan (the
    site's partitioned scan); the budget is charged the same way either way.
    """
    from researcher_kit.blind import BlindQuery

    if isinstance(query, BlindQuery):
        return query.release(column=column, bounds=bounds).collect()
    from opendp.accuracy import summarize_polars_measurement

    # Resolving searches OpenDP's noise scale; do it once for the summary and the release.
    measurement = resolve(query)
    summary = summarize_polars_measurement(measurement)
    mechanisms = sorted({_mechanism(d) for d in summary["distribution"].to_list()})
    before = len(ctx.d_mids_consumed)
    once = ctx(measurement)  # charges the Context; the plan runs only when collected
    frame = once.collect() if answer is None else answer(summary)
    spent = ctx.d_mids_consumed[before:]
    epsilon = math.fsum(_epsilon_delta(d)[0] for d in spent)
    delta = math.fsum(_epsilon_delta(d)[1] for d in spent)
    scales = [s for s in summary["scale"].to_list() if s is not None]
    details: dict[str, Any] = {"aggregates": summary["aggregate"].to_list()}
    if "threshold" in summary.columns:
        details["threshold"] = summary["threshold"].to_list()
    record(
        SpendEntry(
            helper=helper,
            mechanism="+".join(mechanisms),
            epsilon=epsilon,
            delta=delta,
            scale=max(scales) if scales else None,
            column=column,
            details=details,
        )
    )
    return frame


def resolve(query: Any) -> Any:
    """``query.resolve()`` for an OpenDP Polars query, its float scale search bracketed.

    OpenDP's ``LazyFrameQuery.resolve`` in the same steps (a zero scale if that is private
    already; for approximate DP the scale, then the threshold), except that each float
    scale search is :func:`researcher_kit.dp._opendp.bracketed_search`, which returns the
    same float in ~60 builds of the measurement instead of ~1,100: about a second less per
    Context query. Anything else (a blind query, another OpenDP version's internals) is
    resolved by OpenDP itself.
    """
    from opendp.extras.polars import LazyFrameQuery
    from opendp.measurements import make_private_lazyframe
    from opendp.mod import OpenDPException, binary_search

    from researcher_kit.dp._opendp import bracketed_search, power_law_guess

    if not isinstance(query, LazyFrameQuery):
        return query.resolve()
    try:
        plan = object.__getattribute__(query, "polars_plan")
        inner = object.__getattribute__(query, "_query")
        input_domain, input_metric = inner._chain
        d_in, d_out, measure = inner._d_in, inner._d_out, inner._output_measure
    except (AttributeError, TypeError, ValueError):
        return query.resolve()

    def make(scale: float, threshold: int | None = None) -> Any:
        return make_private_lazyframe(
            input_domain=input_domain, input_metric=input_metric, output_measure=measure,
            lazyframe=plan, global_scale=scale, threshold=threshold,
        )  # fmt: skip

    try:
        zero = make(0.0)
        if zero.check(d_in, d_out):
            return zero
    except OpenDPException:
        pass
    if getattr(measure.type, "origin", None) != "Approximate":
        guess = power_law_guess(lambda scale: make(scale).map(d_in), d_out)
        return make(bracketed_search(lambda scale: make(scale).check(d_in, d_out), guess))

    def loss(scale: float) -> float:  # epsilon, with every key released
        return make(scale, threshold=2**32 - 1).map(d_in)[0]

    scale = bracketed_search(lambda s: loss(s) < d_out[0], power_law_guess(loss, d_out[0]))
    try:
        return make(scale)
    except OpenDPException:
        pass
    threshold = binary_search(lambda t: make(scale, t).map(d_in)[1] < d_out[1], T=int)
    return make(scale, threshold)


def _epsilon_delta(d_mid: Any) -> tuple[float, float]:
    if isinstance(d_mid, tuple):
        return float(d_mid[0]), float(d_mid[1])
    return float(d_mid), 0.0


def _mechanism(distribution: str | None) -> str:
    name = (distribution or "unknown").lower()
    for known in ("laplace", "gaussian", "exponential"):
        if known in name:
            return known
    return name
