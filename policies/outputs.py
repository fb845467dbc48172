"""Looking at what a request returns: naming its parts, fingerprints, numeric components.

Only used inside the sandboxed child on mock data; fingerprints are hashes, so nothing
of the values leaves in a report.

>>> [name for name, _ in split((1.0, 2.0))]
['0', '1']
>>> fingerprint(1.5) == fingerprint(1.5) != fingerprint(1.6)
True
>>> numeric_components({"a": 1.0, "b": [2, 3]})
[('a', 1.0), ('b[0]', 2.0), ('b[1]', 3.0)]
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def split(value: Any) -> list[tuple[str, Any]]:
    """The named outputs of a returned value: tuple elements, dict values, or the value."""
    if isinstance(value, tuple):
        return [(str(i), v) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str | int) for k in value):
        return [(str(k), v) for k, v in value.items()]
    return [("return", value)]


def _canonical(value: Any, depth: int = 0) -> Any:
    if depth > 12:
        return "..."
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    if isinstance(value, np.ndarray):
        return [str(value.dtype), list(value.shape), hashlib.sha256(value.tobytes()).hexdigest()]
    if isinstance(value, pd.DataFrame | pd.Series):
        return pd.util.hash_pandas_object(value, index=True).astype(str).tolist()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_canonical(v, depth + 1) for v in items]
    if isinstance(value, dict):
        return {str(k): _canonical(v, depth + 1) for k, v in value.items()}
    try:  # estimators, sklearn's Cython trees and other objects: their pickled state
        state = value.__getstate__()
    except Exception:
        state = None
    if isinstance(state, dict):
        return [type(value).__qualname__, _canonical(state, depth + 1)]
    return _ADDRESS.sub("", repr(value))


def fingerprint(value: Any) -> str:
    """A hash that is equal for equal values (floats exactly, arrays by bytes)."""
    text = json.dumps(_canonical(value), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def numeric_components(value: Any, limit: int = 16, prefix: str = "") -> list[tuple[str, float]]:
    """Up to ``limit`` finite numbers inside ``value`` (scalars, arrays, lists, dicts)."""
    out: list[tuple[str, float]] = []

    def visit(v: Any, name: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(v, bool | np.bool_):
            out.append((name, float(v)))
        elif isinstance(v, int | float | np.integer | np.floating):
            if math.isfinite(float(v)):
                out.append((name, float(v)))
        elif isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
            for i, x in enumerate(v.ravel()[:limit]):
                visit(x, f"{name}[{i}]")
        elif isinstance(v, pd.Series) and v.dtype.kind in "biuf":
            visit(v.to_numpy(), name)
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                visit(x, f"{name}[{i}]")
        elif isinstance(v, dict):
            for k, x in v.items():
                visit(x, f"{name}.{k}" if name else str(k))

    visit(value, prefix)
    return out


def type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__.split(".")[0]
    return cls.__name__ if module == "builtins" else f"{module}.{cls.__name__}"
