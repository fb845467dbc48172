"""DP deep learning: PyTorch models trained with Opacus's DP-SGD, returned as safetensors.

``train_torch(df, arch, features=[...], target=..., epsilon=..., delta=..., epochs=...)``
trains a small network, described by an allowlisted JSON architecture, with DP-SGD:
Poisson-sampled batches (each row joins each step with probability ``sample_rate``),
per-sample gradients clipped to ``max_grad_norm``, Gaussian noise of
``noise_multiplier * max_grad_norm`` added to their sum, which is divided by the public
expected ``batch_size``. Opacus's accountant (RDP by default, or PRV) turns
``(sample_rate, noise_multiplier, steps)`` into ``(epsilon, delta)``.

Everything the guarantee rests on is public and fixed before a row is read
(:func:`plan_training`): the number of steps is ``ceil(epochs / sample_rate)``; the
noise multiplier is either given or found by Opacus so the steps fit the declared
epsilon; a given noise that cannot fit all the planned steps runs only as many steps as
fit (training stops when the budget is reached); a plan in which no step fits, or that
needs absurd noise, is refused. The odometer is charged the accountant's epsilon for the
steps that will run (never more than declared), before the data is read.

Privacy unit: add/remove one row (Opacus's). Where a person may contribute
``max_contributions = k > 1`` rows, group privacy is applied: the rows are trained at
``(epsilon / k, delta / (k * e^((k-1) * epsilon / k)))`` so that ``k`` rows together
cost at most the declared ``(epsilon, delta)``, and that is what is charged.

The architecture is data, not code: a list of layers from :data:`LAYERS`, sizes capped
(:data:`MAX_WIDTH`, :data:`MAX_LAYERS`, :data:`MAX_PARAMETERS`). The model comes back as
``{"arch": [...], "weights": <safetensors bytes>, "epsilon": ..., ...}``;
:func:`load_model` rebuilds it with :func:`build_model` and loads the weights with
``safetensors`` (never pickle, never ``torch.load``).

Residual, stated: the noise comes from torch's generator seeded from ``secrets`` (not
Opacus's ``secure_mode``, which needs torchcsprng); floating-point attacks on the
Gaussian sampler are not addressed.

Torch is imported only where a model is built or trained, so the sandbox (which only
asks the releaser) never needs it.

>>> check_arch([{"type": "linear", "in": 3, "out": 1}, {"type": "sigmoid"}], n_features=3)
[{'type': 'linear', 'in': 3, 'out': 1, 'bias': True}, {'type': 'sigmoid'}]
>>> check_arch([{"type": "lambda", "code": "os.system('x')"}])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
researcher_kit.dp.deep.TrainingRefused: layer 0: unknown layer type 'lambda'; ...
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datasite.contract.tensors import MAX_WEIGHT_BYTES, check_safetensors
from researcher_kit.dp.budget import Budget
from researcher_kit.dp.spend import SpendEntry, record

LAYERS = ("linear", "relu", "tanh", "sigmoid", "dropout")
MAX_LAYERS = 16
MAX_WIDTH = 1024
MAX_PARAMETERS = 500_000
MAX_STEPS = 20_000
MAX_NOISE = 50.0
LOSSES = ("bce", "cross_entropy", "mse")


class TrainingRefused(ValueError):
    """The architecture or the training plan is not one the site runs (said before any data)."""


def check_arch(arch: Any, n_features: int | None = None) -> list[dict[str, Any]]:
    """The architecture, normalized, or :class:`TrainingRefused` saying what is wrong."""
    if not isinstance(arch, list) or not arch:
        raise TrainingRefused("the architecture is a non-empty list of layers")
    if len(arch) > MAX_LAYERS:
        raise TrainingRefused(f"the architecture has {len(arch)} layers; at most {MAX_LAYERS}")
    layers: list[dict[str, Any]] = []
    width, parameters = n_features, 0
    for i, layer in enumerate(arch):
        if not isinstance(layer, dict) or not isinstance(layer.get("type"), str):
            raise TrainingRefused(f"layer {i}: a layer is an object with a 'type'")
        kind = layer["type"]
        if kind not in LAYERS:
            raise TrainingRefused(f"layer {i}: unknown layer type {kind!r}; allowed: {LAYERS}")
        keys = set(layer) - {"type"}
        if kind == "linear":
            if not keys <= {"in", "out", "bias"} or not {"in", "out"} <= keys:
                raise TrainingRefused(f"layer {i}: linear takes in, out and bias only")
            size_in, size_out = layer["in"], layer["out"]
            if not all(type(s) is int and 1 <= s <= MAX_WIDTH for s in (size_in, size_out)):
                raise TrainingRefused(f"layer {i}: linear sizes must be integers in 1..{MAX_WIDTH}")
            if width is not None and size_in != width:
                raise TrainingRefused(f"layer {i}: takes {size_in} inputs but gets {width}")
            bias = layer.get("bias", True)
            if type(bias) is not bool:
                raise TrainingRefused(f"layer {i}: bias is true or false")
            parameters += size_in * size_out + (size_out if bias else 0)
            width = size_out
            layers.append({"type": "linear", "in": size_in, "out": size_out, "bias": bias})
        elif kind == "dropout":
            p = layer.get("p", 0.5)
            if keys - {"p"} or type(p) not in (int, float) or not 0 <= p < 1:
                raise TrainingRefused(f"layer {i}: dropout takes p in [0, 1) only")
            layers.append({"type": "dropout", "p": float(p)})
        else:
            if keys:
                raise TrainingRefused(f"layer {i}: {kind} takes no settings")
            layers.append({"type": kind})
    if parameters > MAX_PARAMETERS:
        raise TrainingRefused(f"the model has {parameters} parameters; at most {MAX_PARAMETERS}")
    if not any(layer["type"] == "linear" for layer in layers):
        raise TrainingRefused("the architecture needs at least one linear layer")
    return layers


def output_width(arch: list[dict[str, Any]]) -> int:
    return [layer["out"] for layer in arch if layer["type"] == "linear"][-1]


def build_model(arch: Any) -> Any:
    """A ``torch.nn.Sequential`` for a checked architecture (the client rebuilds with this)."""
    import torch

    layers = check_arch(arch)
    modules = []
    for layer in layers:
        if layer["type"] == "linear":
            modules.append(torch.nn.Linear(layer["in"], layer["out"], bias=layer["bias"]))
        elif layer["type"] == "dropout":
            modules.append(torch.nn.Dropout(layer["p"]))
        else:
            modules.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh,
                            "sigmoid": torch.nn.Sigmoid}[layer["type"]]())  # fmt: skip
    return torch.nn.Sequential(*modules)


def weights_of(model: Any) -> bytes:
    """A model's parameters as safetensors bytes."""
    from safetensors.torch import save

    return save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})


