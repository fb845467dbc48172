"""Federated DP training across datasites: one plan, one request per site, FedAvg here.

A :class:`Plan` names a model (an allowlisted architecture, ``rk.dp.deep``), its
columns, the rounds, the local DP-SGD settings (epochs, clipping, noise) and each
site's privacy loss for the *whole* plan. :func:`submit` sends one data-blind request
per site; each site's owner approves it once, with ``runs = rounds`` and the budget of
every round reserved at approval (``datasite/ledger.py``). The approval runs round 1.
:meth:`Federation.run` then coordinates from the researcher's notebook:

1. wait for each site's round ``r`` (a DP count of its rows and a DP-SGD update,
   trained in that site's sandbox by its releaser on its own rows);
2. average the returned models, weighted by the sites' DP counts (FedAvg);
3. start round ``r + 1`` on every site with the new global weights as *run
   arguments* (public: they are a function of DP releases only).

No site sees another's data or update: sites speak only to the coordinator, and what
they return is already DP. Per round a site spends ``epsilon / rounds`` (the DP count's
``count_epsilon`` included) and ``delta / rounds``: basic composition over the rounds,
because each round is a separate run with its own odometer. Across sites the rows are
disjoint, so one person's loss is one site's (parallel composition).

Dropouts: a site that cannot be reached, or whose run fails, leaves the plan. With
``on_dropout="continue"`` the rounds go on with the others (the plan stops when none is
left); with ``"stop"`` no further round starts anywhere and the last global model is
returned. No double charge: each run is charged once, by the reservation at approval.
When the plan ends, every reachable site's request with rounds it will never run is
closed (``POST /requests/{id}/close``) and those rounds are refunded there; a site that
cannot be reached keeps them reserved until its request is closed (``Request.close()``
once it is back). A site stopped *during* a round fails that run when it restarts (its
charge kept: it may have read data) and refunds every round that never ran
(``Runner.fail_interrupted_runs``).

Flower (``flwr``) is not used: its strategies are driven by its own gRPC server and
client apps, which would put researcher code next to the data; and flwr 1.42 pins
``typer<0.21`` against this project's ``typer>=0.29``. FedAvg is a weighted mean.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from datasite.contract.federated_plan import ENTRY, PLAN_NAME, plan_in_source, rounds_summary
from researcher_kit.dp import deep
from researcher_kit.request import DPRequest

# Re-exported from datasite.contract.federated_plan (the reviewer pages read plans there).
__all__ = [
    "ENTRY", "PLAN_NAME", "Federation", "FederatedResult", "Plan", "fedavg", "plan_in_source",
    "request_for", "rounds_summary", "site_round", "submit",
]  # fmt: skip


@dataclass
class Plan:
    """One federated training: the model, the rounds and each site's budget for all rounds."""

    arch: list[dict[str, Any]]
    features: list[str]
    target: str | None = None
    label: dict[str, Any] | None = None  # a filter tree, e.g. {"cmp": ">", ...}
    rounds: int = 3
    local_epochs: float = 1.0
    clip: float = 1.0  # max_grad_norm
    noise: float | None = None  # noise multiplier; None: fitted to each round's epsilon
    epsilon: float = 1.0  # per site, for the whole plan
    delta: float = 1e-5  # per site, for the whole plan
    count_epsilon: float = 0.05  # per round, the DP row count FedAvg weighs by
    lr: float = 0.5
    sample_rate: float = 0.1
    batch_size: int = 32
    loss: Literal["bce", "cross_entropy", "mse"] = "bce"
    optimizer: Literal["sgd", "adam"] = "sgd"
    accountant: Literal["rdp", "prv"] = "rdp"
    feature_bounds: list[tuple[float, float]] | None = None
    seed: int = 0
    on_dropout: Literal["continue", "stop"] = "continue"
    argument: str = "df"

    def __post_init__(self) -> None:
        deep.check_arch(self.arch, n_features=len(self.features))
        if not 1 <= self.rounds <= 1000:
            raise ValueError("rounds must be between 1 and 1000")
        if self.on_dropout not in ("continue", "stop"):
            raise ValueError("on_dropout is 'continue' or 'stop'")
        if (self.target is None) == (self.label is None):
            raise ValueError("pass exactly one of target='column' or label={filter}")
        if not 0 < self.count_epsilon < self.round_epsilon:
            raise ValueError(
                f"count_epsilon must be > 0 and below each round's epsilon "
                f"({self.round_epsilon:g} = epsilon / rounds)"
            )

    @property
    def round_epsilon(self) -> float:
        return self.epsilon / self.rounds

    @property
    def round_delta(self) -> float:
        return self.delta / self.rounds

    def settings(self) -> dict[str, Any]:
        """The plan as plain JSON (what the request's source carries)."""
        found = asdict(self)
        if found["feature_bounds"] is not None:
            found["feature_bounds"] = [list(b) for b in found["feature_bounds"]]
        return found

    def source(self) -> str:
        """The request's function: one round on one site, with the plan as a literal."""
        literal = textwrap.indent(_pretty(self.settings()), " " * 4).lstrip()
        return (
            f"def {ENTRY}({self.argument}, run_args=None):\n"
            f"    from researcher_kit.federated import site_round\n"
            f"    {PLAN_NAME} = {literal}\n"
            f"    return site_round({self.argument}, {PLAN_NAME}, run_args)\n"
        )


