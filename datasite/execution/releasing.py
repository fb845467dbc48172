"""The releaser process of a data-blind run: the only process of the run that reads the data.

For a ``BLIND`` or ``CONTEXT`` job the warm worker forks this process *before* it forks
the sandbox, so the two never share an address space::

    warm worker (root, stack imported, holds no data)
      +- releaser (this module): own session, no network, reads the inputs, runs only
      |    site code (``researcher_kit.releaser.Releaser``); answers over a socket
      +- supervisor -> init -> job process (jail, own uid, no inputs at all): the
           researcher's function, holding blind proxies on the other end of the socket
      (+- scan broker, on a Dask site: the releaser's partition scans run as cluster
           tasks, see ``cluster_scans``)

The releaser keeps the odometer, so the job can never spend more than declared, and its
ledger (what it released, at what cost) is what the worker reports as the run's spend:
the researcher's code cannot write it. Each answer that reads the data waits for the
next multiple of ``Limits.release_quantum_seconds``, so release latency is not a clock on
the table's size or values. The public schemas are answered at once: the site's job gives
them (the mock's columns), so the start reads no private file and needs no hold; a
schema the spec lacks is read during the start, which is then held to the quantum too.
When the socket closes (the job ended, however it ended) the releaser sends its ledger
and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from datasite.config import TEXT_CACHE_ENV
from datasite.contract.framing import WireError, read_message, write_message
from datasite.contract.job import JobSpec
from datasite.execution import sandbox
from datasite.execution.job_process import close_all_but

log = logging.getLogger("datasite.execution")
LEDGER_CAP = 4 * 1024**2
RELEASER_UID = 65533  # not a run's (sandbox.JOB_UIDS): the job cannot signal or trace it
EXIT_SECONDS = 10.0


@dataclass
class ReleaserProcess:
    """The worker's handle on a running releaser."""

    pid: int
    job_end: int  # the socket end the job process receives
    ledger: int  # read end: the releaser's ledger arrives here when it is done
    broker: int | None = None  # the scan broker's pid (``cluster_scans``), if any

    received: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the ledger's pipe reached its end (or the cap)

    def ledger_sent(self, seconds: float) -> bool:
        """Whether the whole ledger arrives within ``seconds``. The releaser sends it when
        every holder of the job's socket end has closed it: at once after a job that
        closed its files, later while anything of the job's tree still holds the socket."""
        deadline = time.monotonic() + seconds
        while not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.ledger], [], [], remaining)[0]:
                return False
            chunk = os.read(self.ledger, 1 << 16)
            self.received += chunk
            self.ended = not chunk or len(self.received) > LEDGER_CAP
        return True

    def entries(self) -> list[dict]:
        """The ledger's entries, waiting for them up to ``EXIT_SECONDS`` (the job's end is
        closed by now). No readable ledger counts as an unbounded spend."""
        self.ledger_sent(EXIT_SECONDS)
        os.close(self.ledger)
        try:
            ledger = json.loads(bytes(self.received))
        except ValueError:
            log.error("releaser of pid %s left no readable ledger", self.pid)
            return [{"helper": "unknown", "mechanism": "unknown", "epsilon": math.inf}]
        return ledger if isinstance(ledger, list) else []

    def reap(self) -> None:
        """Kill and reap the releaser (and its scan broker)."""
        for pid in (self.pid, self.broker):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def start_releaser(spec: JobSpec, keep_open: tuple[int, ...] = ()) -> ReleaserProcess:
    """Fork the releaser for ``spec``; the caller passes ``job_end`` to the job process.

    With ``spec.scan_cluster`` and a partitioned input, a scan broker is forked first
    (``cluster_scans``): the releaser's partition scans then run on the Dask cluster.
    """
    broker, scans = _start_broker(spec)
    ours, theirs = socket.socketpair()
    ledger_read, ledger_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            theirs.close()
            os.close(ledger_read)
            _releaser_main(spec, ours.detach(), ledger_write, scans)
        finally:
            os._exit(70)
    ours.close()
    os.close(ledger_write)
    if scans is not None:
        os.close(scans)
    return ReleaserProcess(pid=pid, job_end=theirs.detach(), ledger=ledger_read, broker=broker)


def _start_broker(spec: JobSpec) -> tuple[int | None, int | None]:
    """The scan broker's pid and the releaser's end of its socket, or ``(None, None)``."""
    folders = {name: path for name, path in spec.inputs.items() if os.path.isdir(path)}
    if not spec.scan_cluster or not folders:
        return None, None
    from datasite.execution.cluster_scans import broker_main

    releaser_end, broker_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            releaser_end.close()
            broker_main(broker_end.detach(), spec.scan_cluster, folders)
        finally:
            os._exit(70)
    broker_end.close()
    return pid, releaser_end.detach()


