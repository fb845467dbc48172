"""The researcher's own machine: a result from a malicious or compromised site.

``load_model`` and ``decode_result`` trust only a reviewed, type-by-type allowlist: a
skops file naming ``numpy.memmap`` (maps a file), a ``GzipFile`` that some library
module happens to re-export, or a function is refused with a clear message before
anything is imported or built, and nothing is written to disk.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from skops.io import dumps

from datasite.contract.results import (
    TRUSTED_TYPES,
    UntrustedModelError,
    decode_result,
    encode_result,
    is_trusted_type,
    load_model,
)


def _hostile(module: str, cls: str, attributes: dict[str, object]) -> bytes:
    """A skops file whose top object is ``module.cls`` built from ``attributes``."""
    content = {
        key: {
            "__class__": "str",
            "__module__": "builtins",
            "__loader__": "JsonNode",
            "content": json.dumps(value),
            "is_json": True,
            "__id__": index,
        }
        for index, (key, value) in enumerate(attributes.items(), start=2)
    }
    schema = {
        "__class__": cls,
        "__module__": module,
        "__loader__": "ObjectNode",
        "content": {
            "__class__": "dict",
            "__module__": "builtins",
            "__loader__": "DictNode",
            "content": content,
            "key_types": {
                "__class__": "list",
                "__module__": "builtins",
                "__loader__": "ListNode",
                "content": [
                    {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}
                    for _ in attributes
                ],
                "__id__": 1000,
            },
            "__id__": 1,
        },
        "__id__": 0,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return sink.getvalue()


def _files_under(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test runs in an empty folder; the hostile files aim at it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _hostile_files(target: Path) -> dict[str, bytes]:
    from sklearn.preprocessing import FunctionTransformer

    return {
        "numpy.memmap": _hostile(
            "numpy", "memmap", {"filename": str(target / "mapped.dat"), "mode": "w+"}
        ),
        "numpy._core.memmap.memmap": _hostile(
            "numpy._core.memmap", "memmap", {"filename": str(target / "m2.dat")}
        ),
        "sklearn.datasets._covtype.GzipFile": _hostile(
            "sklearn.datasets._covtype", "GzipFile", {"name": str(target / "x.gz"), "mode": "wb"}
        ),
        "numpy.save": dumps(FunctionTransformer(func=np.save)),
        "numpy.lib.format.open_memmap": dumps(FunctionTransformer(func=np.lib.format.open_memmap)),
    }


def test_hostile_skops_files_are_refused_and_touch_no_file(watched: Path) -> None:
    before_modules = set(sys.modules)
    before = _files_under(watched, Path(os.getcwd()))
    for name, blob in _hostile_files(watched).items():
        with pytest.raises(UntrustedModelError) as refused:
            load_model(blob)
        message = str(refused.value)
        assert name.rsplit(".", 1)[-1] in message and "not loaded" in message, message
        # the same blob arriving inside a result
        manifest = {
            "format": "datasite-result/1",
            "root": {"type": "model", "class": "x", "blob": "0.skops"},
        }
        with pytest.raises(UntrustedModelError):
            decode_result(manifest, {"0.skops": blob})
    assert _files_under(watched, Path(os.getcwd())) == before  # nothing written
    # deciding imported nothing new (the old check imported any sklearn./numpy. module)
    if "sklearn.datasets._covtype" not in before_modules:
        assert "sklearn.datasets._covtype" not in sys.modules


def test_the_allowlist_is_exact_names_not_prefixes() -> None:
    for name in (
        "numpy.memmap",
        "numpy.matlib.memmap",
        "sklearn.externals.array_api_compat.numpy.memmap",
        "sklearn.datasets._kddcup99.GzipFile",
        "sklearn.datasets._rcv1.GzipFile",
        "gzip.GzipFile",
        "bz2.BZ2File",
        "lzma.LZMAFile",
        "numpy.load",
        "builtins.open",
        "builtins.eval",
        "builtins.type",
        "builtins.object",
        "diffprivlib.models.forest.os",
    ):
        assert not is_trusted_type(name), name
    assert "sklearn.tree._tree.Tree" in TRUSTED_TYPES
    assert all(is_trusted_type(name) for name in TRUSTED_TYPES)


def test_load_model_takes_bytes_only(watched: Path) -> None:
    with pytest.raises(TypeError, match="bytes"):
        load_model(str(watched / "model.skops"))  # type: ignore[arg-type]
    with pytest.raises(UntrustedModelError, match="not a readable skops"):
        load_model(b"not a zip file")


def test_every_model_the_project_ships_still_loads() -> None:
    """The allowlist covers the kit's MODELS and the tutorial's scikit-learn forest."""
    import warnings

    from sklearn.ensemble import RandomForestRegressor

    from researcher_kit import dp
    from researcher_kit.dp.models import MODELS

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (200, 3))
    y = (X[:, 0] > 0.5).astype(int)
    bounds = ([0.0] * 3, [1.0] * 3)
    params = {
        "logistic_regression": {"data_norm": 2.0},
        "linear_regression": {"bounds": bounds, "bounds_y": (0.0, 1.0)},
        "gaussian_nb": {"bounds": bounds},
        "random_forest": {"bounds": bounds, "classes": [0, 1]},
        "kmeans": {"bounds": bounds, "n_clusters": 2},
        "pca": {"data_norm": 2.0, "bounds": bounds, "n_components": 2},
    }
    assert set(params) == set(MODELS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, kind_params in params.items():
            target = y if MODELS[kind].supervised else None
            blob = dp.fit_model(kind, X, target, epsilon=2.0, **kind_params)
            assert type(load_model(blob)).__name__ == MODELS[kind].cls
    forest = RandomForestRegressor(n_estimators=3, random_state=0).fit(X, X[:, 0])
    manifest, blobs = encode_result(forest)
    np.testing.assert_allclose(decode_result(manifest, blobs).predict(X[:3]), forest.predict(X[:3]))


def test_a_researcher_class_name_is_not_echoed_by_the_encoder() -> None:
    """A class defined by submitted code can spell a private value in its name."""
    from datasite.contract.results import UnsupportedResult

    secret = type("Secret_987_65_4321", (), {})
    with pytest.raises(UnsupportedResult) as refused:
        encode_result(secret())
    assert "987" not in str(refused.value) and "not shown" in str(refused.value)
