"""Large assets (issue 15): upload, run step and peak memory at 1M-100M rows x 5 columns.

For each size the table (5 columns: id, age, hours, score, group) is generated batch by
batch into one Parquet file, then:

- ``upload_s``: the owner's upload through a real server process (``EmbeddedSite``):
  the file streams over HTTP, the site stores it as partitions of 1M rows.
- ``local``: the approved run step of a data-blind ``rk.dp.mean(df["hours"])`` on the
  stored partitions, a full sandbox job through ``LocalExecutor`` (releaser process,
  jailed job, release quantum) with a 2 GiB run memory limit; the job names the asset's
  public columns as the site's jobs do (``datasite.runs.job_for``). ``peak_rss_mb`` is the
  largest peak RSS (``VmHWM``) of the run's processes (releaser and job), sampled every
  10 ms from ``/proc`` in one more run after the timed ones (the sampler's CPU would
  slow the timed runs on 2 cores).
- ``context``: the same mean as an OpenDP Context request (``rk.dp.ctx_mean``): OpenDP's
  Polars plan over a lazy scan of the partition files.
- ``releaser``: the releaser alone in a fresh (spawned) process, partitions on local
  threads (peak: that process's ``VmHWM``, reset before each run; it includes the
  process's imports).
- ``dask`` / ``dask-threads``: the same release with the partitions scanned on a 2-worker
  ``dask.distributed.LocalCluster`` of separate worker processes / of threads started in
  the releaser's own fresh process (peak: the largest of the releaser's process and the
  workers').
- ``dask-site``: the site's own path on that 2-process cluster: the job goes to a worker
  through ``DaskExecutor`` (sandbox, releaser) and the releaser's partition scans run as
  cluster tasks through the scan broker (``datasite.execution.cluster_scans``).
- ``floor_s`` (every row): the same DP mean in one process: a Polars lazy scan of the
  one column (clamped sum and count) plus OpenDP Laplace noise.

Targets: 100M rows with at most 2 GiB peak per process; the run step at most 2x the
floor from 10M rows up and 5x at 1M; the Context path at most 3x; Dask at most the
local time plus 1 s.

Writes ``bench/results/large_assets.json`` (a list of ``rows``, ``path``, ``run_s``,
``floor_s``, ``peak_rss_mb``, ``state`` and more). Run:
``.venv/bin/python bench/bench_large_assets.py --rows 1000000 10000000 50000000 100000000``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from datasite.contract.job import JobSpec, Limits, RequestKind
from datasite.contract.release import ReleaseCall
from datasite.execution.executor import LocalExecutor

RESULTS = Path(__file__).parent / "results" / "large_assets.json"
BOUNDS = (0.0, 20.0)
MEAN = """
from researcher_kit import dp

def f(df):
    return dp.mean(df["hours"], bounds=(0.0, 20.0), epsilon=1.0)
"""
CONTEXT_MEAN = """
from researcher_kit import dp

def f(df):
    return dp.ctx_mean(df, "hours", bounds=(0.0, 20.0))
"""
MEMORY = 2 * 1024**3


def generate(rows: int, path: Path, batch: int = 5_000_000) -> None:
    rng = np.random.default_rng(0)
    schema = pa.schema([("id", pa.int64()), ("age", pa.int64()), ("hours", pa.float64()),
                        ("score", pa.float64()), ("group", pa.int64())])  # fmt: skip
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            writer.write_table(pa.table({
                "id": np.arange(start, start + n, dtype=np.int64),
                "age": rng.integers(18, 90, n), "hours": rng.gamma(2.0, 1.0, n),
                "score": rng.normal(0, 1, n), "group": rng.integers(0, 5, n),
            }, schema=schema), row_group_size=128 * 1024)  # fmt: skip


def floor(files: list[str]) -> float:
    """The floor: Polars' lazy scan of one column plus OpenDP Laplace, in one process."""
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    started = time.perf_counter()
    clamped = pl.col("hours").drop_nulls().clip(*BOUNDS)
    row = pl.scan_parquet(files).select(clamped.sum().alias("s"), clamped.count().alias("n"))
    total, n = row.collect().row(0)
    space = dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float)
    noisy_sum = dp.m.make_laplace(*space, scale=2 * BOUNDS[1] / 1.0)
    count_space = dp.atom_domain(T=int), dp.absolute_distance(T=int)
    noisy_n = dp.m.make_laplace(*count_space, scale=2.0)
    _ = noisy_sum(float(total)) / max(1, noisy_n(int(n)))
    return time.perf_counter() - started


class PeakRss:
    """The largest VmHWM of the processes of the given users or pids, sampled until stopped."""

    def __init__(self, users: Callable[[int], bool], pids: frozenset[int] = frozenset(),
                 active: bool = True) -> None:  # fmt: skip
        self.users, self.pids, self.peak_kb, self._stop = users, pids, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True) if active else None

    def __enter__(self) -> PeakRss:
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                uid = int(fields.get("Uid", "-1 ").split()[0])
                if (self.users(uid) or int(pid) in self.pids) and "VmHWM" in fields:
                    self.peak_kb = max(self.peak_kb, int(fields["VmHWM"].split()[0]))


