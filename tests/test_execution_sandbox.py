"""Real sandboxed runs through LocalExecutor: DP jobs work, hostile code gets nothing out.

Every job here is a real warm-worker fork with namespaces, a chroot jail and uid 65534.
After each hostile job the test checks that no sandboxed process is left and that the
same executor still runs the next job.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from datasite.contract.job import JobResult, JobSpec, Limits, RequestKind
from datasite.contract.results import decode_result, load_model
from datasite.execution.executor import LocalExecutor
from datasite.execution.sandbox import JOB_UIDS
from datasite.store.assets import column_types, describe_table

pytestmark = pytest.mark.slow
LIMITS = Limits(
    wall_seconds=6,
    cpu_seconds=3,
    memory_bytes=1024**3,
    max_processes=32,
    max_output_bytes=1024**2,
)
#: Ordinary jobs get room on the wall clock: tests run side by side on a loaded machine,
#: and only the hostile ones are about the limits.
ORDINARY = LIMITS.model_copy(update={"wall_seconds": 60})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("private")
    rng = np.random.default_rng(0)
    n = 2000
    pings = pd.DataFrame(
        {
            "id": np.arange(n),
            "gender": rng.choice(["MALE", "FEMALE"], n),
            "age": rng.integers(18, 90, n),
            "online_hours": rng.gamma(2.0, 1.0, n),
        }
    )
    pings.to_parquet(folder / "pings.parquet")
    (folder / "secret.txt").write_text("the server's private file")
    return folder


@pytest.fixture(scope="module")
def executor() -> Iterator[LocalExecutor]:
    with LocalExecutor(concurrency=2) as ex:
        yield ex


def job(data_dir: Path, source: str, entry: str = "f", **kwargs: object) -> JobSpec:
    return JobSpec(
        job_id=f"test-{time.monotonic_ns()}",
        source=source,
        entry=entry,
        inputs=kwargs.pop("inputs", {"df": str(data_dir / "pings.parquet")}),
        epsilon=kwargs.pop("epsilon", 1.0),
        limits=kwargs.pop("limits", ORDINARY),
        **kwargs,
    )


def run(executor: LocalExecutor, spec: JobSpec) -> JobResult:
    return executor.submit(spec).result(timeout=120)


def value_of(result: JobResult) -> object:
    assert result.ok, (result.error_type, result.error_detail, result.stderr)
    return decode_result(result.manifest, result.blobs)


#: Looks for sandbox processes anywhere on the machine (an escaped one is a child of init,
#: not of this test): run alone, or another test's running jobs would count.
MACHINE_WIDE = pytest.mark.serial


def leftover_sandbox_processes(wait: float = 10.0) -> list[psutil.Process]:
    """Processes running as the sandbox user (they must all be gone after a run)."""
    deadline = time.monotonic() + wait
    while True:
        left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real in JOB_UIDS]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


DP_MEAN = """
import opendp.prelude as dp

def f(df):
    dp.enable_features("contrib")
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    laplace = dp.m.make_laplace(*space, scale=72.0 / len(df) / 1.0)
    return laplace(float(df["age"].clip(18, 90).mean()))
"""

TUTORIAL = """
def forecast(df):
    import numpy as np
    import opendp.prelude as dp
    from sklearn.ensemble import RandomForestRegressor
    from skops.io import dumps

    display(df.head())
    df = df[df["age"] >= 18].assign(male=(df["gender"] == "MALE").astype(int))
    dp.enable_features("contrib")
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    noisy_mean_age = dp.m.make_laplace(*space, scale=2.0)(float(df["age"].clip(18, 90).mean()))
    X = df[["age", "male"]].to_numpy(dtype=float)
    model = RandomForestRegressor(n_estimators=10, random_state=0).fit(X, df["online_hours"])
    return noisy_mean_age, dumps(model), model
"""

CONTEXT = """
import polars as pl

def count_and_mean(data):
    count = data.query().select(pl.len().dp.noise()).release().collect().item()
    mean = (
        data.query()
        .select(pl.col("age").cast(float).fill_null(50.0).dp.mean((18.0, 90.0)))
        .release().collect().item()
    )
    return {"count": count, "mean_age": mean}
