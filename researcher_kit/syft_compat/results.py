"""Results as PySyft hands them back: every value wrapped, the value itself in
``.syft_action_data``.

PySyft returns an ``ActionObject``; indexing it gives another ``ActionObject``, so the
tutorial's ``result[1]`` prints the number and ``result[0].syft_action_data`` is the
skops bytes. Attribute access reaches the wrapped value directly.

>>> result = ActionObject((b"model", 0.25))
>>> print("mse:", result[1])
mse: 0.25
>>> result[0].syft_action_data
b'model'
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any


class ActionObject:
    """A value computed on the site, as PySyft's result wrapper shows it."""

    __slots__ = ("syft_action_data",)

    def __init__(self, value: Any) -> None:
        object.__setattr__(self, "syft_action_data", value)

    def get(self) -> Any:
        """The plain value (PySyft's ``.get()``)."""
        return self.syft_action_data

    def __getattr__(self, name: str) -> Any:
        if name == "syft_action_data":  # not set yet (copy/unpickle): no recursion
            raise AttributeError(name)
        return getattr(self.syft_action_data, name)

    def __getitem__(self, key: Any) -> ActionObject:
        return ActionObject(self.syft_action_data[key])

    def __iter__(self) -> Iterator[ActionObject]:
        return (ActionObject(v) for v in self.syft_action_data)

    def __len__(self) -> int:
        return len(self.syft_action_data)

    def __bool__(self) -> bool:
        return bool(self.syft_action_data)

    def __float__(self) -> float:
        return float(self.syft_action_data)

    def __int__(self) -> int:
        return int(self.syft_action_data)

    def __eq__(self, other: object) -> Any:
        other = other.syft_action_data if isinstance(other, ActionObject) else other
        return self.syft_action_data == other

    __hash__ = None  # type: ignore[assignment]  # compares like its value, which may be mutable

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        import numpy as np

        return np.asarray(self.syft_action_data, dtype=dtype)

    def __str__(self) -> str:
        return str(self.syft_action_data)

    def __format__(self, spec: str) -> str:
        return format(self.syft_action_data, spec)

    def __repr__(self) -> str:
        return f"Pointer:\n{self.syft_action_data!r}"

    def _repr_html_(self) -> str:
        value = self.syft_action_data
        inner = getattr(value, "_repr_html_", None)
        body = inner() if callable(inner) else f"<pre>{html.escape(repr(value))}</pre>"
        return f"<div><b>Pointer</b>{body}</div>"
