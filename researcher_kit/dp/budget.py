"""A privacy budget that can be split across releases and refuses to be overspent.

Every helper takes ``budget=``: the release happens only if the budget still covers
it, and the spend is deducted *before* any noise is drawn, so a failed release never
gives budget back (as on the site, where a run that touched data is not refunded).
Totals use basic sequential composition: epsilons add up and deltas add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Float slack when a budget is split and then spent part by part (1/3 + 1/3 + 1/3).
_SLACK = 1e-9


class BudgetExceeded(ValueError):
    """A release would spend more epsilon or delta than the budget has left."""


@dataclass
class Budget:
    """An (epsilon, delta) allowance to spend across several DP releases.

    >>> from researcher_kit import dp
    >>> total = dp.Budget(epsilon=1.0)
    >>> first, second = total.split(2)
    >>> first.epsilon, total.remaining_epsilon
    (0.5, 0.0)
    >>> first.spend(0.5)
    >>> first.spend(0.1)
    Traceback (most recent call last):
    ...
    researcher_kit.dp.budget.BudgetExceeded: epsilon=0.1 exceeds what is left (epsilon=0, delta=0)
    """

    epsilon: float
    delta: float = 0.0
    spent_epsilon: float = field(default=0.0, init=False)
    spent_delta: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon >= 0):
            raise ValueError(f"epsilon must be finite and >= 0, not {self.epsilon!r}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"delta must be in [0, 1), not {self.delta!r}")

    @property
    def remaining_epsilon(self) -> float:
        return max(0.0, self.epsilon - self.spent_epsilon)

    @property
    def remaining_delta(self) -> float:
        return max(0.0, self.delta - self.spent_delta)

    def can_spend(self, epsilon: float, delta: float = 0.0) -> bool:
        """True when (epsilon, delta) fits in what is left."""
        if epsilon < 0 or delta < 0:
            raise ValueError("a spend cannot be negative")
        eps_ok = self.spent_epsilon + epsilon <= self.epsilon * (1 + _SLACK) + _SLACK * 1e-3
        delta_ok = self.spent_delta + delta <= self.delta * (1 + _SLACK) + 1e-300
        return eps_ok and (delta == 0 or delta_ok)

    def spend(self, epsilon: float, delta: float = 0.0) -> None:
        """Deduct (epsilon, delta), or raise :class:`BudgetExceeded` and deduct nothing."""
        if not self.can_spend(epsilon, delta):
            raise BudgetExceeded(
                f"epsilon={epsilon:g}"
                + (f", delta={delta:g}" if delta else "")
                + f" exceeds what is left (epsilon={self.remaining_epsilon:g}, "
                f"delta={self.remaining_delta:g})"
            )
        self.spent_epsilon += epsilon
        self.spent_delta += delta

    def split(self, n: int) -> list[Budget]:
        """Reserve everything left for ``n`` equal child budgets, one per release."""
        if n < 1:
            raise ValueError("split into at least one part")
        epsilon, delta = self.remaining_epsilon / n, self.remaining_delta / n
        self.spend(self.remaining_epsilon, self.remaining_delta)
        return [Budget(epsilon=epsilon, delta=delta) for _ in range(n)]


def plan(
    epsilon: float | None, delta: float | None, budget: Budget | None, uses_delta: bool
) -> tuple[float, float]:
    """The (epsilon, delta) a helper will release with; ``None`` takes what ``budget`` has left.

    Nothing is deducted here: the helper calls ``budget.spend`` once the measurement is
    built, just before the noise is drawn. Pure-DP mechanisms never take delta.
    """
    if epsilon is None:
        if budget is None:
            raise ValueError("pass epsilon=... or budget=dp.Budget(...)")
        epsilon = budget.remaining_epsilon
    if not uses_delta:
        delta = 0.0
    elif delta is None:
        delta = budget.remaining_delta if budget is not None else 0.0
    if budget is not None and not budget.can_spend(epsilon, delta):
        budget.spend(epsilon, delta)  # raises BudgetExceeded with the numbers
    return epsilon, delta