"""


def test_dp_mean_on_a_parquet_input(executor: LocalExecutor, data_dir: Path) -> None:
    result = run(executor, job(data_dir, DP_MEAN))
    true_mean = pd.read_parquet(data_dir / "pings.parquet")["age"].mean()
    noisy = value_of(result)
    assert isinstance(noisy, float) and noisy != true_mean and abs(noisy - true_mean) < 5
    assert result.touched_data and result.duration_seconds > 0
    assert {"netns", "mountns", "pidns", "chroot"} <= set(result.isolation)
    uids = [int(entry[4:]) for entry in result.isolation if entry.startswith("uid:")]
    assert len(uids) == 1 and uids[0] in JOB_UIDS


def test_tutorial_style_job_returns_noise_and_models(executor, data_dir) -> None:
    result = run(executor, job(data_dir, TUTORIAL, entry="forecast"))
    noisy, model_bytes, model = value_of(result)
    assert isinstance(noisy, float)
    assert "online_hours" in result.stdout  # display(df.head()) went to the owner's stdout
    X = np.array([[40.0, 1.0], [70.0, 0.0]])
    for estimator in (load_model(model_bytes), model):
        prediction = estimator.predict(X)
        assert prediction.shape == (2,) and np.isfinite(prediction).all()


def test_context_job_gets_a_bound_opendp_context(executor, data_dir) -> None:
    spec = job(
        data_dir,
        CONTEXT,
        entry="count_and_mean",
        inputs={"data": str(data_dir / "pings.parquet")},
        kind=RequestKind.CONTEXT,
        epsilon=2.0,
        context={"queries": 2, "max_contributions": 1},
    )
    out = value_of(run(executor, spec))
    assert abs(out["count"] - 2000) < 100
    assert 18 <= out["mean_age"] <= 90
    overspent = spec.model_copy(update={"context": spec.context.model_copy(update={"queries": 1})})
    result = run(executor, overspent)  # the second query exceeds the bound budget
    assert not result.ok and result.touched_data


def test_run_sees_an_empty_environment_and_no_root(executor, data_dir) -> None:
    source = (
        "import os\n"
        "def f(df):\n"
        "    return {'uid': os.getuid(), 'cwd': os.getcwd(), 'env': sorted(os.environ),\n"
        "            'root': sorted(os.listdir('/')), 'etc': os.listdir('/etc')}\n"
    )
    out = value_of(run(executor, job(data_dir, source)))
    assert out["uid"] in JOB_UIDS and out["cwd"] == "/scratch"
    assert "HOME" in out["env"] and not any(
        k.startswith(("DATASITE", "PYTEST")) for k in out["env"]
    )
    assert out["etc"] == ["ld.so.cache"]  # what the dynamic loader needs, nothing else
    assert "home" not in out["root"] and "var" not in out["root"]


def test_errors_hide_private_values_from_the_researcher(executor, data_dir) -> None:
    source = "def f(df):\n    raise ValueError(f\"total age {df['age'].sum()}\")\n"
    result = run(executor, job(data_dir, source))
    total = str(pd.read_parquet(data_dir / "pings.parquet")["age"].sum())
    assert result.error_type == "ValueError" and result.touched_data
    assert total not in result.error_message and "owner" in result.error_message
    assert total in result.error_detail  # the owner can see it


def test_a_syntax_error_never_touches_the_data(executor, data_dir) -> None:
    result = run(executor, job(data_dir, "def f(df) return 1\n"))
    assert result.error_type == "SyntaxError" and "line 1" in result.error_message
    assert not result.touched_data


def test_harness_report_survives_a_failing_call(executor, data_dir) -> None:
    source = "calls = []\ndef f(df):\n    calls.append(1)\n    return 1 / (2 - len(calls))\n"
    spec = job(
        data_dir,
        source,
        harness="datasite.execution.harness:call_repeatedly",
        harness_options={"repeat": 3},
    )
    result = run(executor, spec)
    assert result.error_type == "ZeroDivisionError"
    assert [c["call"] for c in result.harness_report["calls"]] == [0]
    spec = spec.model_copy(update={"harness": "os:system"})
    assert run(executor, spec).error_type == "ValueError"  # untrusted harness refused


HOSTILE = {
    "read_passwd": ("def f(df):\n    return open('/etc/passwd').read()\n", "FileNotFoundError"),
    "read_host_root_via_proc": (  # /proc/1 is the namespace's root-owned init
        "def f(df):\n    return open('/proc/1/root/etc/passwd').read()\n",
        "PermissionError",
    ),
    "read_data_dir": (
        "def f(df):\n    return open({secret!r}).read()\n",
        "FileNotFoundError",
    ),
    "socket": (
        "import socket\ndef f(df):\n"
        "    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 'in'\n",
        "OSError",
    ),
    "fork_bomb": (
        "import os\ndef f(df):\n    while True:\n        try:\n            os.fork()\n"
        "        except OSError:\n            pass\n",
        "TimeoutError",
    ),
    "allocate_50gb": ("def f(df):\n    return len(bytearray(50 * 1024**3))\n", "MemoryError"),
    "loop_forever": ("def f(df):\n    while True:\n        pass\n", "CpuTimeExceeded"),
    "sleep_forever": ("import time\ndef f(df):\n    time.sleep(10**6)\n", "TimeoutError"),
    "escape_by_setsid": (
        "import os, time\ndef f(df):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        time.sleep(10**6)\n    return 1\n",
        None,  # returns fine; the detached child must still be gone
    ),
    "unsupported_type": ("def f(df):\n    return df.groupby\n", "UnsupportedResult"),
    "oversized_output": ("def f(df):\n    return b'x' * 2 * 1024**2\n", "OutputTooLarge"),
    "flood_the_result_pipe": (
        "import os\ndef f(df):\n    junk = b'\\xff' * 1024**2\n    for _ in range(8):\n"
        "        for fd in range(3, 64):\n            try:\n                os.write(fd, junk)\n"
        "            except OSError:\n                pass\n    while True:\n        pass\n",
        "OutputTooLarge",
    ),
    "segfault": ("import ctypes\ndef f(df):\n    return ctypes.string_at(0)\n", "Crashed"),
}


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, list[object]]]:
    """A real TCP server on 127.0.0.1; records any connection it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[object] = []

    def serve() -> None:
        while True:
            try:
                accepted.append(server.accept())
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@MACHINE_WIDE
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_code_gets_nothing_out(executor, data_dir, listener, name) -> None:
    port, accepted = listener
    template, expected = HOSTILE[name]
    source = template.format(secret=str(data_dir / "secret.txt"), port=port)
    # The CPU limit must bind before the wall clock even on a loaded machine (CI): a busy
    # loop gets its 3 CPU seconds only as fast as the scheduler gives them.
    cpu_bound = expected == "CpuTimeExceeded"
    limits = ORDINARY if cpu_bound else LIMITS
    result = run(executor, job(data_dir, source, limits=limits))
    if expected is None:
        assert result.ok
    else:
        assert not result.ok and result.manifest is None and not result.blobs
        assert result.error_type == expected, (result.error_message, result.error_detail)
        assert result.error_message
        assert "private file" not in (result.error_message + (result.error_detail or ""))
    assert not accepted
    assert leftover_sandbox_processes() == []
    assert value_of(run(executor, job(data_dir, "def f(df):\n    return len(df)\n"))) == 2000


