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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from researcher_kit.blind import is_blind, release_from
from researcher_kit.dp._opendp import bracketed_search
from researcher_kit.dp.budget import Budget, plan
from researcher_kit.dp.spend import _ACTIVE, SpendEntry, record

__all__ = ["SYNTHESIZERS", "SynthesisRefused", "plan_columns", "synthesize"]

SYNTHESIZERS = ("mst", "aim")
#: The most rows a synthetic table may have (the sample is held in memory).
MAX_ROWS = 2_000_000
MAX_BINS = 64
#: Cells of the fine DP histogram that DP-quantile binning reads its edges off.
QUANTILE_GRID = 200
#: Mirror-descent iterations per model fit (mbi's default; the one-way fit takes 50). A
#: step costs about a millisecond on Adult once compiled: 1000 steps scored a mean 2-way
#: TVD of 0.044 over four MST fits at epsilon 1, 300 steps 0.049, for about a second more.
DEFAULT_ITERATIONS = 1000
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
    bounded = sorted(c for c in bounds if kinds.get(c) == "categorical")
    if bounded:
        raise SynthesisRefused(
            f"bounds given for categorical column(s) {', '.join(map(repr, bounded))}: bounds "
            "are for numeric columns; declare a categorical column's values in "
            "public_categories instead"
        )
    empty = sorted(c for c, values in public.items() if not list(values))
    if empty:
        raise SynthesisRefused(
            f"public_categories for {', '.join(map(repr, empty))} is empty: list the "
            "column's categories, or leave it out so they are found under delta"
        )
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


def _plain_float_search(bounds: Any, T: Any) -> bool:
    return bounds in (None, (None, None)) and T in (float, "f64")


def _fast_binary_search_param(
    make_chain: Callable[[float], Any],
    d_in: Any,
    d_out: Any,
    bounds: Any = (None, None),
    T: Any = None,
) -> Any:
    """``opendp.binary_search_param`` with ``bracketed_search`` for float scales."""
    from opendp.mod import binary_search_param

    if not _plain_float_search(bounds, T):
        return binary_search_param(make_chain, d_in, d_out, bounds, T)
    return bracketed_search(lambda s: make_chain(s).check(d_in, d_out))


def _fast_binary_search_chain(
    make_chain: Callable[[float], Any],
    d_in: Any,
    d_out: Any,
    bounds: Any = (None, None),
    T: Any = None,
) -> Any:
    """``opendp.binary_search_chain`` with ``bracketed_search`` for float scales."""
    return make_chain(_fast_binary_search_param(make_chain, d_in, d_out, bounds, T))


def _fast_binary_search(
    predicate: Callable[[Any], bool],
    bounds: Any = (None, None),
    T: Any = None,
    return_sign: bool = False,
) -> Any:
    """``opendp.binary_search`` with ``bracketed_search`` for float scales."""
    from opendp.mod import binary_search

    if return_sign or not _plain_float_search(bounds, T):
        return binary_search(predicate, bounds, T, return_sign)  # type: ignore[arg-type]
    return bracketed_search(predicate)


def _patch_searches() -> None:
    """Point OpenDP's MST, AIM and contingency-table code at the bracketed searches."""
    from opendp.extras.mbi import _aim, _fixed, _mst, _table

    for module in (_aim, _fixed, _mst, _table):
        for name, fast in (
            ("binary_search_chain", _fast_binary_search_chain),
            ("binary_search_param", _fast_binary_search_param),
            ("binary_search", _fast_binary_search),
        ):
            if hasattr(module, name) and getattr(module, name) is not fast:
                setattr(module, name, fast)