def public_schemas(folder: str) -> dict[str, dict[str, str]]:
    """The job's public columns, as the site's jobs name them (the releaser reads none)."""
    from datasite.store.assets import column_types, describe_table

    return {"df": column_types(describe_table(min(Path(folder).glob("part-*.parquet")))[0])}


def sandbox_run(executor: Any, folder: str, schemas: dict[str, dict[str, str]], source: str,
                kind: str, sample: bool, pids: frozenset = frozenset()) -> dict:  # fmt: skip
    from datasite.execution.releasing import RELEASER_UID
    from datasite.execution.sandbox import JOB_UIDS

    limits = Limits(wall_seconds=600, cpu_seconds=600, memory_bytes=MEMORY)
    spec = JobSpec(job_id="large", source=source, entry="f", kind=RequestKind(kind),
                   inputs={"df": folder}, schemas=schemas, epsilon=1.0, limits=limits)  # fmt: skip
    with PeakRss(lambda uid: uid == RELEASER_UID or uid in JOB_UIDS, pids,
                 active=sample) as peak:  # fmt: skip
        started = time.perf_counter()
        result = executor.submit(spec).result()
        elapsed = time.perf_counter() - started
    state = "ok" if result.ok else f"failed: {result.error_type}: {result.error_message}"
    return {"run_s": elapsed, "peak_rss_mb": round(peak.peak_kb / 1024, 1), "state": state}


_clients: dict[str, Any] = {}


def releaser_run(folder: str, scheduler: str | None = None) -> dict:
    """The releaser in this process (a fresh one, see :func:`fresh_process`); its peak is
    this process's ``VmHWM``, reset first. With ``scheduler`` its partitions are scanned
    as tasks on that Dask cluster."""
    from researcher_kit.dp.partitioned import dask_mapper
    from researcher_kit.releaser import Releaser

    mapper = None
    if scheduler is not None:
        if scheduler not in _clients:
            _clients[scheduler] = _client(scheduler)
        mapper = dask_mapper(_clients[scheduler])
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS counter
    releaser = Releaser({"df": folder}, epsilon=1.0, mapper=mapper)
    call = ReleaseCall(op="mean", table="df", column="hours", bounds=BOUNDS, epsilon=1.0)
    started = time.perf_counter()
    try:
        releaser.handle(call)
        state = "ok"
    except Exception as exc:  # noqa: BLE001 - recorded as the row's state
        state = f"failed: {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    return {"run_s": elapsed, "peak_rss_mb": round(peak_kb / 1024, 1), "state": state}


def _client(scheduler: str) -> Any:
    """A client of ``scheduler``; for :data:`THREADS`, of a 2-worker cluster of threads
    started in this process, so that the process's peak RSS is the release's and its own
    imports, never the bench's (which generated and uploaded the table)."""
    from distributed import Client, LocalCluster

    if scheduler != THREADS:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                           dashboard_address=None)  # fmt: skip
    return Client(cluster)


def upload(source: Path, work: Path) -> tuple[float, str]:
    """The owner's upload through a real server; returns its time and the stored folder."""
    from datasite import admin
    from datasite.client.embedded import EmbeddedSite

    site = EmbeddedSite(work / "site", owner_email="owner@bench.example",
                        owner_password="bench-password-1", env={"DATASITE_NO_PROGRESS": "1",
                        "DATASITE_MAX_UPLOAD_BYTES": str(64 * 1024**3)}).start()  # fmt: skip
    try:
        owner = admin.connect(site.url, "owner@bench.example", "bench-password-1")
        mock_path = work / "mock.parquet"
        first = next(pq.ParquetFile(source).iter_batches(batch_size=1000))
        pq.write_table(pa.Table.from_batches([first]), mock_path)
        started = time.perf_counter()
        owner.datasets.upload(name="Big", assets={"t": (source, mock_path)}, progress=False)
        elapsed = time.perf_counter() - started
    finally:
        site.stop()
    (folder,) = [p for p in (work / "site").rglob("*-real.parquet") if p.is_dir()]
    return elapsed, str(folder)


PATHS = ("local", "context", "releaser", "dask", "dask-site")
THREADS = "threads"  # the dask-threads path's cluster: threads of the releaser's process


@dataclass(frozen=True)
class Cluster:
    """A bench ``LocalCluster``: its address, and the pids its partition scans run in."""

    address: str
    pids: frozenset[int]


