"""The DP-library registry (``policies.dp_libraries``): every library recognises its own
calls, and a library registered from outside is picked up by the whole checker (static
analysis, policy defaults, the instrumented dry-run, its report and the enforcement)."""

from __future__ import annotations

import ast
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from datasite.contract.job import JobSpec
from policies import dp_libraries, enforcement
from policies.checker import Declaration
from policies.dp_libraries import DPLibrary, Tally, epsilon_keyword
from policies.dry_run import apply_dry_run
from policies.instrument import instrumented_call
from policies.mechanisms import classify, mechanism_call
from policies.names import dotted_name, import_aliases
from policies.report import Budget, MechanismUse, PolicyReport
from policies.schema import DEFAULT_IMPORTS, DEFAULT_MECHANISMS, DEFAULT_POLICY, Policy
from policies.static import analyse

#: A call of each registered library: (family, the call as written, its display name,
#: the epsilon its constants imply).
CALLS = [
    ("opendp", "dp.m.make_laplace(d, m, scale=2.0)", "make_laplace", 0.5),
    ("opendp", "dp.m.then_laplace(scale=4.0)", "then_laplace", 0.25),
    ("context", "dp.Context.compositor(data=x, privacy_loss=dp.loss_of(epsilon=0.7))",
     "Context", 0.7),
    ("diffprivlib", "tools.mean(x, epsilon=0.3)", "diffprivlib.tools.mean", 0.3),
    ("diffprivlib", "models.GaussianNB()", "diffprivlib.models.GaussianNB", 1.0),
    ("kit", "rk.dp.mean(x, bounds=(0, 1), epsilon=0.4)", "researcher_kit.dp.mean", 0.4),
    ("handwritten", "np.random.laplace(0, 5.0)", "numpy.random.laplace", 0.2),
    ("handwritten", "random.expovariate(0.5)", "random.expovariate", 0.5),
]  # fmt: skip
IMPORTS = (
    "import opendp.prelude as dp\nimport numpy as np\nimport random\n"
    "import researcher_kit as rk\nfrom diffprivlib import models, tools\n"
)


@pytest.mark.parametrize(("family", "call", "name", "epsilon"), CALLS)
def test_each_library_recognises_its_own_calls(
    family: str, call: str, name: str, epsilon: float
) -> None:
    tree = ast.parse(IMPORTS + "x = " + call)
    node = tree.body[-1].value
    assert isinstance(node, ast.Call)
    aliases = import_aliases(tree)
    use = mechanism_call(node, aliases, {}, delta=0.0)
    assert use is not None and (use.family, use.name) == (family, name)
    assert use.epsilon == pytest.approx(epsilon)
    qualname = dotted_name(node.func, aliases) or ""
    assert dp_libraries.recognise(qualname) == (dp_libraries.by_family(family), name)
    others = [lib for lib in dp_libraries.LIBRARIES if lib.family != family]
    assert [lib.family for lib in others if lib.recognise(qualname) is not None] == []


def test_every_library_is_exercised_and_the_defaults_come_from_the_registry() -> None:
    families = [lib.family for lib in dp_libraries.LIBRARIES]
    assert len(set(families)) == len(families)
    assert {family for family, *_ in CALLS} == set(families)
    assert DEFAULT_MECHANISMS == tuple(
        m for lib in dp_libraries.LIBRARIES for m in lib.default_mechanisms
    )
    # The order is part of DEFAULT_POLICY.version: it is the one the policies had before.
    assert DEFAULT_MECHANISMS[-5:] == (
        "Context", "diffprivlib.models.*", "diffprivlib.tools.*", "diffprivlib.mechanisms.*",
        "researcher_kit.dp.*",
    )  # fmt: skip
    assert all(m in DEFAULT_IMPORTS for lib in dp_libraries.LIBRARIES for m in lib.imports)
    assert Policy().allowed_imports == list(DEFAULT_IMPORTS)
    for library in dp_libraries.LIBRARIES:
        assert all(DEFAULT_POLICY.allows_mechanism(m) for m in library.default_mechanisms)
    assert classify("numpy.sum") is None and classify(None) is None
    # the dry-run lists releases first, then the budgets allotted up front
    order = [lib.family for lib in dp_libraries.instrumented()]
    assert order == ["opendp", "diffprivlib", "context"]
    with pytest.raises(ValueError, match="already registered"):
        dp_libraries.register(dp_libraries.by_family("opendp"))
    with pytest.raises(ValueError, match="spend_key"):
        DPLibrary(family="half", recognise=lambda q: None, install=lambda r, p: None)


# -- a library registered from outside -----------------------------------------------


def _recognise(qualname: str) -> str | None:
    return qualname if qualname.startswith("toydp.") else None


def _install(recorder: Any, patch: Any) -> None:
    """Record each ``toydp.noisy_sum`` call's epsilon, and what it returned."""
    import toydp  # the fake module the test put in sys.modules

    original = toydp.noisy_sum
    spends = recorder.records.setdefault("toydp", [])
    released = recorder.scratch("toy", ids={})

    def noisy_sum(values: Any, epsilon: float) -> Any:
        out = original(values, epsilon)
        if recorder.run == "record":
            spends.append({"name": "toydp.noisy_sum", "epsilon": epsilon, "line": None})
        released["ids"][id(out)] = out
        return out

    patch(toydp, "noisy_sum", noisy_sum)


def _account(recorder: Any, n_rows: int, tally: Tally) -> list[dict[str, Any]]:
    spends = recorder.records.setdefault("toydp", [])
    tally.epsilon += sum(s["epsilon"] for s in spends)
    return spends


