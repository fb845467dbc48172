"""Federated DP training over three real datasite servers on loopback (``rk.federated``).

Each server holds a third of the demo's diabetes patients. One plan is submitted to all
three, each owner approves it once (every round's budget reserved), the coordinator runs
the rounds with the global weights as run arguments and averages the DP updates. The
federated model is compared with a DP model trained on the pooled rows at the same
epsilon; a site killed mid-plan leaves the other two consistent.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np
import pytest

import researcher_kit as rk
from datasite import admin
from datasite.client.embedded import EmbeddedSite
from datasite.contract.run_args import check_run_args, decode_run_args
from datasite.demo import diabetes_tables
from researcher_kit import dp, federated
from researcher_kit.dp import deep
from tests.conftest import RESEARCHER_EMAIL, RESEARCHER_PASSWORD, needs
from tests.flows import approve_as_owner, submit_source, wait_state
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

pytestmark = [needs("torch", "opacus"), pytest.mark.integration, pytest.mark.one_database]

REAL, MOCK = diabetes_tables()
FEATURES = [c for c in REAL.columns if c != "target"]
BOUNDS = [(float(MOCK[c].min()), float(MOCK[c].max())) for c in FEATURES]  # public
LABEL = {"cmp": ">", "left": {"col": "target"}, "right": {"lit": 140}}
LOGISTIC = [{"type": "linear", "in": len(FEATURES), "out": 1}]
SITES = ("north", "south", "east")


def plan(**changes) -> federated.Plan:  # type: ignore[no-untyped-def]
    settings = {
        "arch": LOGISTIC, "features": FEATURES, "label": LABEL, "rounds": 3,
        "local_epochs": 6, "epsilon": 8.0, "delta": 1e-5, "lr": 2.0, "sample_rate": 0.25,
        "batch_size": 37, "feature_bounds": BOUNDS, "count_epsilon": 0.05, **changes,
    }  # fmt: skip
    return federated.Plan(**settings)


def accuracy(model: dict) -> float:
    import torch

    X, _ = deep.prepare(
        deep.plan_training({"arch": model["arch"], "feature_bounds": BOUNDS}, FEATURES, 1, 1e-5),
        REAL[FEATURES].to_numpy(float),
        np.zeros(len(REAL)),
    )
    guess = deep.load_model(model)(torch.tensor(X, dtype=torch.float32)).detach().numpy() > 0
    return float((guess.ravel() == (REAL["target"] > 140).to_numpy()).mean())


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Three servers, each with a third of the patients, an owner and a researcher."""
    shuffled = REAL.sample(frac=1.0, random_state=7)
    servers, owners, assets = {}, {}, {}
    try:
        for i, name in enumerate(SITES):
            server = EmbeddedSite(
                Path(tmp_path_factory.mktemp(name)) / "site",
                owner_email=OWNER_EMAIL,
                owner_password=OWNER_PASSWORD,
                env={"DATASITE_NO_PROGRESS": "1"},
            ).start()
            servers[name] = server
            owner = admin.connect(server.url, OWNER_EMAIL, OWNER_PASSWORD)
            owner.datasets.upload(
                name="Diabetes", assets={"patients": (shuffled.iloc[i::3], MOCK)},
                description="A third of the diabetes study", summary="patients",
                progress=False,
            )  # fmt: skip
            owner.users.create(
                email=RESEARCHER_EMAIL, name="Dr. Bob", role="researcher",
                password=RESEARCHER_PASSWORD,
            )  # fmt: skip
            owner.budgets.grant(RESEARCHER_EMAIL, "Diabetes", epsilon=20.0, delta=1e-3)
            owners[name] = owner
            researcher = rk.login(server.url, RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
            assets[name] = researcher.datasets["Diabetes"].assets["patients"]
        yield servers, owners, assets
    finally:
        for server in servers.values():
            server.stop()


def approve_everywhere(federation: federated.Federation, owners: dict) -> None:
    for name, site in federation.sites.items():
        approve_as_owner(owners[name].session, site.request.id)


def grant_of(owner) -> dict:  # type: ignore[no-untyped-def]
    return next(g for g in owner.budgets.list() if g["email"] == RESEARCHER_EMAIL)


def test_federated_logistic_regression_is_close_to_the_pooled_dp_model(sites) -> None:
    servers, owners, assets = sites
    the_plan = plan()
    federation = federated.submit(the_plan, assets)
    approve_everywhere(federation, owners)
    result = federation.run(timeout=300)
    assert result.rounds_completed == 3 and result.stopped is None
    for name in SITES:
        spent = result.sites[name]
        assert spent["rounds"] == 3 and spent["dropped"] is None
        assert spent["spent_epsilon"] <= the_plan.epsilon + 1e-9
        # The budget of every round was reserved once, at approval, and not again per run.
        assert grant_of(owners[name])["spent_epsilon"] == pytest.approx(the_plan.epsilon)
    federated_accuracy = accuracy(result.model)
    pooled = dp.train_torch(
        REAL, LOGISTIC, features=FEATURES, label=LABEL, epsilon=the_plan.epsilon, delta=1e-5,
        epochs=the_plan.rounds * the_plan.local_epochs, lr=the_plan.lr,
        sample_rate=the_plan.sample_rate / 3, batch_size=the_plan.batch_size,
        feature_bounds=BOUNDS,
    )  # fmt: skip
    pooled_accuracy = accuracy(pooled)
    print(f"federated {federated_accuracy:.3f}, pooled DP {pooled_accuracy:.3f}")
    assert federated_accuracy >= pooled_accuracy - 0.05
    assert federated_accuracy > 0.6  # the base rate is 0.5
    # (20 simulated plans: pooled 0.738-0.762, federated 0.717 and up, gap at most 0.029)


#: Ran alone from stop 25 (its east site once dropped out in round 1 side by side, before the
#: kill). Likely cause, fixed at stop 29: a poll sent as the server closed its idle
#: connection (``datasite.serve.KEEP_ALIVE_SECONDS``; the client now also retries a broken
#: read). Side by side with test_runs' fork bombs since: 3 of 3.
def test_a_site_killed_mid_plan_leaves_the_others_consistent(sites) -> None:
    servers, owners, assets = sites
    the_plan = plan(epsilon=6.0)  # 3 rounds of 6 local epochs
    before = {name: grant_of(owners[name])["spent_epsilon"] for name in SITES}
    federation = federated.submit(the_plan, assets)
    approve_everywhere(federation, owners)

    def kill_east(number: int) -> None:
        if number == 1:
            servers["east"].kill()

    result = federation.run(timeout=300, after_round=kill_east)
    assert result.rounds_completed == 3 and result.stopped is None
    east = result.sites["east"]
    assert east["rounds"] == 1 and "round 2" in east["dropped"], east
    assert [h["sites"] for h in result.history] == [sorted(SITES), ["north", "south"]] + [
        ["north", "south"]
    ]
    for name in ("north", "south"):
        request = owners[name].requests.get(federation.sites[name].request.id)
        assert (request.state, request.data["runs_used"]) == ("released", 3)
        assert len([r for r in request.data["runs"] if r["state"] == "released"]) == 3
        spent = grant_of(owners[name])["spent_epsilon"] - before[name]
        assert spent == pytest.approx(the_plan.epsilon)  # all rounds, charged once
    # East comes back: its one round ran, the reservation stands, nothing charged twice.
    servers["east"].start()
    east = admin.connect(servers["east"].url, OWNER_EMAIL, OWNER_PASSWORD)
    request = east.requests.get(federation.sites["east"].request.id)
    assert (request.state, request.data["runs_used"]) == ("released", 1)
    assert grant_of(east)["spent_epsilon"] - before["east"] == pytest.approx(the_plan.epsilon)
    assert accuracy(result.model) > 0.65  # 0.715-0.749 in 10 simulated plans


def test_the_stop_setting_ends_the_plan_cleanly_when_a_site_is_gone(sites) -> None:
    import torch

    servers, owners, assets = sites
    the_plan = plan(rounds=3, local_epochs=1, epsilon=1.5, on_dropout="stop")
    before = grant_of(owners["north"])["spent_epsilon"]
    federation = federated.submit(the_plan, {k: assets[k] for k in ("north", "south")})
    approve_everywhere(federation, owners)
    result = federation.run(timeout=120, after_round=lambda n: servers["south"].kill())
    assert result.stopped is not None and "south dropped out" in result.stopped
    assert result.rounds_completed == 1  # round 1's model is what comes back
    assert deep.load_model(result.model)(torch.zeros(2, len(FEATURES))).shape == (2, 1)
    # North ran round 2 (its result is not used); round 3 never runs: the plan closed its
    # request and that round was refunded.
    assert result.sites["north"]["refunded_rounds"] == 1
    assert result.sites["north"]["reserved_epsilon"] == pytest.approx(1.0)
    assert grant_of(owners["north"])["spent_epsilon"] - before == pytest.approx(1.0)
    assert "stay reserved until closed" in result.sites["south"]["dropped"]


MLP_REQUEST = f"""
def mlp(df):
    import researcher_kit as rk
    from researcher_kit.dp.budget import BudgetExceeded

    arch = [{{'type': 'linear', 'in': {len(FEATURES)}, 'out': 16}}, {{'type': 'relu'}},
            {{'type': 'linear', 'in': 16, 'out': 1}}]
    settings = dict(features={FEATURES!r}, label=df['target'] > 140,
                    feature_bounds={BOUNDS!r}, sample_rate=0.1, lr=1.0)
    # A fixed noise that cannot carry 30 epochs within epsilon=1: fewer steps run.
    model = rk.dp.train_torch(df, arch, epsilon=1.0, delta=1e-6, epochs=30,
                              noise_multiplier=3.0, **settings)
    try:  # what is left of the declared epsilon cannot pay for another training
        rk.dp.train_torch(df, arch, epsilon=0.5, delta=1e-7, epochs=1, **settings)
        refused = False
    except BudgetExceeded:
        refused = True
    return {{'model': model, 'refused': refused}}
"""


def test_an_opacus_mlp_on_a_sandboxed_site_stops_at_its_epsilon_and_loads_here(sites) -> None:
    import torch

    servers, owners, _ = sites
    researcher = rk.login(servers["north"].url, RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
    researcher.create_project("Deep")
    before = grant_of(owners["north"])["spent_epsilon"]
    request_id = submit_source(
        researcher.session, MLP_REQUEST, "mlp", epsilon=1.0, delta=1e-6, kind="blind",
        project="Deep", dataset="Diabetes", bindings={"df": "patients"},
    )  # fmt: skip
    report = wait_state(researcher.session, request_id, ("checked", "released", "failed"))
    assert report.state != "failed", report.data
    approve_as_owner(owners["north"].session, request_id)
    output = researcher.request(request_id).result(timeout=300)
    model = output["model"]
    assert output["refused"] is True
    planned = 30 * 10  # epochs / sample_rate
    assert 0 < model["steps"] < planned and model["noise_multiplier"] == 3.0
    recomputed = deep.spent_epsilon("rdp", 3.0, 0.1, model["steps"], 1e-6)
    one_more = deep.spent_epsilon("rdp", 3.0, 0.1, model["steps"] + 1, 1e-6)
    assert recomputed <= 1.0 < one_more  # as far as the declared epsilon goes, no further
    assert model["epsilon"] == pytest.approx(recomputed)
    assert grant_of(owners["north"])["spent_epsilon"] - before == pytest.approx(1.0)
    # The weights came back as safetensors; the client rebuilds the allowlisted arch.
    assert isinstance(model["weights"], bytes) and model["weights"][8:9] == b"{"
    loaded = deep.load_model(model)
    assert isinstance(loaded, torch.nn.Sequential) and len(loaded) == 3
    guess = loaded(torch.zeros(5, len(FEATURES)))
    assert guess.shape == (5, 1) and bool(torch.isfinite(guess).all())
    # (At epsilon=1 on about 150 rows, some 30 noisy steps do not teach this MLP much: the test is
    # about the budget and the weights' round trip, not the accuracy.)


def test_run_arguments_are_checked_before_a_run() -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + bytes(4)
    carried = check_run_args({"params": {"round": 2}, "weights": base64.b64encode(blob).decode()})
    assert decode_run_args(carried)["weights"] == blob
    pickled = base64.b64encode(b"\x80\x04\x95\x10cos\nsystem\n").decode()
    with pytest.raises(ValueError, match="not a safetensors blob"):
        check_run_args({"weights": pickled})
    with pytest.raises(ValueError, match="run arguments"):
        check_run_args({"params": {"x": 1}, "code": "print(1)"})


def test_fedavg_weighs_by_the_counts() -> None:
    import torch

    one = {"weights": deep.weights_of(torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False)))}
    two = {"weights": deep.weights_of(torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False)))}
    from safetensors.torch import load

    a, b = (load(m["weights"])["0.weight"].item() for m in (one, two))
    mean = load(federated.fedavg([one, two], [1.0, 3.0]))["0.weight"].item()
    assert mean == pytest.approx((a + 3 * b) / 4, rel=1e-6)
