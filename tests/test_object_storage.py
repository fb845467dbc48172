"""Asset tables in an S3 object store (``DATASITE_STORAGE_URL``), against a real S3 server.

The server is moto's (``moto[server]``, S3 over HTTP on loopback), reached through
s3fs exactly as a site reaches AWS S3 or MinIO. The store is the record; the site's
asset folder only a cache of it: a site that lost its cache still serves its datasets.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datasite.contract.tables import partition_files
from datasite.errors import NotFound

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

BUCKET = "assets-bucket"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> dict[str, str]:
    """A moto S3 server on loopback with one bucket; the fsspec options to reach it."""
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "site", "secret": "secret"}
    s3fs.S3FileSystem(**options).mkdir(BUCKET)
    yield options
    server.stop()


def people(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 90, rows), "hours": rng.gamma(2.0, 1.0, rows)})


def parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def objects(s3: dict[str, str], prefix: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(**s3)
    fs.invalidate_cache()
    return sorted(p for p in fs.find(f"{BUCKET}/{prefix}"))


def test_a_table_goes_to_the_store_and_back_to_an_empty_cache(s3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datasite.store import ObjectStorage

    store = ObjectStorage(f"s3://{BUCKET}/one", tmp_path / "cache", rows_per_file=500, options=s3)
    real = people(1_800)
    key = store.put_table(parquet(real, tmp_path / "real.parquet"), dataset_id=7, side="real")
    mock_key = store.put_table(parquet(people(50, 1), tmp_path / "m.parquet"), 7, side="mock")
    stored = objects(s3, "one/7/")
    assert len([p for p in stored if p.endswith(".parquet") and "/part-" in p]) == 4
    assert sum(p.endswith("_COMPLETE") for p in stored) == 2
    store.clear_cache()
    assert not list((tmp_path / "cache").iterdir())
    assert store.exists(key) and store.exists(mock_key)
    assert pd.read_parquet(store.path(key)).equals(real)  # downloaded again, whole
    assert len(partition_files(store.path(key))) == 4
    assert len(pd.read_parquet(store.path(mock_key))) == 50
    with pytest.raises(NotFound):
        store.path("../../etc/passwd")
    assert not store.exists("7/../../x")
    store.delete(key)
    assert not store.exists(key) and not store.path(mock_key).is_dir()
    assert not [p for p in objects(s3, "one/7/") if "-real" in p]
    with pytest.raises(NotFound):
        store.path(key)


def test_an_upload_cut_off_halfway_leaves_nothing_readable_and_can_be_retried(  # type: ignore[no-untyped-def]
    s3, tmp_path, monkeypatch
) -> None:
    from datasite.store import ObjectStorage

    store = ObjectStorage(f"s3://{BUCKET}/two", tmp_path / "cache", rows_per_file=500, options=s3)
    source = parquet(people(1_800), tmp_path / "real.parquet")
    original, sent = store.fs.put_file, []

    def network_drops_after_two(local, remote, **kwargs):  # type: ignore[no-untyped-def]
        if len(sent) == 2:
            raise ConnectionError("connection reset by peer")
        sent.append(remote)
        return original(local, remote, **kwargs)

    monkeypatch.setattr(store.fs, "put_file", network_drops_after_two)
    with pytest.raises(ConnectionError):
        store.put_table(source, dataset_id=3, side="real")
    assert len(sent) == 2 and objects(s3, "two/") == []  # the parts sent are taken back
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.suffix == ".parquet"]
    monkeypatch.setattr(store.fs, "put_file", original)
    key = store.put_table(source, dataset_id=3, side="real")
    assert store.exists(key) and len(pd.read_parquet(store.path(key))) == 1_800


MEAN = (
    "from researcher_kit import dp\n\n"
    "def mean(ctx):\n"
    "    return dp.ctx_mean(ctx, 'online_hours', bounds=(0.0, 20.0))\n"
)


@pytest.mark.integration
@pytest.mark.one_database
def test_a_site_on_the_store_serves_its_datasets_after_losing_its_cache(s3, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import RESEARCHER_EMAIL, inprocess, setup_site
    from tests.flows import submit_source, wait_state

    for site in inprocess(tmp_path, storage_url=f"s3://{BUCKET}/site", storage_options=s3,
                          partition_rows=500):  # fmt: skip
        owner, researcher, real, _ = setup_site(site.url)
        assert [p for p in objects(s3, "site/") if "/part-" in p]
        researcher.create_project("Study")
        owner.policies.set("Pings", auto_approve=True, max_epsilon_per_request=5.0)
        owner.budgets.grant(RESEARCHER_EMAIL, "Pings", epsilon=10.0)
        for _ in range(2):
            site.site.store.clear_cache()  # a new machine: only the object store has them
            request_id = submit_source(researcher.session, MEAN, "mean", epsilon=4.0,
                                       kind="context", bindings={"ctx": "pings"})  # fmt: skip
            wait_state(researcher.session, request_id, ("released", "failed"))
            released = researcher.request(request_id).result()
            assert abs(released - real["online_hours"].clip(0, 20).mean()) < 0.1
