"""What a function may return, and how it leaves the sandbox without pickle.

A returned value is encoded as a JSON *manifest* (a tree of typed nodes) plus named
*blobs*: Parquet for DataFrames, Series and NumPy arrays, skops for fitted
scikit-learn / diffprivlib estimators, raw bytes for ``bytes``. Everything else is JSON.

Supported values: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, NumPy
scalars and arrays (bool, integer, float, unicode), pandas ``DataFrame`` / ``Series``,
fitted estimators, and ``tuple`` / ``list`` / ``dict`` of these (dict keys: scalars).
Anything else fails with ``UnsupportedResult`` naming the type; a value whose encoding
exceeds the size cap fails with ``OutputTooLarge``.

Models decode into the loaded estimator (through ``load_model``: skops types on a
reviewed, type-by-type allowlist only, never ``trusted=True``); ``bytes`` decode as
bytes, so a function that returns ``skops.io.dumps(model)`` itself gets those bytes back
to load. Decoding reads only from memory: it creates, opens and touches no file.

>>> import numpy as np
>>> manifest, blobs = encode_result({"mean": 41.5, "hist": np.array([3, 4])})
>>> decode_result(manifest, blobs)["hist"].tolist()
[3, 4]
"""

from __future__ import annotations

import builtins
import io
import json
import math
import sys
from importlib import import_module
from types import ModuleType
from typing import Any

from datasite.contract.framing import check_blob_name

FORMAT = "datasite-result/1"
DEFAULT_MAX_BYTES = 64 * 1024**2
MAX_DEPTH = 64
ARRAY_KINDS = "biufU"
SCALAR_KINDS = "biuf"
#: Manifest node types an index label may have when the labels travel in the manifest.
_LABEL_TYPES = frozenset({"none", "bool", "int", "float", "str", "numpy_scalar"})


class ResultError(ValueError):
    """The value cannot leave the sandbox. The message is safe to show the researcher."""


class UnsupportedResult(ResultError):
    """The function returned a type the datasite cannot release."""


class OutputTooLarge(ResultError):
    """The encoded output exceeds ``Limits.max_output_bytes``."""


class UntrustedModelError(ValueError):
    """A skops blob refers to types outside the allowlist; they are listed in the message."""


#: Libraries whose class names an error message may show the researcher. A class the
#: researcher's code defines can spell a private value in its name, so it is never named.
_NAMED_LIBRARIES = frozenset(
    {"builtins", "collections", "datetime", "decimal", "fractions", "numpy", "pandas"}
    | {"pyarrow", "scipy", "sklearn", "diffprivlib", "opendp", "polars"}
)
_UNNAMED = "a class defined by the submitted code (its name is not shown)"


def _public_name(name: str) -> str:
    """``name`` if it is a library's class (already imported: nothing is imported to
    decide), else a fixed phrase."""
    import sys

    module, _, attr = name.rpartition(".")
    if module.split(".")[0] not in _NAMED_LIBRARIES or module not in sys.modules:
        return _UNNAMED
    found = getattr(sys.modules[module], attr, None)
    if not isinstance(found, type) or f"{found.__module__}.{found.__qualname__}" != name:
        return _UNNAMED
    return name


