"""Plots the pages draw where people would rather look than read: inline SVG built here,
on the server, so a page needs no script, no CDN and no chart library.

- ``budget_over_time``: the ledger's entries as running totals of epsilon spent, one
  line per researcher or per dataset (refunds step down);
- ``line_chart``: those totals as step lines, with a legend that gives each final total;
- ``error_bar_chart``: a released value with its noise's 95% interval
  (``datasite.error_bars``), one bar per value (a histogram's bins side by side).

The page's Content-Security-Policy forbids inline ``style``: colours are SVG
presentation attributes, sizes CSS classes (``.chart`` in ``site.css``). Every text is
escaped; each shape carries a ``<title>`` (a tooltip, and what a screen reader reads).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from datasite.web.render import timestamp
from datasite.web.steward import for_people

#: Colour-blind-safe (Okabe-Ito), dark enough on white for lines and text.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 36

Series = dict[str, list[tuple[datetime, float]]]


def _num(value: Any) -> str:
    """A number for a chart: whole numbers in full (``2,012``, never ``2.01e+03``), the
    rest to three significant digits.

    >>> _num(2012.0), _num(1000), _num(0.30000000000000004), _num(-12.5)
    ('2,012', '1,000', '0.3', '-12.5')
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return for_people(value)
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}"
    return for_people(value)


