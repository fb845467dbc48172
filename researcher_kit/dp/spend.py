"""Recording what every DP helper spends, so a request's budget is measured, not guessed.

Each helper appends a :class:`SpendEntry` to every active :func:`track` log. Running a
function on the mock inside ``track()`` therefore tells the researcher (and
``@rk.dp_request``) the epsilon, delta and mechanisms it will declare. Totals use basic
sequential composition, an upper bound that holds for any mix of mechanisms.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import Any

_ACTIVE: ContextVar[tuple[SpendLog, ...]] = ContextVar("researcher_kit_dp_logs", default=())


@dataclass(frozen=True)
class SpendEntry:
    """One DP release: which helper, which mechanism, and what it cost.

    ``sensitivity`` is the distance OpenDP's privacy map computed between the noised
    aggregates of neighbouring datasets (after clamping); ``scale`` the noise scale.
    """

    helper: str
    mechanism: str
    epsilon: float
    delta: float = 0.0
    sensitivity: float | None = None
    scale: float | None = None
    column: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``JobResult.spend`` and the site's report)."""
        return {k: _jsonable(v) for k, v in asdict(self).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


class SpendLog:
    """The releases made while a :func:`track` block was open, with their totals.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> ages = pd.Series([23, 45, 67, 34])
    >>> with dp.track() as spent:
    ...     _ = dp.mean(ages, bounds=(18, 90), epsilon=0.5)
    ...     _ = dp.count(ages, epsilon=0.25)
    >>> spent.epsilon, spent.mechanisms
    (0.75, ['laplace'])
    """

    def __init__(self, entries: list[SpendEntry] | None = None) -> None:
        self.entries: list[SpendEntry] = list(entries or [])

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[SpendEntry]:
        return iter(self.entries)

    @property
    def epsilon(self) -> float:
        """Total epsilon (epsilons add up under sequential composition)."""
        return math.fsum(e.epsilon for e in self.entries)

    @property
    def delta(self) -> float:
        """Total delta (deltas add up)."""
        return math.fsum(e.delta for e in self.entries)

    @property
    def mechanisms(self) -> list[str]:
        """The distinct mechanisms used, sorted."""
        return sorted({e.mechanism for e in self.entries})

    def to_records(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.entries]

    def __repr__(self) -> str:
        return (
            f"SpendLog(releases={len(self)}, epsilon={self.epsilon:g}, "
            f"delta={self.delta:g}, mechanisms={self.mechanisms})"
        )

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th>{h}</th>"
            for h in ("helper", "column", "mechanism", "epsilon", "delta", "sensitivity", "scale")
        )
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(_cell(v))}</td>"
                for v in (
                    e.helper,
                    e.column,
                    e.mechanism,
                    e.epsilon,
                    e.delta,
                    e.sensitivity,
                    e.scale,
                )
            )
            + "</tr>"
            for e in self.entries
        )
        total = (
            f"<tr><th colspan='3'>total ({len(self)} releases)</th>"
            f"<th>{self.epsilon:.6g}</th><th>{self.delta:.3g}</th><th></th><th></th></tr>"
        )
        return f"<table class='dp-spend'><thead><tr>{head}</tr></thead>{rows}{total}</table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def record(entry: SpendEntry) -> None:
    """Append ``entry`` to every open :func:`track` log (nested blocks all see it)."""
    for log in _ACTIVE.get():
        log.entries.append(entry)


@contextmanager
def track() -> Iterator[SpendLog]:
    """Collect the spend of every DP helper called inside the block.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> with dp.track() as spent:
    ...     _ = dp.sum(pd.Series([1.0, 2.0]), bounds=(0.0, 5.0), epsilon=0.3)
    >>> round(spent.epsilon, 3), len(spent)
    (0.3, 1)
    """
    log = SpendLog()
    token = _ACTIVE.set((*_ACTIVE.get(), log))
    try:
        yield log
    finally:
        _ACTIVE.reset(token)


def total_spend(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> SpendLog:
    """Run ``fn(*args, **kwargs)`` once (on mock data) and return what it spent.

    The result of ``fn`` is discarded: this measures a request's budget before it is
    declared, it does not release anything worth keeping.

    >>> import pandas as pd
    >>> from researcher_kit import dp
    >>> def analysis(df):
    ...     return dp.mean(df["age"], bounds=(18, 90), epsilon=1.0)
    >>> dp.total_spend(analysis, pd.DataFrame({"age": [30, 40]})).epsilon
    1.0
    """
    with track() as log:
        fn(*args, **kwargs)
    return log
