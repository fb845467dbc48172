"""Stage 2 of the checker: the instrumented dry-run, inside the sandboxed child.

:func:`instrumented_call` is a sandbox harness (``policies.instrument:instrumented_call``).
It patches, in the child only, every DP library the registry instruments
(:func:`policies.dp_libraries.instrumented`, each library's ``install``): OpenDP's
``Measurement`` invocation, OpenDP's constructors (to name each measurement and find the
line that built it), ``Context.compositor``, diffprivlib's ``BudgetAccountant.spend`` and
``skops.io.dumps``; then it runs the request three times on the mock:

1. on the mock, recording every release and its privacy map;
2. on a neighbour (one row changed to the extremes) with every release *replayed* from
   run 1: the inputs each measurement saw show how far one row moves them (the local
   sensitivity) and how many releases one row touches;
3. on a perturbed resample of the mock (different data, same size), releases replayed: an
   output that changes although every release was held fixed depends on the data by
   another path, so it is ``raw``; one that does not is ``post_processing``.

Privacy accounting, per measurement, construction line and calling line:

- the privacy map is evaluated at ``d_in``: for dataset metrics (symmetric distance...)
  the declared ``max_contributions``, twice that under the policy's ``change``
  neighbouring for metrics that count an added or removed row (a change is both); for
  sensitivity metrics (absolute, L1, L2 distance) the largest of the sensitivity the code
  states as a constant (``sensitivity = 1.0; scale = sensitivity / epsilon``), the width
  of the domain's bounds, and the local sensitivity seen on the mock; 1 (the metric's
  unit) when none is known;
- releases made element-wise through pandas/NumPy (``Series.apply(laplace)``, the
  PySyft + OpenDP tutorial's style) are input perturbation: each row's release is about a
  different person, so they compose in *parallel* over rows. One person's row is touched
  by ``k`` releases, ``k`` being the larger of ceil(invocations / rows) and the number of
  releases that moved when one row changed; the group costs ``k * epsilon``;
- every other release composes sequentially (``invocations * epsilon``); zCDP releases are
  added up in rho and converted to epsilon at the declared delta.

Static analysis is what keeps submitted code from tampering with these patches (no
dunder access, no ``sys``/``gc``/``inspect``); the dry-run is evidence, not a proof.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from policies import dp_libraries, neighbours, outputs
from policies.dp_libraries.base import Tally, zcdp_to_epsilon

_LIB_MARKERS = ("/pandas/", "/numpy/", "\\pandas\\", "\\numpy\\")


@dataclass
class _Group:
    """Releases of one measurement built at one line and called from one line."""

    name: str
    construct_line: int | None
    line: int | None
    rowwise: bool
    measurement: Any = None
    outputs: list[Any] = field(default_factory=list)
    inputs: dict[str, list[Any]] = field(default_factory=dict)  # run -> inputs in order


class Recorder:
    """What the patched libraries saw, run by run."""

    def __init__(self, user_file: str, entry_code: Any, options: dict[str, Any]) -> None:
        self.user_file = user_file
        self.entry_code = entry_code
        self.sensitivities = {int(k): float(v) for k, v in options.get("sensitivities", {}).items()}
        self.max_contributions = float(options.get("max_contributions", 1))
        self.neighbouring = str(options.get("neighbouring", "add_remove"))
        self.delta = float(options.get("delta", 0.0))
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self.run = "record"
        self.positions: dict[tuple[Any, ...], int] = {}
        self.misaligned = False
        self.depth = 0
        self.release_ids: dict[int, Any] = {}  # id -> the release (kept alive)
        #: What the other patched libraries recorded, by their ``spend_key`` (OpenDP's
        #: releases are the ``groups``, recorded and replayed by :meth:`invoke`).
        self.records: dict[str, list[dict[str, Any]]] = {}
        self._scratch: dict[str, dict[str, Any]] = {}
        self.helper_modules = dp_libraries.helper_modules()
        self.errors: list[str] = []

    def scratch(self, family: str, **initial: Any) -> dict[str, Any]:
        """A library's own state for this request (created with ``initial`` the first time)."""
        return self._scratch.setdefault(family, initial)

    # -- where in the user's code are we -----------------------------------------------

    def _user_line(self) -> int | None:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename == self.user_file:
                return frame.f_lineno
            frame = frame.f_back
        return None

    def _call_site(self) -> tuple[int | None, bool, str | None]:
        """Where the entry function released: (its line, whether pandas/NumPy called us
        element-wise, the kit helper it went through).

        The kit builds its measurements internally, so the name the researcher called
        and declared is the outermost frame below the entry function in a library's
        ``helper_module``: ``researcher_kit.dp.<helper>``.
        """
        frame = sys._getframe(2)
        through_library, helper = False, None
        while frame is not None and frame.f_code is not self.entry_code:
            if any(m in frame.f_code.co_filename for m in _LIB_MARKERS):
                through_library = True
            module = frame.f_globals.get("__name__", "")
            for prefix in self.helper_modules:
                if module.startswith(prefix):
                    helper = f"{prefix}.{frame.f_code.co_name}"
            frame = frame.f_back
        return (frame.f_lineno if frame is not None else None), through_library, helper

    # -- the patched entry points ------------------------------------------------------

    def invoke(self, original: Any, meas: Any, arg: Any) -> Any:
        if self.depth:
            return original(meas, arg)
        name, construct_line = getattr(meas, "_checker_tag", ("Measurement", None))
        line, rowwise, helper = self._call_site()
        name = helper or name
        key = (name, construct_line, line, rowwise)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(name, construct_line, line, rowwise, meas)
        group.inputs.setdefault(self.run, []).append(_plain(arg))
        if self.run == "record":
            self.depth += 1
            try:
                out = original(meas, arg)
            finally:
                self.depth -= 1
            group.outputs.append(out)
            self.release_ids[id(out)] = out
            return out
        position = self.positions.get(key, 0)
        self.positions[key] = position + 1
        if position < len(group.outputs):
            return copy.deepcopy(group.outputs[position])
        self.misaligned = True
        self.depth += 1
        try:
            return original(meas, arg)
        finally:
            self.depth -= 1

    def start_run(self, run: str) -> None:
        self.run, self.positions = run, {}


