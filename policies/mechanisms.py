"""Recognising DP mechanism calls in source code and the epsilon their constants imply.

A call is a mechanism when it resolves (through the imports) to an OpenDP measurement
constructor (``make_laplace``, ``then_gaussian``, ...), OpenDP's ``Context.compositor``,
a diffprivlib model/tool/mechanism, or a ``researcher_kit.dp`` helper given ``epsilon=``.
Noise the code draws itself is a mechanism too (family ``handwritten``): NumPy's
``numpy.random`` functions and ``Generator`` / ``RandomState`` methods (Laplace, normal,
exponential, geometric, Gumbel), ``scipy.stats`` samplers (``laplace.rvs``, ...) and the
``random`` module's (``gauss``, ``expovariate``, ...). They are floating-point samplers,
attackable through the bits of their output (Mironov, CCS 2012), so they are never proof.

The implied epsilon of a Laplace-family call is ``sensitivity / scale``. The sensitivity
is the left side of ``scale=sensitivity / epsilon`` when that is a constant, else a
constant named like ``sensitivity`` in scope, else 1 (the unit distance of
``absolute_distance``, as in the PySyft + OpenDP tutorial). Gaussian calls give zCDP
``rho = sensitivity**2 / (2 * scale**2)``, converted to epsilon at the declared delta.

>>> import ast
>>> from policies.names import import_aliases
>>> src = "import opendp.prelude as dp\\ns = 1.0\\nm = dp.m.make_laplace(a, b, scale=s / 0.5)"
>>> tree = ast.parse(src)
>>> call = tree.body[2].value
>>> use = mechanism_call(call, import_aliases(tree), {"s": 1.0}, delta=0.0)
>>> (use.name, use.epsilon, use.sensitivity)
('make_laplace', 0.5, 1.0)
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from policies.names import dotted_name, fold

OPENDP_MEASUREMENTS = frozenset(
    prefix + name
    for prefix in ("make_", "then_")
    for name in (
        "alp_queryable",
        "canonical_noise",
        "gaussian",
        "gaussian_threshold",
        "geometric",
        "laplace",
        "laplace_threshold",
        "noise",
        "noise_threshold",
        "noisy_max",
        "noisy_top_k",
        "private_expr",
        "private_lazyframe",
        "private_quantile",
        "randomized_response",
        "randomized_response_bitvec",
        "randomized_response_bool",
        "report_noisy_max_gumbel",
        "user_measurement",
    )
)
_LAPLACE_LIKE = {"laplace", "geometric", "laplace_threshold"}
_GAUSSIAN_LIKE = {"gaussian", "gaussian_threshold"}
#: Hand-written noise: sampler -> distribution (laplace | gaussian | exponential | geometric).
HANDWRITTEN_SAMPLERS = {
    "laplace": "laplace",
    "normal": "gaussian",
    "standard_normal": "gaussian",
    "exponential": "exponential",
    "standard_exponential": "exponential",
    "geometric": "geometric",
    "gumbel": "exponential",
}
_SCIPY_SAMPLERS = {
    "laplace": "laplace",
    "norm": "gaussian",
    "expon": "exponential",
    "geom": "geometric",
    "gumbel_r": "exponential",
    "dlaplace": "geometric",
}
_RANDOM_SAMPLERS = {
    "gauss": "gaussian",
    "normalvariate": "gaussian",
    "expovariate": "exponential",
}
#: What a Generator is called once ``rng = np.random.default_rng()`` is resolved.
GENERATOR = "numpy.random.Generator"
_DIFFPRIVLIB_DP = ("diffprivlib.models.", "diffprivlib.tools.", "diffprivlib.mechanisms.")
_DIFFPRIVLIB_SHORT = ("diffprivlib.",)


@dataclass
class MechanismCall:
    """A mechanism call site found statically."""

    name: str  # short for OpenDP (make_laplace), dotted for diffprivlib / the kit
    family: str  # opendp | context | diffprivlib | kit | handwritten
    line: int
    epsilon: float | None = None  # implied per invocation, None when not constant
    delta: float = 0.0
    sensitivity: float | None = None
    sensitivity_source: str = ""
    scale: float | None = None


def base_name(name: str) -> str:
    """``then_laplace``/``dp.m.make_laplace`` -> ``laplace``; dotted names -> last part."""
    last = name.rsplit(".", 1)[-1]
    for prefix in ("make_", "then_"):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


def same_mechanism(used: str, declared: str) -> bool:
    """Whether a declared mechanism name covers a used one (short or dotted, ``.*``)."""
    if declared.endswith(".*"):
        return used.startswith(declared[:-1])
    if declared == used:
        return True
    return base_name(declared) == base_name(used) and (
        "." not in declared or "." not in used or declared.rsplit(".", 1)[-1] == base_name(used)
    )


def classify(qualname: str | None) -> tuple[str, str] | None:
    """(family, display name) when ``qualname`` is a mechanism, else None."""
    if not qualname:
        return None
    last = qualname.rsplit(".", 1)[-1]
    if last in OPENDP_MEASUREMENTS and (qualname.startswith("opendp") or qualname == last):
        return "opendp", last
    if qualname.startswith("opendp") and qualname.endswith("Context.compositor"):
        return "context", "Context"
    if qualname.startswith(_DIFFPRIVLIB_DP):
        return "diffprivlib", qualname
    if qualname.startswith("researcher_kit.dp."):
        return "kit", qualname
    if handwritten_distribution(qualname) is not None:
        return "handwritten", qualname
    return None


def handwritten_distribution(qualname: str | None) -> str | None:
    """The distribution a hand-written noise call draws from, or None.

    >>> handwritten_distribution("numpy.random.laplace"), handwritten_distribution("random.gauss")
    ('laplace', 'gaussian')
    >>> handwritten_distribution("scipy.stats.norm.rvs"), handwritten_distribution("numpy.sum")
    ('gaussian', None)
    """
    if not qualname:
        return None
    parts = qualname.split(".")
    if parts[:2] == ["numpy", "random"] and len(parts) >= 3:
        return HANDWRITTEN_SAMPLERS.get(parts[-1])
    if parts[:2] == ["scipy", "stats"] and len(parts) == 4 and parts[3] == "rvs":
        return _SCIPY_SAMPLERS.get(parts[2])
    if parts[0] == "random" and len(parts) == 2:
        return _RANDOM_SAMPLERS.get(parts[1])
    return None


def is_handwritten(use: MechanismCall) -> bool:
    return use.family == "handwritten"


def is_diffprivlib_model(qualname: str | None) -> bool:
    return bool(qualname) and qualname.startswith("diffprivlib.models.")


def is_kit_helper(qualname: str | None) -> bool:
    return bool(qualname) and qualname.startswith("researcher_kit.dp.")


def _arg(call: ast.Call, keyword: str, position: int | None) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _sensitivity(scale_node: ast.AST, env: dict[str, Any]) -> tuple[float, str]:
    if isinstance(scale_node, ast.BinOp) and isinstance(scale_node.op, ast.Div):
        left = fold(scale_node.left, env)
        left_is_named = isinstance(scale_node.left, ast.Name) and "sens" in scale_node.left.id
        if left is not None and left_is_named:
            return float(left), f"`{scale_node.left.id}` in `scale={ast.unparse(scale_node)}`"
    for name, value in env.items():
        if "sensitiv" in name.lower() and isinstance(value, int | float):
            return float(value), f"constant `{name}` in scope"
    return 1.0, "unit distance of the input metric (assumed)"


def zcdp_to_epsilon(rho: float, delta: float) -> float:
    """Epsilon of a rho-zCDP release at ``delta`` (Bun & Steinke 2016, Prop. 1.3)."""
    if rho <= 0:
        return 0.0
    if delta <= 0:
        return math.inf
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def mechanism_call(
    call: ast.Call, aliases: dict[str, str], env: dict[str, Any], delta: float
) -> MechanismCall | None:
    """The mechanism ``call`` invokes, with its implied epsilon where constants allow."""
    qualname = dotted_name(call.func, aliases)
    found = classify(qualname)
    if found is None:
        return None
    family, name = found
    use = MechanismCall(name=name, family=family, line=call.lineno)
    if family == "opendp":
        kind = base_name(name)
        position = 2 if name.startswith("make_") else 0
        scale_node = _arg(call, "scale", position)
        scale = fold(scale_node, env)
        if scale_node is not None and isinstance(scale, int | float) and scale > 0:
            use.scale = float(scale)
            if kind in _LAPLACE_LIKE or kind in _GAUSSIAN_LIKE:
                use.sensitivity, use.sensitivity_source = _sensitivity(scale_node, env)
            if kind in _LAPLACE_LIKE:
                use.epsilon = use.sensitivity / use.scale
            elif kind in _GAUSSIAN_LIKE:
                rho = use.sensitivity**2 / (2 * use.scale**2)
                use.epsilon, use.delta = zcdp_to_epsilon(rho, delta), delta
    elif family == "context":
        loss = _arg(call, "privacy_loss", None)
        if isinstance(loss, ast.Call):
            use.epsilon = _float(fold(_arg(loss, "epsilon", None), env))
            use.delta = _float(fold(_arg(loss, "delta", None), env)) or 0.0
    elif family == "diffprivlib":
        eps_node = _arg(call, "epsilon", None)
        # diffprivlib's models and tools default to epsilon=1.0 when none is given
        use.epsilon = 1.0 if eps_node is None else _float(fold(eps_node, env))
        use.delta = _float(fold(_arg(call, "delta", None), env)) or 0.0
    elif family == "handwritten":
        _handwritten(call, qualname or name, use, env, delta)
    else:  # the kit: a mechanism only when it is given a budget
        eps_node = _arg(call, "epsilon", None)
        if eps_node is None:
            return None
        use.epsilon = _float(fold(eps_node, env))
        use.delta = _float(fold(_arg(call, "delta", None), env)) or 0.0
    return use


def _handwritten(
    call: ast.Call, qualname: str, use: MechanismCall, env: dict[str, Any], delta: float
) -> None:
    """Implied epsilon of a hand-written sampler whose scale is a constant.

    Laplace and exponential noise of scale ``b`` give ``sensitivity / b`` (exponential
    noise, as in report-noisy-max, at most that); a geometric with success probability
    ``p`` gives ``-sensitivity * log(1 - p)``; Gaussian noise of standard deviation
    ``sigma`` gives ``rho = sensitivity**2 / (2 sigma**2)``, converted at the declared
    delta (infinite when delta is 0: Gaussian noise is never pure epsilon-DP).
    """
    dist = handwritten_distribution(qualname)
    last = qualname.rsplit(".", 1)[-1]
    if last.startswith("standard_"):
        return  # unit scale, multiplied afterwards: not readable here
    if qualname.startswith("scipy.stats."):
        node = _arg(call, "scale", 1)
    elif qualname.startswith("random."):
        node = _arg(call, "sigma", 1) if dist == "gaussian" else None
        if dist == "exponential" and call.args:  # expovariate(lambd): scale = 1 / lambd
            lambd = fold(call.args[0], env)
            if isinstance(lambd, int | float) and lambd > 0:
                use.scale = 1 / float(lambd)
                use.sensitivity, use.sensitivity_source = _sensitivity(call.args[0], env)
                use.epsilon = use.sensitivity / use.scale
            return
    elif dist == "geometric":
        node = _arg(call, "p", 0)
    elif dist == "exponential" or last == "gumbel":
        node = _arg(call, "scale", 0 if last == "exponential" else 1)
    else:
        node = _arg(call, "scale", 1)
    value = fold(node, env)
    if node is None or not isinstance(value, int | float) or value <= 0:
        return
    use.sensitivity, use.sensitivity_source = _sensitivity(node, env)
    if dist == "geometric":
        if value >= 1:
            return
        use.epsilon = -use.sensitivity * math.log(1 - float(value))
        return
    use.scale = float(value)
    if dist == "gaussian":
        rho = use.sensitivity**2 / (2 * use.scale**2)
        use.epsilon, use.delta = zcdp_to_epsilon(rho, delta), delta
    else:
        use.epsilon = use.sensitivity / use.scale


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
