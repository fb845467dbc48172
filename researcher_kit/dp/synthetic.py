"""DP synthetic tables: OpenDP 0.16's MST and AIM (``opendp[mbi]``), with the glue they need.

``synthesize(frame, epsilon, bounds=..., public_categories=...)`` fits a marginal-based
model (Private-PGM, via ``opendp.extras.mbi``) under epsilon-DP (or (epsilon, delta)-DP
when categories must be discovered) and samples a synthetic table with the same columns.

Privacy unit: add/remove one person's rows (at most ``max_contributions`` of them), as
for the aggregates. What the caller must say, and why:

* **Numeric columns** need public ``bounds={"col": (lower, upper)}``: they are never
  derived from the data. Integer columns whose range holds at most ``exact_integers``
  values keep every value (each a category known from the bounds). The others are cut
  into ``bins`` bins, equal-width inside the bounds (``binning="uniform"``) or at DP
  quantiles (``binning="quantile"``: a ``quantile_share`` of epsilon buys one DP
  histogram per binned column on a fine public grid, whose noisy cumulative counts give
  the edges; the edges are in the spend entry's details), plus one bin for the lower
  bound itself (zero-inflated columns keep their zeros). Values outside the bounds fall
  in the end bins (clamping). A synthetic value is drawn uniformly inside its bin (for an
  integer column, uniformly among the integers the bin holds).
* **Categorical columns** (strings, categories, booleans) keep the categories the caller
  declares public (``public_categories={"col": [...]}``); values outside them become
  missing. Undeclared ones are found by OpenDP's stable-key (thresholded) release, which
  needs ``delta > 0``; without it the call is refused before any data is read.
* Other column types (dates, objects that are not strings) are refused by name.

Sampling is ``method="sample"`` (i.i.d. from the fitted model): mbi's default "round"
couples columns the model treats as independent and scores worse than independent
marginals. The budget handed to OpenDP is rounded down a few ulps (its budget split can
fail with "insufficient budget: x > x - 1ulp"); the full declared epsilon is charged.

>>> import pandas as pd
>>> from researcher_kit import dp
>>> df = pd.DataFrame({"age": [20, 35, 50, 65] * 100, "smoker": ["y", "n", "n", "n"] * 100})
>>> with dp.track() as spent:  # doctest: +SKIP
...     fake = dp.synthesize(df, epsilon=1.0, bounds={"age": (18, 90)},
...                          public_categories={"smoker": ["y", "n"]})
>>> list(fake.columns), spent.epsilon  # doctest: +SKIP
(['age', 'smoker'], 1.0)
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from researcher_kit.blind import is_blind, release_from
from researcher_kit.dp.budget import Budget, plan
from researcher_kit.dp.spend import _ACTIVE, SpendEntry, record

__all__ = ["SYNTHESIZERS", "SynthesisRefused", "plan_columns", "synthesize"]

SYNTHESIZERS = ("mst", "aim")
#: The most rows a synthetic table may have (the sample is held in memory).
MAX_ROWS = 2_000_000
MAX_BINS = 64
#: Cells of the fine DP histogram that DP-quantile binning reads its edges off.
QUANTILE_GRID = 200
#: Mirror-descent iterations per model fit (mbi's default is 1000; MST fits twice).
DEFAULT_ITERATIONS = 300
#: Public knobs of OpenDP's MST/AIM a caller may set (AIM: rounds, queries = the largest
#: interaction degree, max_size in MB; MST: num_selections, measure_split;
#: oneway_split: the share of the marginals' budget on the one-way marginals, both;
#: measure_split: MST's share of the rest on measuring the pairs it selected).
ALGORITHM_OPTIONS = frozenset(
    {"rounds", "queries", "max_size", "num_selections", "oneway_split", "measure_split"}
)


class SynthesisRefused(ValueError):
    """The call cannot be synthesized as asked (a column, bounds, categories, budget)."""


def plan_columns(
    dtypes: Mapping[str, Any],
    *,
    bounds: Mapping[str, Sequence[float]] | None = None,
    public_categories: Mapping[str, Sequence[Any]] | None = None,
    delta: float | None = None,
) -> dict[str, str]:
    """``{column: "numeric" | "categorical"}`` from the public schema, or a refusal.

    Decided before any data is read: the dtypes are public (the mock has the same).

    >>> plan_columns({"age": "int64", "sex": "object"}, bounds={"age": (0, 99)},
    ...              public_categories={"sex": ["f", "m"]})
    {'age': 'numeric', 'sex': 'categorical'}
    >>> plan_columns({"age": "int64"})
    Traceback (most recent call last):
    ...
    researcher_kit.dp.synthetic.SynthesisRefused: numeric column 'age' needs public bounds=...
    """
    bounds, public = dict(bounds or {}), dict(public_categories or {})
    kinds: dict[str, str] = {}
    for column, dtype in dtypes.items():
        text = str(dtype).lower()
        if column in public:
            kinds[column] = "categorical"
        elif text in ("object", "str") or text.startswith(
            ("bool", "category", "string", "large_string", "utf8", "dictionary")
        ):
            kinds[column] = "categorical"
        elif text.startswith(("int", "uint", "float", "double")):
            kinds[column] = "numeric"
        else:
            raise SynthesisRefused(
                f"column {column!r} of type {dtype} cannot be synthesized: convert it to "
                "numbers (with public bounds) or to strings (categories), or leave it out"
            )
    for column, kind in kinds.items():
        if kind == "numeric":
            if column not in bounds:
                raise SynthesisRefused(
                    f"numeric column {column!r} needs public bounds={{{column!r}: "
                    "(lower, upper)}: the site never derives bounds from the data"
                )
            lower, upper = bounds[column]
            if not (math.isfinite(lower) and math.isfinite(upper) and lower < upper):
                raise SynthesisRefused(f"bounds for {column!r} must be finite with lower < upper")
    unknown = [c for c, k in kinds.items() if k == "categorical" and c not in public]
    if unknown and not delta:
        raise SynthesisRefused(
            f"categorical column(s) {', '.join(map(repr, unknown))} have no public "
            "categories: declare them (public_categories={...}) or pass delta > 0 so they "
            "are found by OpenDP's thresholded (stable-key) release"
        )
    extra = sorted((set(bounds) | set(public)) - set(kinds))
    if extra:
        raise SynthesisRefused(f"unknown column(s) {', '.join(map(repr, extra))}")
    return kinds


def synthesize(
    frame: Any,
    epsilon: float | None = None,
    *,
    delta: float | None = None,
    synthesizer: Literal["mst", "aim"] = "mst",
    rows: int | None = None,
    public_categories: Mapping[str, Sequence[Any]] | None = None,
    bounds: Mapping[str, Sequence[float]] | None = None,
    bins: int = 10,
    binning: Literal["uniform", "quantile"] = "uniform",
    quantile_share: float = 0.1,
    iterations: int = DEFAULT_ITERATIONS,
    exact_integers: int = 100,
    options: Mapping[str, Any] | None = None,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> pd.DataFrame:
    """A DP synthetic copy of ``frame`` (same columns), fitted by MST or AIM.

    On a blind frame this asks the releaser (``op="synthesize"``); the answer is the
    synthetic table. ``delta`` is used (and charged) only when some categorical column
    has no public categories. See the module doc for bounds, bins and categories.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> people = pd.DataFrame({"age": [25, 35, 45, 55] * 50, "smoker": ["yes", "no"] * 100})
    >>> fake = dp.synthesize(people, epsilon=1.0, bounds={"age": (18, 90)}, bins=4,
    ...                      public_categories={"smoker": ["yes", "no"]})
    >>> list(fake.columns), set(fake["smoker"].dropna()) <= {"yes", "no"}
    (['age', 'smoker'], True)

    A few synthetic rows may be missing a value: the model keeps a null category per
    column (OpenDP adds one), and its noisy count is rarely exactly zero.
    """
    if synthesizer not in SYNTHESIZERS:
        raise SynthesisRefused(f"synthesizer must be one of {SYNTHESIZERS}, not {synthesizer!r}")
    if not 2 <= int(bins) <= MAX_BINS:
        raise SynthesisRefused(f"bins must be between 2 and {MAX_BINS}")
    if rows is not None and not 1 <= int(rows) <= MAX_ROWS:
        raise SynthesisRefused(f"rows must be between 1 and {MAX_ROWS}")
    if binning not in ("uniform", "quantile") or not 0 < quantile_share < 1:
        raise SynthesisRefused("binning is 'uniform' or 'quantile' (0 < quantile_share < 1)")
    refused = sorted(set(options or {}) - ALGORITHM_OPTIONS)
    if refused:
        raise SynthesisRefused(f"options may set {sorted(ALGORITHM_OPTIONS)}, not {refused}")
    if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
        raise SynthesisRefused(f"epsilon must be finite and > 0, not {epsilon!r}")
    if is_blind(frame):
        return release_from(
            frame,
            "synthesize",
            epsilon=epsilon,
            delta=delta,
            synthesizer=synthesizer,
            rows=rows,
            public_categories={k: list(v) for k, v in (public_categories or {}).items()},
            column_bounds={k: tuple(v) for k, v in (bounds or {}).items()},
            n_bins=int(bins),
            binning=binning,
            features=list(frame.columns),
        )
    kinds = plan_columns(
        dict(frame.dtypes.items()), bounds=bounds, public_categories=public_categories,
        delta=delta,
    )  # fmt: skip
    needs_delta = any(
        k == "categorical" and c not in (public_categories or {}) for c, k in kinds.items()
    )
    eps, dlt = plan(epsilon, delta if needs_delta else 0.0, budget, uses_delta=needs_delta)
    if not eps > 0:
        raise SynthesisRefused("epsilon must be > 0")
    if budget is not None:
        budget.spend(eps, dlt)  # charged before the data is read
    details: dict[str, Any] = {
        "synthesizer": synthesizer,
        "bins": int(bins),
        "binning": binning,
        "columns": list(kinds),
        "discovered_categories": [
            c
            for c, k in kinds.items()
            if k == "categorical" and c not in (public_categories or {})
        ],
    }  # fmt: skip
    # One entry for the whole epsilon; the fit adds the DP bin edges (and the quantiles'
    # share of epsilon) to its details once they are released.
    record(
        SpendEntry(
            helper="synthesize",
            mechanism=f"{synthesizer} (opendp.extras.mbi)",
            epsilon=float(eps),
            delta=float(dlt),
            details=details,
        )
    )
    return _fit_and_sample(
        frame, kinds, eps, dlt, synthesizer=synthesizer, rows=rows,
        public_categories=dict(public_categories or {}), bounds=dict(bounds or {}),
        bins=int(bins), binning=binning, quantile_share=quantile_share,
        iterations=iterations, max_contributions=max_contributions,
        exact_integers=exact_integers, options=dict(options or {}), details=details,
    )  # fmt: skip


#: Relative budget cuts tried in turn when OpenDP's budget split rounds against us.
RETRY_SHAVES = (0.0, 1e-6, 1e-3)


def _roomier_prior(x: float) -> float:
    """OpenDP's ``prior`` (the next float down), a relative 1e-12 further down.

    MST and AIM split a budget with ``prior`` and then compose the parts, whose sum,
    rounded up at each addition, can exceed the whole by a few ulps ("insufficient
    budget for query"). A part smaller by a trillionth leaves room for that rounding;
    a smaller part only ever spends less, so the guarantee is unchanged.
    """
    return float(np.nextafter(x * (1 - 1e-12), -np.inf))


def _patch_budget_split() -> None:
    from opendp.extras.mbi import _mst, _table

    # not AIM's: it clamps its per-round budget at 0 with prior and breaks when shifted
    for module in (_mst, _table):
        if getattr(module, "prior", None) is not _roomier_prior:
            module.prior = _roomier_prior


def _below(value: float, ulps: int = 4) -> float:
    """``value`` rounded down (OpenDP's budget split rounds against us).

    A few ulps of the total are not enough: the shortfall shows up in the inner splits
    ("insufficient budget for query: 0.04999999999999993 > 0.04999999999999992"), so
    the total loses a relative 1e-9 (a billionth of the budget, unspent) and a few ulps.
    """
    value = value * (1 - 1e-9)
    for _ in range(ulps):
        value = math.nextafter(value, 0.0)
    return value


def _edges(
    series: pd.Series, bounds: Sequence[float], bins: int, binning: str, epsilon: float
) -> np.ndarray:
    lower, upper = float(bounds[0]), float(bounds[1])
    uniform = np.linspace(lower, upper, bins + 1)
    if binning == "uniform" or epsilon <= 0:
        return uniform
    from researcher_kit.dp.aggregates import histogram

    # One DP histogram per column on a fine public grid, its quantiles read off the
    # noisy cumulative counts (post-processing). Its epsilon buys all the column's
    # quantiles at once; the exponential mechanism per quantile (OpenDP's
    # make_private_quantile) splits it bins - 1 ways, and at 0.002 each it missed
    # Adult's deciles by about 10% of the rows (2-way TVD worse than exact values).
    # Integer columns with at most QUANTILE_GRID values in range get one cell per
    # integer (edges then sit on integers: bin (a, b] holds exactly a+1..b).
    integer = pd.api.types.is_integer_dtype(series.dtype)
    if integer and upper - lower <= QUANTILE_GRID:
        grid = np.arange(math.ceil(lower), math.floor(upper) + 1, dtype=float)
        cells = [*(grid - 0.5), grid[-1] + 0.5]
    else:
        cells = list(np.linspace(lower, upper, QUANTILE_GRID + 1))
        grid = np.asarray(cells[1:])  # a cell's values are at most its right edge
    with _unrecorded():  # the synthesize entry charges the whole epsilon, this included
        counts = histogram(series.astype(float), epsilon, bins=cells)
    # The counts are unbiased (negative ones kept: clipping them at 0 would add mass to
    # every empty cell of a long tail); the cumulative sum is made monotone afterwards.
    noisy = counts.to_numpy(dtype=float)[: len(grid)]
    cumulative = np.maximum.accumulate(np.cumsum(noisy))
    total = cumulative[-1]
    if not total > 0:
        return uniform
    at = np.searchsorted(cumulative, np.arange(1, bins) / bins * total, side="left")
    inner = grid[np.clip(at, 0, len(grid) - 1)]
    return np.unique(np.clip([lower, *inner, upper], lower, upper))


@contextlib.contextmanager
def _unrecorded() -> Iterator[None]:
    """Keep the inner DP-quantile releases out of the spend logs.

    ``synthesize`` records one entry for its whole epsilon (the quantile share
    included, with the edges in its details); recording the quantiles again would
    count their share twice.
    """
    token = _ACTIVE.set(())
    try:
        yield
    finally:
        _ACTIVE.reset(token)


#: Where JAX keeps compiled kernels across processes; ``RK_JAX_CACHE=""`` turns it off.
JAX_CACHE_ENV = "RK_JAX_CACHE"


def _use_compile_cache() -> None:
    """Point JAX's persistent compilation cache at a folder, unless one is set already.

    A cold fit of Adult spends most of its time compiling: Private-PGM runs eager JAX
    operations on every clique's shape (about a thousand XLA compilations, 40-50 s on 2
    cores). The compiled kernels hold no data (shapes and code only), so a later fit of a
    table with the same domain sizes (the canary test, a re-run, the next version of the
    dataset) loads them instead. It takes effect only if JAX has not compiled anything
    yet in this process.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    default = os.path.join(os.path.expanduser("~"), ".cache", "researcher_kit", "jax")
    folder = os.environ.get(JAX_CACHE_ENV, default)
    if not folder:
        return
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


#: Mirror-descent iterations when every measurement is one-way (the model is then a
#: product of independent columns, which converges in a few dozen steps).
ONEWAY_ITERATIONS = 50


def _estimate(
    mirror_descent: Any,
    domain: Any,
    measurements: Sequence[Any],
    *,
    iterations: int,
    **kwargs: Any,
) -> Any:
    """OpenDP's estimator call with fewer iterations for a one-way-only fit.

    MST and AIM fit the model twice or more: first on the one-way marginals alone (to
    score the pairs), then on everything. The first fit needs no more than
    ``ONEWAY_ITERATIONS``; the later ones get ``iterations``.
    """
    oneway = all(len(getattr(m, "clique", ())) <= 1 for m in measurements)
    iters = min(iterations, ONEWAY_ITERATIONS) if oneway else iterations
    return mirror_descent(domain, list(measurements), iters=iters, **kwargs)


def _fit_and_sample(
    frame: pd.DataFrame,
    kinds: dict[str, str],
    epsilon: float,
    delta: float,
    *,
    synthesizer: str,
    rows: int | None,
    public_categories: dict[str, Sequence[Any]],
    bounds: dict[str, Sequence[float]],
    bins: int,
    binning: str,
    quantile_share: float,
    iterations: int,
    max_contributions: int,
    exact_integers: int,
    options: dict[str, Any],
    details: dict[str, Any] | None = None,
) -> pd.DataFrame:
    import opendp.prelude as dp
    import polars as pl
    from mbi.estimation import mirror_descent

    dp.enable_features("contrib")
    _patch_budget_split()
    _use_compile_cache()
    # Integer columns whose public range holds at most ``exact_integers`` values keep
    # every value (each one a public category); the others are binned.
    exact = {
        c: (math.ceil(bounds[c][0]), math.floor(bounds[c][1]))
        for c, k in kinds.items()
        if k == "numeric" and pd.api.types.is_integer_dtype(frame[c].dtype)
        and math.floor(bounds[c][1]) - math.ceil(bounds[c][0]) < exact_integers
    }  # fmt: skip
    numeric = [c for c, k in kinds.items() if k == "numeric" and c not in exact]
    quantile_eps = epsilon * quantile_share if binning == "quantile" and numeric else 0.0
    edges = {
        c: _edges(frame[c], bounds[c], bins, binning, quantile_eps / len(numeric)) for c in numeric
    }
    if details is not None:
        details["quantile_epsilon"] = quantile_eps
        details["bin_edges"] = {c: [float(e) for e in edges[c]] for c in numeric}
        details["exact_integers"] = sorted(exact)
    # Numeric columns go to OpenDP as floats cut at the inner edges (bin i of n_i).
    data = {}
    for column, kind in kinds.items():
        series = frame[column]
        if column in exact:
            lower, upper = exact[column]
            data[column] = series.clip(lower, upper).astype("Int64").tolist()
        elif kind == "numeric":
            data[column] = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
        elif column in public_categories:
            data[column] = series.astype(object).where(series.notna(), None).tolist()
        else:
            data[column] = series.astype("string").to_numpy(dtype=object, na_value=None)
    types = {c: pl.Int64 if c in exact else pl.Float64 for c in kinds if kinds[c] == "numeric"}
    lazy = pl.DataFrame({c: pl.Series(c, v, dtype=types.get(c)) for c, v in data.items()}).lazy()
    keys: dict[str, list[Any]] = {}
    for column, values in public_categories.items():
        cats = list(dict.fromkeys(values))
        keys[column] = (
            [str(v) for v in cats] if lazy.collect_schema()[column] == pl.String else cats
        )
    for column, (lower, upper) in exact.items():
        keys[column] = list(range(lower, upper + 1))
    # Cuts are left-open: the lower bound is the first cut, so bin 0 holds the values at
    # (or clamped to) the lower bound exactly (zero-inflated columns keep their zeros).
    cuts = {c: [float(e) for e in edges[c][:-1]] for c in numeric}
    estimator = functools.partial(_estimate, mirror_descent, iterations=int(iterations))
    # One-way marginals of every column are measured first (MST's design); skipping them
    # for keyed columns (oneway="unkeyed") is faster but leaves the pair selection blind.
    oneway = "all"
    algorithm = (dp.mbi.MST if synthesizer == "mst" else dp.mbi.AIM)(
        estimator=estimator, oneway=oneway, **options
    )
    table = None
    for shave in RETRY_SHAVES:
        eps = _below((epsilon - quantile_eps) * (1 - shave))
        loss = dp.loss_of(epsilon=eps, delta=delta) if delta else dp.loss_of(epsilon=eps)
        context = dp.Context.compositor(
            data=lazy,
            privacy_unit=dp.unit_of(contributions=max_contributions),
            privacy_loss=loss,
            split_evenly_over=1,
        )
        query = (
            context.query()
            .select(*kinds)
            .contingency_table(keys=keys or None, cuts=cuts or None, algorithm=algorithm)
        )
        try:
            table = query.release()
            break
        except dp.OpenDPException as exc:
            # OpenDP's inner budget split can come out an ulp short whatever the total
            # ("insufficient budget for query: 0.04999999995 > 0.04999999994999997"): a
            # failure of float arithmetic, not of the data, so a refit on a slightly
            # smaller budget releases nothing more. Nothing of the failed fit is kept.
            if "insufficient budget" not in str(exc) or shave == RETRY_SHAVES[-1]:
                raise
    assert table is not None
    indices = table.model.synthetic_data(rows, "sample").df
    out: dict[str, Any] = {}
    generator = np.random.default_rng()
    for column, kind in kinds.items():
        index = indices[column].to_numpy()
        if column in exact:
            keyset = table.keys[column].to_list()
            lower = exact[column][0]
            values = np.array([lower if keyset[i] is None else keyset[i] for i in index])
            out[column] = values.astype(frame[column].dtype)
        elif kind == "numeric":
            edge = np.asarray(edges[column], dtype=float)
            index = np.clip(index, 0, len(edge) - 1)
            inner = np.maximum(index, 1)
            if pd.api.types.is_integer_dtype(frame[column].dtype):
                # bin (a, b] of an integer column holds the integers floor(a)+1..floor(b):
                # draw one of those (a uniform float rounded would leak into bin i-1)
                low = np.floor(edge[inner - 1]) + 1
                high = np.maximum(np.floor(edge[inner]), low)
                drawn = low + np.floor(generator.random(len(index)) * (high - low + 1))
                values = np.where(index == 0, math.ceil(edge[0]), drawn)
                values = np.clip(values, math.ceil(edge[0]), math.floor(edge[-1]))
                out[column] = values.astype(frame[column].dtype)
            else:
                out[column] = np.where(
                    index == 0, edge[0], generator.uniform(edge[inner - 1], edge[inner])
                )
        else:
            keyset = table.keys[column].to_list()
            out[column] = [keyset[i] for i in index]
    result = pd.DataFrame(out, columns=list(kinds))
    for column, kind in kinds.items():
        if kind == "categorical" and pd.api.types.is_bool_dtype(frame[column].dtype):
            result[column] = result[column].astype("boolean")
    return result