# -- patching ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A comparable copy of a measurement's input (numbers and lists of numbers)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return None


def install(recorder: Recorder) -> list[tuple[Any, str, Any]]:
    """Patch the DP libraries for ``recorder``; returns what to restore."""
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, value: Any) -> None:
        saved.append(
            (owner, attr, owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr))
        )
        setattr(owner, attr, value)

    for library in dp_libraries.instrumented():
        library.install(recorder, patch)
    return saved


def uninstall(saved: list[tuple[Any, str, Any]]) -> None:
    for owner, attr, value in reversed(saved):
        setattr(owner, attr, value)


# -- accounting -------------------------------------------------------------------------


def account(recorder: Recorder, n_rows: int) -> dict[str, Any]:
    """Per-library spend (OpenDP's ``groups``, ``diffprivlib``, ``contexts``) and the total,
    as JSON-able data."""
    tally = Tally()
    spend: dict[str, Any] = {}
    for library in dp_libraries.instrumented():
        assert library.account is not None
        spend[library.spend_key] = library.account(recorder, n_rows, tally)
    epsilon, delta, rho = tally.epsilon, tally.delta, tally.rho
    if rho > 0:
        remaining = max(recorder.delta - tally.delta, 0.0)
        epsilon += zcdp_to_epsilon(rho, remaining)
        delta += remaining
    return {
        **spend,
        "epsilon": None if tally.unknown else epsilon,
        "delta": delta,
        "rho": rho,
    }


def itemised(spend: dict[str, Any]) -> list[dict[str, Any]]:
    """The spend's releases, one entry each (a Context's allotment is not one)."""
    return [
        entry
        for library in dp_libraries.instrumented()
        if not library.allotment
        for entry in spend.get(library.spend_key) or []
    ]


# -- classification ---------------------------------------------------------------------


def classify_outputs(
    recorder: Recorder, first: Any, replayed: Any | None, replay_ok: bool
) -> list[dict[str, Any]]:
    """Each output's class from identity with releases and the fixed-noise replay."""
    again = dict(outputs.split(replayed)) if replay_ok else {}
    result = []
    for name, value in outputs.split(first):
        cls, reason = _classify_one(recorder, value, name, again, replay_ok)
        result.append(
            {"name": name, "type": outputs.type_name(value), "cls": cls, "reason": reason}
        )
    return result


def _classify_one(
    recorder: Recorder, value: Any, name: str, again: dict[str, Any], replay_ok: bool
) -> tuple[str, str]:
    libraries = dp_libraries.instrumented()
    for library in libraries:
        found = library.output_class(recorder, value) if library.output_class else None
        if found is not None:
            return found
    if not replay_ok or name not in again:
        return "unknown", "the replay on other data did not line up with the first run"
    if outputs.fingerprint(value) == outputs.fingerprint(again[name]):
        held = [recorder.records.get(lib.spend_key) for lib in libraries if lib.held_fixed]
        if recorder.groups or any(held):
            return "post_processing", "unchanged on other data with the DP releases held fixed"
        return "post_processing", "unchanged on other data (no DP release involved)"
    for library in libraries:
        if not library.held_fixed and recorder.records.get(library.spend_key):
            return "unknown", f"changed on other data; {library.title} noise cannot be held fixed"
    return "raw", "changed on other data although every DP release was held fixed"


# -- the harness ------------------------------------------------------------------------


