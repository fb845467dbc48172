"""The sandboxed execution engine: submitted code runs here, never in the server.

- ``executor``: ``LocalExecutor`` (warm worker processes on this machine),
  ``DaskExecutor`` (the same jobs on a Dask cluster), ``make_executor``.
- ``worker``: the warm worker with pandas/NumPy/Polars/OpenDP/scikit-learn/diffprivlib/
  skops imported, forking one sandboxed process tree per job (``supervise``).
- ``sandbox``: network/mount/PID namespaces, a read-only chroot jail, rlimits, a uid of
  the run's own.
- ``job_process``: what happens inside the jail (exec the code, call the harness).
- ``harness``: trusted callers of the submitted function (``call_once``; the policy
  checker adds its own).
- ``outcome``: what a finished, timed-out or killed run becomes (``job_result``).

The job contract, the result codec and the message framing are in ``datasite.contract``.
"""
