"""A k-anonymous (and l-diverse) copy of a table, for an owner who wants to publish rows.

``datasite.anonymity`` *measures* k and l; this module *reaches* them, with anjana's
Datafly-style search (``anjana.anonymity.k_anonymity`` / ``l_diversity``): it generalises
the quasi-identifier with the most distinct values one level up its hierarchy, again and
again, until the table is k-anonymous once at most ``max_suppressed_percent`` of the rows
(those in groups still under k) are dropped. Identifier columns are replaced by ``*``.
The result is checked again by :func:`datasite.anonymity.check_anonymity` (pycanon
cross-check included); a table that anjana says is done but that check finds below k is
an error, never a release.

Hierarchies: an owner may give, per quasi-identifier, a list of levels, each a mapping
from the original value (as text) to its generalisation (``{"10115": "1011*"}``); level 0
is the value itself. Without one, :func:`default_hierarchy` builds one: numbers go into
intervals of growing width (``[40, 50)``, ``[40, 60)``, ...), codes of one length lose
their last characters (``1011*``, ``101**``), anything else goes straight to ``*``.

This is not differential privacy: the rows themselves are published, generalised. It is
an owner's tool (the owner reads the real table anyway); the site audits each use.

anjana 1.2.3 pins pandas 2.3.3 and checks its arguments with beartype: it is installed
``--no-deps`` (like pycanon) and called on object-dtype columns with pandas' string
inference off, so that its ``.values`` are NumPy arrays under pandas 3.

>>> import pandas as pd
>>> frame = pd.DataFrame({"age": [31, 33, 35, 38, 52, 55, 57, 59],
...                       "zip": ["10115", "10117", "10115", "10119",
...                               "20095", "20097", "20095", "20099"]})
>>> out = generalise(frame, ["age", "zip"], k=4, max_suppressed_percent=0)
>>> out.report.k, out.levels, out.suppressed
(4, {'age': 3, 'zip': 1}, 0)
>>> sorted(set(zip(out.table["age"], out.table["zip"])))
[('[30, 40)', '1011*'), ('[50, 60)', '2009*')]
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from datasite.anonymity import AnonymityReport, check_anonymity, unknown_columns
from datasite.errors import Invalid

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger("datasite.generalisation")
#: The value a fully generalised cell (and every identifier) shows.
STAR = "*"
#: How many interval levels a numeric hierarchy gets before ``*``.
NUMERIC_LEVELS = 6


@dataclass
class Generalised:
    """The k-anonymous copy, how far each QI was generalised, and its check."""

    table: pd.DataFrame
    levels: dict[str, int]  # 0: as it was; the last level is "*"
    suppressed: int  # rows dropped because their group stayed under k
    report: AnonymityReport  # k and l of ``table``, measured again

    def to_dict(self) -> dict[str, Any]:
        """The report without the table (sizes and levels; the smallest groups' values
        are the owner's, like ``datasite.anonymity``'s report)."""
        return {
            "levels": self.levels,
            "suppressed": self.suppressed,
            "rows": len(self.table),
            **self.report.to_dict(),
        }


def _nice_width(span: float, bins: int) -> float:
    """A round interval width (1, 2 or 5 times a power of ten) giving about ``bins``."""
    raw = span / max(bins, 1)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _label(low: float, width: float) -> str:
    show = (lambda v: f"{v:g}") if width < 1 else (lambda v: f"{int(v)}")
    return f"[{show(low)}, {show(low + width)})"


def default_hierarchy(column: pd.Series) -> list[np.ndarray]:
    """Levels for one column, level 0 first (the values as they are), ``*`` last.

    >>> import pandas as pd
    >>> [list(level) for level in default_hierarchy(pd.Series(["ab1", "ab2"]))]
    [['ab1', 'ab2'], ['ab*', 'ab*'], ['a**', 'a**'], ['*', '*']]
    """
    import numpy as np
    import pandas as pd

    values = column.to_numpy(dtype=object)
    star = np.full(len(values), STAR, dtype=object)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        numbers = column.to_numpy(dtype=float)
        finite = numbers[np.isfinite(numbers)]
        if finite.size == 0:
            return [values, star]
        low, high = float(finite.min()), float(finite.max())
        width = _nice_width(high - low, 20)
        levels = [values]
        for _ in range(NUMERIC_LEVELS):
            starts = np.floor(numbers / width) * width
            labels = {s: _label(s, width) for s in np.unique(starts[np.isfinite(starts)])}
            level = np.array([labels.get(s, STAR) for s in starts], dtype=object)
            levels.append(level)
            if len(labels) <= 1:
                break
            width = _nice_width(width * 1.5, 1)  # the next step of 1, 2, 5, 10, 20, ...
        return [*levels, star]
    text = column.astype(str).to_numpy(dtype=object)
    lengths = {len(t) for t in text}
    if len(lengths) == 1 and (length := lengths.pop()) >= 2:  # codes: postcodes, ICD, ...
        cut = [
            np.array([t[: length - i] + STAR * i for t in text], dtype=object)
            for i in range(1, length)
        ]
        return [values, *cut, star]
    return [values, star]


def _owner_hierarchy(column: pd.Series, levels: list[dict[str, Any]]) -> list[np.ndarray]:
    """An owner's hierarchy (level 1 first, as value-to-label maps) as anjana's arrays."""
    import numpy as np

    text = column.astype(str)
    arrays = [column.to_numpy(dtype=object)]
    for number, mapping in enumerate(levels, start=1):
        mapped = text.map({str(k): str(v) for k, v in mapping.items()})
        unmapped = sorted(set(text[mapped.isna()]))
        if unmapped:
            shown = ", ".join(map(repr, unmapped[:5]))
            raise Invalid(
                f"Hierarchy of {column.name!r}, level {number}, has no label for "
                f"{len(unmapped)} value(s): {shown}."
            )
        arrays.append(mapped.to_numpy(dtype=object))
    if not (arrays[-1] == STAR).all():
        arrays.append(np.full(len(column), STAR, dtype=object))
    return arrays


@contextlib.contextmanager
def _pandas_for_anjana() -> Iterator[None]:
    """Object columns and NumPy ``.values``, as anjana's type checks expect."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 says the option goes away in 4
        with pd.option_context("future.infer_string", False):
            yield