def _load(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: pd.read_parquet(v) if isinstance(v, str) else v for k, v in inputs.items()}


def _arguments(inputs: dict[str, Any], spec: Any) -> dict[str, Any]:
    """The function's arguments as the site builds them (tables, or a Context)."""
    from datasite.contract.harness import function_arguments

    return function_arguments(_load(inputs), spec)


def instrumented_call(fn: Any, inputs: dict[str, Any], spec: Any) -> dict[str, Any]:
    """Sandbox harness: run ``fn`` on the mock with the DP libraries instrumented.

    The answer (JSON only: spend per measurement, the total, a class per output, never
    the outputs' values) is both returned and put in the harness report, which reaches
    the checker even when the request raises.
    """
    from datasite.contract.harness import current_report

    options = dict(spec.harness_options or {})
    options.setdefault("delta", spec.delta)
    options.setdefault("max_contributions", spec.context.max_contributions)
    recorder = Recorder(fn.__code__.co_filename, fn.__code__, options)
    report = current_report()
    timings: dict[str, float] = {}
    answer: dict[str, Any] = {"n_rows": 0, "timings": timings, "errors": recorder.errors}
    saved = install(recorder)
    started = time.perf_counter()
    try:
        arguments = _arguments(inputs, spec)
        frames = [v for v in arguments.values() if isinstance(v, pd.DataFrame)]
        answer["n_rows"] = n_rows = max((len(f) for f in frames), default=0)
        first = fn(**arguments)
        timings["run"] = time.perf_counter() - started
        answer["unencodable"] = _unencodable(first, spec)
        replayed, replay_ok = None, False
        if frames and n_rows > 1:
            _replay(recorder, fn, arguments, "neighbour", neighbours.change_one)
            recorder.misaligned = False
            replay_ok, replayed = _replay_outputs(recorder, fn, arguments)
        answer["outputs"] = classify_outputs(recorder, first, replayed, replay_ok)
        answer["replay_aligned"] = replay_ok
    finally:
        uninstall(saved)
        answer["spend"] = account(recorder, answer["n_rows"])
        timings["total"] = time.perf_counter() - started
        report.details = answer
        report.spend = itemised(answer["spend"])
    return answer


def _unencodable(value: Any, spec: Any) -> str | None:
    """Why the real run could not release ``value`` (the result codec's own message, which
    names types, never values), or None. The dry-run encodes the outputs exactly as the
    real run does, so what passes here also leaves the sandbox there."""
    from datasite.contract.results import ResultError, encode_result

    try:
        encode_result(value, spec.limits.max_output_bytes)
    except ResultError as exc:
        return str(exc)
    return None


def recording_call(fn: Any, inputs: dict[str, Any], spec: Any) -> Any:
    """Sandbox harness of a raw-data request's *real* run: call ``fn`` once, instrumented.

    The same patches as the dry-run record every release; the function's own output is
    returned as the run's output, and the spend goes to the harness report, which the
    site compares with the dry-run (``policies.enforcement``). The code shares this
    process and could undo the patches, so a clean record is evidence, not proof; a
    record that differs from the dry-run withholds the result for the owner.
    """
    from datasite.contract.harness import current_report

    options = dict(spec.harness_options or {})
    options.setdefault("delta", spec.delta)
    options.setdefault("max_contributions", spec.context.max_contributions)
    recorder = Recorder(fn.__code__.co_filename, fn.__code__, options)
    report = current_report()
    saved = install(recorder)
    n_rows = 0
    try:
        arguments = _arguments(inputs, spec)
        frames = [v for v in arguments.values() if isinstance(v, pd.DataFrame)]
        n_rows = max((len(f) for f in frames), default=0)
        return fn(**arguments)
    finally:
        uninstall(saved)
        spend = account(recorder, n_rows)
        report.details = {"recorded": True, "spend": spend}
        report.spend = itemised(spend)


def _replay(recorder: Recorder, fn: Any, inputs: dict[str, Any], run: str, make: Any) -> bool:
    recorder.start_run(run)
    try:
        fn(**neighbours.neighbour_inputs(inputs, make))
    except Exception as exc:  # noqa: BLE001 - the request's own failure on a neighbour
        recorder.errors.append(f"{run}: {type(exc).__name__}")
        return False
    return not recorder.misaligned


def _replay_outputs(recorder: Recorder, fn: Any, inputs: dict[str, Any]) -> tuple[bool, Any]:
    recorder.start_run("resample")
    try:
        value = fn(**neighbours.neighbour_inputs(inputs, neighbours.perturbed))
    except Exception as exc:  # noqa: BLE001
        recorder.errors.append(f"resample: {type(exc).__name__}")
        return False, None
    ok = not recorder.misaligned and all(
        len(g.inputs.get("resample", [])) == len(g.outputs) for g in recorder.groups.values()
    )
    return ok, value
