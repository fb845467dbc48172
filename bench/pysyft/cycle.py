"""The full cycle on a 1,000,000-row, 5-column asset, on PySyft 0.9.5 (the reference).

upload -> submit -> approve -> run a DP mean -> fetch, repeated N times against one real
PySyft server (``sy.orchestra.launch(port=...)`` forks a uvicorn process), with the
server's memory measured idle after launch and after the cycles. Runs in its own
virtualenv; build it first with ``bash bench/setup_pysyft_venv.sh``:

    bench/.venv-syft/bin/python bench/pysyft/cycle.py --cycles 5 --rows 1000000

Prints one JSON document on stdout (PySyft's own chatter goes to stderr) and writes it to
``bench/results/pysyft_cycle.json``. Run with another interpreter, it re-executes itself
with the venv's Python, or exits 2 saying how to build the venv. PySyft reads the DP
function's source from this file at submit time: do not edit it while a run is going.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
VENV_PYTHON = Path(os.environ.get("SYFT_VENV", BENCH / ".venv-syft")) / "bin" / "python"
RESULTS = BENCH / "results"
OWNER, OWNER_PW = "info@openmined.org", "changethis"
SYFT_VERSION = "0.9.5"


def ensure_syft_venv() -> None:
    """Re-exec under bench/.venv-syft if syft 0.9.5 is not importable here; exit 2 if absent."""
    try:
        from importlib.metadata import version

        if version("syft") == SYFT_VERSION:
            return
    except Exception:  # noqa: BLE001  any failure means "not this interpreter"
        pass
    in_venv = Path(sys.prefix).resolve() == VENV_PYTHON.parent.parent.resolve()
    if VENV_PYTHON.exists() and not in_venv:
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    print(
        f"PySyft {SYFT_VERSION} is not installed for {sys.executable} and "
        f"{VENV_PYTHON} is missing or broken; run: bash bench/setup_pysyft_venv.sh",
        file=sys.stderr,
    )
    sys.exit(2)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (PySyft prints banners, forked servers inherit fd 1)
    to stderr, so the JSON we print afterwards is the only thing on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def server_process(port: int) -> Any:
    """The psutil.Process of our child that listens on ``port`` (PySyft's uvicorn server)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(
                c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
                for c in child.net_connections(kind="tcp")
            ):
                return child
    raise RuntimeError(f"no child process listens on port {port}")


def memory_mb(proc: Any) -> dict[str, float]:
    """RSS and USS (memory only it holds) of the server, and RSS of it with its children."""
    info = proc.memory_full_info()
    tree = info.rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    return {"rss": info.rss / 2**20, "uss": info.uss / 2**20, "tree_rss": tree / 2**20}