def _type_name(value: object) -> str:
    cls = type(value)
    if cls.__module__ == "builtins" and getattr(builtins, cls.__name__, None) is cls:
        return cls.__name__
    return _public_name(f"{cls.__module__}.{cls.__qualname__}")


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
        polars = _polars_kind(value)
        if polars in ("DataFrame", "Series"):  # a Context query's .collect(): pandas on arrival
            return self.node(value.to_pandas(), depth)
        if polars == "LazyFrame":
            raise UnsupportedResult(
                "The function returned a Polars LazyFrame (a plan, not a result): return "
                "its .collect()."
            )
        if isinstance(value, pd.DataFrame):
            frame, labels = self._labels(value, depth)
            node = {"type": "dataframe", "blob": self._blob(_parquet(frame), "parquet")}
            return {**node, **labels}
        if isinstance(value, pd.Series):
            name = value.name if isinstance(value.name, str | int | float | None) else None
            frame, labels = self._labels(value.to_frame(name="values"), depth)
            node = {"type": "series", "name": name, "blob": self._blob(_parquet(frame), "parquet")}
            return {**node, **labels}
        if type(value) in (list, tuple):
            items = [self.node(item, depth + 1) for item in value]
            return {"type": type(value).__name__, "items": items}
        if type(value) is dict:
            return {"type": "dict", "items": [self._pair(k, v, depth) for k, v in value.items()]}
        if _is_estimator(value):
            return self._model(value)
        raise UnsupportedResult(
            f"The function returned a value of type {_type_name(value)}, which the datasite "
            "cannot release. Return numbers, strings, NumPy arrays, pandas or Polars "
            "DataFrames or Series, fitted scikit-learn/diffprivlib models or skops bytes, "
            "or tuples, lists and dicts of these."
        )

    def _labels(self, frame: Any, depth: int) -> tuple[Any, dict[str, Any]]:
        """An index that mixes label types (``dp.histogram(..., categories=[0, 1])`` gives
        ``0, 1, "(other)"``) has no Parquet type: its labels travel in the manifest as
        scalar nodes, in order, and the table goes without it. Other indexes are Parquet's.
        """
        import pandas as pd

        index = frame.index
        if isinstance(index, pd.MultiIndex) or index.dtype != object:
            return frame, {}
        if len({type(label) for label in index}) <= 1:
            return frame, {}
        labels = [self.node(label, depth + 1) for label in index]
        if any(node["type"] not in _LABEL_TYPES for node in labels):
            raise UnsupportedResult(
                "A returned table's index mixes label types and holds something other "
                "than numbers, strings, booleans or None."
            )
        name = index.name if isinstance(index.name, str | int | float | None) else None
        return frame.reset_index(drop=True), {"index": labels, "index_name": name}

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
        skio = skops_io()
        data = skio.dumps(model)
        refused = _refused_types(skio.get_untrusted_types(data=data))
        if refused:
            raise UnsupportedResult(
                "The returned model contains types outside the allowlist of trusted "
                f"types: {', '.join(sorted({_public_name(n) for n in refused}))}."
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
            "A returned DataFrame or Series cannot be stored as Parquet "
            f"({type(exc).__name__}); use string column names and plain column types "
            "(one type per column and per index)."
        ) from exc
    return sink.getvalue()


def _polars_kind(value: object) -> str | None:
    """``DataFrame``, ``Series`` or ``LazyFrame`` for a Polars value (without importing
    Polars for other values), else None."""
    cls = type(value)
    if cls.__module__.split(".", 1)[0] != "polars":
        return None
    return cls.__name__ if cls.__name__ in ("DataFrame", "Series", "LazyFrame") else None


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
            return self._index(pd.read_parquet(io.BytesIO(self.blob(node))), node)
        if kind == "series":
            frame = self._index(pd.read_parquet(io.BytesIO(self.blob(node))), node)
            return frame["values"].rename(node.get("name"))
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

    def _index(self, frame: Any, node: dict[str, Any]) -> Any:
        """Put back the labels ``_Encoder._labels`` carried in the manifest."""
        import pandas as pd

        if "index" not in node:
            return frame
        nodes = node["index"]
        if len(nodes) != len(frame) or any(n.get("type") not in _LABEL_TYPES for n in nodes):
            raise ValueError("The result manifest's index does not fit its table.")
        labels = [self.value(label, 1) for label in nodes]
        frame.index = pd.Index(labels, dtype=object, name=node.get("index_name"))
        return frame


