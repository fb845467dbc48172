"""Linux isolation for one sandboxed run: namespaces, a read-only jail, limits, no root.

The calls happen in this order inside the forked processes (see ``worker.py``):

1. ``unshare_namespaces()`` in the per-job supervisor: new network (no interfaces up,
   so no network at all), mount, PID, IPC and UTS namespaces. The next child becomes
   PID 1 of the new PID namespace; when it dies the kernel kills everything in it.
2. ``apply_limits()`` in the job process: CPU seconds, address space (on top of what
   the warm stack already maps), open files, processes, file size, no core dumps.
3. ``enter_jail()``: a fresh tmpfs root holding read-only bind mounts of the Python
   installation, site-packages and the datasite packages only, ``/dev/null`` & co, a
   private ``/proc`` and a writable ``/scratch`` (cwd, HOME, TMPDIR); ``chroot`` into
   it, then drop to an unprivileged uid/gid of the run's own (``job_user``) with no
   supplementary groups and ``no_new_privs``. ``/etc``, the server's data directory and
   every other file of the host are simply absent.

Python 3.11 has no ``os.unshare``/``mount``, so libc is called through ctypes. If the
kernel refuses (not root, no CAP_SYS_ADMIN, seccomp), the run fails closed with
``SandboxUnavailable`` unless ``DATASITE_ALLOW_UNSANDBOXED=1`` was set explicitly;
then it runs with only the limits and an empty environment, and says so loudly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import os
import resource
import secrets
import signal
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from datasite.contract.job import Limits

log = logging.getLogger("datasite.execution.sandbox")

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

#: Each run's processes run as a user of their own, drawn at random from this range (no
#: account has these ids, so they own no file the run could want). RLIMIT_NPROC is counted
#: per user across the host: with one shared "nobody", a fork bomb in one run left the
#: runs beside it no threads (pyarrow's pool then hung them until their wall clock), and
#: one run could signal to another through the count. Random, not the host's pid: that
#: counter would tell a run how many processes the host started in between.
JOB_UIDS = range(2_000_000_000, 2_000_000_000 + (1 << 24))
FIRST_PARTY = ("datasite", "policies", "researcher_kit")
DEVICES = ("null", "zero", "random", "urandom")
OPT_OUT_ENV = "DATASITE_ALLOW_UNSANDBOXED"
SAFE_ENV = {
    "HOME": "/scratch",
    "TMPDIR": "/scratch",
    "PATH": "/nonexistent",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}


class SandboxUnavailable(RuntimeError):
    """The kernel refused an isolation step and no opt-out was given."""


@dataclass
class SandboxConfig:
    """How the jail is built. The defaults fit a normal venv or system install.

    ``jail_root`` is an empty root-owned directory the tmpfs root is mounted on (inside
    the job's private mount namespace, so concurrent jobs never see each other's).
    ``uid``/``gid`` ``None`` (the default): each run gets its own (:func:`for_this_run`).
    ``allow_unsandboxed`` is the loud opt-out for hosts where namespaces are refused.
    """

    jail_root: str
    uid: int | None = None
    gid: int | None = None
    allow_unsandboxed: bool = False
    readonly_paths: tuple[str, ...] = field(default_factory=lambda: default_readonly_paths())


def job_user() -> int:
    """A user id for one run, from :data:`JOB_UIDS`.

    >>> job_user() in JOB_UIDS
    True
    """
    return JOB_UIDS.start + secrets.randbelow(len(JOB_UIDS))


def for_this_run(config: SandboxConfig) -> SandboxConfig:
    """``config`` with a user of the run's own where it names none."""
    if config.uid is not None:
        return config
    uid = job_user()
    return replace(config, uid=uid, gid=uid)


def opt_out_from_env() -> bool:
    """True when the operator explicitly allowed runs without namespaces."""
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() in ("1", "true", "yes")


def default_readonly_paths() -> tuple[str, ...]:
    """Directories lazy imports need: the interpreter, site-packages, shared libraries,
    and the first-party packages (not the project folder around them, which may hold
    a data directory)."""
    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix}
    for name in FIRST_PARTY:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            paths.update(spec.submodule_search_locations)
    for lib in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache"):
        if os.path.exists(lib):
            paths.add(lib)
    return tuple(sorted(paths))


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare_namespaces() -> None:
    """New network, mount, PID, IPC and UTS namespaces for this process's children."""
    flags = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    _check(_libc.unshare(flags), "unshare")