def _pretty(value: Any) -> str:
    import pprint

    return pprint.pformat(value, width=88, sort_dicts=False)


def site_round(frame: Any, plan: dict[str, Any], run_args: dict[str, Any] | None) -> dict:
    """One round on one site (runs in the site's sandbox; every release is the releaser's).

    Round 1 (the approval's run) starts from the plan's seeded initialization; later
    rounds from the global weights the coordinator passed as run arguments.
    """
    from researcher_kit import dp

    rounds = int(plan["rounds"])
    round_epsilon = float(plan["epsilon"]) / rounds
    weights = (run_args or {}).get("weights")
    number = int((run_args or {}).get("params", {}).get("round", 1))
    count = dp.count(frame, epsilon=float(plan["count_epsilon"]))
    label = plan.get("label")
    model = dp.train_torch(
        frame, plan["arch"], features=list(plan["features"]), target=plan.get("target"),
        label=label, epsilon=round_epsilon - float(plan["count_epsilon"]),
        delta=float(plan["delta"]) / rounds, epochs=float(plan["local_epochs"]),
        lr=float(plan["lr"]), sample_rate=float(plan["sample_rate"]),
        batch_size=int(plan["batch_size"]), max_grad_norm=float(plan["clip"]),
        noise_multiplier=plan.get("noise"), accountant=plan.get("accountant", "rdp"),
        optimizer=plan.get("optimizer", "sgd"), loss=plan.get("loss", "bce"),
        feature_bounds=plan.get("feature_bounds"), initial_weights=weights,
        seed=int(plan.get("seed", 0)),
    )  # fmt: skip
    return {"round": number, "count": float(count), "model": model}


class FederatedRequest(DPRequest):
    """A :class:`DPRequest` whose source is the plan's generated round function."""

    plan_source: str = ""

    @property
    def name(self) -> str:
        return ENTRY

    @property
    def source(self) -> str:
        return self.plan_source


def request_for(plan: Plan, asset: Any) -> FederatedRequest:
    """The request one site receives: ``runs = rounds``, each run's budget one round's."""
    source = plan.source()
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<{ENTRY}>", "exec"), namespace)  # our own generated text
    request = FederatedRequest(
        fn=namespace[ENTRY],
        bindings={plan.argument: asset},
        epsilon=plan.round_epsilon,
        delta=plan.round_delta,
        mechanisms=["researcher_kit.dp.count", "researcher_kit.dp.train_torch"],
        kind="blind",
        runs=plan.rounds,
    )
    request.plan_source = source
    return request


def fedavg(models: list[dict[str, Any]], weights: list[float]) -> bytes:
    """The weighted mean of the models' tensors (same architecture), as safetensors."""
    import torch
    from safetensors.torch import load, save

    total = sum(weights)
    if not models or total <= 0:
        raise ValueError("nothing to average")
    states = [load(bytes(m["weights"])) for m in models]
    averaged = {
        name: sum(
            w / total * s[name].to(torch.float64) for w, s in zip(weights, states, strict=True)
        )
        for name in states[0]
    }
    return save({k: v.to(torch.float32).contiguous() for k, v in averaged.items()})


@dataclass
class SiteState:
    name: str
    request: Any
    rounds_done: int = 0
    dropped: str | None = None  # why it left the plan
    counts: list[float] = field(default_factory=list)
    spent_epsilon: float = 0.0  # what its rounds' releases spent (the accountant's)


@dataclass
class FederatedResult:
    """The final global model, what happened each round and what each site spent."""

    model: dict[str, Any]  # {"arch": [...], "weights": safetensors bytes}
    rounds_completed: int
    stopped: str | None
    sites: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    timings: list[dict[str, float]] = field(default_factory=list)

    def load(self) -> Any:
        """The global model as a ``torch`` module (rebuilt; weights from safetensors)."""
        return deep.load_model(self.model)