def _patch_independent_projection() -> None:
    """Project a model of independent columns onto several columns with numpy.

    MST scores every pair of columns (105 on Adult) against the model fitted on the
    one-way marginals alone. mbi computes each pair by variable elimination in eager JAX,
    which compiles kernels for every pair's shape: about 800 XLA compilations, the
    largest part of a cold fit. When every potential is on one column, the model is a
    product of its one-way marginals, and the projection is their outer product over
    ``total`` (the same numbers, in float64). Other models go to mbi as before.
    """
    from mbi import Factor, MarkovRandomField

    original = MarkovRandomField.project
    if getattr(original, "_rk_independent", False):
        return

    def project(self: Any, attrs: Any) -> Any:
        attrs = (attrs,) if isinstance(attrs, str) else tuple(attrs)
        marginals = self.marginals
        if len(attrs) == 2 and not marginals.supports(attrs):
            joint = _forest_pair(self, attrs[0], attrs[1])
            if joint is not None:
                return Factor(self.domain.project(attrs), joint)
        if (
            len(attrs) < 2
            or marginals.supports(attrs)
            or any(len(c) > 1 for c in self.potentials.cliques)
            or any((a,) not in marginals.arrays for a in attrs)
        ):
            return original(self, attrs)
        total = float(self.total)
        values = np.asarray(marginals[(attrs[0],)].values, dtype=float)
        for attr in attrs[1:]:
            values = np.multiply.outer(values, np.asarray(marginals[(attr,)].values) / total)
        return Factor(self.domain.project(attrs), values)

    project._rk_independent = True  # type: ignore[attr-defined]
    MarkovRandomField.project = project


def _forest_pair(model: Any, a: str, b: str) -> np.ndarray | None:
    """The model's joint counts of columns ``a`` and ``b`` when its cliques form a forest.

    AIM scores every candidate pair against a model of the pairs it measured so far; while
    those form a forest (no cycle, no triple), the model is a tree-structured Markov field
    whose fitted pair marginals are exact, and the joint of two columns is the chain of
    conditionals along the path between them (``P(a) P(v1|a) ... P(b|vk)``) or, in
    different trees, the outer product of their marginals. ``None`` otherwise (mbi's
    variable elimination then answers, compiling kernels in eager JAX).
    """
    marginals = model.marginals
    cliques = [tuple(c) for c in marginals.cliques]
    if any(len(c) > 2 for c in cliques) or not all(
        marginals.supports(tuple(c)) for c in model.potentials.cliques
    ):
        return None
    neighbours: dict[str, dict[str, tuple[str, ...]]] = {x: {} for x in model.domain.attrs}
    component = {x: x for x in model.domain.attrs}

    def find(x: str) -> str:
        while component[x] != x:
            x = component[x]
        return x

    for clique in cliques:
        if len(clique) == 2:
            u, v = clique
            if find(u) == find(v):
                return None
            component[find(u)] = find(v)
            neighbours[u][v] = neighbours[v][u] = clique

    def edge(u: str, v: str) -> np.ndarray:  # joint counts, rows u, columns v
        clique = neighbours[u][v]
        values = np.asarray(marginals[clique].values, dtype=float)
        return values if clique == (u, v) else values.T

    def one(x: str) -> np.ndarray | None:
        if neighbours[x]:
            return edge(x, next(iter(neighbours[x]))).sum(axis=1)
        if (x,) in marginals.arrays:
            return np.asarray(marginals[(x,)].values, dtype=float)
        return None

    pa, pb = one(a), one(b)
    if pa is None or pb is None:
        return None
    total = float(model.total)
    if find(a) != find(b):
        return np.multiply.outer(pa, pb / max(pb.sum(), 1e-300))
    parent: dict[str, str | None] = {a: None}
    queue = [a]
    while queue:
        x = queue.pop()
        for y in neighbours[x]:
            if y not in parent:
                parent[y] = x
                queue.append(y)
    path = [b]
    while path[-1] != a:
        path.append(parent[path[-1]])  # type: ignore[arg-type]
    path.reverse()
    joint = np.diag(pa)
    for u, v in zip(path, path[1:], strict=False):
        pair = edge(u, v)
        rows = pair.sum(axis=1, keepdims=True)
        joint = joint @ np.divide(pair, rows, out=np.zeros_like(pair), where=rows > 0)
    return joint * (total / max(joint.sum(), 1e-300))