def unshare_network() -> None:
    """A new network namespace with no interface up: this process reaches no network."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(net)")


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Die with the parent: a killed supervisor takes the whole job with it."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0), "prctl(PDEATHSIG)")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    enc = [None if s is None else s.encode() for s in (source, target, fstype)]
    _check(_libc.mount(enc[0], enc[1], enc[2], flags, data.encode() or None), f"mount {target}")


def _bind_readonly(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        Path(target).touch()
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _rebuild_symlink_or_bind(root: str, path: str) -> None:
    """Keep /lib -> usr/lib style symlinks as symlinks (binding them would follow)."""
    target = _inside(root, path)
    if os.path.islink(path):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.symlink(os.readlink(path), target)
    else:
        _bind_readonly(path, target)


def enter_jail(config: SandboxConfig, scratch_bytes: int) -> list[str]:
    """Build the jail, chroot into it, drop privileges. Returns the isolation applied."""
    config = for_this_run(config)
    root = config.jail_root
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    size = scratch_bytes + 16 * 1024**2
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=0755")
    for path in config.readonly_paths:
        _rebuild_symlink_or_bind(root, path)
    for device in DEVICES:
        _bind_device(f"/dev/{device}", _inside(root, f"/dev/{device}"))
    applied = ["netns", "mountns", "pidns", "ipcns", "tmpfs-root"]
    proc = _inside(root, "/proc")
    os.makedirs(proc, exist_ok=True)
    try:
        _mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        applied.append("proc")
    except OSError as exc:  # some container runtimes refuse; nothing needs /proc badly
        log.warning("no private /proc in the jail: %s", exc)
    scratch = _inside(root, "/scratch")
    os.makedirs(scratch)
    os.chown(scratch, config.uid, config.gid)
    os.chmod(scratch, 0o700)
    if not os.path.lexists(_inside(root, "/tmp")):  # a bound path may live under /tmp
        os.symlink("scratch", _inside(root, "/tmp"))
    os.chroot(root)
    os.chdir("/scratch")
    applied.append("chroot")
    drop_privileges(config)
    applied.append(f"uid:{config.uid}")
    return applied


def _bind_device(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    Path(target).touch()
    _mount(source, target, None, MS_BIND)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC)


def drop_privileges(config: SandboxConfig) -> None:
    """Become ``config.uid`` for good: no groups, no capabilities, no setuid gains."""
    if os.getuid() == 0:
        os.setgroups([])
        os.setresgid(config.gid, config.gid, config.gid)
        os.setresuid(config.uid, config.uid, config.uid)
        if os.getuid() != config.uid or os.geteuid() != config.uid:
            raise SandboxUnavailable("Could not drop to the sandbox user.")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    set_parent_death_signal()  # credentials changed: the kernel cleared it


def address_space_in_use() -> int:
    """Bytes of address space this process maps now (the warm stack's share)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def apply_limits(limits: Limits, baseline: int) -> None:
    """setrlimit for the job process; memory is granted on top of ``baseline``.

    The warm interpreter already maps about a gigabyte of address space (pandas,
    Polars, OpenDP, scikit-learn); ``Limits.memory_bytes`` is what the run may add.
    ``RLIMIT_NPROC`` counts every process of the sandbox uid on the host.
    """
    cpu = max(1, int(limits.cpu_seconds))
    address_space = baseline + limits.memory_bytes
    settings = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_AS: (address_space, address_space),
        resource.RLIMIT_NOFILE: (limits.max_open_files, limits.max_open_files),
        resource.RLIMIT_NPROC: (limits.max_processes, limits.max_processes),
        resource.RLIMIT_FSIZE: (limits.scratch_bytes, limits.scratch_bytes),
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, value in settings.items():
        resource.setrlimit(which, value)


def clean_environment(home: str = "/scratch") -> None:
    """Nothing of the server's environment reaches the run."""
    os.environ.clear()
    os.environ.update(SAFE_ENV, HOME=home, TMPDIR=home)
    import tempfile

    tempfile.tempdir = None
