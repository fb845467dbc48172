"""Neighbouring versions of a (mock) table, for the dry-run and the empirical audit.

DP compares a dataset with its neighbours: one row removed, one added, one changed.
Changing a row to the opposite extreme of every numeric column moves bounded sums and
means as far as one row can, which is what an audit wants to see.

>>> import pandas as pd
>>> df = pd.DataFrame({"age": [20, 30, 80], "city": ["a", "b", "c"]})
>>> changed = change_one(df, 0)
>>> int(changed["age"][0]), len(remove_one(df, 0)), len(add_one(df))
(80, 2, 4)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def _extreme_row(df: pd.DataFrame, row: int) -> dict[str, object]:
    """Row ``row`` moved, column by column, to the far end of the column's range."""
    out: dict[str, object] = {}
    for column in df.columns:
        series = df[column]
        value = series.iloc[row]
        if pd.api.types.is_bool_dtype(series):
            out[column] = not bool(value)
        elif pd.api.types.is_numeric_dtype(series) and series.notna().any():
            low, high = series.min(), series.max()
            out[column] = high if pd.isna(value) or value - low <= high - value else low
        else:
            others = series[series != value].dropna()
            out[column] = others.iloc[0] if len(others) else value
    return out


def change_one(df: pd.DataFrame, row: int = 0) -> pd.DataFrame:
    """``df`` with one row changed to the opposite extremes (same size)."""
    out = df.copy()
    if len(out) == 0:
        return out
    for column, value in _extreme_row(df, row).items():
        out.iloc[row, out.columns.get_loc(column)] = value
    return out


def remove_one(df: pd.DataFrame, row: int = 0) -> pd.DataFrame:
    """``df`` without row ``row``."""
    return df.drop(df.index[row]).reset_index(drop=True) if len(df) else df.copy()


def add_one(df: pd.DataFrame, like: int = 0) -> pd.DataFrame:
    """``df`` with one extra row at the extremes (opposite to row ``like``)."""
    if len(df) == 0:
        return df.copy()
    extra = pd.DataFrame([_extreme_row(df, like)]).astype(df.dtypes.to_dict(), errors="ignore")
    return pd.concat([df, extra], ignore_index=True)