def _report(spends: list[dict[str, Any]]) -> list[MechanismUse]:
    return [
        MechanismUse(name=s["name"], invocations=1, epsilon_total=s["epsilon"],
                     composition="ToyDP, sequential")
        for s in spends
    ]  # fmt: skip


def _output_class(recorder: Any, value: Any) -> tuple[str, str] | None:
    if id(value) in recorder.scratch("toy", ids={})["ids"]:
        return "dp", "returned as released by ToyDP"
    return None


TOY = DPLibrary(
    family="toy",
    title="ToyDP",
    recognise=_recognise,
    read=epsilon_keyword(default=None),
    default_mechanisms=("toydp.*",),
    imports=("toydp",),
    install=_install,
    spend_key="toydp",
    account=_account,
    report=_report,
    held_fixed=False,  # it draws its own noise: the replays cannot hold it fixed
    output_class=_output_class,
)

SOURCE = """
def f(df):
    import toydp
    total = toydp.noisy_sum(df["age"], epsilon=0.25)
    return {"total": total, "double": total * 2}
"""
DECLARATION = {"kind": "mechanism", "epsilon": 0.1, "mechanisms": ["toydp.noisy_sum"]}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[DPLibrary]:
    module = types.ModuleType("toydp")
    module.noisy_sum = lambda values, epsilon: float(np.sum(values))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "toydp", module)
    unregister = dp_libraries.register(TOY)
    yield TOY
    unregister()
    assert "toy" not in [lib.family for lib in dp_libraries.LIBRARIES]


def test_an_unregistered_library_is_not_a_mechanism() -> None:
    result = analyse(SOURCE, "f", DECLARATION, Policy(allowed_imports=["toydp"]))
    assert result.mechanisms == []
    assert "no_mechanism" in {f.rule for f in result.findings}


def test_a_registered_library_is_found_by_static_analysis(toy: DPLibrary) -> None:
    policy = Policy()  # made after the registration: the toy's defaults are allowed
    assert policy.allows_mechanism("toydp.noisy_sum") and policy.allows_import("toydp")
    result = analyse(SOURCE, "f", DECLARATION, policy)
    assert [(m.family, m.name, m.epsilon, m.line) for m in result.mechanisms] == [
        ("toy", "toydp.noisy_sum", 0.25, 4)
    ]
    assert result.epsilon == 0.25
    found = {f.rule: f for f in result.findings}
    assert "no_mechanism" not in found and "mechanism_not_allowed" not in found
    assert found["epsilon_exceeds_declaration"].severity == "blocking"
    assert "`toydp.noisy_sum` line 4: 0.25" in found["epsilon_exceeds_declaration"].message
    # its result is a DP release to the taint analysis; doubling it is post-processing
    assert {o.name: o.cls for o in result.outputs} == {"total": "dp", "double": "post_processing"}
    # a policy that predates the library does not allow it
    strict = analyse(SOURCE, "f", DECLARATION, DEFAULT_POLICY)
    assert {"forbidden_import", "mechanism_not_allowed"} <= {f.rule for f in strict.findings}


def test_a_registered_library_is_instrumented_accounted_and_enforced(toy: DPLibrary) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(SOURCE, "<submitted>", "exec"), namespace)  # noqa: S102 - trusted test code
    rng = np.random.default_rng(3)
    table = pd.DataFrame({"age": rng.integers(18, 90, 50).astype(float)})
    spec = JobSpec(job_id="t", source=SOURCE, entry="f", inputs={}, epsilon=0.1)
    answer = instrumented_call(namespace["f"], {"df": table}, spec)
    spend = answer["spend"]
    assert list(spend)[:4] == ["groups", "diffprivlib", "toydp", "contexts"]
    assert spend["toydp"] == [{"name": "toydp.noisy_sum", "epsilon": 0.25, "line": None}]
    assert spend["epsilon"] == 0.25
    outputs = {o["name"]: (o["cls"], o["reason"]) for o in answer["outputs"]}
    assert outputs["total"] == ("dp", "returned as released by ToyDP")
    assert outputs["double"] == (
        "unknown",
        "changed on other data; ToyDP noise cannot be held fixed",
    )

    policy = Policy()
    report = PolicyReport(kind="mechanism", entry="f", policy_version=policy.version)
    report.budget = Budget(declared_epsilon=0.1)
    static = analyse(SOURCE, "f", DECLARATION, policy)
    apply_dry_run(answer, Declaration.model_validate(DECLARATION), policy, static, report)
    assert [(u.name, u.epsilon_total) for u in report.budget.mechanisms] == [
        ("toydp.noisy_sum", 0.25)
    ]
    assert "epsilon_exceeds_declaration" in report.rules("blocking")
    assert "undeclared_mechanism" not in report.rules()

    # the real run used a toy mechanism the dry-run did not see: withheld
    dry_run = report.model_dump(mode="json")
    real = {"recorded": True,
            "spend": {**spend, "epsilon": 0.05, "toydp": [{"name": "toydp.other"}]}}  # fmt: skip
    assert enforcement.withhold_reasons(0.1, 0.0, dry_run, real) == [
        "the run used toydp.other, which the dry-run on the mock did not"
    ]


def test_a_mechanism_call_is_read_by_its_library() -> None:
    """A library's ``read`` returning None makes the call no mechanism (the kit without
    ``epsilon=``), whatever it recognised."""
    tree = ast.parse("import researcher_kit as rk\nx = rk.dp.mean(x, bounds=(0, 1))")
    node = tree.body[-1].value
    assert isinstance(node, ast.Call)
    assert classify("researcher_kit.dp.mean") == ("kit", "researcher_kit.dp.mean")
    assert mechanism_call(node, import_aliases(tree), {}, delta=0.0) is None
