"""What a function may return, and how it leaves the sandbox without pickle.

A returned value is encoded as a JSON *manifest* (a tree of typed nodes) plus named
*blobs*: Parquet for DataFrames, Series and NumPy arrays, skops for fitted
scikit-learn / diffprivlib estimators, raw bytes for ``bytes``. Everything else is JSON.

Supported values: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, NumPy
scalars and arrays (bool, integer, float, unicode), pandas ``DataFrame`` / ``Series``,
fitted estimators, and ``tuple`` / ``list`` / ``dict`` of these (dict keys: scalars).
Anything else fails with ``UnsupportedResult`` naming the type; a value whose encoding
exceeds the size cap fails with ``OutputTooLarge``.

Models decode into the loaded estimator (through ``load_model``: allowlisted skops
types only, never ``trusted=True``); ``bytes`` decode as bytes, so a function that
returns ``skops.io.dumps(model)`` itself gets those bytes back to load.

>>> import numpy as np
>>> manifest, blobs = encode_result({"mean": 41.5, "hist": np.array([3, 4])})
>>> decode_result(manifest, blobs)["hist"].tolist()
[3, 4]
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import math
from typing import Any

from datasite.contract.framing import check_blob_name

FORMAT = "datasite-result/1"
DEFAULT_MAX_BYTES = 64 * 1024**2
MAX_DEPTH = 64
ARRAY_KINDS = "biufU"
SCALAR_KINDS = "biuf"
TRUSTED_MODULE_PREFIXES = ("sklearn.", "diffprivlib.", "numpy.")


class ResultError(ValueError):
    """The value cannot leave the sandbox. The message is safe to show the researcher."""


class UnsupportedResult(ResultError):
    """The function returned a type the datasite cannot release."""


class OutputTooLarge(ResultError):
    """The encoded output exceeds ``Limits.max_output_bytes``."""


class UntrustedModelError(ValueError):
    """A skops blob refers to types outside the allowlist; they are listed in the message."""


def _type_name(value: object) -> str:
    cls = type(value)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _json_float(value: float) -> float | str:
    """JSON (and PostgreSQL JSONB) has no NaN or infinity: those travel as strings."""
    return value if math.isfinite(value) else repr(value)


class _Encoder:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.blobs: dict[str, bytes] = {}
        self.used = 0

    def _charge(self, size: int) -> None:
        self.used += size
        if self.used > self.max_bytes:
            raise OutputTooLarge(
                f"The function's output is larger than the {self.max_bytes}-byte limit."
            )

    def _blob(self, data: bytes, suffix: str) -> str:
        self._charge(len(data))
        name = f"{len(self.blobs)}.{suffix}"
        self.blobs[name] = data
        return name

    def node(self, value: Any, depth: int = 0) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise UnsupportedResult(f"The returned value is nested deeper than {MAX_DEPTH}.")
        import numpy as np
        import pandas as pd

        if value is None or isinstance(value, bool):
            return {"type": "none"} if value is None else {"type": "bool", "value": value}
        if type(value) is int:
            return {"type": "int", "value": value}
        if type(value) is float:
            return {"type": "float", "value": _json_float(value)}
        if type(value) is str:
            self._charge(len(value.encode()))
            return {"type": "str", "value": value}
        if type(value) in (bytes, bytearray):
            return {"type": "bytes", "blob": self._blob(bytes(value), "bin")}
        if isinstance(value, np.generic) and value.dtype.kind in SCALAR_KINDS:
            item = value.item()
            item = _json_float(item) if isinstance(item, float) else item
            return {"type": "numpy_scalar", "dtype": value.dtype.str, "value": item}
        if isinstance(value, np.ndarray):
            return self._array(value)
        if isinstance(value, pd.DataFrame):
            return {"type": "dataframe", "blob": self._blob(_parquet(value), "parquet")}
        if isinstance(value, pd.Series):
            name = value.name if isinstance(value.name, str | int | float | None) else None
            frame = value.to_frame(name="values")
            return {"type": "series", "name": name, "blob": self._blob(_parquet(frame), "parquet")}
        if type(value) in (list, tuple):
            items = [self.node(item, depth + 1) for item in value]
            return {"type": type(value).__name__, "items": items}
        if type(value) is dict:
            return {"type": "dict", "items": [self._pair(k, v, depth) for k, v in value.items()]}
        if _is_estimator(value):
            return self._model(value)
        raise UnsupportedResult(
            f"The function returned a value of type {_type_name(value)}, which the datasite "
            "cannot release. Return numbers, strings, NumPy arrays, pandas DataFrames or "
            "Series, fitted scikit-learn/diffprivlib models or skops bytes, or tuples, "
            "lists and dicts of these."
        )

    def _pair(self, key: Any, value: Any, depth: int) -> list[dict[str, Any]]:
        if not (key is None or type(key) in (str, int, float, bool)):
            raise UnsupportedResult(
                f"A returned dict has a key of type {_type_name(key)}; keys must be "
                "strings, numbers, booleans or None."
            )
        return [self.node(key, depth + 1), self.node(value, depth + 1)]

    def _array(self, array: Any) -> dict[str, Any]:
        import pyarrow as pa

        from datasite.contract.tables import write_parquet

        if array.dtype.kind not in ARRAY_KINDS:
            raise UnsupportedResult(
                f"A returned NumPy array has dtype {array.dtype.name}; only boolean, integer, "
                "float and string arrays can be released."
            )
        table = pa.table({"values": pa.array(array.ravel(order="C"))})
        sink = io.BytesIO()
        write_parquet(table, sink)
        return {
            "type": "ndarray",
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "blob": self._blob(sink.getvalue(), "parquet"),
        }

    def _model(self, model: Any) -> dict[str, Any]:
        from skops.io import dumps, get_untrusted_types

        data = dumps(model)
        refused = _refused_types(get_untrusted_types(data=data))
        if refused:
            raise UnsupportedResult(
                "The returned model contains types outside the allowlist of trusted "
                f"types: {', '.join(refused)}."
            )
        cls = type(model)
        return {
            "type": "model",
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "blob": self._blob(data, "skops"),
        }


def _parquet(frame: Any) -> bytes:
    import pyarrow as pa

    from datasite.contract.tables import write_parquet

    sink = io.BytesIO()
    try:
        write_parquet(pa.Table.from_pandas(frame), sink)
    except Exception as exc:
        raise UnsupportedResult(
            "A returned DataFrame cannot be stored as Parquet "
            f"({type(exc).__name__}); use string column names and plain column types."
        ) from exc
    return sink.getvalue()


def _is_estimator(value: object) -> bool:
    try:
        from sklearn.base import BaseEstimator
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return False
    return isinstance(value, BaseEstimator)


def encode_result(
    value: Any, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Encode a returned value as ``(manifest, blobs)``; raises ``ResultError``.

    >>> encode_result((1, "a"))[0]["root"]["items"][1]
    {'type': 'str', 'value': 'a'}
    """
    encoder = _Encoder(max_bytes)
    manifest = {"format": FORMAT, "root": encoder.node(value)}
    encoder._charge(len(json.dumps(manifest)))
    return manifest, encoder.blobs


