"""Row filters of release calls, evaluated on a pandas frame (vectorized).

A filter is the JSON tree ``datasite.contract.release.check_filter`` accepts (built by
comparing blind columns, never code). The releaser evaluates it on the whole table, or
batch by batch on a partitioned one; both use this module, so they keep the same rows.

>>> import pandas as pd
>>> frame = pd.DataFrame({"age": [20, 40, None]})
>>> tree = {"not": {"cmp": ">", "left": {"col": "age"}, "right": {"lit": 30}}}
>>> mask(tree, frame).tolist()
[True, False, True]
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pandas as pd

COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
           "==": operator.eq, "!=": operator.ne}  # fmt: skip


def mask(node: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """The rows of ``frame`` a checked filter tree keeps, as a boolean array."""
    return as_mask(evaluate(node, frame), frame)


def evaluate(node: dict[str, Any], frame: pd.DataFrame) -> Any:
    """A checked filter tree (or a label expression) evaluated on ``frame``."""
    if "col" in node:
        return frame[node["col"]]
    if "lit" in node:
        return node["lit"]
    if "cmp" in node:
        left, right = evaluate(node["left"], frame), evaluate(node["right"], frame)
        return COMPARE[node["cmp"]](left, right)
    if "and" in node or "or" in node:
        parts = [as_mask(evaluate(c, frame), frame) for c in (node.get("and") or node["or"])]
        combine = np.logical_and if "and" in node else np.logical_or
        return combine.reduce(parts) if parts else np.full(len(frame), "and" in node)
    if "not" in node:
        return ~as_mask(evaluate(node["not"], frame), frame)
    if "isin" in node:
        return pd.Series(evaluate(node["isin"], frame)).isin(node["values"]).to_numpy()
    return pd.isna(evaluate(node["isnull"], frame))


def as_mask(value: Any, frame: pd.DataFrame) -> np.ndarray:
    if np.isscalar(value):
        return np.full(len(frame), bool(value))
    return np.asarray(pd.Series(value).fillna(False), dtype=bool)


def may_match(node: dict[str, Any] | None, lows: dict[str, Any], highs: dict[str, Any]) -> bool:
    """False only when no row with column values in ``[lows, highs]`` can pass ``node``.

    Used to skip Parquet row groups by their min/max statistics (predicate push-down).
    Only a top-level ``and`` of ``column <op> literal`` comparisons is looked at; anything
    else may match, so skipping is always safe.

    >>> tree = {"cmp": ">", "left": {"col": "age"}, "right": {"lit": 65}}
    >>> may_match(tree, {"age": 18}, {"age": 60}), may_match(tree, {"age": 18}, {"age": 70})
    (False, True)
    """
    if node is None:
        return True
    parts = node["and"] if "and" in node else [node]
    for part in parts:
        if "cmp" not in part or "col" not in part["left"] or "lit" not in part["right"]:
            continue
        column, op, literal = part["left"]["col"], part["cmp"], part["right"]["lit"]
        low, high = lows.get(column), highs.get(column)
        if low is None or high is None or isinstance(literal, bool) or literal is None:
            continue
        try:
            impossible = {
                "<": low >= literal, "<=": low > literal, ">": high <= literal,
                ">=": high < literal, "==": literal < low or literal > high, "!=": False,
            }[op]  # fmt: skip
        except TypeError:  # statistics of another type than the literal
            continue
        if impossible:
            return False
    return True
