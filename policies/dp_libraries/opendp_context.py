"""OpenDP's Context API: ``dp.Context.compositor(...)`` (family ``context``).

Statically, the epsilon is the compositor's ``privacy_loss=dp.loss_of(epsilon=...)``.
In the dry-run ``Context.compositor`` is wrapped to record the budget each Context is
bound to (its ``d_out``, or its accountant's map at ``d_in``): an *allotment* made up
front, which bounds every query released through it (those run through OpenDP
measurements and are held fixed on the replays like any other).

>>> LIBRARY.recognise("opendp.prelude.Context.compositor")
'Context'
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from policies.dp_libraries.base import DPLibrary, MechanismCall, Patch, Tally, arg, as_float
from policies.names import fold
from policies.report import MechanismUse

if TYPE_CHECKING:  # pragma: no cover - types only
    from policies.instrument import Recorder

#: The spend entries' key, and the name a Context's use is reported under.
KEY, NAME = "contexts", "Context"


def recognise(qualname: str) -> str | None:
    if qualname.startswith("opendp") and qualname.endswith("Context.compositor"):
        return NAME
    return None


def read(
    call: ast.Call, qualname: str, use: MechanismCall, env: dict[str, Any], delta: float
) -> MechanismCall:
    loss = arg(call, "privacy_loss", None)
    if isinstance(loss, ast.Call):
        use.epsilon = as_float(fold(arg(loss, "epsilon", None), env))
        use.delta = as_float(fold(arg(loss, "delta", None), env)) or 0.0
    return use


def _plain_loss(d_out: Any) -> Any:
    if isinstance(d_out, tuple):
        return [float(x) for x in d_out]
    try:
        return float(d_out)
    except (TypeError, ValueError):
        return None


def install(recorder: Recorder, patch: Patch) -> None:
    from opendp.context import Context

    original = Context.compositor
    contexts = recorder.records.setdefault(KEY, [])

    def compositor(*args: Any, **kwargs: Any) -> Any:
        recorder.depth += 1
        try:
            context = original(*args, **kwargs)
        finally:
            recorder.depth -= 1
        measure = str(context.accountant.output_measure)
        d_out = context.d_out
        if d_out is None:
            recorder.depth += 1
            try:
                d_out = context.accountant.map(context.d_in)
            except Exception:  # noqa: BLE001 - reported as an unknown spend
                d_out = None
            finally:
                recorder.depth -= 1
        contexts.append(
            {"line": recorder._user_line(), "measure": measure, "d_out": _plain_loss(d_out)}
        )
        return context

    patch(Context, "compositor", staticmethod(compositor))


def account(recorder: Recorder, n_rows: int, tally: Tally) -> list[dict[str, Any]]:
    contexts = recorder.records.setdefault(KEY, [])
    for context in contexts:
        d_out = context["d_out"]
        if isinstance(d_out, list):
            tally.epsilon, tally.delta = tally.epsilon + d_out[0], tally.delta + d_out[1]
        elif d_out is None:
            tally.unknown = True
        elif context["measure"].startswith("ZeroConcentrated"):
            tally.rho += d_out
        else:
            tally.epsilon += d_out
    return contexts


def report(contexts: list[dict[str, Any]]) -> list[MechanismUse]:
    uses = []
    for c in contexts:
        d_out = c.get("d_out")
        eps = d_out[0] if isinstance(d_out, list) else d_out
        uses.append(
            MechanismUse(
                name=NAME,
                line=c.get("line"),
                invocations=1,
                epsilon_total=eps,
                composition=f"OpenDP compositor ({c.get('measure')})",
                d_in_source="max_contributions (Context privacy unit)",
            )
        )
    return uses


LIBRARY = DPLibrary(
    family="context",
    title="OpenDP Context",
    recognise=recognise,
    read=read,
    default_mechanisms=(NAME,),
    imports=("opendp",),
    install=install,
    spend_key=KEY,
    account=account,
    report=report,
    allotment=True,
    # A Context is bound to the budget it was given: it needs no declaration of its own.
    covers=lambda used, declared: used == NAME,
)
