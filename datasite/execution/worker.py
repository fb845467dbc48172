"""The warm worker: a long-lived process with the analysis stack already imported.

Started by ``LocalExecutor`` as ``python -m datasite.execution.worker``; it imports
pandas, NumPy, Polars, OpenDP (contrib enabled), scikit-learn, diffprivlib and skops
once (the synthetic-data and deep-learning stacks when a job first names them), then
forks a sandboxed process tree per job (``supervise.run_job``), so a job pays for a
fork, not for the imports. One job at a time per worker; the executor runs
several workers for concurrency.

Protocol on stdin/stdout (``wire`` messages, no pickle):

- worker -> executor, once: ``{"event": "ready", "pid": ..., "preloaded": [...]}``
- executor -> worker: ``{"spec": <JobSpec JSON>}``
- worker -> executor: ``{"event": "result", "result": <JobResult JSON without blobs>}``
  followed by the result's blobs.

SIGUSR1 cancels the job in progress (``supervise.cancel_current``): the worker still
answers, with a ``Cancelled`` result that carries the releaser's ledger.

The worker exits when stdin closes; when it closes during a job (the site was killed),
the job is cancelled first. It must run as root (namespaces, chroot, setuid)
unless ``DATASITE_ALLOW_UNSANDBOXED=1`` is set.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import IO

from datasite.contract.framing import read_message, result_message, write_message
from datasite.contract.job import JobResult, JobSpec
from datasite.execution.sandbox import SandboxConfig, opt_out_from_env
from datasite.execution.supervise import cancel_current, clean_up, clear_cancel, run_job

log = logging.getLogger("datasite.execution.worker")

STACK = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "polars",
    "opendp.prelude",
    "opendp.extras.polars",
    "sklearn",
    "sklearn.base",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.preprocessing",
    "sklearn.model_selection",
    "sklearn.metrics",
    "diffprivlib",
    "diffprivlib.models",
    "diffprivlib.tools",
    "skops.io",
    "scipy.stats",
)
# Trusted first-party code the runs may use; missing ones only cost a lazy import.
OPTIONAL = (
    "researcher_kit",
    "researcher_kit.dp",
    "researcher_kit.blind",
    "researcher_kit.releaser",
    "policies.instrument",
    "policies.dp_audit",
    # The text privatization's neighbour table is an .npz (a zip): zipfile decodes its
    # member names with cp437, an encoding module the releaser could not import later.
    "encodings.cp437",
)
#: Heavy stacks imported just before the first job whose code names one of their words
#: (``words`` -> ``modules``). Each costs 2-3 s of CPU and hundreds of MB in every worker,
#: and most jobs never use them; the worker is still outside the jail when it imports
#: them, so the job and its releaser find them loaded as if preloaded, and they stay for
#: the worker's later jobs. Code that reaches them without naming them (``getattr`` on a
#: built string) only fails its own run.
ON_DEMAND: dict[tuple[str, ...], tuple[str, ...]] = {
    # DP synthetic data (rk.dp.synthesize, the `synth` extra): Private-PGM and JAX,
    # which imports modules the releaser may no longer import itself (http.server).
    ("synthesize", "mbi"): ("mbi", "opendp.extras.mbi"),
    # DP deep learning (rk.dp.train_torch, federated rounds; the `torch` extra): the first
    # optimizer step imports torch._dynamo, which imports stdlib modules (statistics,
    # cProfile, ...) the releaser may no longer import once it has given root up.
    ("torch", "opacus", "federated"): ("torch._dynamo", "opacus"),
}


def _import_all(names: tuple[str, ...]) -> list[str]:
    """Import ``names`` best effort (an extra may not be installed); returns what loaded."""
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - optional, logged
            log.info("not loading %s: %s", name, exc)
    return loaded


def load_for(source: str) -> list[str]:
    """Import the :data:`ON_DEMAND` stacks that ``source`` names; returns their modules.

    >>> load_for("def f(df): return len(df)")
    []
    """
    wanted = [mods for words, mods in ON_DEMAND.items() if any(w in source for w in words)]
    return [name for modules in wanted for name in _import_all(modules)]


def preload() -> list[str]:
    """Import the stack (and first-party helpers, best effort); returns what loaded.
    The heavy optional stacks wait for a job that names them (:func:`load_for`)."""
    from datasite.contract.results import trust_reviewed_types_in_skops

    # a function's own skops.io.loads (PySyft's tutorial); first, as it imports skops.io
    # without torch (contract.results.skops_io), which STACK's import would bring in
    trust_reviewed_types_in_skops()
    loaded = []
    for name in STACK:
        importlib.import_module(name)
        loaded.append(name)
    import opendp.prelude as dp

    dp.enable_features("contrib")
    loaded += _import_all(OPTIONAL)
    warm_up()
    return loaded


def warm_up() -> None:
    """Make one small release of each common kind here, before any fork.

    A run's processes are forked from this one, so what a first OpenDP measurement sets
    up (its FFI conversions and type lookups, about 8 ms of a release's first answer) is
    theirs already. On made-up numbers, with nothing but OpenDP and NumPy: Polars' thread
    pool would not survive a fork, and Arrow's allocator reserves a gigabyte of address
    space on first use, which would count in every run's memory baseline and so let a
    run's Arrow buffers grow past its limit. A failure only costs the time.

    >>> warm_up()
    """
    import numpy as np
    import pandas as pd

    from researcher_kit import dp

    try:
        dp.mean(pd.Series(np.arange(8.0)), bounds=(0.0, 1.0), epsilon=1.0)
        dp.mean(pd.Series(np.arange(8)), bounds=(0, 1), epsilon=1.0)
        dp.count(pd.Series(np.arange(8)), epsilon=1.0)
    except Exception as exc:  # noqa: BLE001 - an optimization: logged, never fatal
        log.warning("warm-up failed: %s", exc)


def _protocol_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Keep stdin/stdout for the protocol; stray prints from libraries go to stderr."""
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return channel_in, channel_out


def serve(channel_in: IO[bytes], channel_out: IO[bytes], config: SandboxConfig) -> None:
    """Answer job requests until the channel closes."""
    while True:
        try:
            header, _ = read_message(channel_in)
        except EOFError:
            return
        spec = JobSpec.model_validate(header["spec"])
        try:
            load_for(spec.source)
            result = run_job(spec, config, hangup=channel_in.fileno())
        except Exception as exc:  # the worker itself failed: report it, keep serving
            log.exception("job %s failed in the worker", spec.job_id)
            result = JobResult(
                job_id=spec.job_id,
                ok=False,
                error_type="SandboxError",
                error_message="The sandbox failed before the run finished.",
                error_detail=repr(exc),
                touched_data=True,
            )
        try:
            write_message(channel_out, *result_message(result))
        except BrokenPipeError:
            log.warning("the executor is gone: job %s's result was not delivered", spec.job_id)
            return
        finally:
            clean_up()  # the run's process tree, once its result is on its way
        clear_cancel()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="datasite-worker %(levelname)s %(message)s")
    channel_in, channel_out = _protocol_streams()
    # The executor's cancel (a stopping site): stop the run in progress, answer as usual.
    signal.signal(signal.SIGUSR1, lambda signum, frame: cancel_current())
    loaded = preload()
    jail_root = tempfile.mkdtemp(prefix="datasite-jail-")
    config = SandboxConfig(jail_root=jail_root, allow_unsandboxed=opt_out_from_env())
    if config.allow_unsandboxed:
        log.warning(
            "DATASITE_ALLOW_UNSANDBOXED IS SET: runs that cannot get namespaces will run "
            "WITHOUT network/filesystem isolation."
        )
    sys.stdout.flush()
    write_message(channel_out, {"event": "ready", "pid": os.getpid(), "preloaded": loaded})
    try:
        serve(channel_in, channel_out, config)
    finally:
        shutil.rmtree(jail_root, ignore_errors=True)


if __name__ == "__main__":
    main()
