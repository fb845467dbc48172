"""The site reaches its Dask scheduler only over mutual TLS; a plain one is refused.

A Dask scheduler runs whatever a connected client submits, on workers that run as root
next to the private data: an unauthenticated scheduler let any process on the host run
code there. The certificates here come from ``openssl`` (``Security.temporary`` needs the
``cryptography`` package, which the project does not depend on).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from datasite.contract.job import JobSpec, Limits
from datasite.contract.results import decode_result
from datasite.execution.executor import (
    DaskExecutor,
    InsecureScheduler,
    dask_security,
    make_executor,
)

ROOT = Path(__file__).resolve().parent.parent
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def make_certificates(folder: Path, prefix: str = "") -> dict[str, str]:
    """A CA, and one certificate it signed (for scheduler, workers and the site)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    ca, node = f"{prefix}ca", f"{prefix}node"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dask",
        "-keyout", f"{node}.key", "-out", f"{node}.csr",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", f"{node}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-days", "1", "-out", f"{node}.pem",
    )  # fmt: skip
    return {
        "ca": str(folder / f"{ca}.pem"),
        "cert": str(folder / f"{node}.pem"),
        "key": str(folder / f"{node}.key"),
    }


def scheduler_identity(address: str, context: ssl.SSLContext | None) -> dict:
    """Ask the scheduler who it is over Dask's own comm layer, as any client's first call.

    A ``distributed.Client`` cannot be used to show a refusal: given no client certificate
    it builds no TLS context and fails on its own side before it connects, and a Client
    whose start failed can hang in its finaliser. Every step here is bounded.
    """
    from distributed.comm import connect

    async def ask() -> dict:
        comm = await connect(address, timeout=10, ssl_context=context)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await asyncio.wait_for(comm.read(), 10)
        finally:
            comm.abort()

    return asyncio.run(ask())


def site_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """The TLS context the site itself connects with (:func:`dask_security`)."""
    return dask_security(ca, cert, key).get_connection_args("client")["ssl_context"]


