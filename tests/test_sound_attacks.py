"""A determined researcher against the real server: one test per family of attack.

The real table holds private marker values the mock does not contain (a salary of
987,654,321, an id "987-65-4321", a rare category). Each attack goes through the normal
workflow (the researcher client against ``datasite serve``); afterwards everything the
researcher can read (the request, its report, its runs, its result, the dataset pages,
the budget) is searched for the markers. The rules under test:

- no marker reaches the researcher by any route;
- only data-blind requests get ``pass``; nothing raw-data is auto-approved;
- even approved by an owner's override, code that tries to reach the data from the
  data-blind sandbox finds none;
- the site keeps serving.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from datasite.client.http import DatasiteError
from tests.conftest import RESEARCHER_EMAIL, setup_site
from tests.flows import approve_as_owner, submit_source, wait_state

pytestmark = pytest.mark.integration

MARKERS = ("987654321", "987-65-4321", "zebra-marker")
DATASET = "Secrets"
AUTO = "Secrets auto"


def secret_tables(rows: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A real table with the markers in one row, and a mock that has none of them."""
    rng = np.random.default_rng(3)

    def make(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "person": [f"p-{i:04d}" for i in range(n)],
                "age": rng.integers(18, 90, n).astype("int64"),
                "salary": rng.integers(20_000, 90_000, n).astype("int64"),
                "group": rng.choice(["a", "b", "c"], n),
            }
        )

    real, mock = make(rows), make(100)
    real.loc[7, ["person", "salary", "group"]] = ["987-65-4321", 987_654_321, "zebra-marker"]
    assert not any(m in mock.to_csv() for m in MARKERS)
    return real, mock


@pytest.fixture(scope="module")
def site(shared_server):  # type: ignore[no-untyped-def]
    owner, researcher, _, _ = setup_site(shared_server.url)
    real, mock = secret_tables()
    for name, auto in ((DATASET, False), (AUTO, True)):
        owner.datasets.upload(name=name, assets={"t": (real, mock)}, progress=False)
        owner.budgets.grant(RESEARCHER_EMAIL, name, epsilon=50.0)
        owner.policies.set(name, auto_approve=auto, max_epsilon_per_request=5.0)
    researcher.create_project("Attacks")
    return owner, researcher


def submit(researcher, source: str, kind: str, dataset: str = DATASET, **extra: Any) -> int:  # type: ignore[no-untyped-def]
    arg = "ctx" if kind == "context" else "df"
    return submit_source(
        researcher.session, source, "attack", project="Attacks", dataset=dataset,
        bindings={arg: "t"}, kind=kind, **{"epsilon": 1.0, **extra},
    )  # fmt: skip


def seen_by_researcher(researcher, request_id: int) -> str:  # type: ignore[no-untyped-def]
    """Every byte the researcher can read about the request and the site, as one text."""
    session = researcher.session
    parts: list[Any] = [
        session.get(f"/requests/{request_id}"),
        session.get("/requests"),
        session.get("/datasets"),
        session.get("/budgets"),
    ]
    for path in (f"/requests/{request_id}/result",):
        try:
            parts.append(session.get(path))
        except DatasiteError as exc:
            parts.append(str(exc))
    request = researcher.request(request_id)
    try:
        parts.append(repr(request.result()))
    except Exception as exc:  # noqa: BLE001 - a refusal's text is part of what they see
        parts.append(f"{type(exc).__name__}: {exc}")
    return json.dumps(parts, default=str)