FILLS_ITS_PROCESSES = """
import os, time
def f(df):
    while True:
        try:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        except OSError:
            break
    time.sleep(60)
"""


def test_a_run_beside_one_that_takes_all_its_processes_still_gets_threads(
    executor: LocalExecutor, data_dir: Path
) -> None:
    """RLIMIT_NPROC counts per user across the host. Each run has a user of its own, so a
    run that forks up to its limit leaves the run beside it its threads; with one shared
    user the second run's table load (pyarrow's thread pool) hung until its wall clock."""
    bomb = executor.submit(job(data_dir, FILLS_ITS_PROCESSES,
                               limits=LIMITS.model_copy(update={"wall_seconds": 30})))  # fmt: skip
    full, deadline = LIMITS.max_processes - 2, time.monotonic() + 60
    while (filled := len(_run_processes())) < full and time.monotonic() < deadline:
        time.sleep(0.1)
    assert filled >= full, "the first run never filled up"
    beside = run(executor, job(data_dir, "def f(df):\n    return len(df)\n", limits=LIMITS))
    assert value_of(beside) == 2000
    executor.cancel(bomb)  # it has filled up for as long as needed: no wait for its clock
    assert bomb.result(timeout=120).error_type in ("Cancelled", "TimeoutError")


def _run_processes() -> list[psutil.Process]:
    """The processes of runs under this test's workers (not the root-owned init and
    supervisor). By uid != 0, not by JOB_UIDS, so that the test also counts a run that
    falls back to a shared uid."""
    return [
        child
        for worker in worker_processes()
        for child in worker.children(recursive=True)
        if child.uids().real != 0
    ]


