"""What the checker knows about one DP library: :class:`DPLibrary`, and the helpers the
library modules share (reading arguments of a call, the sensitivity a scale is divided
from, the zCDP conversion).

Nothing here imports a DP library: a library's own imports happen inside its
run-time installer, in the sandboxed child (``policies.instrument``).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policies.names import fold

if TYPE_CHECKING:  # pragma: no cover - types only
    from policies.instrument import Recorder
    from policies.report import MechanismUse

#: ``patch(owner, attribute, value)``: replace an attribute for the dry-run, restored after.
Patch = Callable[[Any, str, Any], None]


@dataclass
class MechanismCall:
    """A mechanism call site found statically."""

    name: str  # short for OpenDP (make_laplace), dotted for diffprivlib / the kit
    family: str  # the DPLibrary's family: opendp | context | diffprivlib | kit | handwritten
    line: int
    epsilon: float | None = None  # implied per invocation, None when not constant
    delta: float = 0.0
    sensitivity: float | None = None
    sensitivity_source: str = ""
    scale: float | None = None


@dataclass
class Tally:
    """The dry-run's running total, each library's spend added in registry order."""

    epsilon: float = 0.0  # pure (and approximate) epsilon
    delta: float = 0.0
    rho: float = 0.0  # zCDP, converted at the declared delta at the end
    unknown: bool = False  # a release whose loss could not be evaluated


#: ``read(call, qualname, use, env, delta)``: fill in ``use`` (epsilon, delta, scale,
#: sensitivity) from the call's constants; None when the call is no mechanism after all.
Reader = Callable[[ast.Call, str, MechanismCall, dict[str, Any], float], MechanismCall | None]


def _no_reading(
    call: ast.Call, qualname: str, use: MechanismCall, env: dict[str, Any], delta: float
) -> MechanismCall:
    return use


def _releases(qualname: str) -> str:
    return "dp"


@dataclass(frozen=True)
class DPLibrary:
    """One DP library, as the checker sees it. Only ``family`` and ``recognise`` are needed.

    Static analysis (``policies.mechanisms``, ``policies.static``, ``policies.taint``):

    - ``family``: the name in :class:`MechanismCall` and the registry's key;
    - ``recognise(qualname)``: the display name of a call resolved to ``qualname``
      (``opendp.measurements.make_laplace`` -> ``make_laplace``), or None: not this
      library's mechanism;
    - ``read``: the implied epsilon from the call's constants (a :data:`Reader`);
    - ``returns(qualname)``: what the call gives, for the taint analysis: ``"meas"`` (a
      measurement, DP once invoked), ``"model_dp"`` (an estimator, DP once fitted) or
      ``"dp"`` (a release);
    - ``vouched``: False for noise the site cannot vouch for (hand-written floating-point
      samplers): reported as ``hand_written_noise``, never held to ``allowed_mechanisms``.

    Policy defaults (``policies.schema``): ``default_mechanisms`` (allowed unless the
    owner says otherwise) and ``imports`` (the packages its calls live in).

    The instrumented dry-run (``policies.instrument``, ``policies.dry_run``,
    ``policies.enforcement``), for libraries with an ``install``:

    - ``install(recorder, patch)``: patch the library in the sandboxed child so its
      releases are recorded on ``recorder``;
    - ``spend_key``: its entries' key in the dry-run's spend (``account``'s list) and
      ``name_key`` the entry field naming the mechanism;
    - ``account(recorder, n_rows, tally)``: its entries, their loss added to ``tally``;
    - ``report(entries)``: the :class:`policies.report.MechanismUse` rows of the report;
    - ``allotment``: its entries are budgets allotted up front (OpenDP's Context), not
      releases: listed after the releases, not itemised in the run's spend, never named
      as a mechanism the real run used;
    - ``held_fixed``: whether the dry-run's replays hold its noise fixed (diffprivlib's
      cannot be: an output that moves may be its noise);
    - ``output_class(recorder, value)``: ``(class, reason)`` when ``value`` is one of its
      releases (identity with what it recorded), else None;
    - ``covers(used, declared)``: a looser match of a used name against the declared
      mechanisms than ``policies.mechanisms.same_mechanism``;
    - ``helper_module``: a module whose functions release through another library's
      instrumented calls; such a release is named after the outermost helper frame
      (``researcher_kit.dp.mean``).
    """

    family: str
    recognise: Callable[[str], str | None]
    title: str = ""
    read: Reader = _no_reading
    returns: Callable[[str], str] = _releases
    vouched: bool = True
    default_mechanisms: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    install: Callable[[Recorder, Patch], None] | None = None
    spend_key: str = ""
    name_key: str = "name"
    account: Callable[[Recorder, int, Tally], list[Any]] | None = None
    report: Callable[[list[dict[str, Any]]], list[MechanismUse]] | None = None
    allotment: bool = False
    held_fixed: bool = True
    output_class: Callable[[Recorder, Any], tuple[str, str] | None] | None = None
    covers: Callable[[str, list[str]], bool] | None = None
    helper_module: str = ""

    def __post_init__(self) -> None:
        if self.install is not None and not (self.spend_key and self.account and self.report):
            raise ValueError(
                f"DP library {self.family!r}: an install needs a spend_key, account and report"
            )


# -- helpers the library modules share ---------------------------------------------------


def arg(call: ast.Call, keyword: str, position: int | None) -> ast.AST | None:
    """The node passed as ``keyword=`` or, failing that, at ``position``."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def base_name(name: str) -> str:
    """``then_laplace``/``dp.m.make_laplace`` -> ``laplace``; dotted names -> last part."""
    last = name.rsplit(".", 1)[-1]
    for prefix in ("make_", "then_"):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


def sensitivity(scale_node: ast.AST, env: dict[str, Any]) -> tuple[float, str]:
    """The sensitivity a noise scale was divided from, and where it was read."""
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


def epsilon_keyword(default: float | None = None) -> Reader:
    """A :data:`Reader` for calls given ``epsilon=`` (and ``delta=``) directly.

    ``default``: the epsilon the library uses when none is given (diffprivlib's 1.0);
    None: a call without ``epsilon=`` is no mechanism (the kit's helpers, which then
    draw on a ``budget=``).
    """

    def read(
        call: ast.Call, qualname: str, use: MechanismCall, env: dict[str, Any], delta: float
    ) -> MechanismCall | None:
        node = arg(call, "epsilon", None)
        if node is None:
            if default is None:
                return None
            use.epsilon = default
        else:
            use.epsilon = as_float(fold(node, env))
        use.delta = as_float(fold(arg(call, "delta", None), env)) or 0.0
        return use

    return read