def budget_over_time(entries: Iterable[tuple[datetime, str, float]]) -> Series:
    """Running totals of epsilon per name, from ``(when, name, epsilon)`` ledger entries
    (reservations positive, refunds negative), each series in time order.

    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> totals = budget_over_time([(t, "bob", 0.5), (t, "ann", 1.0), (t, "bob", -0.25)])
    >>> [value for _, value in totals["bob"]], list(totals)
    ([0.5, 0.25], ['ann', 'bob'])
    """
    series: Series = defaultdict(list)
    totals: dict[str, float] = defaultdict(float)
    for when, name, epsilon in sorted(entries, key=lambda e: _aware(e[0])):
        totals[name] += epsilon
        series[name].append((_aware(when), max(totals[name], 0.0)))
    return dict(sorted(series.items()))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x a power of ten that is at least ``raw``.

    >>> _nice_step(0.3), _nice_step(7), _nice_step(0.04)
    (0.5, 10.0, 0.05)
    """
    power = 10.0 ** math.floor(math.log10(raw))
    return next(s * power for s in (1, 2, 2.5, 5, 10) if s * power >= raw * (1 - 1e-9))


def _axis_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering ``[low, high]``.

    >>> _axis_ticks(0, 1.7)
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    if high <= low:
        high = low + 1.0
    step = _nice_step((high - low) / count)
    start = (low // step) * step
    ticks = [start]
    while ticks[-1] < high - 1e-12:
        ticks.append(ticks[-1] + step)
    return [round(t, 12) for t in ticks]


def _frame(label: str, ticks: list[float], to_y: Any, width: int) -> list[str]:
    """The y axis: grid lines with their values, and the axis label."""
    parts = []
    for tick in ticks:
        y = to_y(tick)
        parts.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#c9ced6" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#4a4a4a">{escape(_num(tick))}</text>'
        )
    parts.append(
        f'<text x="12" y="{TOP + (HEIGHT - TOP - BOTTOM) / 2:.1f}" font-size="11" '
        f'fill="#4a4a4a" text-anchor="middle" transform="rotate(-90 12 '
        f'{TOP + (HEIGHT - TOP - BOTTOM) / 2:.1f})">{escape(label)}</text>'
    )
    return parts


def line_chart(series: Series, *, title: str, ceiling: float | None = None) -> Markup:
    """Step lines of running totals over time, one colour per name, in one SVG.

    ``ceiling`` (a granted total, when one applies to every line) is drawn dashed.
    """
    if not series:
        return Markup("")
    times = [t for points in series.values() for t, _ in points]
    start, end = min(times), max(times)
    if end - start < timedelta(minutes=1):
        start, end = start - timedelta(seconds=30), end + timedelta(seconds=30)
    top = max([v for points in series.values() for _, v in points] + [ceiling or 0.0, 1e-9])
    ticks = _axis_ticks(0.0, top)
    span = (end - start).total_seconds()

    def to_x(moment: datetime) -> float:
        return LEFT + (moment - start).total_seconds() / span * (WIDTH - LEFT - RIGHT)

    def to_y(value: float) -> float:
        return HEIGHT - BOTTOM - value / ticks[-1] * (HEIGHT - TOP - BOTTOM)

    parts = _frame("ε spent", ticks, to_y, WIDTH)
    for label, x, anchor in ((start, LEFT, "start"), (end, WIDTH - RIGHT, "end")):
        parts.append(
            f'<text x="{x}" y="{HEIGHT - BOTTOM + 16}" font-size="11" fill="#4a4a4a" '
            f'text-anchor="{anchor}">{escape(timestamp(label))}</text>'
        )
    if ceiling:
        y = to_y(ceiling)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#8a1111" stroke-width="1.5" stroke-dasharray="6 4">'
            f"<title>granted: ε {escape(_num(ceiling))}</title></line>"
        )
    legend = []
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        steps, previous = [], 0.0
        for moment, value in points:
            x = to_x(moment)
            steps += [f"{x:.1f},{to_y(previous):.1f}", f"{x:.1f},{to_y(value):.1f}"]
            previous = value
        steps.append(f"{WIDTH - RIGHT:.1f},{to_y(previous):.1f}")
        dots = "".join(
            f'<circle cx="{to_x(m):.1f}" cy="{to_y(v):.1f}" r="3" fill="{colour}">'
            f"<title>{escape(name)}: ε {escape(_num(v))} by {escape(timestamp(m))}"
            "</title></circle>"
            for m, v in points
        )
        parts.append(
            f'<g class="series"><title>{escape(name)}</title><polyline fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{" ".join(steps)}"/>{dots}</g>'
        )
        legend.append(
            f'<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true"><rect width="10" '
            f'height="10" fill="{colour}"/></svg> {escape(name)}: ε '
            f"{escape(_num(previous))}</li>"
        )
    summary = "; ".join(f"{name} ε {_num(points[-1][1])}" for name, points in series.items())
    svg = (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}: {escape(summary)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(parts)}</svg>"
    )
    return Markup(f'<figure class="chart">{svg}<ul class="legend">{"".join(legend)}</ul></figure>')


def error_bar_chart(bar: dict[str, Any]) -> Markup:
    """One released value, or a histogram's bins, each with its 95% noise interval."""
    points = [p for p in bar.get("points") or [] if isinstance(p.get("value"), int | float)]
    width_95 = bar.get("half_width")
    if not points or not isinstance(width_95, int | float):
        return Markup("")
    lows = [p["value"] - width_95 for p in points]
    highs = [p["value"] + width_95 for p in points]
    if len(points) > 1:  # bins side by side: from zero, so their heights compare
        low, high = min(min(lows), 0.0), max(max(highs), 0.0)
    else:  # one value: zoomed on its interval, or the bar would be a dot
        low, high = lows[0] - width_95, highs[0] + width_95
    ticks = [t for t in _axis_ticks(low, high) if low - 1e-9 <= t <= high + 1e-9]
    low, high = min([low, *ticks]), max([high, *ticks])
    low, high = low - 0.04 * (high - low), high + 0.04 * (high - low)
    slot = 56 if len(points) > 1 else 120
    width = max(LEFT + RIGHT + slot * len(points), 240)

    def to_y(value: float) -> float:
        return HEIGHT - BOTTOM - (value - low) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = _frame(str(bar.get("helper") or "value"), ticks, to_y, width)
    for i, point in enumerate(points):
        x = LEFT + slot * (i + 0.5)
        value = point["value"]
        y, y_low, y_high = to_y(value), to_y(value - width_95), to_y(value + width_95)
        label = str(point.get("label") or "")
        said = (
            f"{label}: {_num(value)} ± {_num(width_95)} "
            f"(95%: {_num(value - width_95)} to {_num(value + width_95)})"
        )
        parts.append(
            f'<g class="bar"><title>{escape(said)}</title>'
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_low:.1f}" y2="{y_high:.1f}" stroke="#0072b2" '
            'stroke-width="2"/>'
            f'<line x1="{x - 6:.1f}" x2="{x + 6:.1f}" y1="{y_low:.1f}" y2="{y_low:.1f}" '
            'stroke="#0072b2" stroke-width="2"/>'
            f'<line x1="{x - 6:.1f}" x2="{x + 6:.1f}" y1="{y_high:.1f}" y2="{y_high:.1f}" '
            'stroke="#0072b2" stroke-width="2"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#d55e00"/>'
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" font-size="11" fill="#1a1a1a" '
            f'text-anchor="middle">{escape(label[: 8 if len(points) > 1 else 18])}</text></g>'
        )
    what = f"{bar.get('helper')}" + (f" of {bar['column']}" if bar.get("column") else "")
    caption = (
        f"{what}: each bar is the released value ± {_num(width_95)}, the range the "
        f"{bar.get('mechanism')} noise (scale {_num(bar.get('scale'))}, "
        f"ε {_num(bar.get('epsilon'))}) stays within 19 times in 20."
    )
    if bar.get("left_out"):
        caption += f" {bar['left_out']} more values are not drawn."
    svg = (
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" width="{width}" '
        f'height="{HEIGHT}" role="img" aria-label="{escape(caption)}" '
        'xmlns="http://www.w3.org/2000/svg">'
        f"{''.join(parts)}</svg>"
    )
    return Markup(
        f'<figure class="chart error-bars">{svg}<figcaption class="muted small">'
        f"{escape(str(bar.get('path') or ''))}: {escape(caption)}</figcaption></figure>"
    )


def run_error_bars(manifest: dict[str, Any] | None) -> list[Markup]:
    """The error-bar charts of one run, from what ``runs`` kept in its manifest."""
    bars = (manifest or {}).get("noise") or []
    return [chart for bar in bars if isinstance(bar, dict) and (chart := error_bar_chart(bar))]
