"""A datasite in this process, for rule tests: no server process, no sandbox.

``InProcessExecutor`` runs a job's code in the test process itself, with no jail and no
limits: trusted test code only. The server never uses it; a test hands it to
``Site(settings, executor=...)``. ``InProcessSite`` builds the ``Site`` and the FastAPI
app and gives the owner's and researchers' clients an ``httpx`` transport to it, so
the same client calls (``ApiSession``, ``admin.connect``, ``rk.login``) reach the same
routes and services without a socket.
"""

from __future__ import annotations

import functools
import io
import json
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from datasite.contract.harness import start_report
from datasite.contract.job import JobResult, JobSpec
from datasite.contract.results import encode_result
from datasite.execution.harness import load_table, resolve_harness
from datasite.execution.job_process import MAX_DETAIL, _compile, _execute_module, _extras, _Phase
from datasite.execution.job_process import safe_message as _safe_message

#: Where the in-process site answers; no socket is ever opened on it.
URL = "http://datasite.test"


class InProcessExecutor:
    """Runs each job in this process, one at a time, the way the sandbox's job process
    does (compile, module, entry, inputs, harness, encode), without any isolation.

    A data-blind job talks to an in-process ``Releaser`` over the mock or real table,
    and its spend is the releaser's ledger, as on the site.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inprocess-job")
        self._one_at_a_time = threading.Lock()  # stdout is captured process-wide

    def submit(self, spec: JobSpec) -> Future[JobResult]:
        return self._pool.submit(self.run, spec)

    def run(self, spec: JobSpec) -> JobResult:
        with self._one_at_a_time:
            return self._run(spec)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, spec: JobSpec) -> JobResult:
        _preload()
        out, err = io.StringIO(), io.StringIO()
        phase, report, releaser = _Phase.COMPILE, None, None
        started = time.perf_counter()
        fields: dict[str, Any]
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = _compile(spec)
                phase = _Phase.SETUP
                harness = resolve_harness(spec.harness)
                phase = _Phase.MODULE
                module = _execute_module(code)
                phase = _Phase.ENTRY
                fn = getattr(module, spec.entry)
                if not callable(fn):
                    raise TypeError(f"{spec.entry} is not a function")
                phase = _Phase.INPUTS
                if spec.kind.data_blind:
                    releaser, inputs = _blind_inputs(spec)
                else:
                    inputs = {n: load_table(p) for n, p in spec.inputs.items()}
                phase, report = _Phase.FUNCTION, start_report()
                value = harness(fn, inputs, spec)
                phase = _Phase.OUTPUT
                manifest, blobs = encode_result(value, spec.limits.max_output_bytes)
            fields = {"ok": True, "manifest": manifest, "blobs": blobs, **_extras(report)}
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a JobResult
            fields = {
                "ok": False,
                "error_type": type(exc).__name__,
                "error_message": _safe_message(phase, exc, spec),
                "error_detail": "".join(traceback.format_exception(exc))[-MAX_DETAIL:],
                **_extras(report),
            }
        touched = phase not in (_Phase.COMPILE, _Phase.SETUP)
        if releaser is not None:  # the releaser's word, never the job's
            fields["spend"] = json.loads(json.dumps(releaser.spent.to_records(), default=str))
            touched = bool(fields["spend"])
        return JobResult(
            job_id=spec.job_id,
            stdout=out.getvalue(),
            stderr=err.getvalue(),
            touched_data=touched,
            duration_seconds=time.perf_counter() - started,
            isolation=["in-process (tests only)"],
            **fields,
        )


@functools.cache
def _preload() -> None:
    """What the sandbox's worker loads before any job and code may rely on: OpenDP with
    its ``contrib`` features and the ``.dp`` namespace on Polars expressions, and skops
    trusting the reviewed allowlist."""
    import opendp.extras.polars  # noqa: F401
    import opendp.prelude as dp

    from datasite.contract.results import trust_reviewed_types_in_skops

    dp.enable_features("contrib")
    trust_reviewed_types_in_skops()


def _blind_inputs(spec: JobSpec) -> tuple[Any, dict[str, Any]]:
    from researcher_kit.blind import LocalChannel, blind_arguments
    from researcher_kit.releaser import Releaser

    releaser = Releaser(
        dict(spec.inputs),
        spec.epsilon,
        spec.delta,
        queries=spec.context.queries,
        max_contributions=spec.context.max_contributions,
        schemas=spec.schemas,
    )
    schemas = {name: releaser.schema(name) for name in spec.inputs}
    context = spec.kind.name == "CONTEXT"
    return releaser, blind_arguments(LocalChannel(releaser), schemas, context)


class InProcessSite:
    """A ``Site`` and its app in this process, with the in-process executor; ``url`` and
    ``transport`` are what clients are given (``tests.conftest`` patches ``ApiSession``
    so that a client of ``url`` goes through ``transport``)."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        from datasite.app import create_app
        from datasite.config import Settings

        self.url = URL
        self.executor = InProcessExecutor()
        self.settings = Settings(data_dir=data_dir, **settings)
        self.app = create_app(self.settings, executor=self.executor)
        self.client = TestClient(self.app, base_url=URL)
        self.client.__enter__()  # runs the app's lifespan: the Site closes with it
        self.transport = _Transport(self.client)

    @property
    def site(self):  # type: ignore[no-untyped-def]
        return self.app.state.site

    def stop(self) -> None:
        self.client.__exit__(None, None, None)


class _Transport(httpx.BaseTransport):
    """An ``httpx`` transport that hands each request to the in-process app."""

    def __init__(self, client: TestClient) -> None:
        self._inner = client._transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)
