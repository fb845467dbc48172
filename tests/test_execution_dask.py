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
