"""Error bars for a released result: which returned values are a DP release exactly as
the releaser made it, and how far that release's noise may have moved it.

A data-blind run's ledger comes from the releaser (``JobResult.spend``, never the job's
word). For a count, sum or histogram the kit adds the noise to the very value it
returns, so the entry's ``scale`` is that value's error, and the releaser keeps the
released value with the entry (``details["released"]``, see
``researcher_kit.releaser._with_released``). A returned value equal to it is that
release, untouched by post-processing: it gets ``value ± half_width``, the half-width
of the noise's central 95% interval. Anything the function changed (a ratio, a sum of
releases, a rounded count) matches nothing and gets no bar, so a bar is never drawn
where the kit does not know the error; unless a changed value happens to equal another
release (a count plus 1 equal to a second count: 1 run in 16 for two counts of scale
4): it then gets that release's bar, as matching by value cannot tell the two apart.
Released values the function did not return are never kept.

>>> ledger = [{"helper": "count", "mechanism": "laplace", "epsilon": 0.5, "scale": 2.0,
...            "column": None, "details": {"released": 445}}]
>>> [bar] = error_bars({"patients": 445, "ratio": 0.3}, ledger)
>>> bar["path"], bar["points"], round(bar["half_width"], 2)
("output['patients']", [{'label': 'patients', 'value': 445}], 5.99)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

#: z such that the noise stays within z x scale with 95% probability. Laplace (and the
#: discrete Laplace OpenDP adds to integers, whose tail is no heavier):
#: P(|X| > t) = exp(-t / scale), so t = scale x ln 20. Gaussian: 1.96 standard deviations.
Z95 = {"laplace": math.log(20.0), "geometric": math.log(20.0), "gaussian": 1.959963984540054}
#: Most bars one chart draws (a histogram's bins beyond these are left out and said so).
MAX_POINTS = 60


def half_width_95(mechanism: str, scale: float) -> float | None:
    """How far the noise moves a value at most, 19 times in 20; None if unknown.

    >>> round(half_width_95("gaussian", 10.0), 1), half_width_95("exponential", 1.0)
    (19.6, None)
    """
    z = Z95.get(mechanism)
    if z is None or not isinstance(scale, int | float) or not math.isfinite(scale) or scale < 0:
        return None
    return z * float(scale)


def _leaves(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every number and Series in a returned value, with where it sits in it."""
    import numpy as np
    import pandas as pd

    if depth > 16:
        return
    if isinstance(value, np.generic) and value.dtype.kind in "iuf":
        yield path, value.item()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, value
    elif isinstance(value, pd.Series):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]", depth + 1)


def _short(path: str) -> str:
    """The last key of a path, for a label: ``output['n']`` -> ``n``; ``output`` -> ``value``.

    >>> _short("output['n']"), _short("output[0][2]"), _short("output")
    ('n', '2', 'value')
    """
    found = re.search(r"\[(['\"]?)([^\[\]]*)\1\]$", path)
    return found.group(2) if found else "value"


def _matches(leaf: Any, released: Any) -> list[dict[str, Any]] | None:
    """The points of ``leaf`` when it is ``released`` exactly, else None."""
    import pandas as pd

    if isinstance(leaf, pd.Series):
        if not isinstance(released, list) or len(released) != len(leaf):
            return None
        if leaf.tolist() != released:
            return None
        return [
            {"label": str(label), "value": v} for label, v in zip(leaf.index, released, strict=True)
        ]
    if isinstance(released, int | float) and not isinstance(released, bool) and leaf == released:
        return [{"label": "", "value": leaf}]
    return None


def error_bars(value: Any, ledger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per returned value that is a release of known scale (see the module)."""
    known = []
    for entry in ledger:
        details = entry.get("details") if isinstance(entry, dict) else None
        if not isinstance(details, dict) or "released" not in details:
            continue
        width = half_width_95(str(entry.get("mechanism")), entry.get("scale"))  # type: ignore[arg-type]
        if width is not None:
            known.append((entry, details["released"], width))
    bars: list[dict[str, Any]] = []
    if not known:
        return bars
    for path, leaf in _leaves(value, "output"):
        for entry, released, width in known:
            points = _matches(leaf, released)
            if points is None:
                continue
            for point in points:
                point["label"] = point["label"] or _short(path)
            bars.append(
                {
                    "path": path,
                    "helper": entry.get("helper"),
                    "column": entry.get("column"),
                    "mechanism": entry.get("mechanism"),
                    "epsilon": entry.get("epsilon"),
                    "scale": entry.get("scale"),
                    "half_width": width,
                    "points": points[:MAX_POINTS],
                    "left_out": max(len(points) - MAX_POINTS, 0),
                }
            )
            break
    return bars


def with_error_bars(
    manifest: dict[str, Any], blobs: dict[str, bytes], ledger: list[Any]
) -> dict[str, Any]:
    """``manifest`` with its error bars under ``"noise"`` (the result codec ignores the
    key), or unchanged when no returned value is a release of known scale."""
    if not any(isinstance(e, dict) and "released" in (e.get("details") or {}) for e in ledger):
        return manifest
    from datasite.contract.results import decode_result

    bars = error_bars(decode_result(manifest, blobs), ledger)
    return {**manifest, "noise": bars} if bars else manifest