def fresh_process() -> ProcessPoolExecutor:
    """One spawned process: a release's peak there is the release's, not the bench's
    (which has generated, uploaded and scanned the table for the floor)."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def measure(
    rows: int, work: Path, with_dask: bool, runs: int, paths: tuple[str, ...] = PATHS
) -> list[dict]:
    from datasite.execution.executor import DaskExecutor

    source = work / "source.parquet"
    generate(rows, source)
    upload_s, folder = upload(source, work)
    source.unlink()
    files = sorted(str(p) for p in Path(folder).glob("part-*.parquet"))
    schemas = public_schemas(folder)
    floors = [floor(files) for _ in range(runs + 1)][1:]
    floor_s = float(np.median(floors))
    out: list[dict] = []

    def row(path: str, results: list[dict]) -> None:
        run_s = float(np.median([r["run_s"] for r in results[:-1]]))
        out.append({"rows": rows, "path": path, "run_s": round(run_s, 3),
                    "floor_s": round(floor_s, 3), "ratio": round(run_s / floor_s, 2),
                    "peak_rss_mb": results[-1]["peak_rss_mb"],
                    "state": results[-1]["state"], "upload_s": round(upload_s, 2),
                    "partitions": len(files), "measured": time.strftime("%Y-%m-%d"),
                    "load_average_at_start": round(os.getloadavg()[0], 2)})  # fmt: skip
        print(json.dumps(out[-1]), flush=True)

    def timed(measure_once: Any, warm_ups: int = 1) -> list[dict]:
        """``runs`` timed runs, then one whose peak memory is sampled: the sampler reads
        ``/proc`` every 10 ms, CPU the timed runs should not share on 2 cores."""
        for _ in range(warm_ups):  # imports, worker start: not counted
            measure_once(False)
        return [*(measure_once(False) for _ in range(runs)), measure_once(True)]

    def released(pool: ProcessPoolExecutor, cluster: Cluster | None, sample: bool) -> dict:
        pids = cluster.pids if cluster else frozenset()
        with PeakRss(lambda uid: False, pids, active=sample) as workers:
            address = cluster.address if cluster else None
            found = pool.submit(releaser_run, folder, address).result()
        found["peak_rss_mb"] = max(found["peak_rss_mb"], round(workers.peak_kb / 1024, 1))
        return found

    def jobs(executor: Any, source: str, kind: str, pids: frozenset = frozenset()) -> Any:
        """One sandbox run of ``source`` a call (sampled or not), as :func:`timed` wants."""
        return lambda s: sandbox_run(executor, folder, schemas, source, kind, s, pids)

    with LocalExecutor(concurrency=1) as executor:
        if "local" in paths:
            row("local", timed(jobs(executor, MEAN, "blind")))
        if "context" in paths:
            row("context", timed(jobs(executor, CONTEXT_MEAN, "context")))
    if "releaser" in paths:
        with fresh_process() as pool:
            row("releaser", timed(lambda s: released(pool, None, s)))
    # the cluster starts only now: its idle processes would share the cores with the
    # paths above, which do not use it (at 10M rows, a Context run took 0.196 s beside
    # it and 0.143 s without it)
    with dask_clusters(with_dask and bool({"dask", "dask-site"} & set(paths))) as clusters:
        for name, cluster in clusters.items():
            if name in paths or (name == "dask-threads" and "dask" in paths):
                with fresh_process() as pool:
                    row(name, timed(lambda s, c=cluster: released(pool, c, s)))
        if "dask-site" in paths and "dask" in clusters:
            cluster = clusters["dask"]
            with DaskExecutor(cluster.address, allow_insecure=True) as on_dask:
                # each Dask worker keeps its own warm sandbox worker: warm both
                row("dask-site", timed(jobs(on_dask, MEAN, "blind", cluster.pids), warm_ups=4))
    shutil.rmtree(work / "site", ignore_errors=True)
    return out


@contextmanager
def dask_clusters(start: bool) -> Iterator[dict[str, Cluster]]:
    """A 2-worker ``LocalCluster`` of separate processes (``dask``) and the recipe of
    the threads one (``dask-threads``, see :func:`_client`); none when not ``start``."""
    if not start:
        yield {}
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        pids = frozenset(client.run(os.getpid).values())
        yield {"dask": Cluster(cluster.scheduler_address, pids),
               "dask-threads": Cluster(THREADS, frozenset())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--merge", action="store_true", help="replace only the measured (rows, path) rows"
    )
    args = parser.parse_args()
    # a plain-TCP bench cluster; its workers inherit this, so a site job's scan broker
    # may connect back (a real site uses TLS: README, "Runs")
    os.environ["DATASITE_DASK_ALLOW_INSECURE"] = "1"
    rows_out: list[dict] = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
            rows_out += measure(rows, Path(folder), not args.no_dask, args.runs,
                                tuple(args.paths))  # fmt: skip
    if args.merge and RESULTS.exists():
        new = {(r["rows"], r["path"]) for r in rows_out}
        kept = [r for r in json.loads(RESULTS.read_text()) if (r["rows"], r["path"]) not in new]
        rows_out = sorted(kept + rows_out, key=lambda r: (r["rows"], r["path"]))
    RESULTS.write_text(json.dumps(rows_out, indent=2) + "\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; wrote {RESULTS}")


if __name__ == "__main__":
    main()
