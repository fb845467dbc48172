"""What passes the dry-run encodes on the real run: ``run_on_mock`` sends its outputs
through the same result codec (and cap) as a run on the private data, and the codec
carries a histogram over integer categories, whose index mixes ``0, 1, "(other)"``.

Issue 14's first fault: that histogram passed the mock, then every real run failed with
``UnsupportedResult`` (Parquet has no type for such an index) and the epsilon was charged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import researcher_kit as rk
from datasite.contract.results import UnsupportedResult, decode_result, encode_result
from tests.conftest import RESEARCHER_EMAIL
from tests.flows import approve_as_owner, submit_source, wait_state


def cancer_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A breast-cancer-like table: an integer 0/1 target, as scikit-learn's loader gives."""
    rng = np.random.default_rng(3)

    def make(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "radius": rng.normal(14.0, 3.5, n),
                "target": rng.integers(0, 2, n).astype("int64"),
            }
        )

    return make(569), make(100)


def test_a_mixed_label_index_round_trips_through_the_codec() -> None:
    counts = rk.dp.histogram(
        pd.Series(np.arange(200) % 2, name="target"), epsilon=1.0, categories=[0, 1]
    )
    assert list(counts.index) == [0, 1, "(other)"]
    back = decode_result(*encode_result(counts))
    pd.testing.assert_series_equal(back, counts)
    frame = pd.DataFrame({"count": counts}).rename_axis("target")
    pd.testing.assert_frame_equal(decode_result(*encode_result(frame)), frame)
    with pytest.raises(UnsupportedResult):
        encode_result(pd.Series([1, 2], index=pd.Index([0, ("a", 1)], dtype=object)))


@pytest.fixture(scope="module")
def cancer(inprocess_study_clients):  # type: ignore[no-untyped-def]
    owner, researcher = inprocess_study_clients
    real, mock = cancer_tables()
    owner.datasets.upload(
        name="Cancer", assets={"cancer": (real, mock)}, description="Tumours", progress=False
    )
    owner.budgets.grant(RESEARCHER_EMAIL, "Cancer", epsilon=2.0)
    return owner, researcher, researcher.datasets["Cancer"].assets["cancer"]


def test_a_histogram_over_integer_categories_passes_the_mock_and_releases(cancer) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, asset = cancer

    @rk.dp_request(asset=asset, epsilon=0.5)
    def target_counts(df):  # type: ignore[no-untyped-def]
        return rk.dp.histogram(df["target"], epsilon=0.5, categories=[0, 1])

    dry = target_counts.run_on_mock()
    assert list(dry.outputs.index) == [0, 1, "(other)"]
    assert dry.report.verdict == "pass", dry.report.findings
    request = researcher.submit(target_counts, project="Study")
    request.wait(until=("checked", "released", "failed"))
    if request.state == "checked":
        approve_as_owner(owner.session, request.id)
    released = request.result(timeout=120)
    assert request.refresh().state == "released", request.data
    assert list(released.index) == [0, 1, "(other)"]
    assert released.dtype == np.int64 and abs(int(released.sum()) - 569) < 60


def test_the_mock_refuses_what_the_real_run_could_not_release(cancer) -> None:  # type: ignore[no-untyped-def]
    _, _, asset = cancer

    @rk.dp_request(asset=asset, epsilon=0.5)
    def labels(df):  # type: ignore[no-untyped-def]
        return {rk.dp.count(df, epsilon=0.5)}  # a set: the codec has no node for it

    with pytest.raises(UnsupportedResult, match="set"):
        labels.run_on_mock(check=False)


RAW_SET = """\
def labels(df):
    return set(df["target"].tolist())
"""


def test_the_checker_blocks_a_raw_request_whose_output_cannot_leave(cancer) -> None:  # type: ignore[no-untyped-def]
    """A raw-data request's dry-run encodes its outputs too: a value the codec refuses
    would fail on the real run after reading the rows, so the checker blocks it."""
    owner, researcher, _ = cancer
    request_id = submit_source(
        researcher.session, RAW_SET, "labels", epsilon=0.1, dataset="Cancer",
        bindings={"df": "cancer"},
    )  # fmt: skip
    report = wait_state(owner.session, request_id, ("checked",)).data["policy_report"]
    found = [f for f in report["findings"] if f["rule"] == "unreleasable_output"]
    assert report["verdict"] == "blocked" and found, report["findings"]
    assert found[0]["severity"] == "blocking" and "type set" in found[0]["message"]
