"""DP synthetic data: the kit helper (blind and direct), owner uploads with a synthetic mock,
the quality report, the canary test, and a synthetic-data request that is auto-approved.

Small real tables (scikit-learn's bundled wine data, offline) and few bins keep it fast.
"""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("mbi")

from researcher_kit import dp  # noqa: E402
from researcher_kit.blind import ReleaseError, local_frames  # noqa: E402
from researcher_kit.dp.synthetic import SynthesisRefused, plan_columns  # noqa: E402

BOUNDS = {"alcohol": (10.0, 16.0), "proline": (200, 1800), "color_intensity": (0.0, 14.0)}
CLASSES = {"cultivar": ["a", "b", "c"]}


def wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    table = frame[["alcohol", "color_intensity"]].copy()
    table["proline"] = frame["proline"].round().astype("int64")
    table["cultivar"] = frame["target"].map({0: "a", 1: "b", 2: "c"}).astype(object)
    return table


def test_blind_synthesize_charges_the_odometer_and_keeps_the_columns() -> None:
    real = wine()
    frames = local_frames({"df": real}, epsilon=1.5)
    releaser = frames["df"].channel.releaser
    fake = dp.synthesize(frames["df"], epsilon=1.0, bounds=BOUNDS, public_categories=CLASSES, bins=4)
    assert list(fake.columns) == list(real.columns)
    assert releaser.budget.spent_epsilon == pytest.approx(1.0)
    assert [e.helper for e in releaser.spent.entries] == ["synthesize"]
    assert 100 < len(fake) < 260  # the model's DP total, near 178
    assert fake["proline"].between(200, 1800).all() and fake["proline"].dtype == "int64"
    assert set(fake["cultivar"].dropna()) <= {"a", "b", "c"}
    # the odometer refuses what is left over, before any data is read
    with pytest.raises(dp.BudgetExceeded):
        dp.synthesize(frames["df"], epsilon=1.0, bounds=BOUNDS, public_categories=CLASSES)
    assert releaser.budget.spent_epsilon == pytest.approx(1.0)


def test_bad_inputs_are_refused_before_any_spend() -> None:
    frames = local_frames({"df": wine()}, epsilon=5.0)
    releaser = frames["df"].channel.releaser
    with pytest.raises(ReleaseError, match="needs public bounds"):
        dp.synthesize(frames["df"], epsilon=1.0, bounds={"alcohol": (10, 16)}, bins=4)
    with pytest.raises(ReleaseError, match="have no public categories"):
        dp.synthesize(frames["df"], epsilon=1.0, bounds=BOUNDS, bins=4)
    with pytest.raises(SynthesisRefused, match="epsilon must be"):
        dp.synthesize(frames["df"], epsilon=0.0, bounds=BOUNDS, public_categories=CLASSES)
    assert releaser.budget.spent_epsilon == 0
    with pytest.raises(SynthesisRefused, match="cannot be synthesized"):
        plan_columns({"when": "datetime64[ns]"})
    with pytest.raises(SynthesisRefused, match="unknown column"):
        plan_columns({"a": "object"}, public_categories={"a": [1], "b": [2]})