def decode_result(manifest: dict[str, Any], blobs: dict[str, bytes]) -> Any:
    """Turn ``(manifest, blobs)`` from ``encode_result`` back into Python values."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"Not a {FORMAT} manifest.")
    return _Decoder(blobs).value(manifest["root"])


#: Every type a released model may contain beyond what skops trusts by itself (plain
#: Python values, NumPy arrays and dtypes, scikit-learn estimators). Reviewed one by one:
#: each is a class whose loading (``cls.__new__`` and its attributes) opens, creates and
#: touches no file and calls no function. The diffprivlib models are the kit's
#: (``researcher_kit.dp.models.MODELS``) and the rest of ``diffprivlib.models``;
#: ``sklearn.tree._tree.Tree`` holds the fitted trees of scikit-learn's and diffprivlib's
#: forests (PySyft's tutorial returns a ``RandomForestRegressor``). Anything else, such as
#: ``numpy.memmap`` (it maps a file), a ``GzipFile`` re-exported by some module, or any
#: function, is refused before anything is imported or built.
TRUSTED_TYPES = frozenset(
    {
        "diffprivlib.accountant.BudgetAccountant",
        "diffprivlib.models.forest.DecisionTreeClassifier",
        "diffprivlib.models.forest.RandomForestClassifier",
        "diffprivlib.models.k_means.KMeans",
        "diffprivlib.models.linear_regression.LinearRegression",
        "diffprivlib.models.logistic_regression.LogisticRegression",
        "diffprivlib.models.naive_bayes.GaussianNB",
        "diffprivlib.models.pca.PCA",
        "diffprivlib.models.standard_scaler.StandardScaler",
        "sklearn.tree._tree.Tree",
    }
)
#: Built-in classes skops may report that are plain values (no file, no code).
_TRUSTED_BUILTINS = frozenset(
    {"bool", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "set", "slice"}
    | {"str", "tuple", "range", "bytearray"}
)


def is_trusted_type(name: str) -> bool:
    """True only for a type on the reviewed allowlist (``TRUSTED_TYPES``) or a plain
    built-in value class. Nothing is imported to decide, and no function qualifies.

    >>> is_trusted_type("sklearn.tree._tree.Tree"), is_trusted_type("numpy.memmap")
    (True, False)
    """
    module, _, attr = name.rpartition(".")
    if module == "builtins":
        return attr in _TRUSTED_BUILTINS
    return name in TRUSTED_TYPES


#: skops.io lists scikit-learn's estimators with ``pkgutil.walk_packages``, which imports
#: every package it walks into, even those the listing then skips: scikit-learn's torch
#: adapter among them, and with it torch (2.3 s of CPU and ~300 MB in every sandbox
#: worker, client and server that loads a model). Hidden while skops.io loads: the
#: listing is the same (207 types).
NOT_WALKED = "sklearn.externals.array_api_compat.torch"


def skops_io() -> ModuleType:
    """``skops.io``, imported (the first time) without importing torch.

    >>> skops_io().dumps  # doctest: +ELLIPSIS
    <function dumps at ...>
    """
    if "skops.io" in sys.modules or NOT_WALKED in sys.modules:
        return import_module("skops.io")
    sys.modules[NOT_WALKED] = None  # type: ignore[assignment]  # its import fails: skipped
    try:
        return import_module("skops.io")
    finally:
        sys.modules.pop(NOT_WALKED, None)


def _refused_types(names: list[str]) -> list[str]:
    return sorted(name for name in names if not is_trusted_type(name))


def trust_reviewed_types_in_skops() -> None:
    """Make ``skops.io.loads`` in this process trust the reviewed allowlist, and take
    ``trusted`` as one type or name as well as a list.

    PySyft's tutorial checks and reloads its forest with
    ``loads(data, trusted=type(model))`` and ``trusted="sklearn.ensemble._forest.
    RandomForestRegressor"``: skops 0.16 wants a list and no longer trusts
    ``sklearn.tree._tree.Tree`` by default, so the tutorial would need a third change.
    Installed in the sandbox's worker (the function's own check) and by
    ``researcher_kit.syft_compat`` (the notebook); never in the server, whose only
    loader is ``load_model``. Types outside ``TRUSTED_TYPES`` stay untrusted: a file
    holding one is refused by skops as before. Installing twice changes nothing.
    """
    skio = skops_io()
    original = skio.loads
    if getattr(original, "trusts_reviewed_types", False):
        return

    def loads(data: bytes, trusted: Any = None) -> Any:
        if trusted is not None and not isinstance(trusted, list | tuple | set | frozenset):
            trusted = [trusted]
        from skops.io import get_untrusted_types

        reviewed = [name for name in get_untrusted_types(data=data) if is_trusted_type(name)]
        return original(data, trusted=[*(trusted or []), *reviewed])

    loads.trusts_reviewed_types = True  # type: ignore[attr-defined]
    loads.__doc__ = original.__doc__
    skio.loads = loads


def load_model(data: bytes) -> Any:
    """Load skops bytes, trusting only the allowlist (see ``is_trusted_type``).

    >>> from sklearn.linear_model import LinearRegression
    >>> from skops.io import dumps
    >>> model = load_model(dumps(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])))
    >>> round(float(model.coef_[0]), 6)
    2.0
    """
    skio = skops_io()
    get_untrusted_types, loads = skio.get_untrusted_types, skio.loads
    if not isinstance(data, bytes | bytearray):
        raise TypeError("load_model takes the model's bytes, never a path or a file.")
    data = bytes(data)
    try:
        reported = get_untrusted_types(data=data)
    except Exception as exc:
        raise UntrustedModelError(f"This is not a readable skops model file ({exc}).") from exc
    refused = _refused_types(reported)
    if refused:
        raise UntrustedModelError(
            "The model file contains types outside the reviewed allowlist of trusted "
            f"types, so it was not loaded: {', '.join(refused)}. Only plain values, NumPy "
            "arrays, scikit-learn estimators and the diffprivlib models load "
            "(see datasite.contract.results.TRUSTED_TYPES)."
        )
    model = loads(data, trusted=reported)
    _check_trees(model)
    return model


def _check_trees(model: Any) -> None:
    """Refuse a model whose fitted trees point outside themselves.

    ``sklearn.tree._tree.Tree`` is on the allowlist because loading it runs no code, but
    scikit-learn follows its node arrays without bounds checks when it predicts, so a
    crafted file (skops: "can crash the process ... or read out-of-bounds memory") must
    not get that far. Every child is a later node of the same tree or -1 (a leaf, both
    children), every split feature is below the tree's and its estimator's feature count
    (-2 at a leaf), and the value table has a row per node.
    """
    import numpy as np
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    stack: list[tuple[Any, int | None]] = [(model, None)]
    while stack:
        node, features = stack.pop()
        if id(node) in seen or len(seen) > 100_000:
            continue
        seen.add(id(node))
        if isinstance(node, Tree):
            _check_tree(node, features, np)
        elif isinstance(node, list | tuple):
            stack.extend((item, features) for item in node)
        elif isinstance(node, dict):
            stack.extend((item, features) for item in node.values())
        elif hasattr(node, "__dict__") and not isinstance(node, type):
            width = getattr(node, "n_features_in_", features)
            width = int(width) if isinstance(width, int | np.integer) else features
            stack.extend((item, width) for item in vars(node).values())
        elif isinstance(node, np.ndarray) and node.dtype == object:
            stack.extend((item, features) for item in node.ravel())


def _check_tree(tree: Any, features: int | None, np: Any) -> None:
    count = int(tree.node_count)
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    split = np.asarray(tree.feature)
    ids = np.arange(count)
    width = min(int(tree.n_features), features if features is not None else int(tree.n_features))
    leaf = (left == -1) & (right == -1)
    inner_ok = (left > ids) & (left < count) & (right > ids) & (right < count)
    feature_ok = np.where(leaf, split == -2, (split >= 0) & (split < width))
    sized = len(left) == len(right) == len(split) == count and len(tree.value) == count
    if not (count > 0 and sized and bool(np.all(leaf | inner_ok)) and bool(np.all(feature_ok))):
        raise UntrustedModelError(
            "The model file holds a decision tree whose nodes point outside it; it was "
            "not loaded (a tree like this can crash or read memory when it predicts)."
        )
