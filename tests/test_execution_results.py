"""The result codec, the skops allowlist, the wire format and harness lookup (in-process)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.preprocessing import FunctionTransformer
from skops.io import dumps

from datasite.contract.framing import WireError, pack, unpack_all
from datasite.contract.harness import rows_bound
from datasite.contract.results import (
    OutputTooLarge,
    UnsupportedResult,
    UntrustedModelError,
    blob_names,
    decode_result,
    encode_result,
    load_model,
)
from datasite.execution.harness import resolve_harness


def round_trip(value: object, max_bytes: int = 64 * 1024**2) -> object:
    manifest, blobs = encode_result(value, max_bytes)
    text = json.dumps(manifest, allow_nan=False)  # strict JSON: storable in JSONB
    assert set(blob_names(manifest)) == set(blobs)
    return decode_result(json.loads(text), blobs)


def test_scalars_and_containers_round_trip() -> None:
    value = {
        "n": 3,
        "big": 2**70,
        "x": 1.5,
        "nan": float("nan"),
        "inf": float("-inf"),
        "flag": True,
        "none": None,
        "text": "héllo",
        "raw": b"\x00\x01skops",
        7: ("tuple", [1, 2.0]),
        None: {"nested": [np.float32(2.5), np.int64(-4), np.bool_(True)]},
    }
    back = round_trip(value)
    assert back["n"] == 3 and back["big"] == 2**70 and back["x"] == 1.5
    assert np.isnan(back["nan"]) and back["inf"] == float("-inf")
    assert back["flag"] is True and back["none"] is None and back["text"] == "héllo"
    assert back["raw"] == b"\x00\x01skops"
    assert back[7] == ("tuple", [1, 2.0])
    scalars = back[None]["nested"]
    assert [type(s) for s in scalars] == [np.float32, np.int64, np.bool_]
    assert scalars[0] == 2.5 and scalars[1] == -4


def test_arrays_frames_and_series_round_trip() -> None:
    arrays = [
        np.arange(12, dtype=np.int16).reshape(3, 4),
        np.array([[0.5, np.nan], [np.inf, -1.0]]),
        np.array([True, False]),
        np.array(["a", "bc"]),
        np.array(3.25),
    ]
    for array, back in zip(arrays, round_trip(arrays), strict=True):
        assert back.dtype == array.dtype and back.shape == array.shape
        np.testing.assert_array_equal(back, array)
    frame = pd.DataFrame({"age": [30, 40], "city": ["a", "b"]}, index=[10, 20])
    series = pd.Series([1.0, 2.5], index=["x", "y"], name="mean")
    back_frame, back_series = round_trip((frame, series))
    pd.testing.assert_frame_equal(back_frame, frame)
    pd.testing.assert_series_equal(back_series, series)


def test_estimators_decode_into_working_models() -> None:
    from diffprivlib.models import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (200, 2))
    forest = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X[:, 0])
    private = LogisticRegression(epsilon=1.0, data_norm=1.5).fit(X, (X[:, 0] > 0.5).astype(int))
    back_forest, back_private = round_trip([forest, private])
    np.testing.assert_allclose(back_forest.predict(X[:5]), forest.predict(X[:5]))
    np.testing.assert_array_equal(back_private.predict(X[:5]), private.predict(X[:5]))
    assert load_model(dumps(forest)).predict(X[:1]).shape == (1,)


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (object(), "object"),
        ({1, 2}, "set"),
        (1 + 2j, "complex"),
        (np.array([object()]), "object"),
        ({(1, 2): 3}, "tuple"),
        ([pd.Timestamp("2024-01-01")], "pandas"),
    ],
)
def test_unsupported_values_fail_naming_the_type(value: object, named: str) -> None:
    with pytest.raises(UnsupportedResult, match=named):
        encode_result(value)


def test_output_over_the_cap_fails_clearly() -> None:
    with pytest.raises(OutputTooLarge, match="1000-byte limit"):
        encode_result({"blob": b"x" * 2000}, max_bytes=1000)
    with pytest.raises(OutputTooLarge):
        encode_result(pd.DataFrame({"x": np.random.default_rng(0).random(10_000)}), 1000)
    assert encode_result(b"x" * 500, max_bytes=1000)[1]


def test_load_model_refuses_untrusted_types_and_lists_them() -> None:
    dangerous = FunctionTransformer(func=os.system)  # a function outside the allowlist
    with pytest.raises(UntrustedModelError, match=r"posix\.system"):
        load_model(dumps(dangerous))
    numpy_function = FunctionTransformer(func=np.load)  # trusted module, but not a class
    with pytest.raises(UntrustedModelError, match="load"):
        load_model(dumps(numpy_function))
    with pytest.raises(UnsupportedResult, match="allowlist"):
        encode_result(dangerous)


def test_decoder_rejects_forged_manifests() -> None:
    manifest, blobs = encode_result(np.arange(3))
    with pytest.raises(ValueError, match="missing blob"):
        decode_result(manifest, {})
    forged = json.loads(json.dumps(manifest))
    forged["root"]["dtype"] = "|O"
    with pytest.raises(ValueError, match="Refusing dtype"):
        decode_result(forged, blobs)
    with pytest.raises(WireError):
        blob_names({"root": {"type": "bytes", "blob": "../../etc/passwd"}})
    with pytest.raises(ValueError, match="manifest"):
        decode_result({"root": {"type": "none"}}, {})


def test_wire_messages_round_trip_and_torn_ones_fail() -> None:
    data = pack({"event": "a"}) + pack({"event": "b"}, {"x.bin": b"123", "y.bin": b""})
    messages = list(unpack_all(data))
    assert messages == [({"event": "a"}, {}), ({"event": "b"}, {"x.bin": b"123", "y.bin": b""})]
    with pytest.raises(WireError):
        list(unpack_all(data[:-2]))


def test_harnesses_only_from_trusted_packages() -> None:
    assert resolve_harness("datasite.execution.harness:call_once").__name__ == "call_once"
    for path in ("os:system", "subprocess:run", "datasite.execution.harness", "tests.x:y"):
        with pytest.raises(ValueError, match="not trusted"):
            resolve_harness(path)


def test_rows_bound_rounds_up_to_one_significant_digit() -> None:
    assert [rows_bound(n) for n in (1, 9, 10, 11, 2000, 2001, 1_000_000)] == [
        1,
        9,
        10,
        20,
        2000,
        3000,
        1_000_000,
    ]


def test_polars_results_arrive_as_pandas_and_a_plan_is_refused() -> None:
    """A Context query's ``.collect()`` is a Polars DataFrame: it is released as a table."""
    import polars as pl

    frame = pl.DataFrame({"group": ["a", "b"], "len": [12, 30]})
    value = {"counts": frame, "col": frame["len"]}
    manifest, blobs = encode_result(value)
    back = decode_result(manifest, blobs)
    assert back["counts"].equals(pd.DataFrame({"group": ["a", "b"], "len": [12, 30]}))
    assert back["col"].tolist() == [12, 30] and back["col"].name == "len"
    with pytest.raises(UnsupportedResult, match=r"LazyFrame .* return its \.collect\(\)"):
        encode_result(frame.lazy())
