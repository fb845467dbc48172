"""IBM's diffprivlib: its models, tools and mechanisms (family ``diffprivlib``).

Statically, a call's epsilon is its ``epsilon=`` (diffprivlib's models and tools default
to 1.0 when none is given). In the dry-run ``BudgetAccountant.spend`` is wrapped to
record each spend with the diffprivlib function that made it and the model it fitted,
and ``skops.io.dumps`` to recognise a returned dump of such a model. Its spends add up
sequentially. diffprivlib draws its own noise, which the replays cannot hold fixed.

>>> LIBRARY.recognise("diffprivlib.models.LogisticRegression")
'diffprivlib.models.LogisticRegression'
>>> [LIBRARY.returns(f"diffprivlib.{name}") for name in ("models.PCA", "tools.mean")]
['model_dp', 'dp']
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from policies.dp_libraries.base import DPLibrary, Patch, Tally, epsilon_keyword
from policies.report import MechanismUse

if TYPE_CHECKING:  # pragma: no cover - types only
    from policies.instrument import Recorder

KEY = "diffprivlib"
_MODULES = ("diffprivlib.models.", "diffprivlib.tools.", "diffprivlib.mechanisms.")


def recognise(qualname: str) -> str | None:
    return qualname if qualname.startswith(_MODULES) else None


def returns(qualname: str) -> str:
    """A model is DP once fitted; a tool's or a mechanism's result is a release."""
    return "model_dp" if qualname.startswith("diffprivlib.models.") else "dp"


def _state(recorder: Recorder) -> dict[str, Any]:
    """The models that spent budget (by id) and the skops dumps made (id -> (bytes, obj))."""
    return recorder.scratch(KEY, models={}, dumped={})


def install(recorder: Recorder, patch: Patch) -> None:
    try:
        from diffprivlib.accountant import BudgetAccountant

        from datasite.contract.results import skops_io

        skio = skops_io()
    except ImportError:  # pragma: no cover - both are dependencies
        return
    spend = BudgetAccountant.spend
    spends = recorder.records.setdefault(KEY, [])
    state = _state(recorder)

    def spending(self: Any, epsilon: float, delta: float) -> Any:
        frame, where, model = sys._getframe(1), "diffprivlib", None
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.startswith("diffprivlib.") and not module.startswith("diffprivlib.acc"):
                where = f"{module}.{frame.f_code.co_qualname}"
                candidate = frame.f_locals.get("self")
                if candidate is not None and type(candidate).__module__.startswith("diffprivlib"):
                    model = candidate
            if frame.f_code.co_filename == recorder.user_file:
                break
            frame = frame.f_back
        if recorder.run == "record":
            spends.append(
                {
                    "where": where,
                    "epsilon": float(epsilon),
                    "delta": float(delta),
                    "line": frame.f_lineno if frame is not None else None,
                }
            )
        if model is not None:
            state["models"][id(model)] = model
        return spend(self, epsilon, delta)

    dumps = skio.dumps

    def dumping(obj: Any, *args: Any, **kwargs: Any) -> Any:
        data = dumps(obj, *args, **kwargs)
        state["dumped"][id(data)] = (data, obj)
        return data

    patch(BudgetAccountant, "spend", spending)
    patch(skio, "dumps", dumping)


def account(recorder: Recorder, n_rows: int, tally: Tally) -> list[dict[str, Any]]:
    spends = recorder.records.setdefault(KEY, [])
    for spend in spends:
        tally.epsilon += spend["epsilon"]
        tally.delta += spend["delta"]
    return spends


def report(spends: list[dict[str, Any]]) -> list[MechanismUse]:
    """One use per diffprivlib function and calling line, its spends added up."""
    by_where: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for s in spends:
        by_where.setdefault((s["where"], s.get("line")), []).append(s)
    return [
        MechanismUse(
            name=where,
            line=line,
            invocations=len(group),
            epsilon_each=group[0]["epsilon"],
            epsilon_total=sum(s["epsilon"] for s in group),
            delta_total=sum(s["delta"] for s in group),
            composition="diffprivlib accountant, sequential",
            d_in_source="diffprivlib",
        )
        for (where, line), group in by_where.items()
    ]


def output_class(recorder: Recorder, value: Any) -> tuple[str, str] | None:
    state = _state(recorder)
    if id(value) in state["models"]:
        return "dp", "a diffprivlib model that spent privacy budget"
    dumped = state["dumped"].get(id(value))
    if dumped is not None and id(dumped[1]) in state["models"]:
        return "dp", "a skops dump of a diffprivlib model that spent privacy budget"
    return None


def covers(used: str, declared: list[str]) -> bool:
    """The accountant names the function that spent (``diffprivlib.models.pca.PCA.fit``);
    any declared diffprivlib name, or one whose last part it contains, covers it."""
    return used.startswith("diffprivlib") and any(
        d.startswith("diffprivlib") or d.split(".")[-1] in used for d in declared
    )


LIBRARY = DPLibrary(
    family="diffprivlib",
    title="diffprivlib",
    recognise=recognise,
    # diffprivlib's models and tools default to epsilon=1.0 when none is given
    read=epsilon_keyword(default=1.0),
    returns=returns,
    default_mechanisms=tuple(m + "*" for m in _MODULES),
    imports=("diffprivlib", "skops"),
    install=install,
    spend_key=KEY,
    name_key="where",
    account=account,
    report=report,
    held_fixed=False,
    output_class=output_class,
    covers=covers,
)
