"""The PySyft compatibility layer's local parts: no server needed.

Result wrappers, the owner's dataset builders, decorators and their policies, URL and
folder naming, and the refusals a PySyft user meets (``asset.data``, a mistyped
``password_verify``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import researcher_kit.client as rkc
from researcher_kit import syft_compat as sy
from researcher_kit.syft_compat.clients import Users, site_url
from researcher_kit.syft_compat.orchestra import site_folder
from researcher_kit.syft_compat.views import RemoteAsset


def remote_asset(role: str = "researcher") -> RemoteAsset:
    meta = {"name": "pings", "columns": [{"name": "age", "dtype": "int64"}]}
    return RemoteAsset(rkc.Asset(None, "Pings", meta), role)  # type: ignore[arg-type]


def test_results_index_like_pysyft_action_objects() -> None:
    series = pd.Series([0.5, 1.5, 2.5])
    result = sy.ActionObject((b"skops-bytes", 0.25, 0.5, series))
    assert result[0].syft_action_data == b"skops-bytes"
    assert isinstance(result[1], sy.ActionObject)
    assert str(result[1]) == "0.25" and f"{result[2]:.2f}" == "0.50"
    assert float(result[1]) == 0.25 and result[1] == 0.25
    assert [v.syft_action_data for v in result][:2] == [b"skops-bytes", 0.25]
    assert np.asarray(result[3]).tolist() == [0.5, 1.5, 2.5]
    assert result[3].mean() == 1.5  # attributes reach the value
    assert result.get()[1] == 0.25
    assert "<table" in result[3].syft_action_data.to_frame()._repr_html_()
    assert "0.25" in result[1]._repr_html_()


def test_asset_and_dataset_builders_check_their_tables() -> None:
    real = pd.DataFrame({"id": [1, 2], "age": [30, 40]})
    mock = pd.DataFrame({"id": [9], "age": [50]})
    asset = sy.Asset(name="User pings data.", data=real, mock=mock)
    assert asset.data.head(n=1)["age"].tolist() == [30]
    dataset = sy.Dataset(name="Engagement", description="d", summary="s", citation="c")
    dataset.add_asset(asset)
    html = dataset._repr_html_()
    assert "User pings data." in html and "Engagement" in html
    with pytest.raises(ValueError, match="already"):
        dataset.add_asset(asset)
    with pytest.raises(ValueError, match="columns"):
        sy.Asset(name="bad", data=real, mock=mock[["age"]])
    with pytest.raises(TypeError, match="DataFrame"):
        sy.Asset(name="bad", data=real.to_numpy(), mock=mock)


def test_a_researcher_never_gets_the_private_table() -> None:
    asset = remote_asset()
    with pytest.raises(PermissionError, match="never leaves the datasite"):
        _ = asset.data
    assert asset.name == "pings" and asset.dataset == "Pings"


def test_password_verify_mismatch_creates_nothing() -> None:
    class Refuse:
        def create(self, **_: object) -> dict:
            raise AssertionError("must not reach the site")

    with pytest.raises(ValueError, match="password_verify"):
        Users(Refuse()).create(  # type: ignore[arg-type]
            email="bob@x.example", name="Bob", password="syftrocks", password_verify="syftrock"
        )


def analysis(df, seed: int = 1):  # type: ignore[no-untyped-def]
    return float(df["age"].mean())


def test_decorators_bind_assets_and_keep_the_source_without_decorator() -> None:
    asset = remote_asset()

    @sy.syft_function_single_use(df=asset, epsilon=0.5, mechanisms=["make_laplace"])
    def mean_age(df):  # type: ignore[no-untyped-def]
        return float(df["age"].mean())

    assert isinstance(mean_age, sy.SyftFunction)
    assert mean_age.code.startswith("def mean_age(df):")
    assert "@" not in mean_age.code
    assert mean_age.bindings == {"df": asset.inner}
    assert (mean_age.epsilon, mean_age.runs, mean_age.mechanisms) == (0.5, 1, ["make_laplace"])
    assert mean_age(pd.DataFrame({"age": [2, 4]})) == 3.0  # still callable locally

    twice = sy.syft_function(
        input_policy=sy.ExactMatch(df=asset),
        output_policy=sy.OutputPolicyExecuteCount(limit=2),
        epsilon=0.2,
    )(analysis)
    assert twice.runs == 2 and twice.code.startswith("def analysis(df, seed: int = 1):")
    body = twice.payload(project="p")
    assert body["bindings"] == {"df": "pings"} and body["dataset"] == "Pings"


def test_decorators_refuse_what_cannot_run_on_the_site() -> None:
    asset = remote_asset()
    with pytest.raises(TypeError, match="no argument data"):
        sy.syft_function_single_use(data=asset)(analysis)
    with pytest.raises(TypeError, match="fetched from the site"):
        sy.syft_function_single_use(df=pd.DataFrame())(analysis)
    with pytest.raises(TypeError, match="ExactMatch"):
        sy.syft_function()(analysis)


def test_urls_and_site_folders() -> None:
    assert site_url("localhost", 8080) == "http://localhost:8080"
    assert site_url("http://127.0.0.1:9000/") == "http://127.0.0.1:9000"
    assert site_url("https://site.example", 443) == "https://site.example:443"
    assert site_folder("user engagement/data center").name == "user-engagement-data-center"
    assert site_folder("../..").name == "datasite"


def asset_with_mock(frame: pd.DataFrame) -> RemoteAsset:
    asset = remote_asset()
    asset.inner.__dict__["mock"] = frame  # the cached mock, as if fetched from the site
    return asset


def test_an_undeclared_budget_is_measured_on_the_mock() -> None:
    asset = asset_with_mock(pd.DataFrame({"age": np.arange(18, 90)}))

    @sy.syft_function_single_use(df=asset)
    def noisy_mean_age(df):  # type: ignore[no-untyped-def]
        from researcher_kit import dp

        return dp.mean(df["age"], bounds=(18, 90), epsilon=0.4) + dp.count(df, epsilon=0.1)

    assert noisy_mean_age.epsilon is None
    noisy_mean_age.declare_budget()
    assert noisy_mean_age.epsilon == pytest.approx(0.5)
    assert noisy_mean_age.mechanisms == ["researcher_kit.dp.count", "researcher_kit.dp.mean"]


def test_a_rerun_notebook_approves_its_own_request_not_an_earlier_runs() -> None:
    """On a saved site (launched without ``reset=True``) the owner's ``requests[0]`` is
    what the notebook just submitted, not a request an earlier run left or decided."""
    from types import SimpleNamespace

    from researcher_kit.syft_compat.clients import OwnerClient

    states = {1: "released", 2: "checked", 3: "denied", 4: "submitted"}  # 4: this run's
    records = [SimpleNamespace(data={"id": i, "state": s}) for i, s in states.items()]
    owner = object.__new__(OwnerClient)
    owner.session = None  # type: ignore[assignment]
    owner.admin = SimpleNamespace(requests=SimpleNamespace(all=lambda: records))  # type: ignore[assignment]
    assert [r.id for r in owner.requests] == [4, 2, 1, 3]


def test_the_readme_shows_launch_with_reset() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert 'sy.orchestra.launch(name="user_engagement_data_center", reset=True)' in readme