def _sample_tree(
    model: Any, rows: int | None, generator: np.random.Generator
) -> pd.DataFrame | None:
    """i.i.d. rows from a model whose cliques are columns and pairs forming a forest.

    MST's model is a spanning tree of pairs, so its fitted pair marginals are exact, and
    ancestral sampling (a root column from its marginal, then each column given its
    parent) draws from the model itself: the distribution of mbi's
    ``synthetic_data(rows, "sample")``, in numpy, without mbi's junction-tree message
    passing in eager JAX (30-odd compilations, 5-10 s cold). ``None`` for other models
    (AIM's may hold cycles or triples): the caller then asks mbi.
    """
    cliques = [tuple(c) for c in model.marginals.cliques]
    if any(len(c) > 2 for c in cliques):
        return None
    attrs = list(model.domain.attrs)
    pairs = {tuple(sorted(c)): c for c in cliques if len(c) == 2}
    neighbours: dict[str, list[str]] = {a: [] for a in attrs}
    component = {a: a for a in attrs}

    def find(a: str) -> str:
        while component[a] != a:
            a = component[a]
        return a

    for a, b in pairs:
        if find(a) == find(b):
            return None  # a cycle: not a forest
        component[find(a)] = find(b)
        neighbours[a].append(b)
        neighbours[b].append(a)
    total = max(1, int(rows or model.total))
    out: dict[str, np.ndarray] = {}

    def joint(parent: str, child: str) -> np.ndarray:
        clique = pairs[tuple(sorted((parent, child)))]
        values = np.asarray(model.marginals[clique].values, dtype=float)
        return values if clique == (parent, child) else values.T

    def draw(p: np.ndarray, size: int) -> np.ndarray:
        p = np.clip(p, 0.0, None)
        s = p.sum()
        p = p / s if s > 0 else np.full(len(p), 1.0 / len(p))
        return generator.choice(len(p), size=size, p=p)

    for root in attrs:
        if root in out:
            continue
        if neighbours[root]:
            marginal = joint(root, neighbours[root][0]).sum(axis=1)
        elif (root,) in model.marginals.arrays:
            marginal = np.asarray(model.marginals[(root,)].values, dtype=float)
        else:
            return None
        out[root] = draw(marginal, total)
        stack = [root]
        while stack:
            parent = stack.pop()
            for child in neighbours[parent]:
                if child in out:
                    continue
                table = joint(parent, child)
                values = np.empty(total, dtype=np.int64)
                order = np.argsort(out[parent], kind="stable")
                counts = np.bincount(out[parent], minlength=table.shape[0])
                start = 0
                for value, count in enumerate(counts):
                    if count:
                        values[order[start : start + count]] = draw(table[value], count)
                    start += count
                out[child] = values
                stack.append(child)
    return pd.DataFrame({a: out[a] for a in attrs})


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


