"""A DP model through the PySyft surface: diffprivlib's logistic regression, declared at
epsilon 1, approved by a reviewer, run on the private table, loaded from skops.

Also the refusals a PySyft user meets on the way: a mistyped ``password_verify``, a role
decided by the site, a denied request that explains itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from researcher_kit import syft_compat as sy

pytestmark = [pytest.mark.integration, pytest.mark.one_database]


def patients(n: int, seed: int) -> pd.DataFrame:
    """Age and BMI, and a label that depends on both (about 90% learnable)."""
    rng = np.random.default_rng(seed)
    age, bmi = rng.uniform(18, 90, n), rng.uniform(15, 45, n)
    noise = rng.normal(0, 0.3, n)
    label = ((age - 54) / 36 + (bmi - 30) / 15 + noise > 0).astype("int64")
    return pd.DataFrame({"age": age, "bmi": bmi, "label": label})


def load_model(blob: bytes):  # type: ignore[no-untyped-def]
    """The kit's loader (allowlisted skops types) from wherever it landed."""
    try:
        from researcher_kit.dp import load_model as kit_loader
    except ImportError:
        from datasite.contract.results import load_model as kit_loader
    return kit_loader(blob)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sy.orchestra.SiteHandle]:
    monkeypatch.setenv("DATASITE_ORCHESTRA_HOME", str(tmp_path))
    handle = sy.orchestra.launch(name="clinic models", reset=True)
    yield handle
    handle.land()


def test_a_diffprivlib_model_declared_approved_run_and_loaded(site) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(sy.DevPasswordWarning):
        owner = site.login(email="info@openmined.org", password="changethis")
    real, mock = patients(4000, seed=1), patients(300, seed=2)
    dataset = sy.Dataset(name="Clinic", summary="Visits", description="Age, BMI, outcome")
    dataset.add_asset(sy.Asset(name="visits", data=real, mock=mock))
    owner.upload_dataset(dataset=dataset, progress=False)

    with pytest.raises(ValueError, match="password_verify"):
        owner.users.create(
            email="eve@uni.example",
            name="Eve",
            password="eve-password-1",
            password_verify="eve-password-2",
        )
    with pytest.raises(sy.DatasiteError):  # nothing was created
        site.login(email="eve@uni.example", password="eve-password-1")
    owner.users.create(
        email="ana@uni.example",
        name="Dr. Ana",
        password="ana-password-1",
        password_verify="ana-password-1",
        institution="Uni",
    )
    owner.users.create(
        email="rita@clinic.example", name="Rita", password="rita-password-1", role="reviewer"
    )
    reviewer = sy.login(
        url="127.0.0.1", port=site.port, email="rita@clinic.example", password="rita-password-1"
    )
    assert isinstance(reviewer, sy.OwnerClient)  # the site's role decides the client
    client = site.login(email="ana@uni.example", password="ana-password-1")
    assert isinstance(client, sy.ResearcherClient)

    asset = client.datasets["Clinic"].assets["visits"]
    with pytest.raises(PermissionError):
        _ = asset.data

    @sy.syft_function(
        input_policy=sy.ExactMatch(df=asset),
        output_policy=sy.SingleExecutionExactOutput(),
        epsilon=1.0,
    )
    def risk_model(df):  # type: ignore[no-untyped-def]
        import numpy as np
        from diffprivlib.models import LogisticRegression
        from skops.io import dumps

        features = np.column_stack([(df["age"] - 54) / 36, (df["bmi"] - 30) / 15])
        model = LogisticRegression(epsilon=1.0, data_norm=1.5)
        model.fit(features, df["label"].to_numpy())
        return dumps(model), model

    @sy.syft_function_single_use(df=asset, epsilon=0.5)
    def raw_mean_age(df):  # type: ignore[no-untyped-def]
        return float(df["age"].mean())

    assert risk_model.code.startswith("def risk_model(df):")
    project = client.create_project(name="Risk", description="DP risk model")

    # No epsilon declared and no DP release to measure, locally or on the site: refused.
    undeclared = sy.syft_function_single_use(df=asset)(raw_mean_age.fn)
    with pytest.raises(ValueError, match="Declare it"):
        project.create_code_request(undeclared, client)
    assert client.requests == []
    model_request = project.create_code_request(risk_model, client)
    mean_request = project.create_code_request(raw_mean_age, client)
    assert (model_request.epsilon, mean_request.epsilon) == (1.0, 0.5)
    assert [r.entry for r in project.requests] == ["risk_model", "raw_mean_age"]

    # The reviewer denies the raw mean with a reason the researcher then reads.
    by_id = {r.id: r for r in reviewer.requests}
    by_id[mean_request.id].deny(reason="A raw mean is not differentially private.")
    with pytest.raises(PermissionError, match="not differentially private"):
        client.code.raw_mean_age(df=asset)

    # The DP model: approved by the reviewer, or by the owner with a justification when
    # the checker blocks it.
    pending = by_id[model_request.id].wait_checked()
    if pending.policy_report.verdict == "blocked":
        mine = next(r for r in owner.requests if r.id == model_request.id)
        mine.approve(justification="diffprivlib model at the declared epsilon")
    else:
        pending.approve()
    result = client.code.risk_model(df=asset)
    model = load_model(result[0].syft_action_data)
    estimator = result[1].syft_action_data
    features = np.column_stack([(real["age"] - 54) / 36, (real["bmi"] - 30) / 15])
    for fitted in (model, estimator):
        assert type(fitted).__module__.startswith("diffprivlib.models")
        accuracy = (fitted.predict(features) == real["label"].to_numpy()).mean()
        assert accuracy > 0.75  # learnt from the 4000 private rows despite the noise
    np.testing.assert_array_equal(model.coef_, estimator.coef_)  # the same fitted model

    # The approval was for exactly this asset.
    with pytest.raises(TypeError, match="approved for the inputs"):
        client.code.risk_model(data=asset)


def test_an_execute_count_policy_runs_once_per_call(site) -> None:  # type: ignore[no-untyped-def]
    with pytest.warns(sy.DevPasswordWarning):
        owner = site.login(email="info@openmined.org", password="changethis")
    dataset = sy.Dataset(name="Clinic")
    dataset.add_asset(sy.Asset(name="visits", data=patients(2000, 3), mock=patients(200, 4)))
    owner.upload_dataset(dataset=dataset, progress=False)
    owner.users.create(email="ana@uni.example", name="Ana", password="ana-password-1")
    client = site.login(email="ana@uni.example", password="ana-password-1")
    asset = client.datasets[0].assets[0]

    @sy.syft_function(
        input_policy=sy.ExactMatch(df=asset),
        output_policy=sy.OutputPolicyExecuteCount(limit=2),
    )
    def visits(df):  # type: ignore[no-untyped-def]
        from researcher_kit import dp

        return dp.count(df, epsilon=0.2)

    request = client.create_project(name="Counts").create_code_request(visits, client)
    assert (request.epsilon, request.runs_allowed) == (pytest.approx(0.2), 2)  # measured
    owner.requests[0].approve()
    first = client.code.visits(df=asset).syft_action_data
    second = client.code.visits(df=asset).syft_action_data
    assert abs(first - 2000) < 100 and abs(second - 2000) < 100
    runs = client.requests[0].refresh().runs
    assert [r["state"] for r in runs] == ["released", "released"]
    assert client.code.visits(df=asset).syft_action_data == second  # no runs left: kept