def generalise(
    frame: pd.DataFrame,
    quasi_identifiers: list[str],
    k: int,
    *,
    sensitive: str | None = None,
    l: int | None = None,  # noqa: E741 - the property's name
    identifiers: list[str] | None = None,
    max_suppressed_percent: float = 5.0,
    hierarchies: dict[str, list[dict[str, Any]]] | None = None,
) -> Generalised:
    """Generalise ``frame`` until it is ``k``-anonymous on ``quasi_identifiers`` (and
    ``l``-diverse on ``sensitive`` when both are given), dropping at most
    ``max_suppressed_percent`` of its rows; :class:`~datasite.errors.Invalid` when the
    input is wrong or k cannot be reached."""
    import pandas as pd

    qis = [str(q) for q in quasi_identifiers]
    ids = [str(i) for i in identifiers or []]
    if k < 1 or (l is not None and l < 1):
        raise Invalid("k and l are whole numbers of at least 1.")
    if (sensitive is None) != (l is None):
        raise Invalid("l-diversity needs both a sensitive column and l.")
    if not 0 <= max_suppressed_percent <= 100:
        raise Invalid("max_suppressed_percent is between 0 and 100.")
    named = qis + ids + ([sensitive] if sensitive else [])
    if not qis or len(set(named)) != len(named):
        raise Invalid("Name at least one quasi-identifier, and each column once.")
    missing = unknown_columns(frame.columns, named)
    if missing:
        raise Invalid(
            f"Unknown column(s) {', '.join(map(repr, missing))}; the table's columns are "
            f"{', '.join(map(str, frame.columns))}."
        )
    if len(frame) == 0:
        raise Invalid("The table has no rows.")
    extra = set(hierarchies or {}) - set(qis)
    if extra:
        raise Invalid(f"Hierarchies given for columns that are not QIs: {sorted(extra)}.")
    from anjana.anonymity import k_anonymity_inner, l_diversity

    with _pandas_for_anjana():
        data = frame.reset_index(drop=True).astype(
            {c: object for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}
        )
        levels = {
            q: dict(enumerate(_owner_hierarchy(data[q], hierarchies[q])))
            if q in (hierarchies or {})
            else dict(enumerate(default_hierarchy(data[q])))
            for q in qis
        }
        try:
            if sensitive is None:
                out, suppressed, used = k_anonymity_inner(
                    data, ids, qis, k, max_suppressed_percent, levels
                )
            else:
                out = l_diversity(data, ids, qis, sensitive, k, l, max_suppressed_percent, levels)
                suppressed, used = len(data) - len(out), _levels_used(out, levels)
        except Exception as exc:  # anjana's own failures: the owner's settings, named
            log.warning("anjana failed: %r", exc)
            raise Invalid(f"The generalisation failed ({type(exc).__name__}).") from None
    if out is None or len(out) == 0:
        raise Invalid(
            f"k={k} cannot be reached on {', '.join(qis)} even with every hierarchy at its "
            f"top while dropping at most {max_suppressed_percent:g}% of the rows."
        )
    out = out.drop(columns=[c for c in ("index",) if c not in frame.columns and c in out])
    out = out.reset_index(drop=True)[list(frame.columns)]
    report = check_anonymity(out, qis, [sensitive] if sensitive else None, k=k)
    if not report.passes or (l is not None and (report.l or 0) < l):
        raise Invalid(f"The generalised table does not reach the asked k or l: {report.summary()}.")
    return Generalised(out, {q: int(used.get(q, 0)) for q in qis}, int(suppressed), report)


def _levels_used(out: pd.DataFrame, levels: dict[str, dict[int, Any]]) -> dict[str, int]:
    """Which level of each hierarchy ``out``'s column shows (l_diversity does not say)."""
    used = {}
    for q, hierarchy in levels.items():
        seen = set(out[q].astype(str))
        used[q] = next((n for n, level in hierarchy.items() if seen <= {str(v) for v in level}), 0)
    return used
