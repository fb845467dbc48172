"""The same DP job on a real Dask cluster (LocalCluster with a worker process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasite.contract.job import JobSpec, Limits
from datasite.contract.results import decode_result
from datasite.execution.executor import DaskExecutor, make_executor
from tests.test_execution_sandbox import DP_MEAN, MACHINE_WIDE, leftover_sandbox_processes

pytestmark = pytest.mark.slow


@MACHINE_WIDE
def test_dp_mean_runs_sandboxed_on_a_dask_worker(tmp_path: Path) -> None:
    from distributed import LocalCluster

    ages = np.random.default_rng(1).integers(18, 90, 3000)
    pd.DataFrame({"age": ages}).to_parquet(tmp_path / "ages.parquet")
    limits = Limits(wall_seconds=20, cpu_seconds=10, max_output_bytes=1024**2)

    def spec(job_id: str, source: str) -> JobSpec:
        inputs = {"df": str(tmp_path / "ages.parquet")}
        return JobSpec(
            job_id=job_id, source=source, entry="f", inputs=inputs, epsilon=1.0, limits=limits
        )

    with LocalCluster(
        n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        # a plain-TCP test cluster: the opt-out (TLS is tested in test_sound_dask)
        executor = make_executor("dask", 1, cluster.scheduler_address, allow_insecure=True)
        assert isinstance(executor, DaskExecutor)
        with executor:
            result = executor.submit(spec("dask-1", DP_MEAN)).result(timeout=180)
            hostile = executor.submit(spec("dask-2", "def f(df):\n    open('/etc/passwd')\n"))
            refused = hostile.result(timeout=60)
    assert result.ok, (result.error_type, result.error_detail)
    noisy = decode_result(result.manifest, result.blobs)
    assert noisy != ages.mean() and abs(noisy - ages.mean()) < 5
    assert {"netns", "chroot"} <= set(result.isolation)
    assert refused.error_type == "FileNotFoundError" and refused.manifest is None
    assert leftover_sandbox_processes() == []


@MACHINE_WIDE
def test_a_blind_release_scans_its_partitions_as_tasks_on_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a site running the Dask executor, the releaser of a data-blind job (on one
    worker) has its partition scans run as tasks on the cluster, through the scan broker;
    with ``fan_out=False`` the same job scans on the worker's own threads."""
    import pyarrow as pa
    from distributed import LocalCluster

    from datasite.contract.job import RequestKind
    from datasite.contract.tables import write_partitioned

    # the workers inherit it: the broker connects back to the plain-TCP test scheduler
    monkeypatch.setenv("DATASITE_DASK_ALLOW_INSECURE", "1")
    hours = np.random.default_rng(2).uniform(0.0, 20.0, 60_000)
    table = pa.table({"hours": hours, "secret": np.full(60_000, 31_337.0)})
    root = tmp_path / "asset"
    root.mkdir(mode=0o700)
    folder = root / "real"
    write_partitioned(table.to_batches(max_chunksize=5_000), folder, table.schema, 10_000)
    source = (
        "from researcher_kit import dp\n\n"
        "def f(df):\n"
        "    return dp.mean(df['hours'], bounds=(0.0, 20.0), epsilon=1.0)\n"
    )
    limits = Limits(wall_seconds=60, cpu_seconds=30, max_output_bytes=1024**2)

    def spec(job_id: str) -> JobSpec:
        return JobSpec(job_id=job_id, source=source, entry="f", kind=RequestKind.BLIND,
                       inputs={"df": str(folder)}, epsilon=1.0, limits=limits)  # fmt: skip

    def partial_tasks(cluster: LocalCluster) -> int:
        prefix = cluster.scheduler.task_prefixes.get("partial")
        return 0 if prefix is None else prefix.state_counts.get("memory", 0)  # tasks done

    # one worker of one thread: the job's scans run on the thread the job left (secede)
    with LocalCluster(
        n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        with DaskExecutor(cluster.scheduler_address, allow_insecure=True) as executor:
            fanned = executor.submit(spec("fan-1")).result(timeout=180)
        scanned = partial_tasks(cluster)
        with DaskExecutor(cluster.scheduler_address, allow_insecure=True, fan_out=False) as ex:
            alone = ex.submit(spec("fan-2")).result(timeout=180)
        assert partial_tasks(cluster) == scanned  # the second job scanned on its worker
    for result in (fanned, alone):
        assert result.ok, (result.error_type, result.error_message, result.error_detail)
        noisy = decode_result(result.manifest, result.blobs)
        assert abs(noisy - hours.mean()) < 0.1 and noisy != hours.mean()
        assert [e["helper"] for e in result.spend] == ["mean"]
    assert scanned == len(list(folder.glob("part-*.parquet"))) == 6  # a task per partition
    assert leftover_sandbox_processes() == []
