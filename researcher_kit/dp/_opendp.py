"""OpenDP, imported on first use, and the calibration shared by every helper.

``import opendp.prelude`` costs over a second, so the toolkit imports it only when a
helper first runs: ``import researcher_kit`` stays fast in a notebook and in the
sandbox's warm worker. All noise comes from OpenDP measurements, which sample with
OpenDP's own cryptographically secure generator (never ``numpy.random``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

MECHANISMS = ("laplace", "gaussian", "geometric")


@cache
def opendp() -> Any:
    """``opendp.prelude`` with the ``contrib`` features the helpers are built from."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def check_mechanism(mechanism: str, delta: float, integer: bool) -> None:
    """Refuse parameter combinations that have no sound meaning, before any release."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}, not {mechanism!r}")
    if mechanism == "gaussian" and not 0 < delta < 1:
        raise ValueError("the Gaussian mechanism needs 0 < delta < 1 (it is (epsilon, delta)-DP)")
    if mechanism == "geometric" and not integer:
        raise ValueError("the geometric mechanism adds integer noise: use it on integer data")


def then_noise(mechanism: str, scale: float, k: int | None = None) -> Any:
    """The partial OpenDP constructor that adds ``mechanism`` noise of ``scale``.

    ``laplace`` on integers is OpenDP's discrete Laplace; ``geometric`` is the same
    distribution restricted to integer support; ``gaussian`` is the (discrete)
    Gaussian, measured in zero-concentrated DP and converted by :func:`calibrate`.
    """
    dp = opendp()
    if mechanism == "laplace":
        return dp.m.then_laplace(scale=scale, k=k)
    if mechanism == "gaussian":
        return dp.m.then_gaussian(scale=scale, k=k)
    if mechanism == "geometric":
        return dp.m.then_geometric(scale=scale)
    raise ValueError(f"mechanism must be one of {MECHANISMS}, not {mechanism!r}")


def as_approximate(measurement: Any, delta: float) -> Any:
    """Express a zCDP measurement as (epsilon, delta)-DP at a fixed ``delta``."""
    dp = opendp()
    if measurement.output_measure == dp.zero_concentrated_divergence():
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(measurement), delta)
    return measurement


def calibrate(
    build: Callable[[float], Any], d_in: Any, epsilon: float, delta: float, guess: float
) -> tuple[Any, float]:
    """The OpenDP measurement ``build(scale)`` with the least noise that is (epsilon, delta)-DP.

    ``guess`` is the textbook scale (sensitivity / epsilon), or 0 when there is none.
    OpenDP's own privacy map is the judge (``check``), so rounding slack in float
    aggregates is accounted for; the search stops within 1e-6 of the least scale.
    Returns the measurement (zCDP ones converted to approximate DP) and its scale.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive finite number, not {epsilon!r}")
    dp = opendp()
    start = guess if guess > 0 else 1.0
    gaussian = build(start).output_measure == dp.zero_concentrated_divergence()
    d_out = (epsilon, delta) if gaussian else epsilon

    def make(scale: float) -> Any:
        return as_approximate(build(scale), delta) if gaussian else build(scale)

    def passes(scale: float) -> bool:
        return bool(make(scale).check(d_in, d_out))

    if not gaussian and guess > 0 and passes(guess):
        return make(guess), guess  # the textbook scale is exact for most chains
    low, high = start, start
    while not passes(high):
        low, high = high, high * 2
        if high > 1e300:
            raise ValueError("no noise scale reaches this privacy loss")
    if low == high:
        while passes(low / 2) and low > 1e-300:
            low /= 2
        high, low = low, low / 2
    while high - low > high * 1e-6:
        middle = (low + high) / 2
        low, high = (low, middle) if passes(middle) else (middle, high)
    return make(high), high


