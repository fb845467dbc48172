"""The audit's statistics: output events that separate two distributions, and their test.

Samples are matrices, one row per run, one column per numeric output component (NaN
where a run had no such component). An *event* is a set of outputs: ``x_j > t`` or
``x_j < t`` on one component (DP-Sniper and StatDP search these thresholds), ``x_j == v``
on a discrete component, one whole discrete output vector, or a threshold on a score
learned from other runs (:func:`discriminant`, DP-Sniper's idea). For an event ``E`` and
neighbours ``D``, ``D'``, epsilon-DP demands ``P[E | D] <= e^eps P[E | D']``; so a lower
confidence bound on ``P[E | D]`` over an upper one on ``P[E | D']`` (Clopper-Pearson,
``alpha / 2`` each) bounds epsilon from below with confidence ``1 - alpha``, as long as
the event was chosen on other samples than the ones it is tested on.

>>> rng = np.random.default_rng(0)
>>> a = rng.laplace(0.0, 1.0, (4000, 1)); b = rng.laplace(2.0, 1.0, (4000, 1))
>>> event = best_event(a[:2000], b[:2000], 0.05)
>>> 0.5 < evaluate_event(event, a[2000:], b[2000:], 0.05)[0] <= 2.0
True
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import betaincinv  # the beta quantile (scipy.stats imports slowly)

THRESHOLDS = 40
MAX_DISCRETE = 24
NAN_KEY = -1.2345e300

#: Summaries of a vector output, each an extra column events can be about (StatDP's and
#: DP-Sniper's practice: noisy max and the sparse vector leak through the whole vector).
DERIVED = (
    "sum of the outputs",
    "largest output",
    "smallest output",
    "number of outputs",
    "number of nonzero (True) outputs",
    "position of the largest output",
    "position of the first nonzero (True) output",
    "last output",
)


def with_derived(x: np.ndarray) -> np.ndarray:
    """``x`` with the :data:`DERIVED` columns appended (when it has more than one column).

    >>> with_derived(np.array([[0.0, 1.0, np.nan], [2.0, 0.0, 1.0]]))[:, 3:].tolist()
    [[1.0, 1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0], [3.0, 2.0, 0.0, 3.0, 2.0, 0.0, 0.0, 1.0]]
    """
    if x.ndim != 2 or x.shape[1] < 2 or len(x) == 0:
        return x
    finite = np.isfinite(x)
    filled = np.where(finite, x, 0.0)
    present = finite.sum(axis=1)
    some = present > 0
    low = np.where(finite, x, np.inf).min(axis=1)
    high = np.where(finite, x, -np.inf).max(axis=1)
    nonzero = finite & (filled != 0)
    last_at = np.where(some, x.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1), 0)
    columns = [
        filled.sum(axis=1),
        np.where(some, high, np.nan),
        np.where(some, low, np.nan),
        present.astype(float),
        nonzero.sum(axis=1).astype(float),
        np.where(some, np.argmax(np.where(finite, x, -np.inf), axis=1), -1).astype(float),
        np.where(nonzero.any(axis=1), np.argmax(nonzero, axis=1), -1).astype(float),
        np.where(some, x[np.arange(len(x)), last_at], np.nan),
    ]
    return np.column_stack([x, *columns])


def derived_names(names: list[str]) -> list[str]:
    """Column names matching :func:`with_derived`."""
    return names + list(DERIVED) if len(names) > 1 else list(names)


def _features(x: np.ndarray) -> np.ndarray:
    """Outputs as numbers a weighted sum can use: values (absent: 0) and whether present."""
    return np.column_stack([np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), np.isfinite(x)])


def discriminant(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Weights of a score ``w . features(x)`` that runs on ``b`` tend to have higher than on ``a``.

    DP-Sniper's learned event in its simplest, fastest form (a diagonal linear
    discriminant): each output counts by how far it moves between the tables over its
    spread. It finds leaks no single output shows, where many outputs each move a little
    (a sparse vector whose queries move in opposite directions). Only vector outputs have
    one; the weights must be learned on other runs than the ones the score is tested on.

    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(0.0, 1.0, (500, 3)); b = a + [0.5, 0.0, -0.5]
    >>> np.round(discriminant(a, b)[:3], 1).tolist()
    [0.5, 0.0, -0.5]
    """
    if a.ndim != 2 or a.shape[1] < 2 or min(len(a), len(b)) < 2:
        return None
    fa, fb = _features(a), _features(b)
    spread = np.concatenate([fa - fa.mean(axis=0), fb - fb.mean(axis=0)]).var(axis=0)
    weights = (fb.mean(axis=0) - fa.mean(axis=0)) / np.maximum(spread, 1e-9)
    weights[spread < 1e-12] = 0.0
    return weights if np.any(weights) else None