def bootstrap(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """A same-size resample of ``df`` (rows drawn with replacement): different data."""
    if len(df) == 0:
        return df.copy()
    rng = np.random.default_rng(seed)
    return df.iloc[rng.integers(0, len(df), len(df))].reset_index(drop=True)


def perturbed(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """A resample of ``df`` with every numeric value nudged: different data, same shape.

    Floats move by a thousandth of their column's spread, integers by -1, 0 or +1, so
    extremes and order statistics change too (a plain resample often keeps the max).
    """
    out = bootstrap(df, seed)
    rng = np.random.default_rng(seed + 1)
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            continue
        if pd.api.types.is_integer_dtype(series):
            out[column] = series + rng.integers(-1, 2, len(out)).astype(series.dtype)
        else:
            spread = float(series.std()) if len(series) > 1 else 1.0
            jitter = rng.uniform(-1e-3, 1e-3, len(out)) * (spread if spread > 0 else 1.0)
            out[column] = series + jitter
    return out


NEIGHBOURS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "change_first": lambda df: change_one(df, 0),
    "change_last": lambda df: change_one(df, len(df) - 1),
    "remove_first": lambda df: remove_one(df, 0),
    "remove_last": lambda df: remove_one(df, len(df) - 1),
    "add_extreme": lambda df: add_one(df, 0),
}


def neighbour_inputs(
    inputs: dict[str, object], make: Callable[[pd.DataFrame], pd.DataFrame]
) -> dict[str, object]:
    """The inputs with every DataFrame replaced by its neighbour (others unchanged)."""
    return {k: make(v) if isinstance(v, pd.DataFrame) else v for k, v in inputs.items()}


# -- adversarial neighbours for the audit (Ding et al., CCS 2018) ------------------------

#: The privacy units the audit knows: add/remove one row (the default), or change one row.
PRIVACY_UNITS = ("add_remove", "change")


def _bounds(df: pd.DataFrame) -> dict[str, tuple[object, object]]:
    """Each column's low and high end (numeric: min/max of the mock; else two values)."""
    out: dict[str, tuple[object, object]] = {}
    for column in df.columns:
        series = df[column].dropna()
        if len(series) == 0:
            continue
        if pd.api.types.is_bool_dtype(series):
            out[column] = (False, True)
        elif pd.api.types.is_numeric_dtype(series):
            out[column] = (series.min(), series.max())
        else:
            common = series.value_counts().index
            out[column] = (common[0], common[-1])
    return out


def patterns(df: pd.DataFrame, limit: int = 4) -> dict[str, dict[str, object]]:
    """Rows that push the table's columns the paper's ways, one column per "query".

    If each column (or a threshold on it) feeds one query, a row at the high end of one
    column and the low end of the rest moves one query up and the rest down ("one above,
    rest below"); all high / all low move every query one way; half and half, the X shape.
    """
    bounds = _bounds(df)
    columns = list(bounds)
    if not columns:
        return {}

    def row(high: set[str]) -> dict[str, object]:
        return {c: bounds[c][1] if c in high else bounds[c][0] for c in columns}

    half = set(columns[: max(1, len(columns) // 2)])
    found = {"all_high": row(set(columns)), "all_low": row(set())}
    if len(columns) > 1:
        found["half_high"] = row(half)
        found["half_low"] = row(set(columns) - half)
        for c in columns[:limit]:
            found[f"one_high_{c}"] = row({c})
            found[f"one_low_{c}"] = row(set(columns) - {c})
    return found


def _with_row(df: pd.DataFrame, values: dict[str, object], at: int | None) -> pd.DataFrame:
    extra = pd.DataFrame([values]).astype(df.dtypes.to_dict(), errors="ignore")
    if at is None:
        return pd.concat([df, extra], ignore_index=True)
    out = df.copy()
    for column, value in values.items():
        out.iloc[at, out.columns.get_loc(column)] = value
    return out


def audit_pairs(
    df: pd.DataFrame, unit: str = "add_remove"
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """Neighbouring pairs ``(description, D, D')`` under ``unit``, built from the mock.

    ``add_remove``: the mock against the mock with one row removed (first, last) or one
    pattern row added. ``change``: the mock with its first row set to a pattern against
    the mock with that row set to the opposite pattern.

    >>> df = pd.DataFrame({"a": [0, 1, 1], "b": [0.0, 2.0, 1.0]})
    >>> [(name, len(d), len(e)) for name, d, e in audit_pairs(df)][1:3]
    [('remove the last row', 3, 2), ('add the row {a=1, b=2} (all_high)', 3, 4)]
    """
    if len(df) < 2:
        return []
    if unit == "change":
        rows = patterns(df)
        opposite = {"all_high": "all_low", "half_high": "half_low"}
        pairs = []
        for name, values in rows.items():
            other = opposite.get(name) or (
                name.replace("one_high", "one_low") if name.startswith("one_high") else None
            )
            if other and other in rows:
                pairs.append(
                    (
                        f"change the first row to {describe_row(rows[other])} in one and "
                        f"to {describe_row(values)} in the other",
                        _with_row(df, rows[other], 0),
                        _with_row(df, values, 0),
                    )
                )
        return _distinct(pairs)
    pairs = [
        ("remove the first row", df, remove_one(df, 0)),
        ("remove the last row", df, remove_one(df, len(df) - 1)),
    ]
    rows = patterns(df)
    if rows:  # every pattern row typed at once (one astype), then one concat each
        extra = pd.DataFrame(list(rows.values())).astype(df.dtypes.to_dict(), errors="ignore")
        for k, (name, values) in enumerate(rows.items()):
            table = pd.concat([df, extra.iloc[k : k + 1]], ignore_index=True)
            pairs.append((f"add the row {describe_row(values)} ({name})", df, table))
    return _distinct(pairs)


def _distinct(
    pairs: list[tuple[str, pd.DataFrame, pd.DataFrame]],
) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """The pairs without repeats (two patterns can build the same tables), first kept.

    Tables are compared by size and the rows that differ from the mock (the last row of
    a grown table, the first and last rows otherwise): cheap, and enough for the pairs
    :func:`audit_pairs` builds.
    """
    seen: set[tuple[object, ...]] = set()
    out = []
    for name, d, d2 in pairs:
        key = tuple(_edge(t) for t in (d, d2))
        if key not in seen:
            seen.add(key)
            out.append((name, d, d2))
    return out


def _edge(table: pd.DataFrame) -> tuple[object, ...]:
    rows = table.iloc[[0, -1]] if len(table) else table
    return (len(table), *map(str, rows.to_numpy().ravel().tolist()))


def describe_row(values: dict[str, object], limit: int = 6) -> str:
    shown = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]
    return "{" + ", ".join(shown[:limit]) + (", ..." if len(shown) > limit else "") + "}"