def float_granularity(sensitivity: float, n: int) -> int:
    """The noise grid 2^k for a vector of ``n`` floats: fine enough to cost < 1e-6 of epsilon.

    OpenDP rounds every coordinate to the grid, which widens the l1 sensitivity by up to
    ``n * 2^k``; the default grid (k=-1074) is exact but samples three times slower.
    """
    target = max(sensitivity, 1e-300) * 1e-6 / max(n, 1)
    return max(-1074, math.floor(math.log2(target)))


#: Doublings or halvings from the start that bracketing a noise scale may take (2**+-200).
BRACKET_STEPS = 200
#: A guessed scale is bracketed from this relative distance first, the gap doubling.
GUESS_GAP = 2.0**-40


def _away(start: float, up: bool, gap: float) -> Iterator[float]:
    """Points ever further from ``start`` (up or down): first at relative distance ``gap``,
    the gap doubling up to a half, then doubling or halving."""
    point = start
    while gap <= 0.5:
        point = start * (1 + gap) if up else start * (1 - gap)
        yield point
        gap *= 2
    for _ in range(BRACKET_STEPS):
        point = point * 2 if up else point / 2
        yield point


def bracketed_search(predicate: Callable[[float], bool], guess: float | None = None) -> float:
    """OpenDP's ``binary_search(predicate, T=float)`` answer, in ~60 calls, not ~1,100.

    OpenDP's unbounded search for a noise scale first probes 0.0 and then bisects down
    through the subnormal floats before it finds the boundary: about 1,100 predicate
    calls, each building the whole measurement (about 1 s for a Context query's scale).
    Here the boundary is bracketed by doubling or halving from 1.0 (``predicate(lower)``
    false, ``predicate(upper)`` true), then OpenDP's own search runs inside that bracket.
    With a ``guess`` close to the answer (:func:`power_law_guess`), the bracket starts a
    relative 2**-40 around it and widens by doubling, so it is found, and searched, in
    about 15 calls; a poor guess costs about 40 more. For a monotone predicate every way
    returns the same float, the smallest passing one, so the scale (and the privacy
    guarantee) is unchanged; anything unexpected (an exception, no boundary within
    2**+-200) falls back to OpenDP's search.

    >>> bracketed_search(lambda scale: scale >= 2.5)
    2.5
    >>> bracketed_search(lambda scale: scale >= 2.5, guess=2.5000001)
    2.5
    """
    from opendp.mod import binary_search

    usable = guess is not None and math.isfinite(guess) and guess > 0
    start, gap = (guess, GUESS_GAP) if usable else (1.0, 1.0)
    try:
        below = predicate(start)  # the start passes: look below it, else above it
        previous = start
        for point in _away(start, up=not below, gap=gap):  # type: ignore[arg-type]
            if predicate(point) != below:
                lower, upper = (point, previous) if below else (previous, point)
                break
            previous = point
        else:
            raise ArithmeticError("no boundary within 2**+-200 of the start")
    except Exception:  # noqa: BLE001 - OpenDP's own search decides what is an error
        return float(binary_search(predicate, T=float))  # type: ignore[arg-type]
    return float(binary_search(predicate, bounds=(lower, upper), T=float))  # type: ignore[arg-type]


def power_law_guess(loss: Callable[[float], float], target: float) -> float | None:
    """The scale at which ``loss(scale)`` would be ``target`` if the loss fell as a power
    of the scale (Laplace: epsilon ~ 1/scale; Gaussian under zCDP: rho ~ 1/scale**2),
    from the losses at scales 1 and 2; None when that does not fit. Only a starting point
    for :func:`bracketed_search`, which finds the exact scale either way.

    >>> power_law_guess(lambda scale: 3.0 / scale, 0.5)
    6.0
    """
    try:
        at_one, at_two = float(loss(1.0)), float(loss(2.0))
        power = math.log2(at_one / at_two)
        guess = (at_one / target) ** (1 / power)
    except Exception:  # noqa: BLE001 - no guess: the search brackets from 1.0
        return None
    return guess if math.isfinite(guess) and guess > 0 else None