def with_score(x: np.ndarray, width: int, weights: np.ndarray | None) -> np.ndarray:
    """``x`` with the learned score of its first ``width`` columns appended (if any)."""
    if weights is None or len(x) == 0:
        return x
    return np.column_stack([x, _features(x[:, :width]) @ weights])


def describe_score(weights: np.ndarray, names: list[str], shown: int = 4) -> str:
    """The learned score in words: its largest weights first.

    >>> describe_score(np.array([0.5, -2.0, 0.0, 0.0]), ["a", "b"])
    'the score -2*b +0.5*a (weights learned on other runs)'
    """
    width = len(names)
    terms = [(w, n) for w, n in zip(weights[:width], names, strict=True) if w]
    terms += [(w, f"[{n} present]") for w, n in zip(weights[width:], names, strict=True) if w]
    terms.sort(key=lambda t: -abs(t[0]))
    text = " ".join(f"{w:+.2g}*{n}" for w, n in terms[:shown]).lstrip("+")
    more = " ..." if len(terms) > shown else ""
    return f"the score {text}{more} (weights learned on other runs)"


@dataclass
class Event:
    """``component`` index (-1: the whole vector), ``op`` (gt | lt | eq | vec) and value."""

    component: int
    op: str
    value: float | list[float]
    first_is_base: bool  # the event is likelier on D than on D' (else the reverse)
    selection_bound: float = 0.0

    def holds(self, x: np.ndarray) -> np.ndarray:
        if self.op == "vec":
            value = np.asarray(self.value, dtype=float)
            key = np.nan_to_num(x[:, : len(value)], nan=NAN_KEY)
            return np.all(key == value, axis=1)
        column = x[:, self.component]
        with np.errstate(invalid="ignore"):
            if self.op == "gt":
                return column > self.value
            if self.op == "lt":
                return column < self.value
            return np.nan_to_num(column, nan=NAN_KEY) == self.value

    def describe(self, names: list[str]) -> str:
        if self.op == "vec":
            shown = ", ".join("none" if v == NAN_KEY else f"{v:g}" for v in self.value)
            return f"the outputs are exactly ({shown})"
        name = names[self.component] if self.component < len(names) else "?"
        value = "none" if self.value == NAN_KEY else f"{self.value:.4g}"
        symbol = {"gt": ">", "lt": "<", "eq": "=="}[self.op]
        return f"output `{name}` {symbol} {value}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def clopper_pearson(successes: Any, trials: Any, alpha: float) -> tuple[Any, Any]:
    """One-sided (1 - alpha) lower and upper bounds on binomial proportions (vectorised)."""
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    if k.ndim == 1 and n.ndim == 0 and len(k) > 8:  # many events, few distinct counts
        unique, back = np.unique(k, return_inverse=True)
        low, high = _cp(unique, n, alpha)
        return low[back], high[back]
    return _cp(k, n, alpha)


def _cp(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k <= 0, 0.0, betaincinv(np.maximum(k, 1e-9), n - k + 1, alpha))
        high = np.where(k >= n, 1.0, betaincinv(k + 1, np.maximum(n - k, 1e-9), 1 - alpha))
    return np.nan_to_num(low), np.nan_to_num(high, nan=1.0)


