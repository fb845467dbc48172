"""Noise the code draws itself (family ``handwritten``).

NumPy's ``numpy.random`` functions and ``Generator`` / ``RandomState`` methods (Laplace,
normal, exponential, geometric, Gumbel), ``scipy.stats`` samplers (``laplace.rvs``, ...)
and the ``random`` module's (``gauss``, ``expovariate``, ...). They are floating-point
samplers, attackable through the bits of their output (Mironov, CCS 2012), so they are
never proof: the library is not ``vouched`` for, and not in the default allowed list.

>>> LIBRARY.recognise("numpy.random.Generator.laplace"), LIBRARY.recognise("numpy.sum")
('numpy.random.Generator.laplace', None)
"""

from __future__ import annotations

import ast
import math
from typing import Any

from policies.dp_libraries.base import (
    DPLibrary,
    MechanismCall,
    arg,
    sensitivity,
    zcdp_to_epsilon,
)
from policies.names import fold

#: Sampler -> distribution (laplace | gaussian | exponential | geometric).
SAMPLERS = {
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


def distribution(qualname: str | None) -> str | None:
    """The distribution a hand-written noise call draws from, or None.

    >>> distribution("numpy.random.laplace"), distribution("random.gauss")
    ('laplace', 'gaussian')
    >>> distribution("scipy.stats.norm.rvs"), distribution("numpy.sum")
    ('gaussian', None)
    """
    if not qualname:
        return None
    parts = qualname.split(".")
    if parts[:2] == ["numpy", "random"] and len(parts) >= 3:
        return SAMPLERS.get(parts[-1])
    if parts[:2] == ["scipy", "stats"] and len(parts) == 4 and parts[3] == "rvs":
        return _SCIPY_SAMPLERS.get(parts[2])
    if parts[0] == "random" and len(parts) == 2:
        return _RANDOM_SAMPLERS.get(parts[1])
    return None


def recognise(qualname: str) -> str | None:
    return qualname if distribution(qualname) is not None else None


def read(
    call: ast.Call, qualname: str, use: MechanismCall, env: dict[str, Any], delta: float
) -> MechanismCall:
    """Implied epsilon of a hand-written sampler whose scale is a constant.

    Laplace and exponential noise of scale ``b`` give ``sensitivity / b`` (exponential
    noise, as in report-noisy-max, at most that); a geometric with success probability
    ``p`` gives ``-sensitivity * log(1 - p)``; Gaussian noise of standard deviation
    ``sigma`` gives ``rho = sensitivity**2 / (2 sigma**2)``, converted at the declared
    delta (infinite when delta is 0: Gaussian noise is never pure epsilon-DP).
    """
    dist = distribution(qualname)
    last = qualname.rsplit(".", 1)[-1]
    if last.startswith("standard_"):
        return use  # unit scale, multiplied afterwards: not readable here
    if qualname.startswith("scipy.stats."):
        node = arg(call, "scale", 1)
    elif qualname.startswith("random."):
        node = arg(call, "sigma", 1) if dist == "gaussian" else None
        if dist == "exponential" and call.args:  # expovariate(lambd): scale = 1 / lambd
            lambd = fold(call.args[0], env)
            if isinstance(lambd, int | float) and lambd > 0:
                use.scale = 1 / float(lambd)
                use.sensitivity, use.sensitivity_source = sensitivity(call.args[0], env)
                use.epsilon = use.sensitivity / use.scale
            return use
    elif dist == "geometric":
        node = arg(call, "p", 0)
    elif dist == "exponential" or last == "gumbel":
        node = arg(call, "scale", 0 if last == "exponential" else 1)
    else:
        node = arg(call, "scale", 1)
    value = fold(node, env)
    if node is None or not isinstance(value, int | float) or value <= 0:
        return use
    use.sensitivity, use.sensitivity_source = sensitivity(node, env)
    if dist == "geometric":
        if value >= 1:
            return use
        use.epsilon = -use.sensitivity * math.log(1 - float(value))
        return use
    use.scale = float(value)
    if dist == "gaussian":
        rho = use.sensitivity**2 / (2 * use.scale**2)
        use.epsilon, use.delta = zcdp_to_epsilon(rho, delta), delta
    else:
        use.epsilon = use.sensitivity / use.scale
    return use


LIBRARY = DPLibrary(
    family="handwritten",
    title="hand-written noise",
    recognise=recognise,
    read=read,
    vouched=False,
    imports=("numpy", "scipy", "random"),
)
