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