def load_weights(model: Any, blob: bytes) -> Any:
    """Load safetensors ``blob`` into ``model``: names and shapes must match exactly."""
    import torch
    from safetensors.torch import load

    found = check_safetensors(bytes(blob))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if {k: s for k, (_, s) in found.items()} != expected:
        raise TrainingRefused("the weights do not match the architecture (names or shapes)")
    tensors = {k: v.to(torch.float32) for k, v in load(bytes(blob)).items()}
    model.load_state_dict(tensors, strict=True)
    return model


def load_model(result: dict[str, Any]) -> Any:
    """The trained ``torch`` module from what :func:`train_torch` returned."""
    model = load_weights(build_model(result["arch"]), result["weights"])
    model.eval()
    return model


class Training(BaseModel):
    """The public settings of one DP-SGD training (what travels in ``ReleaseCall.training``)."""

    model_config = ConfigDict(extra="forbid")

    arch: list[dict[str, Any]] = Field(max_length=MAX_LAYERS)
    loss: Literal["bce", "cross_entropy", "mse"] = "bce"
    epochs: float = Field(default=1.0, gt=0, le=100)
    lr: float = Field(default=0.1, gt=0, le=100)
    sample_rate: float = Field(default=0.1, gt=0, le=1)
    batch_size: int = Field(default=64, ge=1, le=100_000)
    max_grad_norm: float = Field(default=1.0, gt=0, le=1e4)
    noise_multiplier: float | None = Field(default=None, gt=0, le=MAX_NOISE)
    accountant: Literal["rdp", "prv"] = "rdp"
    optimizer: Literal["sgd", "adam"] = "sgd"
    feature_bounds: list[tuple[float, float]] | None = Field(default=None, max_length=MAX_WIDTH)
    initial_weights: str | None = Field(default=None, max_length=MAX_WEIGHT_BYTES * 4 // 3 + 8)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)  # the initial weights only, never noise


@dataclass(frozen=True)
class Plan:
    """What a training will do and cost, fixed before a row is read."""

    training: Training
    arch: list[dict[str, Any]]
    features: list[str]
    steps: int
    noise_multiplier: float
    epsilon: float  # charged: the accountant's epsilon for ``steps`` (group-scaled)
    delta: float
    initial_weights: bytes | None


def _accountant(kind: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return RDPAccountant() if kind == "rdp" else PRVAccountant()


def spent_epsilon(kind: str, noise: float, sample_rate: float, steps: int, delta: float) -> float:
    """Opacus's epsilon after ``steps`` DP-SGD steps (add/remove one row)."""
    if steps <= 0:
        return 0.0
    accountant = _accountant(kind)
    accountant.history = [(noise, sample_rate, steps)]
    return float(accountant.get_epsilon(delta=delta))


def plan_training(
    training: Training | dict[str, Any],
    features: list[str],
    epsilon: float | None,
    delta: float | None,
    max_contributions: int = 1,
) -> Plan:
    """Check the settings and let the accountant fix the steps, the noise and the charge."""
    import warnings

    try:
        settings = training if isinstance(training, Training) else Training(**training)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise TrainingRefused(f"training settings: {problems}"[:1000]) from None
    arch = check_arch(settings.arch, n_features=len(features))
    if not features:
        raise TrainingRefused("train_torch needs feature columns")
    width = output_width(arch)
    if settings.loss == "bce" and width != 1:
        raise TrainingRefused("loss 'bce' needs one output (a logit)")
    if settings.loss == "cross_entropy" and width < 2:
        raise TrainingRefused("loss 'cross_entropy' needs one output per class (2 or more)")
    if settings.feature_bounds is not None and len(settings.feature_bounds) != len(features):
        raise TrainingRefused("feature_bounds has one (lower, upper) per feature")
    if any(lo >= hi for lo, hi in settings.feature_bounds or []):
        raise TrainingRefused("each feature bound needs lower < upper")
    if epsilon is None or not (math.isfinite(epsilon) and epsilon > 0):
        raise TrainingRefused("DP-SGD needs epsilon > 0")
    if delta is None or not 0 < delta < 1:
        raise TrainingRefused("DP-SGD needs 0 < delta < 1 (Gaussian noise)")
    k = int(max_contributions)
    if k < 1:
        raise TrainingRefused("max_contributions must be at least 1")
    row_epsilon = epsilon / k
    row_delta = delta / (k * math.exp((k - 1) * row_epsilon))
    steps = math.ceil(settings.epochs / settings.sample_rate)
    if steps > MAX_STEPS:
        raise TrainingRefused(f"{steps} steps (epochs / sample_rate); at most {MAX_STEPS}")
    q, kind = settings.sample_rate, settings.accountant
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if settings.noise_multiplier is None:
            from opacus.accountants.utils import get_noise_multiplier

            # One accountant call says whether any noise up to MAX_NOISE fits; Opacus's own
            # search takes tens of seconds to give up on a plan that cannot fit.
            if spent_epsilon(kind, MAX_NOISE, q, steps, row_delta) > row_epsilon:
                noise = math.inf
            else:
                try:
                    noise = float(get_noise_multiplier(
                        target_epsilon=row_epsilon, target_delta=row_delta, sample_rate=q,
                        steps=steps, accountant=kind, epsilon_tolerance=0.005,
                    ))  # fmt: skip
                except ValueError:
                    noise = math.inf
            if not noise <= MAX_NOISE:
                raise TrainingRefused(
                    f"the plan cannot fit: {steps} steps at sample_rate={q:g} need a noise "
                    f"multiplier above {MAX_NOISE:g} to stay within epsilon={epsilon:g}, "
                    f"delta={delta:g}; train fewer epochs, sample fewer rows, or spend more"
                )
        else:
            noise = settings.noise_multiplier
            if spent_epsilon(kind, noise, q, steps, row_delta) > row_epsilon:
                low, high = 0, steps  # the most steps that fit: training stops there
                while low < high:
                    mid = (low + high + 1) // 2
                    fits = spent_epsilon(kind, noise, q, mid, row_delta) <= row_epsilon
                    low, high = (mid, high) if fits else (low, mid - 1)
                steps = low
                if steps == 0:
                    raise TrainingRefused(
                        f"the plan cannot fit: one step at noise_multiplier={noise:g}, "
                        f"sample_rate={q:g} already spends more than epsilon={epsilon:g}"
                    )
        spent = spent_epsilon(kind, noise, q, steps, row_delta)
    if spent > row_epsilon * (1 + 1e-9):
        raise TrainingRefused("the accountant's epsilon exceeds the declared one")
    charged_delta = k * math.exp((k - 1) * spent) * row_delta
    weights = None
    if settings.initial_weights is not None:
        try:
            weights = base64.b64decode(settings.initial_weights, validate=True)
            found = check_safetensors(weights)
        except ValueError as exc:
            raise TrainingRefused(f"initial_weights: {exc}") from None
        expected = _parameter_shapes(arch)
        if {name: shape for name, (_, shape) in found.items()} != expected:
            raise TrainingRefused("initial_weights do not match the architecture")
    return Plan(settings, arch, list(features), steps, noise, min(spent * k, epsilon),
                min(charged_delta, delta), weights)  # fmt: skip


def _parameter_shapes(arch: list[dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(arch):
        if layer["type"] == "linear":
            shapes[f"{i}.weight"] = (layer["out"], layer["in"])
            if layer["bias"]:
                shapes[f"{i}.bias"] = (layer["out"],)
    return shapes


def prepare(plan: Plan, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features clipped and scaled by the public bounds (nulls at the lower bound), and
    targets made valid for the loss, so data that matches the schema never fails."""
    X = np.asarray(X, dtype=np.float64)
    bounds = plan.training.feature_bounds
    if bounds is not None:
        lower = np.array([b[0] for b in bounds])
        upper = np.array([b[1] for b in bounds])
        X = np.where(np.isnan(X), lower, X)
        X = (np.clip(X, lower, upper) - lower) / (upper - lower)
    X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    y = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if plan.training.loss == "bce":
        y = (y > 0.5).astype(np.float64)
    elif plan.training.loss == "cross_entropy":
        y = np.clip(np.rint(y), 0, output_width(plan.arch) - 1)
    return X, y


def fit(plan: Plan, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Run the planned DP-SGD steps on (X, y) and return the released model."""
    import secrets
    import warnings

    import torch
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    t = plan.training
    X, y = prepare(plan, X, y)
    features = torch.tensor(X, dtype=torch.float32)
    targets = torch.tensor(y, dtype=torch.long if t.loss == "cross_entropy" else torch.float32)
    if t.loss != "cross_entropy":
        targets = targets.reshape(-1, 1) if output_width(plan.arch) == 1 else targets
    torch.manual_seed(t.seed)  # the public initialization
    model = build_model(plan.arch)
    if plan.initial_weights is not None:
        load_weights(model, plan.initial_weights)
    model.train()
    noise_seed = secrets.randbits(63)
    generator = torch.Generator().manual_seed(noise_seed)
    sampler = np.random.Generator(np.random.PCG64DXSM(secrets.randbits(128)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        private = GradSampleModule(model)
        inner = (torch.optim.SGD if t.optimizer == "sgd" else torch.optim.Adam)(
            private.parameters(), lr=t.lr
        )
        optimizer = DPOptimizer(
            inner, noise_multiplier=plan.noise_multiplier, max_grad_norm=t.max_grad_norm,
            expected_batch_size=t.batch_size, generator=generator,
        )  # fmt: skip
        accountant = _accountant(t.accountant)
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=t.sample_rate))
        loss_fn = {
            "bce": torch.nn.BCEWithLogitsLoss(reduction="sum"),
            "cross_entropy": torch.nn.CrossEntropyLoss(reduction="sum"),
            "mse": torch.nn.MSELoss(reduction="sum"),
        }[t.loss]
        n = len(features)
        for _ in range(plan.steps):
            chosen = torch.from_numpy(np.flatnonzero(sampler.random(n) < t.sample_rate))
            optimizer.zero_grad()
            out = private(features[chosen])
            # Summed per-sample losses: Opacus clips each row's gradient, adds the noise
            # and divides by the public expected batch size (an empty batch is noise).
            loss = loss_fn(out, targets[chosen]) if len(chosen) else out.sum()
            loss.backward()
            optimizer.step()
    steps = sum(s for _, _, s in getattr(accountant, "history", [])) or plan.steps
    model = private._module
    model.eval()
    return {
        "arch": plan.arch,
        "weights": weights_of(model),
        "epsilon": plan.epsilon,
        "delta": plan.delta,
        "steps": int(steps),
        "noise_multiplier": plan.noise_multiplier,
        "sample_rate": t.sample_rate,
        "accountant": t.accountant,
    }


def train_torch(
    frame: Any,
    arch: list[dict[str, Any]],
    *,
    features: list[str],
    target: str | None = None,
    label: Any = None,
    epsilon: float | None = None,
    delta: float | None = None,
    epochs: float = 1.0,
    lr: float = 0.1,
    sample_rate: float = 0.1,
    batch_size: int = 64,
    max_grad_norm: float = 1.0,
    noise_multiplier: float | None = None,
    accountant: Literal["rdp", "prv"] = "rdp",
    optimizer: Literal["sgd", "adam"] = "sgd",
    loss: Literal["bce", "cross_entropy", "mse"] = "bce",
    feature_bounds: list[tuple[float, float]] | None = None,
    initial_weights: bytes | None = None,
    seed: int = 0,
    budget: Budget | None = None,
    max_contributions: int = 1,
) -> dict[str, Any]:
    """Train ``arch`` with DP-SGD on ``frame[features]`` against ``target`` (a column) or
    ``label`` (a condition such as ``df["target"] > 140``); see the module doc.

    Returns ``{"arch", "weights" (safetensors bytes), "epsilon", "delta", "steps",
    "noise_multiplier", "sample_rate", "accountant"}``; :func:`load_model` rebuilds it.

    >>> import numpy as np, pandas as pd
    >>> from researcher_kit import dp
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"a": rng.uniform(0, 1, 200), "b": rng.uniform(0, 1, 200)})
    >>> df["y"] = (df["a"] > df["b"]).astype(int)
    >>> model = dp.train_torch(df, [{"type": "linear", "in": 2, "out": 1}],
    ...                        features=["a", "b"], target="y", epsilon=1.0, delta=1e-5,
    ...                        epochs=1, sample_rate=0.1, feature_bounds=[(0, 1), (0, 1)])
    >>> model["steps"], model["epsilon"] <= 1.0, model["weights"][:8] != b""
    (10, True, True)
    >>> load_model(model)  # the torch module, rebuilt; weights from safetensors
    Sequential(
      (0): Linear(in_features=2, out_features=1, bias=True)
    )
    """
    training = {
        "arch": arch, "loss": loss, "epochs": epochs, "lr": lr, "sample_rate": sample_rate,
        "batch_size": batch_size, "max_grad_norm": max_grad_norm,
        "noise_multiplier": noise_multiplier, "accountant": accountant, "optimizer": optimizer,
        "feature_bounds": [list(b) for b in feature_bounds] if feature_bounds else None,
        "initial_weights": base64.b64encode(bytes(initial_weights)).decode()
        if initial_weights is not None else None,
        "seed": seed,
    }  # fmt: skip
    if (target is None) == (label is None):
        raise TrainingRefused("pass exactly one of target='column' or label=<condition>")
    from researcher_kit.blind import BlindPredicate, is_blind, release_from

    if is_blind(frame):
        node = label.node if isinstance(label, BlindPredicate) else label
        return release_from(
            frame, "train_torch", epsilon=epsilon, delta=delta, features=list(features),
            target=target, label=node, training=training,
        )  # fmt: skip
    plan = plan_training(training, list(features), epsilon, delta, max_contributions)
    if budget is not None:
        budget.spend(plan.epsilon, plan.delta)
    X = frame[list(features)].to_numpy(dtype=float)
    if target is not None:
        y = frame[target].to_numpy(dtype=float)
    elif isinstance(label, dict):
        from datasite.contract.release import check_filter
        from researcher_kit.filters import mask

        try:
            check_filter(label)
        except ValueError as exc:
            raise TrainingRefused(str(exc)) from None
        y = mask(label, frame).astype(float)
    else:
        y = np.asarray(label, dtype=float)
    result = fit(plan, X, y)
    record_training(plan, result)
    return result


def record_training(plan: Plan, result: dict[str, Any]) -> None:
    record(
        SpendEntry(
            helper="train_torch",
            mechanism=f"opacus.dpsgd.{plan.training.accountant}",
            epsilon=plan.epsilon,
            delta=plan.delta,
            scale=plan.noise_multiplier * plan.training.max_grad_norm,
            sensitivity=plan.training.max_grad_norm,
            details={
                "steps": result["steps"],
                "sample_rate": plan.training.sample_rate,
                "noise_multiplier": plan.noise_multiplier,
            },  # fmt: skip
        )
    )
