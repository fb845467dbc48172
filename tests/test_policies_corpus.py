"""The checker on a corpus of requests with expected verdicts (``tests/corpus/*.py``).

Each corpus file starts with ``# key: value`` lines: ``entry``, ``kind``, ``epsilon``,
``delta``, ``mechanisms``, ``queries``, ``expect`` (the verdict), ``expect-rules`` (rules
that must be found) and ``forbid-rules`` (rules that must not be raised above ``info``).
Every request runs through the whole checker: static analysis, the instrumented dry-run
and the audit, in the real sandbox executor when it is available, else in a trusted
in-process runner (the corpus is our own code; the looping requests need the sandbox
and are skipped without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from datasite.contract.harness import start_report
from datasite.contract.job import JobResult, JobSpec
from datasite.contract.results import encode_result
from datasite.execution.harness import load_table, resolve_harness
from policies.checker import check_request
from policies.schema import AuditSettings, Policy

#: the audit finds what it finds within a wall-clock budget: one per core, nothing else
pytestmark = pytest.mark.timed

CORPUS = Path(__file__).with_name("corpus")
NEEDS_SANDBOX = {"bad_loop_forever", "bad_while_true"}


class InProcessExecutor:
    """Runs a job's harness in this process: for trusted test code only (no sandbox)."""

    def run(self, spec: JobSpec) -> JobResult:
        namespace: dict[str, Any] = {}
        exec(compile(spec.source, "<submitted>", "exec"), namespace)  # noqa: S102 - trusted corpus
        report = start_report()
        if spec.kind.data_blind:
            return self._blind(spec, namespace[spec.entry])
        inputs = {k: load_table(v) for k, v in spec.inputs.items()}
        try:
            value = resolve_harness(spec.harness)(namespace[spec.entry], inputs, spec)
        except Exception as exc:  # noqa: BLE001 - reported like the sandbox does
            return JobResult(job_id=spec.job_id, ok=False, error_type=type(exc).__name__,
                             error_message=str(exc), harness_report=report.details)  # fmt: skip
        manifest, blobs = encode_result(value)
        return JobResult(job_id=spec.job_id, ok=True, manifest=manifest, blobs=blobs,
                         harness_report=report.details, spend=report.spend)  # fmt: skip

    def _blind(self, spec: JobSpec, fn: Any) -> JobResult:
        from researcher_kit.blind import LocalChannel, blind_arguments
        from researcher_kit.releaser import Releaser

        releaser = Releaser(spec.inputs, spec.epsilon, spec.delta, queries=spec.context.queries,
                            max_contributions=spec.context.max_contributions)  # fmt: skip
        schemas = {name: releaser.schema(name) for name in spec.inputs}
        context = spec.kind.value == "context"
        try:
            value = fn(**blind_arguments(LocalChannel(releaser), schemas, context))
        except Exception as exc:  # noqa: BLE001 - reported like the sandbox does
            return JobResult(job_id=spec.job_id, ok=False, error_type=type(exc).__name__,
                             error_message=str(exc), spend=releaser.spent.to_records())  # fmt: skip
        manifest, blobs = encode_result(value)
        return JobResult(job_id=spec.job_id, ok=True, manifest=manifest, blobs=blobs,
                         spend=releaser.spent.to_records())  # fmt: skip


def sandbox_executor() -> Any:
    try:
        from datasite.execution.executor import make_executor
    except ImportError:
        return None
    return make_executor("local", 1)


@pytest.fixture(scope="module")
def executor() -> Any:
    real = sandbox_executor()
    yield real or InProcessExecutor()
    if real is not None and hasattr(real, "close"):
        real.close()


def mock_table(rows: int = 200, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows)
    bmi = rng.normal(27, 4, rows).clip(15, 45)
    return pd.DataFrame(
        {
            "age": age.astype("int64"),
            "bmi": bmi,
            "target": (40 + 1.5 * age + 3 * (bmi - 25) + rng.normal(0, 30, rows)).clip(25, 346),
        }
    )


@pytest.fixture(scope="module")
def mock_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("mock") / "patients.parquet"
    mock_table().to_parquet(path)
    path.chmod(0o644)
    path.parent.chmod(0o755)
    return str(path)


def header(path: Path) -> dict[str, str]:
    meta = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep and key.strip() in (
            "entry", "kind", "epsilon", "delta", "mechanisms", "queries", "expect",
            "expect-rules", "forbid-rules",
        ):  # fmt: skip
            meta[key.strip()] = value.strip()
    return meta


def listed(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


#: The audit at 99.9%: several correct entries spend exactly their declared epsilon
#: (ok_laplace_count, ding_histogram), where a 95% bound crosses it now and then by design
#: (the corpus, 1 run in 700 at 95%; none in 20,000 at 99.9%). The two entries the audit
#: must catch showed at least 1.4 and 2.7 at 99.9% (40 audits each) against 0.25 and 0.1.
TEST_POLICY = Policy(
    max_epsilon_per_request=2.0,
    audit=AuditSettings(time_budget_seconds=0.6, dry_run_timeout_seconds=4.0, confidence=0.999),
)
CASES = sorted(CORPUS.glob("*.py"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_corpus(path: Path, executor: Any, mock_path: str) -> None:
    if path.stem in NEEDS_SANDBOX and isinstance(executor, InProcessExecutor):
        pytest.skip("a request that never ends needs the sandbox executor")
    meta = header(path)
    declaration = {
        "kind": meta.get("kind", "mechanism"),
        "epsilon": float(meta["epsilon"]),
        "delta": float(meta.get("delta", 0.0)),
        "mechanisms": listed(meta.get("mechanisms")),
        "context": {"queries": int(meta.get("queries", 1)), "max_contributions": 1},
    }
    arg = "ctx" if declaration["kind"] == "context" else "df"
    report = check_request(
        path.read_text(), meta["entry"], declaration, TEST_POLICY, {arg: mock_path}, executor
    )
    found = report.rules()
    serious = found - report.rules("info")
    summary = report.to_markdown()
    assert report.verdict == meta["expect"], summary
    for rule in listed(meta.get("expect-rules")):
        assert rule in found, summary
        assert all(f.line for f in report.findings if f.rule == rule and f.stage == "static")
    for rule in listed(meta.get("forbid-rules")):
        assert rule not in serious, summary
    if meta["expect"] != "blocked":
        assert not report.blocking, summary