def _bounds(
    hits_num: Any, n_num: int, hits_den: Any, n_den: int, alpha: float, delta: float = 0.0
) -> np.ndarray:
    low, _ = clopper_pearson(hits_num, n_num, alpha / 2)
    low = low - delta  # (epsilon, delta)-DP: P[E | D] <= e^eps P[E | D'] + delta
    _, high = clopper_pearson(hits_den, n_den, alpha / 2)
    with np.errstate(divide="ignore"):
        out = np.log(np.maximum(low, 1e-300) / np.maximum(high, 1e-300))
    return np.where(low > 0, np.maximum(out, 0.0), 0.0)


def _candidates(
    a: np.ndarray, b: np.ndarray, width: int | None = None
) -> tuple[list[Event], np.ndarray, np.ndarray]:
    """Every candidate event with its hit counts on ``a`` and on ``b`` (vectorised)."""
    events: list[Event] = []
    hits_a: list[np.ndarray] = []
    hits_b: list[np.ndarray] = []
    pooled = np.concatenate([a, b])
    for j in range(pooled.shape[1]):
        column = pooled[:, j]
        finite = column[np.isfinite(column)]
        keys = np.nan_to_num(column, nan=NAN_KEY)
        values = np.unique(keys)
        if len(values) <= MAX_DISCRETE and len(values) <= max(2, len(keys) // 3):
            ka, kb = np.nan_to_num(a[:, j], nan=NAN_KEY), np.nan_to_num(b[:, j], nan=NAN_KEY)
            events += [Event(j, "eq", float(v), True) for v in values]
            hits_a.append((ka[:, None] == values[None, :]).sum(axis=0))
            hits_b.append((kb[:, None] == values[None, :]).sum(axis=0))
        if len(finite) == 0:
            continue
        if len(np.unique(finite)) <= MAX_DISCRETE:
            cuts = np.unique(finite)
        else:
            cuts = np.unique(np.quantile(finite, np.linspace(0.005, 0.995, THRESHOLDS)))
        for x, out in ((a[:, j], hits_a), (b[:, j], hits_b)):
            ordered = np.sort(x[np.isfinite(x)])
            above = len(ordered) - np.searchsorted(ordered, cuts, side="right")
            below = np.searchsorted(ordered, cuts, side="left")
            out.append(np.concatenate([above, below]))
        events += [Event(j, "gt", float(t), True) for t in cuts]
        events += [Event(j, "lt", float(t), True) for t in cuts]
    width = pooled.shape[1] if width is None else width
    keys = np.nan_to_num(pooled[:, :width], nan=NAN_KEY)
    rows, counts = np.unique(keys, axis=0, return_counts=True)
    if width > 1 and len(rows) <= len(pooled) // 4:
        for i in np.argsort(-counts)[:MAX_DISCRETE]:
            event = Event(-1, "vec", [float(v) for v in rows[i]], True)
            events.append(event)
            hits_a.append(np.array([event.holds(a).sum()]))
            hits_b.append(np.array([event.holds(b).sum()]))
    if not events:
        return [], np.zeros(0), np.zeros(0)
    return events, np.concatenate(hits_a), np.concatenate(hits_b)


def best_events(
    a: np.ndarray,
    b: np.ndarray,
    alpha: float,
    delta: float = 0.0,
    *,
    count: int = 1,
    width: int | None = None,
) -> list[Event]:
    """The ``count`` events (and directions) with the highest bounds on these samples.

    ``width``: how many leading columns are the outputs themselves (the rest are
    summaries); whole-vector events are about those only. Events are distinct, best
    first; at most one per column and direction, so that a few tested events cover
    different ways to leak.
    """
    if len(a) == 0 or len(b) == 0 or a.shape[1] == 0:
        return []
    events, hits_a, hits_b = _candidates(a, b, width)
    if not events:
        return []
    forward = _bounds(hits_a, len(a), hits_b, len(b), alpha, delta)
    backward = _bounds(hits_b, len(b), hits_a, len(a), alpha, delta)
    scores = np.concatenate([forward, backward])
    chosen: list[Event] = []
    seen: set[tuple[int, str, bool]] = set()
    for i in np.argsort(-scores, kind="stable"):
        base = events[int(i) % len(events)]
        first = int(i) < len(events)
        key = (base.component, base.op if base.op in ("eq", "vec") else "thr", first)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(Event(base.component, base.op, base.value, first, float(scores[i])))
        if len(chosen) >= count:
            break
    return chosen


def best_event(a: np.ndarray, b: np.ndarray, alpha: float, delta: float = 0.0) -> Event | None:
    """The event (and direction) with the highest bound on these samples (selection)."""
    found = best_events(a, b, alpha, delta)
    return found[0] if found else None


def evaluate_event(
    event: Event, a: np.ndarray, b: np.ndarray, alpha: float, delta: float = 0.0
) -> tuple[float, dict[str, float]]:
    """The (1 - alpha) lower bound on epsilon from fresh samples, and the counts behind it."""
    hits_a, hits_b = int(event.holds(a).sum()), int(event.holds(b).sum())
    if event.first_is_base:
        bound = _bounds(hits_a, len(a), hits_b, len(b), alpha, delta)
    else:
        bound = _bounds(hits_b, len(b), hits_a, len(a), alpha, delta)
    counts = {"hits_base": hits_a, "runs_base": len(a), "hits_other": hits_b,
              "runs_other": len(b)}  # fmt: skip
    return float(bound), counts


def projected_bound(
    event: Event, a: np.ndarray, b: np.ndarray, runs: int, alpha: float, delta: float = 0.0
) -> float:
    """The bound ``event`` would show with ``runs`` runs per table at the rates seen here.

    How an audit ranks its candidate pairs: by what their best events promise at the
    size and confidence of the coming test, so that a rare event with a large ratio does
    not win over a common one the test can actually resolve.
    """
    if len(a) == 0 or len(b) == 0:
        return 0.0
    rate_a, rate_b = float(event.holds(a).mean()), float(event.holds(b).mean())
    if not event.first_is_base:
        rate_a, rate_b = rate_b, rate_a
    hits_a, hits_b = round(rate_a * runs), round(rate_b * runs)
    return float(_bounds(hits_a, runs, hits_b, runs, alpha, delta))


def svg_histograms(a: np.ndarray, b: np.ndarray, label_a: str, label_b: str) -> str:
    """A small inline SVG: the two samples' histograms on shared bins (blue D, red D')."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    both = np.concatenate([a, b])
    if len(both) == 0:
        return ""
    low, high = np.quantile(both, [0.005, 0.995])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    values = np.unique(both)
    if len(values) <= 20:
        edges = np.concatenate([values - 0.5, [values[-1] + 0.5]])
        edges = np.unique(edges)
    else:
        edges = np.linspace(low, high, 21)
    ha = np.histogram(np.clip(a, edges[0], edges[-1]), edges)[0] / max(len(a), 1)
    hb = np.histogram(np.clip(b, edges[0], edges[-1]), edges)[0] / max(len(b), 1)
    top = max(ha.max(), hb.max(), 1e-9)
    width, height, n = 240, 80, len(ha)
    step = width / n
    bars = []
    for i in range(n):
        for k, (h, colour) in enumerate(((ha[i], "#2563eb"), (hb[i], "#dc2626"))):
            y = height * (1 - h / top)
            x = i * step + k * step / 2
            bars.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{step / 2:.1f}" '
                f'height="{height - y:.1f}" fill="{colour}"/>'
            )
    legend = (
        f'<text x="2" y="{height + 11}" font-size="9" fill="#2563eb">{label_a}</text>'
        f'<text x="120" y="{height + 11}" font-size="9" fill="#dc2626">{label_b}</text>'
        f'<text x="2" y="{height + 22}" font-size="8">{edges[0]:.3g}</text>'
        f'<text x="200" y="{height + 22}" font-size="8">{edges[-1]:.3g}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 24}">'
        + "".join(bars)
        + legend
        + "</svg>"
    )


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def log_ratio_limit(runs: int, alpha: float) -> float:
    """The largest bound ``runs`` runs per side can ever show (a perfectly separating event)."""
    if runs <= 0:
        return 0.0
    low = alpha ** (1 / runs) if alpha > 0 else 1.0
    return max(0.0, math.log(low / max(1 - low, 1e-300)))