def timed(times: dict[str, float], step: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``, record its wall time under ``step``, return its value."""
    start = time.perf_counter()
    value = fn()
    times[step] = time.perf_counter() - start
    return value


def one_cycle(server: Any, owner: Any, real: Any, mock: Any, index: int) -> dict[str, float]:
    """One upload -> submit -> approve -> run -> fetch; returns seconds per step.

    A fresh researcher per cycle keeps ``ds.code.dp_mean_age`` unambiguous; creating and
    logging them in is timed as ``login`` and left out of ``cycle`` (as on our side).
    """
    import syft as sy

    times: dict[str, float] = {}
    name = f"bench-{index}"

    def upload() -> None:
        dataset = sy.Dataset(name=name, description="1M-row benchmark table")
        dataset.add_asset(sy.Asset(name="t", data=real, mock=mock))
        owner.upload_dataset(dataset)

    timed(times, "upload", upload)

    email, password = f"researcher{index}@uni.example", "bench-password-1"

    def login() -> Any:
        owner.users.create(
            name=f"Researcher {index}", email=email, password=password, password_verify=password
        )
        return server.login(email=email, password=password)

    ds = timed(times, "login", login)

    def submit() -> Any:
        asset = ds.datasets[name].assets[0]

        @sy.syft_function_single_use(df=asset)
        def dp_mean_age(df):  # noqa: ANN001, ANN202  runs inside the PySyft server
            import opendp.prelude as dp

            dp.enable_features("contrib")
            ages = df["age"].to_numpy(dtype=float).clip(18, 90)
            laplace = dp.m.make_laplace(
                dp.atom_domain(T=float, nan=False),
                dp.absolute_distance(T=float),
                scale=(90 - 18) / len(ages) / 1.0,
            )
            return laplace(float(ages.mean()))

        project = ds.create_project(
            name=f"bench-project-{index}", description="benchmark", user_email_address=email
        )
        project.create_code_request(dp_mean_age, ds)
        return asset

    asset = timed(times, "submit", submit)

    # The reviewer's approval: find the pending request, approve it (timed apart too).
    pending = timed(times, "approve_find", owner.requests.get_all_pending)
    if len(pending) != 1:
        raise RuntimeError(f"expected one pending request, found {len(pending)}")
    timed(times, "approve_call", pending[0].approve)
    times["approve"] = times["approve_find"] + times["approve_call"]
    pointer = timed(times, "run", lambda: ds.code.dp_mean_age(df=asset))
    value = timed(times, "fetch", pointer.get)
    if not isinstance(value, float):
        raise RuntimeError(f"the DP mean came back as {value!r}")
    from table import CYCLE_STEPS

    times["cycle"] = sum(times[s] for s in CYCLE_STEPS)
    times["value"] = value
    return times


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Launch the server, run warm-up plus measured cycles, land it; return the report."""
    import syft as sy
    from table import make_mock, make_table, summarize

    port = args.port or free_port()
    # PySyft keeps its SQLite db and blobs under $TMP/$SYFT_TEMP_ROOT/<server uid>; an
    # absolute root of our own lets us delete all of it (1M-row blobs per cycle) at the end.
    state = Path(tempfile.mkdtemp(prefix="pysyft-bench-"))
    os.environ["SYFT_TEMP_ROOT"] = str(state)
    # Launch before building the table: the server is forked, so it must not inherit it.
    server = None
    try:
        t = time.perf_counter()
        server = sy.orchestra.launch(name="bench", port=port, reset=True)
        launch_s = time.perf_counter() - t
        proc = server_process(port)
        time.sleep(args.settle)
        idle = memory_mb(proc)
        owner = server.login(email=OWNER, password=OWNER_PW)
        real, mock = make_table(args.rows), make_mock()
        samples: dict[str, list[float]] = {}
        warmup: list[dict[str, float]] = []
        for index in range(args.warmup + args.cycles):
            times = one_cycle(server, owner, real, mock, index)
            print(f"cycle {index}: {json.dumps(times)}", file=sys.stderr)
            if index < args.warmup:
                warmup.append(times)
                continue
            for step, seconds in times.items():
                if step != "value":
                    samples.setdefault(step, []).append(seconds)
        time.sleep(args.settle)
        after = memory_mb(proc)
    finally:
        land(server)
        shutil.rmtree(state, ignore_errors=True)
    return {
        "system": "pysyft",
        "version": sy.__version__,
        "python": sys.version.split()[0],
        "rows": args.rows,
        "columns": 5,
        "cycles": args.cycles,
        "warmup_cycles": args.warmup,
        "launch_seconds": launch_s,
        "steps": summarize(samples),
        "warmup": warmup,
        "rss_mb": {
            "server_idle": idle["rss"],
            "server_idle_uss": idle["uss"],
            "tree_idle": idle["tree_rss"],
            "server_after_cycles": after["rss"],
            "server_after_cycles_uss": after["uss"],
            "tree_after_cycles": after["tree_rss"],
        },
    }


def land(server: Any | None) -> None:
    """``server.land()``, then end any child of ours that survived it (by pid, never by name)."""
    import psutil

    if server is not None:
        with contextlib.suppress(Exception):
            server.land()
    leftovers = psutil.Process().children(recursive=True)
    for child in leftovers:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def main() -> None:
    """Parse arguments, run the benchmark, print and write the JSON report."""
    ensure_syft_venv()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cycles", type=int, default=5, help="measured cycles")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured cycles first")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before RSS reads")
    parser.add_argument("--out", type=Path, default=RESULTS / "pysyft_cycle.json")
    args = parser.parse_args()
    # SIGTERM from a driver unwinds through run()'s finally, which lands the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with stdout_to_stderr():
        result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