#: Power-iteration steps for the loss's Lipschitz constant (mbi's value).
LIPSCHITZ_STEPS = 50
#: XLA options for the fit's two kernels. LLVM's optimisation passes take most of a CPU
#: compilation (about 15 s of a cold MST fit on Adult on 2 cores) and buy little here:
#: a fit runs each kernel a few hundred times on small arrays (300 mirror-descent steps
#: in about half a second either way). Level 0 cuts the compilation to about a third.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _mirror_descent(
    domain: Any,
    measurements: Sequence[Any],
    *,
    iters: int,
    potentials: Any = None,
    known_total: float | None = None,
    **other: Any,
) -> Any:
    """mbi's ``mirror_descent`` (same loss, step size, line search and iterations) in two kernels.

    mbi builds the starting potentials, the loss's Lipschitz constant (50 power-iteration
    steps) and the first and last marginals with eager JAX operations outside its jitted
    step: some 100 XLA compilations per fit, one per operation and clique shape (about a
    third of a cold MST fit on Adult). Here the starting potentials and the Lipschitz
    constant are one jitted function (a ``fori_loop`` over the same 50 steps), and the last
    marginals come from one more call of the compiled step (its ``mu`` is the marginals of
    the potentials it is given), so a fit compiles two kernels. Other keyword arguments
    (a custom oracle, a mesh) go to mbi's own ``mirror_descent``.
    """
    import jax
    import optax
    from mbi import CliqueVector, MarkovRandomField, marginal_loss, marginal_oracles
    from mbi.estimation import minimum_variance_unbiased_total, mirror_descent

    measurements = list(measurements)
    if other:
        return mirror_descent(
            domain, measurements, iters=iters, potentials=potentials,
            known_total=known_total, **other,
        )  # fmt: skip
    if known_total is None:
        known_total = minimum_variance_unbiased_total(measurements)
    # no domain: mbi would estimate the Lipschitz constant eagerly; it is done below
    loss_fn = marginal_loss.from_linear_measurements(measurements)
    cliques = list(loss_fn.cliques)
    if potentials is not None and all(potentials.supports(c) for c in cliques):
        start, expand = potentials, False
    else:
        start, expand = potentials, True

    @functools.partial(jax.jit, compiler_options=COMPILER_OPTIONS)
    def prepare(old: Any) -> tuple[Any, Any]:
        if not expand:
            theta = old
        elif old is None:
            theta = CliqueVector.zeros(domain, cliques)
        else:
            theta = old.expand(cliques)
        x0 = CliqueVector.zeros(domain, cliques)
        v = CliqueVector.ones(domain, cliques)
        v = v / optax.tree.norm(v)

        def step(_: Any, carry: tuple[Any, Any]) -> tuple[Any, Any]:
            v, _estimate = carry
            hv = jax.jvp(jax.grad(loss_fn), (x0,), (v,))[1]
            estimate = optax.tree.norm(hv)
            return hv / (estimate + 1e-12), estimate

        _, lipschitz = jax.lax.fori_loop(0, LIPSCHITZ_STEPS, step, (v, optax.tree.norm(v)))
        return theta, lipschitz

    oracle = marginal_oracles.message_passing_fast

    @functools.partial(jax.jit, compiler_options=COMPILER_OPTIONS)
    def update(theta: Any, alpha: Any) -> tuple[Any, Any, Any]:
        mu = oracle(theta, known_total)
        loss, gradient = jax.value_and_grad(loss_fn)(mu)
        theta2 = theta - alpha * gradient
        mu2 = oracle(theta2, known_total)
        loss2 = loss_fn(mu2)
        sufficient_decrease = loss - loss2 >= 0.5 * alpha * gradient.dot(mu - mu2)
        alpha = jax.lax.select(sufficient_decrease, 1.01 * alpha, 0.5 * alpha)
        theta = jax.lax.cond(sufficient_decrease, lambda: theta2, lambda: theta)
        return theta, alpha, mu

    theta, lipschitz = prepare(start)
    alpha = 2.0 / (lipschitz * known_total)
    for _ in range(int(iters)):
        theta, alpha, _mu = update(theta, alpha)
    _, _, marginals = update(theta, alpha)  # the marginals of the final potentials
    return MarkovRandomField(potentials=theta, marginals=marginals, total=known_total)


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

    dp.enable_features("contrib")
    _patch_budget_split()
    _patch_searches()
    _patch_independent_projection()
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
    estimator = functools.partial(_estimate, _mirror_descent, iterations=int(iterations))
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
    generator = np.random.default_rng()
    indices = _sample_tree(table.model, rows, generator)
    if indices is None:
        indices = table.model.synthetic_data(rows, "sample").df
    out: dict[str, Any] = {}
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