class Federation:
    """Coordinates the rounds of one plan over the sites' approved requests."""

    def __init__(self, plan: Plan, sites: dict[str, Any]) -> None:
        self.plan = plan
        self.sites = {name: SiteState(name, request) for name, request in sites.items()}

    def alive(self) -> list[SiteState]:
        return [s for s in self.sites.values() if s.dropped is None]

    def _collect(self, site: SiteState, number: int, timeout: float) -> dict[str, Any] | None:
        """Round ``number``'s output of one site, or None (and the site dropped)."""
        try:
            request = site.request.wait(timeout=timeout)
            if request.state in ("denied", "failed", "withheld"):
                raise RuntimeError(f"its request is {request.state}")
            if request.data.get("runs_used") != number:
                raise RuntimeError(f"it ran {request.data.get('runs_used')} rounds, not {number}")
            output = request.result(timeout=timeout)
            if int(output["round"]) != number:
                raise RuntimeError(f"it answered round {output['round']}, not {number}")
            deep.check_arch(output["model"]["arch"])
            if output["model"]["arch"] != deep.check_arch(self.plan.arch):
                raise RuntimeError("it answered another architecture")
        except Exception as exc:  # noqa: BLE001 - unreachable, failed, denied, timed out
            site.dropped = f"round {number}: {type(exc).__name__}: {exc}"[:500]
            return None
        site.rounds_done = number
        site.counts.append(float(output["count"]))
        site.spent_epsilon += float(output["model"]["epsilon"]) + self.plan.count_epsilon
        return output

    def run(
        self, timeout: float = 600.0, after_round: Callable[[int], None] | None = None
    ) -> FederatedResult:
        """Run every round (round 1 runs at each site's approval) and return the model.

        ``after_round(number)`` is called once each round's model is averaged.
        """
        plan = self.plan
        history: list[dict[str, Any]] = []
        timings: list[dict[str, float]] = []
        global_weights: bytes | None = None
        stopped: str | None = None
        completed = 0
        for number in range(1, plan.rounds + 1):
            started = time.monotonic()
            if number > 1:
                for site in self.alive():
                    try:
                        site.request.run(params={"round": number}, weights=global_weights)
                    except Exception as exc:  # noqa: BLE001 - the site is gone
                        site.dropped = f"round {number}: {type(exc).__name__}: {exc}"[:500]
            outputs = {s.name: self._collect(s, number, timeout) for s in self.alive()}
            answered = {name: out for name, out in outputs.items() if out is not None}
            lost = sorted(set(outputs) - set(answered)) + sorted(
                s.name for s in self.sites.values() if s.dropped and s.name not in outputs
            )
            if not answered or (lost and plan.on_dropout == "stop"):
                stopped = (
                    f"round {number}: no site answered"
                    if not answered
                    else f"round {number}: {', '.join(lost)} dropped out (on_dropout='stop')"
                )
                break
            counts = [max(1.0, answered[name]["count"]) for name in answered]
            global_weights = fedavg([answered[name]["model"] for name in answered], counts)
            completed = number
            history.append(
                {"round": number, "sites": sorted(answered), "counts": counts, "dropped": lost}
            )
            timings.append({"round": number, "seconds": time.monotonic() - started})
            if after_round is not None:
                after_round(number)
        refunded = self._close_unfinished()
        arch = deep.check_arch(plan.arch)
        if global_weights is None:  # not even round 1 finished anywhere
            torch_model = _initial(plan)
            global_weights = deep.weights_of(torch_model)
        sites = {
            s.name: {
                "rounds": s.rounds_done,
                "dropped": s.dropped,
                "spent_epsilon": s.spent_epsilon,
                "reserved_epsilon": plan.epsilon * (1 - refunded.get(s.name, 0) / plan.rounds),
                "reserved_delta": plan.delta * (1 - refunded.get(s.name, 0) / plan.rounds),
                "refunded_rounds": refunded.get(s.name, 0),
                "counts": s.counts,
            }
            for s in self.sites.values()
        }
        return FederatedResult(
            model={"arch": arch, "weights": global_weights},
            rounds_completed=completed,
            stopped=stopped,
            sites=sites,
            history=history,
            timings=timings,
        )

    def _close_unfinished(self) -> dict[str, int]:
        """Close each reachable site's request that has rounds it will never run (the plan
        stopped, or the site dropped out and came back): those rounds are refunded there.
        A site that cannot be reached keeps them reserved until its request is closed
        (``rk`` ``Request.close()``). Returns the rounds refunded per site."""
        refunded = {}
        for site in self.sites.values():
            try:
                before = site.request.refresh().data
                left = before["runs_allowed"] - before["runs_used"]
                if left > 0 and before["state"] == "released":
                    site.request.close()
                    refunded[site.name] = left
            except Exception as exc:  # noqa: BLE001 - unreachable: say so, keep going
                note = f"its unused rounds stay reserved until closed: {type(exc).__name__}"
                site.dropped = "; ".join(filter(None, [site.dropped, note]))[:500]
        return refunded


def _initial(plan: Plan) -> Any:
    import torch

    torch.manual_seed(plan.seed)
    return deep.build_model(plan.arch)


def submit(
    plan: Plan,
    sites: dict[str, Any] | list[Any],
    project: str = "Federated",
    description: str = "",
) -> Federation:
    """Submit ``plan`` to every site: ``sites`` maps a name to an :class:`Asset`
    (``site.datasets["Diabetes"].assets["patients"]``), or is a list of them.

    Each owner approves once (``runs = rounds``); then call :meth:`Federation.run`.
    """
    from researcher_kit.client import Site

    named = sites if isinstance(sites, dict) else {f"site{i + 1}": a for i, a in enumerate(sites)}
    text = description or (
        f"Federated plan: {plan.rounds} rounds of DP-SGD ({len(named)} sites); this site "
        f"spends epsilon={plan.epsilon:g}, delta={plan.delta:g} over all rounds."
    )
    requests = {}
    for name, asset in named.items():
        site = Site(asset._session)
        requests[name] = site.submit(request_for(plan, asset), project=project, description=text)
    return Federation(plan, requests)