def blob_names(manifest: dict[str, Any] | list[Any] | None) -> list[str]:
    """Every blob a manifest refers to, in order of first appearance.

    >>> blob_names({"format": FORMAT, "root": {"type": "bytes", "blob": "0.bin"}})
    ['0.bin']
    """
    found: list[str] = []
    stack: list[Any] = [manifest]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("blob"), str) and node["blob"] not in found:
                found.append(check_blob_name(node["blob"]))
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return found


def _float(value: float | str) -> float:
    if isinstance(value, str):
        if value not in ("nan", "inf", "-inf"):
            raise ValueError(f"Not a float: {value!r}")
        return float(value)
    return float(value)


def _numeric_dtype(text: str, kinds: str) -> Any:
    import numpy as np

    dtype = np.dtype(text)
    if dtype.kind not in kinds:
        raise ValueError(f"Refusing dtype {text!r} in a result manifest.")
    return dtype


class _Decoder:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def blob(self, node: dict[str, Any]) -> bytes:
        name = check_blob_name(node["blob"])
        if name not in self.blobs:
            raise ValueError(f"The result manifest refers to a missing blob {name!r}.")
        return self.blobs[name]

    def value(self, node: dict[str, Any], depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("The result manifest is nested too deeply.")
        kind = node["type"]
        simple = {"none": lambda: None, "bool": lambda: bool(node["value"])}
        if kind in simple:
            return simple[kind]()
        if kind == "int":
            return int(node["value"])
        if kind == "float":
            return _float(node["value"])
        if kind == "str":
            return str(node["value"])
        if kind == "bytes":
            return self.blob(node)
        if kind == "numpy_scalar":
            dtype = _numeric_dtype(node["dtype"], SCALAR_KINDS)
            raw = node["value"]
            return dtype.type(_float(raw) if dtype.kind == "f" else raw)
        if kind in ("list", "tuple"):
            items = [self.value(item, depth + 1) for item in node["items"]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {self.value(k, depth + 1): self.value(v, depth + 1) for k, v in node["items"]}
        return self._table_or_model(kind, node)

    def _table_or_model(self, kind: str, node: dict[str, Any]) -> Any:
        import pandas as pd

        if kind == "dataframe":
            return pd.read_parquet(io.BytesIO(self.blob(node)))
        if kind == "series":
            series = pd.read_parquet(io.BytesIO(self.blob(node)))["values"]
            return series.rename(node.get("name"))
        if kind == "ndarray":
            import numpy as np
            import pyarrow.parquet as pq

            dtype = _numeric_dtype(node["dtype"], ARRAY_KINDS)
            column = pq.read_table(io.BytesIO(self.blob(node))).column("values")
            flat = np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)
            return flat.reshape([int(n) for n in node["shape"]])
        if kind == "model":
            return load_model(self.blob(node))
        raise ValueError(f"Unknown result node type {kind!r}.")


def decode_result(manifest: dict[str, Any], blobs: dict[str, bytes]) -> Any:
    """Turn ``(manifest, blobs)`` from ``encode_result`` back into Python values."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"Not a {FORMAT} manifest.")
    return _Decoder(blobs).value(manifest["root"])


def is_trusted_type(name: str) -> bool:
    """True for classes (not functions) under sklearn./diffprivlib./numpy. or builtins.

    Only classes qualify, so a skops file cannot name a function such as ``numpy.load``
    or ``builtins.eval`` for the loader to call.
    """
    module, _, attr = name.rpartition(".")
    if module == "builtins":
        return isinstance(getattr(builtins, attr, None), type)
    if not name.startswith(TRUSTED_MODULE_PREFIXES):
        return False
    try:
        obj: Any = importlib.import_module(module)
    except ImportError:
        return False
    return isinstance(getattr(obj, attr, None), type)


def _refused_types(names: list[str]) -> list[str]:
    return sorted(name for name in names if not is_trusted_type(name))


def load_model(data: bytes) -> Any:
    """Load skops bytes, trusting only the allowlist (see ``is_trusted_type``).

    >>> from sklearn.linear_model import LinearRegression
    >>> from skops.io import dumps
    >>> model = load_model(dumps(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])))
    >>> round(float(model.coef_[0]), 6)
    2.0
    """
    from skops.io import get_untrusted_types, loads

    reported = get_untrusted_types(data=data)
    refused = _refused_types(reported)
    if refused:
        raise UntrustedModelError(
            "The model file contains types outside the allowlist of trusted types "
            f"(sklearn., diffprivlib., numpy. classes and builtins): {', '.join(refused)}."
        )
    return loads(data, trusted=reported)