@pytest.mark.parametrize(
    "address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "ws://127.0.0.1:8786"]
)
def test_a_plain_scheduler_is_refused(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATASITE_DASK_ALLOW_INSECURE", raising=False)
    with pytest.raises(InsecureScheduler, match="only over TLS"):
        make_executor("dask", 1, address)
    with pytest.raises(InsecureScheduler, match="only over TLS"):
        DaskExecutor(address)


def test_a_tls_scheduler_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CA_FILE", "CERT_FILE", "KEY_FILE"):
        monkeypatch.delenv(f"DATASITE_DASK_TLS_{name}", raising=False)
    with pytest.raises(InsecureScheduler, match="needs TLS credentials"):
        make_executor("dask", 1, "tls://127.0.0.1:8786")
    monkeypatch.setenv("DATASITE_DASK_TLS_CA_FILE", "/nonexistent/ca.pem")
    with pytest.raises(InsecureScheduler, match="all three"):
        make_executor("dask", 1, "tls://127.0.0.1:8786")


def test_the_tls_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datasite.config import Settings

    monkeypatch.setenv("DATASITE_DASK_TLS_CA_FILE", "/run/secrets/dask/ca.pem")
    monkeypatch.setenv("DATASITE_DASK_ALLOW_INSECURE", "1")
    settings = Settings.from_env(data_dir=tmp_path)
    assert settings.dask_tls_ca_file == "/run/secrets/dask/ca.pem"
    assert settings.dask_allow_insecure is True


@needs_openssl
@pytest.mark.slow
def test_jobs_run_over_mutual_tls_and_a_client_without_a_certificate_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from distributed import LocalCluster
    from distributed.comm import CommClosedError
    from distributed.security import Security

    certs = make_certificates(tmp_path)
    cluster_security = Security(
        require_encryption=True,
        tls_ca_file=certs["ca"],
        tls_scheduler_cert=certs["cert"],
        tls_scheduler_key=certs["key"],
        tls_worker_cert=certs["cert"],
        tls_worker_key=certs["key"],
        tls_client_cert=certs["cert"],
        tls_client_key=certs["key"],
    )
    ages = np.random.default_rng(1).integers(18, 90, 500)
    pd.DataFrame({"age": ages}).to_parquet(tmp_path / "ages.parquet")
    spec = JobSpec(
        job_id=f"tls-{time.monotonic_ns()}",
        source="def f(df):\n    return int(df['age'].between(0, 200).all())\n",
        entry="f",
        inputs={"df": str(tmp_path / "ages.parquet")},
        epsilon=1.0,
        limits=Limits(wall_seconds=120, cpu_seconds=60, max_output_bytes=1024**2),
    )
    with LocalCluster(
        n_workers=1,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        protocol="tls://",
        security=cluster_security,
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        for name, key in (("CA", "ca"), ("CERT", "cert"), ("KEY", "key")):
            monkeypatch.setenv(f"DATASITE_DASK_TLS_{name}_FILE", certs[key])
        with make_executor("dask", 1, address) as executor:
            result = executor.submit(spec).result(timeout=180)
        assert result.ok, (result.error_type, result.error_detail)
        assert decode_result(result.manifest, result.blobs) == 1

        # The same first call four ways: with the site's own credentials it is answered
        # (so the refusals below are the scheduler's, not the probe's) ...
        member = site_context(certs["ca"], certs["cert"], certs["key"])
        assert scheduler_identity(address, member)["type"] == "Scheduler"
        # ... without a client certificate (Dask's Security builds no context for that, so
        # it is built here), or with one another CA signed, it is refused ...
        anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs["ca"])
        anonymous.check_hostname = False  # the certificates name no host, as in Dask's own
        stranger = make_certificates(tmp_path, prefix="other-")
        for context in (anonymous, site_context(certs["ca"], stranger["cert"], stranger["key"])):
            with pytest.raises((CommClosedError, OSError, asyncio.TimeoutError)):
                scheduler_identity(address, context)
        # ... and plain TCP to the TLS port gets nowhere either
        with pytest.raises((CommClosedError, OSError, asyncio.TimeoutError)):
            scheduler_identity(address.replace("tls://", "tcp://"), None)
    with pytest.raises(InsecureScheduler, match="does not exist"):
        dask_security(str(tmp_path / "missing.pem"), certs["cert"], certs["key"])


def test_manifests_keep_the_scheduler_inside_and_mount_the_tls_secret() -> None:
    dask = list(yaml.safe_load_all((ROOT / "deploy/k8s/dask.yaml").read_text()))
    services = [d for d in dask if d and d.get("kind") == "Service"]
    assert services, "the scheduler needs a Service"
    for service in services:
        spec = service["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]
        assert "externalIPs" not in spec and "loadBalancerIP" not in spec
    policies = [d for d in dask if d and d.get("kind") == "NetworkPolicy"]
    assert policies, "a NetworkPolicy lets only the datasite and workers reach the scheduler"
    text = (ROOT / "deploy/k8s/dask.yaml").read_text() + (
        ROOT / "deploy/k8s/datasite.yaml"
    ).read_text()
    assert "tls://" in text and "tcp://" not in text
    assert "DATASITE_DASK_TLS_CA_FILE" in text and "secretName: dask-tls" in text
    assert "--tls-ca-file" in text

    # compose runs the local executor; should it ever grow a Dask service, that one
    # publishes no port and the site reaches it over TLS
    compose_text = (ROOT / "deploy/compose.yaml").read_text()
    compose = yaml.safe_load(compose_text)
    for name, service in compose["services"].items():
        if "dask" in name or "scheduler" in name or "worker" in name:
            assert not service.get("ports"), f"{name} publishes a port outside"
            assert "DATASITE_DASK_TLS_CA_FILE" in compose_text
    assert "tcp://" not in compose_text


def test_the_insecure_opt_out_is_loud(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the opt-out, a plain scheduler is accepted, and the log says what it means."""
    import distributed

    connected: list[str] = []

    class FakeClient:
        def __init__(self, address: str, **kwargs: object) -> None:
            connected.append(address)

        def close(self) -> None:
            pass

    monkeypatch.setattr(distributed, "Client", FakeClient)
    with caplog.at_level(logging.WARNING, logger="datasite.execution"):
        make_executor("dask", 1, "tcp://127.0.0.1:8786", allow_insecure=True).close()
    assert connected == ["tcp://127.0.0.1:8786"]
    assert "DASK INSECURE OPT-OUT" in caplog.text
