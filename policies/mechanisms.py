"""Recognising DP mechanism calls in source code and the epsilon their constants imply.

A call is a mechanism when it resolves (through the imports) to a mechanism of a
registered DP library (:mod:`policies.dp_libraries`): an OpenDP measurement constructor
(``make_laplace``, ``then_gaussian``, ...), OpenDP's ``Context.compositor``, a
diffprivlib model/tool/mechanism, or a ``researcher_kit.dp`` helper given ``epsilon=``.
Noise the code draws itself is a mechanism too (family ``handwritten``): NumPy's
``numpy.random`` functions and ``Generator`` / ``RandomState`` methods (Laplace, normal,
exponential, geometric, Gumbel), ``scipy.stats`` samplers (``laplace.rvs``, ...) and the
``random`` module's (``gauss``, ``expovariate``, ...). They are floating-point samplers,
attackable through the bits of their output (Mironov, CCS 2012), so they are never proof.

Each library reads the implied epsilon of its own calls (its ``read``). For OpenDP's
Laplace-family calls it is ``sensitivity / scale``. The sensitivity is the left side of
``scale=sensitivity / epsilon`` when that is a constant, else a constant named like
``sensitivity`` in scope, else 1 (the unit distance of ``absolute_distance``, as in the
PySyft + OpenDP tutorial). Gaussian calls give zCDP ``rho = sensitivity**2 /
(2 * scale**2)``, converted to epsilon at the declared delta.

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
from typing import Any

from policies import dp_libraries
from policies.dp_libraries.base import MechanismCall, base_name, zcdp_to_epsilon
from policies.dp_libraries.handwritten import GENERATOR
from policies.dp_libraries.handwritten import SAMPLERS as HANDWRITTEN_SAMPLERS
from policies.dp_libraries.handwritten import distribution as handwritten_distribution
from policies.dp_libraries.opendp import MEASUREMENTS as OPENDP_MEASUREMENTS
from policies.names import dotted_name

__all__ = [
    "GENERATOR",
    "HANDWRITTEN_SAMPLERS",
    "OPENDP_MEASUREMENTS",
    "MechanismCall",
    "base_name",
    "classify",
    "handwritten_distribution",
    "is_handwritten",
    "mechanism_call",
    "same_mechanism",
    "zcdp_to_epsilon",
]


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
    """(family, display name) when ``qualname`` is a mechanism, else None.

    >>> classify("opendp.measurements.make_laplace"), classify("diffprivlib.tools.mean")
    (('opendp', 'make_laplace'), ('diffprivlib', 'diffprivlib.tools.mean'))
    """
    found = dp_libraries.recognise(qualname)
    return None if found is None else (found[0].family, found[1])


def is_handwritten(use: MechanismCall) -> bool:
    """Whether ``use`` is noise the site cannot vouch for (a library not ``vouched``)."""
    return not dp_libraries.by_family(use.family).vouched


def mechanism_call(
    call: ast.Call, aliases: dict[str, str], env: dict[str, Any], delta: float
) -> MechanismCall | None:
    """The mechanism ``call`` invokes, with its implied epsilon where constants allow."""
    qualname = dotted_name(call.func, aliases)
    found = dp_libraries.recognise(qualname)
    if found is None:
        return None
    library, name = found
    use = MechanismCall(name=name, family=library.family, line=call.lineno)
    return library.read(call, qualname or name, use, env, delta)