def test_output_logs_are_capped(executor, data_dir) -> None:
    source = "def f(df):\n    for _ in range(3000):\n        print('y' * 1000)\n    return 1\n"
    result = run(executor, job(data_dir, source))
    assert value_of(result) == 1
    assert len(result.stdout) < 1.1 * 1024**2 and "more bytes not kept" in result.stdout


def worker_processes() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children()
        if "datasite.execution.worker" in " ".join(p.cmdline())
    ]


def thread_names(process: psutil.Process) -> list[str]:
    tasks = Path(f"/proc/{process.pid}/task")
    return [(task / "comm").read_text().strip() for task in tasks.iterdir()]


def test_workers_start_as_jobs_need_them_and_stay_warm(data_dir) -> None:
    """A worker imports the whole stack (seconds of CPU): the pool starts one only when
    a job finds none idle, and reuses it for the next job. The heaviest stacks wait for
    a job that names them (``worker.ON_DEMAND``)."""
    others = {p.pid for p in worker_processes()}  # the module's executor's, if started

    def ours() -> list[psutil.Process]:
        return [p for p in worker_processes() if p.pid not in others]

    with LocalExecutor(concurrency=2) as executor:
        assert ours() == []  # nothing started before a job
        for n in (1, 2, 3):
            assert value_of(run(executor, job(data_dir, f"def f(df):\n    return {n}\n"))) == n
        assert len(ours()) == 1  # one after another: one warm worker
        # its warm-up (worker.warm_up) started no Polars: its pool does not survive a fork
        assert not [name for name in thread_names(ours()[0]) if name.startswith("polars")]
        # the deep-learning stack (spelled so that the job does not name it)
        loaded = (
            "import sys\ndef f(df):\n"
            "    return [m in sys.modules for m in ('tor' + 'ch', 'opa' + 'cus')]\n"
        )
        assert value_of(run(executor, job(data_dir, loaded))) == [False, False]  # not at start
        # a job that names it finds it loaded; the worker's next jobs too
        assert value_of(run(executor, job(data_dir, "# opacus\n" + loaded))) == [True, True]
        assert value_of(run(executor, job(data_dir, loaded))) == [True, True]
        slow = "import time\ndef f(df):\n    time.sleep(2)\n    return 7\n"
        both = [executor.submit(job(data_dir, slow)) for _ in range(2)]
        assert [value_of(f.result(timeout=120)) for f in both] == [7, 7]
        assert len(ours()) == 2  # two at once: a second worker
    assert ours() == []  # closing stops the idle ones


@MACHINE_WIDE
def test_a_killed_worker_is_replaced(data_dir) -> None:
    me = psutil.Process()
    # Other executors' workers (this module's fixture) are not this test's: one that has
    # just answered may still be reaping its run's tree, a job process among it.
    others = {p.pid for p in me.children()}
    with LocalExecutor(concurrency=1) as executor:
        future = executor.submit(job(data_dir, "import time\ndef f(df):\n    time.sleep(30)\n"))
        deadline = time.monotonic() + 60
        workers: list[psutil.Process] = []
        while not workers and time.monotonic() < deadline:
            workers = [
                p
                for p in me.children()
                if p.pid not in others
                and "datasite.execution.worker" in " ".join(p.cmdline())
                and any(c.uids().real in JOB_UIDS for c in p.children(recursive=True))
            ]
            time.sleep(0.05)
        assert workers, "the job never started"
        workers[0].kill()
        lost = future.result(timeout=60)
        assert lost.error_type == "WorkerCrashed" and lost.touched_data
        assert leftover_sandbox_processes() == []
        assert value_of(run(executor, job(data_dir, "def f(df):\n    return 5\n"))) == 5


