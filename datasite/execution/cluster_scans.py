"""Partition scans of a data-blind run, fanned out to the site's Dask cluster.

On a site running ``--executor dask`` a job lands on one Dask worker, where its
releaser reads the inputs. A release over a partitioned table is a sum of exact
per-partition aggregates (``researcher_kit.dp.partitioned``): those scans may run on
every worker of the cluster instead of the one worker's cores. The releaser has no
network (it holds the data), so it asks a *scan broker* for them::

    warm worker (root, single-threaded when it forks)
      +- scan broker (this module): a Dask client of the site's scheduler
      +- releaser: ``cluster_mapper`` sends {input, partition names, scan} over a socket,
           gets back the combined exact aggregate, adds the noise itself (OpenDP)

The broker only ever runs site code (``researcher_kit.dp.partitioned.partial``) on
partition files of the job's own inputs, named by the releaser and checked here; what
comes back to the releaser is the exact sum of the partials, a few numbers, which the
releaser noises exactly as it noises a locally scanned sum. The job process never sees
the broker. The broker is its own process, forked like the releaser, so that the Dask
client's threads never live in a process that forks again.

>>> scan = Scan(op="bins", column="age", edges=(0.0, 50.0, 100.0))
>>> decode_scan(json.loads(json.dumps(encode_scan(scan)))) == scan
True
>>> decode_partial(json.loads(json.dumps(encode_partial([np.array([3, 4]), 2.5]))))
[array([3, 4]), 2.5]
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from datasite.contract.framing import WireError, read_message, write_message
from researcher_kit.dp.partitioned import Mapper, Scan, local_mapper, partial

log = logging.getLogger("datasite.execution")
PARTITION_NAME = re.compile(r"^part-[A-Za-z0-9_.-]{1,100}\.parquet$")
CONNECT_SECONDS = 10.0  # past this the releaser scans on its own worker
_TUPLES = ("bounds", "categories", "edges", "candidates")


class ScanRefused(RuntimeError):
    """The broker refused or failed a scan; the release fails, the run's budget holds."""


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


def encode_scan(scan: Scan) -> dict[str, Any]:
    """A scan as JSON-able fields (tuples become lists)."""
    return json.loads(json.dumps(scan.__dict__, default=_plain))


def decode_scan(fields: dict[str, Any]) -> Scan:
    """The scan back, tuples restored; unknown fields are refused."""
    values = {k: tuple(v) if k in _TUPLES and v is not None else v for k, v in fields.items()}
    try:
        return Scan(**values)
    except TypeError as exc:
        raise ScanRefused(f"not a scan: {exc}") from None


def encode_partial(values: list) -> list:
    """An aggregate (numbers and integer count arrays) as JSON."""
    return [{"counts": v.tolist()} if isinstance(v, np.ndarray) else _number(v) for v in values]


def decode_partial(values: list) -> list:
    return [np.asarray(v["counts"], dtype=np.int64) if isinstance(v, dict) else v for v in values]


def _number(value: Any) -> int | float:
    value = value.item() if isinstance(value, np.generic) else value
    if not isinstance(value, int | float):
        raise ScanRefused(f"a partial aggregate holds {type(value).__name__}")
    return value


def _add(total: list | None, part: list) -> list:
    return part if total is None else [a + b for a, b in zip(total, part, strict=True)]


def cluster_mapper(channel: ScanChannel, input_name: str) -> Mapper:
    """The releaser's mapper for input ``input_name``: its partitions scanned by the broker.

    It returns one combined partial (the broker adds them up), which
    :func:`researcher_kit.dp.partitioned.exact` takes as it takes a list of one. When the
    broker cannot reach the cluster (logged there) the scans run on this process's
    threads instead: the same exact aggregate, so the same release.
    """
    local = local_mapper()

    def run(fn: Callable[[Scan, str], list], scan: Scan, paths: Sequence[str]) -> list[list]:
        if fn is not partial:
            raise ScanRefused("the cluster scans only partial aggregates")
        if not channel.unavailable:
            names = [os.path.basename(p) for p in paths]
            request = {"input": input_name, "files": names, "scan": encode_scan(scan)}
            total = channel.ask(request)
            if total is not None:
                return [total]
        return local(fn, scan, paths)

    return run


class ScanChannel:
    """The releaser's end of the broker's socket: one question, one answer, in turn."""

    def __init__(self, fd: int) -> None:
        self._stream = socket.socket(fileno=fd).makefile("rwb", buffering=0)
        self._lock = threading.Lock()
        self.unavailable = False  # the broker could not reach the cluster

    def ask(self, request: dict[str, Any]) -> list | None:
        """The combined partial, or None when the cluster is out of reach."""
        with self._lock:
            write_message(self._stream, request)
            reply, _ = read_message(self._stream)
        if "unavailable" in reply:
            self.unavailable = True
            return None
        if "error" in reply:
            raise ScanRefused(str(reply["error"]))
        return decode_partial(reply["total"])


def resolve(inputs: dict[str, str], request: dict[str, Any]) -> list[str]:
    """The partition files a request names, each checked to be one of the job's own."""
    folder = inputs.get(str(request.get("input")))
    files = request.get("files")
    if not folder or not os.path.isdir(folder) or not isinstance(files, list) or not files:
        raise ScanRefused("no such partitioned input")
    paths = []
    for name in files:
        if not isinstance(name, str) or not PARTITION_NAME.match(name):
            raise ScanRefused(f"not a partition name: {str(name)[:80]!r}")
        path = Path(folder) / name
        if not path.is_file():
            raise ScanRefused(f"no partition {name} in the input")
        paths.append(str(path))
    return paths


def scan_on(client: Any, inputs: dict[str, str], request: dict[str, Any]) -> list:
    """One request: a task per partition on the cluster, the partials added up here."""
    paths = resolve(inputs, request)
    scan = decode_scan(request.get("scan") or {})
    futures = client.map(partial, [scan] * len(paths), paths, pure=False)
    total = None
    for part in client.gather(futures):
        total = _add(total, part)
    return encode_partial(total or [])


def broker_main(fd: int, scheduler: str, inputs: dict[str, str]) -> NoReturn:
    """The broker process: connect to the scheduler, answer the releaser until it closes."""
    from datasite.execution import sandbox
    from datasite.execution.executor import _dask_options_from_env, connect_scheduler
    from datasite.execution.job_process import close_all_but

    client = None
    try:
        os.setsid()
        sandbox.set_parent_death_signal()
        close_all_but({fd, 2})
        stream = socket.socket(fileno=fd).makefile("rwb", buffering=0)
        while True:
            try:
                request, _ = read_message(stream)
            except (EOFError, WireError, OSError):
                break
            reply: dict[str, Any]
            try:
                if client is None:
                    options = _dask_options_from_env()
                    client = connect_scheduler(scheduler, **options, timeout=CONNECT_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the releaser scans on its own
                why = f"{type(exc).__name__}: {exc}"
                log.error("the scan broker cannot reach %s (%s): scans stay local", scheduler, why)
                with contextlib.suppress(OSError):
                    write_message(stream, {"unavailable": True})
                break
            try:
                reply = {"total": scan_on(client, inputs, request)}
            except Exception as exc:  # noqa: BLE001 - the releaser fails the release
                log.warning("cluster scan failed: %s: %s", type(exc).__name__, exc)
                reply = {"error": f"the cluster scan failed: {type(exc).__name__}: {exc}"}
            try:
                write_message(stream, reply)
            except OSError:
                break
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        os._exit(0)