def _data_in_use() -> int:
    """Bytes of private writable memory this process maps now (``VmData``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _open_input(path: str, mapper: Any = None) -> Any:
    """An input, opened while still root: a Parquet file, or a partition folder.

    A folder is held by a directory descriptor; its files are then read through
    ``/proc/self/fd/<fd>/``, which needs no search permission on the folders above it,
    so the releaser can read them after it has given root up, and nothing else can.
    ``mapper`` scans its partitions (default: this process's threads).
    """
    from researcher_kit.dp.partitioned import PartitionedTable

    if os.path.isdir(path):
        folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        return PartitionedTable.from_folder(f"/proc/self/fd/{folder}", mapper)
    return open(path, "rb")  # noqa: SIM115 - held for the releaser's life


def _open_text_cache(folder: str | None) -> str | None:
    """The site's text cache folder (``DATASITE_TEXT_CACHE``), opened as root and kept as
    ``/proc/self/fd/N``: after root is given up the releaser reads the neighbour table
    through it whatever the data folder's permissions (it cannot write there)."""
    if not folder or not os.path.isdir(folder):
        return None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    return f"/proc/self/fd/{fd}"


def _hold(since: float, quantum: float) -> None:
    """Sleep until the next multiple of ``quantum`` seconds after ``since``."""
    if quantum > 0:
        elapsed = time.monotonic() - since
        time.sleep(math.ceil(max(elapsed, 1e-9) / quantum) * quantum - elapsed)


def _read_schemas(releaser: Any, inputs: dict[str, str]) -> set[str]:
    """The inputs whose schema the releaser has read (a corrupt file's is asked later)."""
    ready = set()
    for name in inputs:
        with contextlib.suppress(Exception):
            releaser.schema(name)
            ready.add(name)
    return ready


def _releaser_main(spec: JobSpec, fd: int, ledger_fd: int, scans: int | None) -> NoReturn:
    from researcher_kit.blind import answer
    from researcher_kit.releaser import Releaser

    born = time.monotonic()
    try:
        os.setsid()
        sandbox.set_parent_death_signal()
        close_all_but({fd, ledger_fd, 2} | ({scans} if scans is not None else set()))
        mappers = {}
        if scans is not None:
            from datasite.execution.cluster_scans import ScanChannel, cluster_mapper

            channel = ScanChannel(scans)
            mappers = {name: cluster_mapper(channel, name) for name in spec.inputs}
        with contextlib.suppress(OSError):  # no network for the process that holds data
            sandbox.unshare_network()
        text_cache = _open_text_cache(os.environ.get(TEXT_CACHE_ENV))
        sandbox.clean_environment(home="/nonexistent")
        if text_cache:
            os.environ[TEXT_CACHE_ENV] = text_cache
        # Open the inputs as root, then give root up: the releaser runs site code only,
        # but a bug in a library it feeds (Polars, OpenDP) should find no privilege.
        tables = {name: _open_input(path, mappers.get(name)) for name, path in spec.inputs.items()}
        sandbox.drop_privileges(sandbox.SandboxConfig(jail_root="", uid=RELEASER_UID,
                                                      gid=RELEASER_UID))  # fmt: skip
        # The run's memory limit holds here too: a release reads a partitioned table a
        # batch at a time, so the limit is about the release, never the table's size.
        # RLIMIT_DATA (private writable memory), not RLIMIT_AS: Polars' and OpenDP's
        # allocators reserve gigabytes of address space they never touch.
        memory = _data_in_use() + spec.limits.memory_bytes
        resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
        releaser = Releaser(
            tables,
            spec.epsilon,
            spec.delta,
            queries=spec.context.queries,
            max_contributions=spec.context.max_contributions,
            schemas=spec.schemas,
        )
        stream = socket.socket(fileno=fd).makefile("rwb", buffering=0)
        quantum = spec.limits.release_quantum_seconds
        # The job asks for the public schemas first, answered from memory. The spec's
        # (the mock's) need nothing read, so a start that has them touched no private
        # byte and is not held. Any other is read from the input now, and the start is
        # then held to the quantum as every answer is (no clock on the file's opening).
        unknown = {name: path for name, path in spec.inputs.items() if name not in spec.schemas}
        ready = set(spec.inputs) - set(unknown)
        if unknown:
            ready |= _read_schemas(releaser, unknown)
            _hold(born, quantum)
        while True:
            try:
                header, _ = read_message(stream)
            except (EOFError, WireError, OSError):
                break
            started = time.monotonic()
            reply, blobs = answer(releaser, header)
            if not (header.get("op") == "schema" and header.get("table") in ready):
                _hold(started, quantum)
            try:
                write_message(stream, reply, blobs)
            except OSError:
                break
        ledger = json.dumps(releaser.spent.to_records(), default=str).encode()
        view = memoryview(ledger)
        while view:
            view = view[os.write(ledger_fd, view) :]
        os.close(ledger_fd)  # its end now, not after this process's address space is gone
    finally:
        os._exit(0)