def test_fails_closed_without_namespaces_unless_opted_out(data_dir) -> None:
    no_admin = ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin"]
    spec = job(data_dir, "def f(df):\n    return len(df)\n")
    with LocalExecutor(concurrency=1, launcher=no_admin, allow_unsandboxed=False) as executor:
        refused = run(executor, spec)
    assert refused.error_type == "SandboxUnavailable" and not refused.touched_data
    with LocalExecutor(concurrency=1, launcher=no_admin, allow_unsandboxed=True) as executor:
        degraded = run(executor, spec)
    assert value_of(degraded) == 2000
    assert "netns" not in degraded.isolation and "rlimits" in degraded.isolation


def test_the_jail_builds_when_the_install_lives_under_tmp(tmp_path: Path) -> None:
    """A checkout under /tmp (a fresh clone in CI) puts read-only binds below the jail's
    /tmp; the jail must still build, with the scratch directory as the place to write."""
    from datasite.execution import sandbox

    under_tmp = tmp_path / "checkout"
    under_tmp.mkdir()
    jail_root = tmp_path / "jail"
    jail_root.mkdir()
    config = sandbox.SandboxConfig(
        jail_root=str(jail_root),
        readonly_paths=(*sandbox.default_readonly_paths(), str(under_tmp)),
    )
    assert str(under_tmp).startswith("/tmp/")
    pid = os.fork()
    if pid == 0:  # the child builds the jail in its own namespaces, as a job would
        status = 1
        try:
            sandbox.unshare_namespaces()
            inner = os.fork()
            if inner == 0:
                code = 1
                try:
                    sandbox.enter_jail(config, 1024**2)
                    sandbox.clean_environment()
                    with tempfile.NamedTemporaryFile() as scratch_file:
                        scratch_file.write(b"ok")
                    code = 0 if os.path.isdir(str(under_tmp)) else 3
                finally:
                    os._exit(code)
            status = os.waitstatus_to_exitcode(os.waitpid(inner, 0)[1])
        finally:
            os._exit(status)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


BLIND_MEAN = """
from researcher_kit import dp

def f(df):
    return dp.mean(df["age"], bounds=(18, 90), epsilon=1.0)
"""


def test_a_delivered_result_is_answered_before_the_run_is_reaped(
    data_dir: Path, tmp_path: Path
) -> None:
    """A job that sent its result (and, data-blind, whose releaser sent its ledger) is
    answered at once; its process tree (three exits of copies of the worker, one after
    the other) and its releaser are reaped by ``clean_up``, which the worker calls once
    the result is on its way. A job that ended without a result is reaped first: its
    exit code is the error."""
    from datasite.execution import sandbox, supervise

    (tmp_path / "jail").mkdir()
    config = sandbox.SandboxConfig(jail_root=str(tmp_path / "jail"))
    me = psutil.Process()
    before = {p.pid for p in me.children()}

    def not_reaped() -> set[int]:  # exiting or exited, but not yet collected by us
        return {p.pid for p in me.children()} - before

    plain = supervise.run_job(job(data_dir, "def f(df):\n    return len(df)\n"), config)
    assert value_of(plain) == 2000
    assert len(not_reaped()) == 1  # the supervisor, answered before its tree's exit
    supervise.clean_up()
    assert not_reaped() == set()

    columns, _ = describe_table(data_dir / "pings.parquet")  # as the site names them
    blind = job(data_dir, BLIND_MEAN, kind=RequestKind.BLIND, schemas={"df": column_types(columns)})
    released = supervise.run_job(blind, config)
    assert 18 <= value_of(released) <= 90  # type: ignore[operator]
    assert [entry["epsilon"] for entry in released.spend] == [1.0]  # the releaser's ledger
    assert len(not_reaped()) == 2  # the supervisor and the releaser
    supervise.clean_up()
    assert not_reaped() == set()

    crashed = supervise.run_job(job(data_dir, "import os\ndef f(df):\n    os._exit(3)\n"), config)
    assert crashed.error_type == "Crashed" and not_reaped() == set()