def assert_no_marker(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"private marker {marker} reached the researcher"


def finish(owner, researcher, request_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Approve (overriding a blocked report, as an owner may), wait for the run to end."""
    approve_as_owner(owner.session, request_id)
    wait_state(researcher.session, request_id, ("released", "failed"))
    return researcher.session.get(f"/requests/{request_id}")


# -- 1. code that behaves on the mock and leaks on the real data --------------------------

BRANCH_ON_DATA_RAW = """
def attack(df):
    from researcher_kit import dp
    hit = df[df["salary"] > 900_000_000]
    if len(hit):  # only the real table has such a row
        return float(hit["salary"].iloc[0]), str(hit["person"].iloc[0])
    return dp.mean(df["age"], bounds=(18, 90), epsilon=0.5), "mock"
"""

BRANCH_ON_DATA_BLIND = """
def attack(df):
    from researcher_kit import dp
    rich = df[df["salary"] > 900_000_000]
    try:
        n = len(rich)  # refused: the row count is private
    except TypeError:
        n = dp.count(rich, epsilon=0.5)
    return n
"""


def test_a_raw_request_that_leaks_only_on_real_data_is_never_passed_or_auto_approved(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, BRANCH_ON_DATA_RAW, "mechanism", dataset=AUTO)
    checked = wait_state(researcher.session, request_id, ("checked", "released", "failed"))
    assert checked.state == "checked"  # waits for a person despite auto_approve
    report = researcher.session.get(f"/requests/{request_id}")["policy_report"]
    assert report["verdict"] != "pass"
    assert report["findings"][0]["rule"] == "raw_data_access"
    assert_no_marker(seen_by_researcher(researcher, request_id))


def test_data_blind_code_branching_on_the_data_gets_only_a_dp_count(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, BRANCH_ON_DATA_BLIND, "blind", dataset=AUTO)
    done = wait_state(researcher.session, request_id, ("released", "failed", "checked"))
    assert done.state == "released"  # passed and auto-approved: it is DP by construction
    assert done.policy_report.verdict == "pass"
    value = done.result()
    assert isinstance(value, int) and abs(value - 1) < 40  # a noisy count of one row
    assert_no_marker(seen_by_researcher(researcher, request_id))


# -- 2. reflection: frames, gc, module globals from a data-blind function ------------------

REFLECTION = """
def attack(df):
    import gc, sys, inspect
    seen = []
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in ("DataFrame", "LazyFrame", "Series", "ndarray", "Table", "bytes"):
            try:
                seen.append(repr(obj)[:2000])
            except Exception:
                pass
    frame = sys._getframe()
    while frame is not None:
        seen.append(repr(frame.f_locals)[:2000])
        frame = frame.f_back
    for module in list(sys.modules.values()):
        seen.append(repr(getattr(module, "__dict__", {}))[:500])
    return "\\n".join(seen)[:200000]
"""


@pytest.mark.parametrize("kind", ["blind", "context"])
def test_reflection_in_a_data_blind_sandbox_finds_no_data(site, kind: str):  # type: ignore[no-untyped-def]
    owner, researcher = site
    source = REFLECTION.replace("(df)", "(ctx)") if kind == "context" else REFLECTION
    request_id = submit(researcher, source, kind)
    result = finish(owner, researcher, request_id)
    assert result["state"] in ("released", "failed")
    assert_no_marker(seen_by_researcher(researcher, request_id))


# -- 3. forbidden modules through attribute chains ----------------------------------------

ATTRIBUTE_CHAINS = """
def attack(df):
    import random, collections, typing
    os = random._os
    found = []
    for top in ("/", "/scratch", "/tmp", "/proc/1", "/data"):
        try:
            found.append((top, os.listdir(top)))
        except Exception as exc:
            found.append((top, type(exc).__name__))
    for root, dirs, files in os.walk("/"):
        for name in files:
            if name.endswith((".parquet", ".db", ".sqlite")):
                try:
                    found.append(open(os.path.join(root, name), "rb").read()[:100000])
                except Exception:
                    pass
        if len(found) > 200:
            break
    found.append(repr(collections._sys.modules.get("os")))
    found.append(str(typing.sys.argv))
    return repr(found)[:200000]
"""


def test_attribute_chains_to_os_reach_no_asset_file(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, ATTRIBUTE_CHAINS, "blind")
    report = wait_state(researcher.session, request_id, ("checked",)).policy_report
    assert report.verdict != "pass"  # the static check still names the chain
    finish(owner, researcher, request_id)
    assert_no_marker(seen_by_researcher(researcher, request_id))


# -- 4. faking or abusing the mechanisms ---------------------------------------------------

FAKE_RELEASES = """
def attack(df):
    import gc, json
    import opendp.prelude as dp
    from researcher_kit import dp as kit
    from researcher_kit.blind import SocketChannel
    from datasite.contract.framing import read_message, write_message
    dp.enable_features("honest-but-curious", "contrib")
    # Patch the kit and OpenDP in the sandbox: the releaser's copies are elsewhere.
    dp.Measurement.__call__ = lambda self, arg: arg
    channel = next(o for o in gc.get_objects() if isinstance(o, SocketChannel))
    stream = channel._stream
    answers = []
    forged = [
        {"op": "exec", "table": "df", "source": "open('/etc/passwd').read()"},
        {"op": "mean", "table": "df", "column": "salary", "bounds": [0, 1e12],
         "epsilon": 1e9},
        {"op": "mean", "table": "df", "column": "salary", "bounds": [0, 1e12],
         "epsilon": 0.1, "max_contributions": 0},
        {"op": "context", "table": "df", "steps": [["select", [{"expr": json.dumps(
            {"AnonymousFunction": {"input": [{"Column": "salary"}], "function": [128] * 100}}
        )}]]]},
        {"op": "context", "table": "df", "steps": [["select", [{"expr": json.dumps(
            {"Function": {"input": [{"Column": "salary"}], "function": {"FfiPlugin": {
                "flags": {}, "lib": "/usr/lib/x86_64-linux-gnu/libc.so.6",
                "symbol": "system", "kwargs": []}}}}
        )}]]]},
        {"op": "histogram", "table": "df", "column": "person", "categories": None,
         "bins": None, "epsilon": 0.1},
    ]
    for call in forged:
        write_message(stream, call)
        answers.append(read_message(stream)[0])
    exact = kit.mean(df["salary"], bounds=(0, 10**12), epsilon=0.5)
    return {"answers": json.dumps(answers), "mean": exact}
"""


def test_forged_release_calls_and_patched_mechanisms_release_nothing_extra(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, FAKE_RELEASES, "blind")
    finish(owner, researcher, request_id)
    value = researcher.request(request_id).result()
    answers = json.loads(value["answers"])
    assert all(not a["ok"] for a in answers), answers  # every forged call was refused
    assert {a["error"] for a in answers} <= {"ReleaseRefused", "BudgetExceeded"}
    assert_no_marker(seen_by_researcher(researcher, request_id))
    spend = owner.requests.get(request_id).data["runs"][-1]
    assert spend["state"] == "released"


def test_the_privacy_unit_is_the_policys_not_the_requests(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(
        researcher, BRANCH_ON_DATA_BLIND, "blind", context={"queries": 1, "max_contributions": 500}
    )
    stored = researcher.session.get(f"/requests/{request_id}")
    assert stored["context"]["max_contributions"] == 1


# -- 5. side channels the site itself could open -------------------------------------------

CUSTOM_ERROR = """
def attack(df):
    secret = str(df.loc[df["salary"].idxmax(), "person"]).replace("-", "_")
    cls = type("Err_" + secret, (Exception,), {})
    raise cls(secret)
"""

MODULE_LEVEL_FAILURE = """
import os
for fd in range(3, 64):  # the inputs are already open when the module runs
    try:
        data = os.pread(fd, 1 << 20, 0)
    except OSError:
        continue
    raise ValueError(data)

def attack(df):
    return 0
"""


@pytest.mark.parametrize("source", [CUSTOM_ERROR, MODULE_LEVEL_FAILURE])
def test_failures_show_fixed_names_and_no_private_text(site, source: str):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, source, "mechanism")
    result = finish(owner, researcher, request_id)
    assert result["state"] == "failed"
    run = result["runs"][-1]
    assert not (run.get("error_type") or "").startswith("Err_")
    assert run.get("duration_seconds") is None  # durations are the owner's
    assert_no_marker(seen_by_researcher(researcher, request_id))


def test_researchers_see_no_exact_private_row_count(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    asset = researcher.datasets[DATASET].assets["t"]
    assert asset.data["real_rows"] is None
    assert owner.datasets[DATASET]["assets"][0]["real_rows"] == 300


# -- 6. warm-worker state: nothing one run leaves is visible to the next -------------------

STASH = """
def attack(df):
    import builtins, os, sys
    secret = str(df["salary"].max())
    builtins.STOLEN = secret
    os.environ["STOLEN"] = secret
    sys.modules["stolen"] = type(sys)("stolen")
    sys.modules["stolen"].value = secret
    for path in ("/scratch/stolen", "/tmp/stolen", "/dev/shm/stolen"):
        try:
            with open(path, "w") as handle:
                handle.write(secret)
        except Exception:
            pass
    return 0
"""

PEEK = """
def attack(df):
    import builtins, os, sys
    from researcher_kit import dp
    found = [getattr(builtins, "STOLEN", ""), os.environ.get("STOLEN", "")]
    found.append(getattr(sys.modules.get("stolen"), "value", ""))
    for path in ("/scratch/stolen", "/tmp/stolen", "/dev/shm/stolen"):
        try:
            found.append(open(path).read())
        except Exception:
            pass
    found = [text for text in found if text]
    if found:
        raise ValueError("|".join(found))
    return dp.count(df, epsilon=0.1), found
"""


def test_nothing_a_real_run_leaves_reaches_a_later_precheck_or_run(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    stash = submit(researcher, STASH, "mechanism")
    assert finish(owner, researcher, stash)["state"] == "released"
    body = {"project": "-", "dataset": DATASET, "entry": "attack", "source": PEEK,
            "bindings": {"df": "t"}, "kind": "blind", "epsilon": 0.1}  # fmt: skip
    report = researcher.session.post("/precheck", json=body)
    assert_no_marker(json.dumps(report))
    peek = submit(researcher, PEEK, "blind", epsilon=0.1)
    assert finish(owner, researcher, peek)["state"] == "released"
    assert researcher.request(peek).result()[1] == []
    assert_no_marker(seen_by_researcher(researcher, peek))


def test_the_site_keeps_serving_after_the_attacks(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, BRANCH_ON_DATA_BLIND, "blind", dataset=AUTO)
    assert wait_state(researcher.session, request_id, ("released", "failed")).state == "released"


# -- 7. runtime enforcement: a raw run that spends more on the real data is withheld -------

SPENDS_MORE_ON_REAL = """
def attack(df):
    import opendp.prelude as dp
    dp.enable_features("contrib")
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=2.0)
    answers = [laplace(float(len(df)))]
    if (df["salary"] > 900_000_000).any():  # only the real table: one more release
        answers.append(laplace(float(df["salary"].max())))
    return answers
"""


def test_a_raw_run_that_spends_more_than_its_dry_run_is_withheld(site):  # type: ignore[no-untyped-def]
    owner, researcher = site
    request_id = submit(researcher, SPENDS_MORE_ON_REAL, "mechanism", epsilon=0.5)
    report = wait_state(researcher.session, request_id, ("checked",)).policy_report
    assert "data_dependent_branch" in {f.rule for f in report.findings}
    approve_as_owner(owner.session, request_id)
    done = wait_state(researcher.session, request_id, ("withheld", "released", "failed"))
    assert done.state == "withheld"
    with pytest.raises(PermissionError, match="withheld"):
        researcher.request(request_id).result()
    assert_no_marker(seen_by_researcher(researcher, request_id))
    held = owner.requests.get(request_id)
    assert "more than the declared 0.5" in held.data["runs"][-1]["error_detail"]
    assert held.data["runs"][-1]["manifest"] is not None  # the owner can look at it
    spent_before = researcher.session.get("/budgets")
    held.discard_result()
    assert researcher.request(request_id).refresh().state == "failed"
    assert researcher.session.get("/budgets") == spent_before  # the charge stays
