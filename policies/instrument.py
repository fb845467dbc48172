"""Stage 2 of the checker: the instrumented dry-run, inside the sandboxed child.

:func:`instrumented_call` is a sandbox harness (``policies.instrument:instrumented_call``).
It patches, in the child only, OpenDP's ``Measurement`` invocation, OpenDP's constructors
(to name each measurement and find the line that built it), ``Context.compositor``,
diffprivlib's ``BudgetAccountant.spend`` and ``skops.io.dumps``; then it runs the
request three times on the mock:

1. on the mock, recording every release and its privacy map;
2. on a neighbour (one row changed to the extremes) with every release *replayed* from
   run 1: the inputs each measurement saw show how far one row moves them (the local
   sensitivity) and how many releases one row touches;
3. on a perturbed resample of the mock (different data, same size), releases replayed: an
   output that changes although every release was held fixed depends on the data by
   another path, so it is ``raw``; one that does not is ``post_processing``.

Privacy accounting, per measurement, construction line and calling line:

- the privacy map is evaluated at ``d_in``: for dataset metrics (symmetric distance...)
  the declared ``max_contributions``; for sensitivity metrics (absolute, L1, L2 distance)
  the largest of the sensitivity the code states as a constant (``sensitivity = 1.0;
  scale = sensitivity / epsilon``), the width of the domain's bounds, and the local
  sensitivity seen on the mock; 1 (the metric's unit) when none is known;
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
import math
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from policies import neighbours, outputs

_LIB_MARKERS = ("/pandas/", "/numpy/", "\\pandas\\", "\\numpy\\")
_BOUNDS = re.compile(r"bounds=\[([-+0-9.eEinf]+), ([-+0-9.eEinf]+)\]")
_DATASET_METRICS = ("Symmetric", "InsertDelete", "ChangeOne", "Hamming", "Frame", "Id")


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
        self.delta = float(options.get("delta", 0.0))
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self.run = "record"
        self.positions: dict[tuple[Any, ...], int] = {}
        self.misaligned = False
        self.depth = 0
        self.release_ids: dict[int, Any] = {}  # id -> the release (kept alive)
        self.dpl_spends: list[dict[str, Any]] = []
        self.dpl_models: dict[int, Any] = {}
        self.dumped: dict[int, tuple[Any, Any]] = {}  # id(bytes) -> (bytes, model)
        self.contexts: list[dict[str, Any]] = []
        self.errors: list[str] = []

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
        and declared is the outermost ``researcher_kit.dp`` frame below the entry
        function: ``researcher_kit.dp.<helper>``.
        """
        frame = sys._getframe(2)
        through_library, helper = False, None
        while frame is not None and frame.f_code is not self.entry_code:
            if any(m in frame.f_code.co_filename for m in _LIB_MARKERS):
                through_library = True
            if frame.f_globals.get("__name__", "").startswith("researcher_kit.dp"):
                helper = f"researcher_kit.dp.{frame.f_code.co_name}"
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


def _tagging(original: Any, name: str, recorder: Recorder) -> Any:
    def constructor(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        try:
            result._checker_tag = (name, recorder._user_line())
        except AttributeError:  # partial constructors are tagged when they build
            pass
        return result

    constructor.__wrapped__ = original  # type: ignore[attr-defined]
    return constructor


def _chaining(original: Any) -> Any:
    def chain(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        tags = [getattr(a, "_checker_tag", None) for a in args]
        tag = next((t for t in tags if t is not None), None)
        if tag is not None:
            try:
                result._checker_tag = tag
            except AttributeError:
                pass
        return result

    return chain


def install(recorder: Recorder) -> list[tuple[Any, str, Any]]:
    """Patch the DP libraries for ``recorder``; returns what to restore."""
    import opendp.combinators as combinators
    import opendp.measurements as measurements
    from opendp.mod import Measurement

    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, value: Any) -> None:
        saved.append(
            (owner, attr, owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr))
        )
        setattr(owner, attr, value)

    for attr in dir(measurements):
        if attr.startswith("make_"):
            patch(measurements, attr, _tagging(getattr(measurements, attr), attr, recorder))
    for attr in ("make_chain_mt", "make_chain_pm"):
        patch(combinators, attr, _chaining(getattr(combinators, attr)))
    call, invoke = Measurement.__call__, Measurement.invoke
    patch(Measurement, "__call__", lambda self, arg: recorder.invoke(call, self, arg))
    patch(Measurement, "invoke", lambda self, arg: recorder.invoke(invoke, self, arg))
    _install_context(recorder, patch)
    _install_diffprivlib(recorder, patch)
    return saved


def _install_context(recorder: Recorder, patch: Any) -> None:
    from opendp.context import Context

    original = Context.compositor

    def compositor(*args: Any, **kwargs: Any) -> Any:
        recorder.depth += 1
        try:
            context = original(*args, **kwargs)
        finally:
            recorder.depth -= 1
        measure = str(context.accountant.output_measure)
        d_out = context.d_out
        if d_out is None:
            recorder.depth += 1
            try:
                d_out = context.accountant.map(context.d_in)
            except Exception:  # noqa: BLE001 - reported as an unknown spend
                d_out = None
            finally:
                recorder.depth -= 1
        recorder.contexts.append(
            {"line": recorder._user_line(), "measure": measure, "d_out": _plain_loss(d_out)}
        )
        return context

    patch(Context, "compositor", staticmethod(compositor))


def _plain_loss(d_out: Any) -> Any:
    if isinstance(d_out, tuple):
        return [float(x) for x in d_out]
    try:
        return float(d_out)
    except (TypeError, ValueError):
        return None


def _install_diffprivlib(recorder: Recorder, patch: Any) -> None:
    try:
        import skops.io as skio
        from diffprivlib.accountant import BudgetAccountant
    except ImportError:  # pragma: no cover - both are dependencies
        return
    spend = BudgetAccountant.spend

    def spending(self: Any, epsilon: float, delta: float) -> Any:
        frame, where, model = sys._getframe(1), "diffprivlib", None
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.startswith("diffprivlib.") and not module.startswith("diffprivlib.acc"):
                where = f"{module}.{frame.f_code.co_qualname}"
                candidate = frame.f_locals.get("self")
                if candidate is not None and type(candidate).__module__.startswith("diffprivlib"):
                    model = candidate
            if frame.f_code.co_filename == recorder.user_file:
                break
            frame = frame.f_back
        if recorder.run == "record":
            recorder.dpl_spends.append(
                {
                    "where": where,
                    "epsilon": float(epsilon),
                    "delta": float(delta),
                    "line": frame.f_lineno if frame is not None else None,
                }
            )
        if model is not None:
            recorder.dpl_models[id(model)] = model
        return spend(self, epsilon, delta)

    dumps = skio.dumps

    def dumping(obj: Any, *args: Any, **kwargs: Any) -> Any:
        data = dumps(obj, *args, **kwargs)
        recorder.dumped[id(data)] = (data, obj)
        return data

    patch(BudgetAccountant, "spend", spending)
    patch(skio, "dumps", dumping)


def uninstall(saved: list[tuple[Any, str, Any]]) -> None:
    for owner, attr, value in reversed(saved):
        setattr(owner, attr, value)


# -- accounting -------------------------------------------------------------------------


def _bounds_width(domain: Any) -> float | None:
    match = _BOUNDS.search(str(domain))
    if not match:
        return None
    low, high = float(match.group(1)), float(match.group(2))
    return high - low if math.isfinite(high - low) else None


def _distance(a: Any, b: Any, metric: str) -> float | None:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        try:
            diffs = [abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)]
        except (TypeError, ValueError):
            return None
        return math.sqrt(sum(d * d for d in diffs)) if "L2" in metric else sum(diffs)
    return None


def _map(meas: Any, d_in: float) -> Any:
    for candidate in (d_in, int(math.ceil(d_in))):
        try:
            return meas.map(candidate)
        except Exception:  # noqa: BLE001 - OpenDP raises its own types
            continue
    return None


def _loss(meas: Any, d_in: float, delta: float) -> tuple[str, float | None, float]:
    """(measure kind, epsilon or rho, delta) of one release at ``d_in``."""
    measure = str(meas.output_measure)
    value = _map(meas, d_in)
    if value is None:
        return measure, None, 0.0
    if measure.startswith("ZeroConcentrated"):
        return "zcdp", float(value), 0.0
    if isinstance(value, tuple):
        return "approx", float(value[0]), float(value[1])
    if hasattr(value, "epsilon"):
        return "approx", (float(value.epsilon(delta)) if delta > 0 else math.inf), delta
    return "pure", float(value), 0.0


def _sensitivity(recorder: Recorder, group: _Group, metric: str) -> tuple[float, str, int]:
    """(d_in, where it came from, releases one row touched) for a group."""
    if any(m in metric for m in _DATASET_METRICS):
        return recorder.max_contributions, "max_contributions (dataset metric)", 0
    candidates: list[tuple[float, str]] = []
    if group.construct_line in recorder.sensitivities:
        candidates.append(
            (recorder.sensitivities[group.construct_line], "the sensitivity stated in the code")
        )
    width = _bounds_width(group.measurement.input_domain)
    if width is not None:
        candidates.append((width, "the width of the domain's bounds"))
    base, neighbour = group.inputs.get("record", []), group.inputs.get("neighbour", [])
    moved, local = 0, 0.0
    if len(base) == len(neighbour):
        for a, b in zip(base, neighbour, strict=True):
            d = _distance(a, b, metric)
            if d is not None and d > 1e-12:
                moved, local = moved + 1, max(local, d)
    if local > 0:
        candidates.append((local, "the local sensitivity seen on the mock"))
    if not candidates:
        return 1.0, "the unit distance of the input metric (assumed)", moved
    d_in, source = max(candidates, key=lambda c: c[0])
    return d_in, source, moved


def account(recorder: Recorder, n_rows: int) -> dict[str, Any]:
    """Per-group spend and the total, as JSON-able data."""
    groups, pure_eps, approx_delta, rho = [], 0.0, 0.0, 0.0
    unknown = False
    for group in recorder.groups.values():
        count = len(group.inputs.get("record", []))
        if not count:
            continue
        metric = str(group.measurement.input_metric)
        d_in, source, moved = _sensitivity(recorder, group, metric)
        kind, each, delta_each = _loss(group.measurement, d_in, recorder.delta)
        if group.rowwise and n_rows > 0:
            per_row = max(math.ceil(count / n_rows), moved, 1)
            composition = (
                f"element-wise over rows: parallel composition, {per_row} release(s) per row"
            )
        else:
            per_row = count
            composition = "sequential composition" if count > 1 else "one release"
        total = None if each is None else each * per_row
        if total is None:
            unknown = True
        elif kind == "zcdp":
            rho += total
        else:
            pure_eps += total
            approx_delta += delta_each * per_row
        groups.append(
            {
                "name": group.name,
                "construct_line": group.construct_line,
                "line": group.line,
                "rowwise": group.rowwise,
                "invocations": count,
                "per_individual": per_row,
                "measure": kind,
                "d_in": d_in,
                "d_in_source": source,
                "each": each,
                "delta_each": delta_each,
                "total": total,
                "composition": composition,
            }
        )
    for spend in recorder.dpl_spends:
        pure_eps += spend["epsilon"]
        approx_delta += spend["delta"]
    for context in recorder.contexts:
        d_out = context["d_out"]
        if isinstance(d_out, list):
            pure_eps, approx_delta = pure_eps + d_out[0], approx_delta + d_out[1]
        elif d_out is None:
            unknown = True
        elif context["measure"].startswith("ZeroConcentrated"):
            rho += d_out
        else:
            pure_eps += d_out
    epsilon = pure_eps
    delta = approx_delta
    if rho > 0:
        from policies.mechanisms import zcdp_to_epsilon

        remaining = max(recorder.delta - approx_delta, 0.0)
        epsilon += zcdp_to_epsilon(rho, remaining)
        delta += remaining
    return {
        "groups": groups,
        "diffprivlib": recorder.dpl_spends,
        "contexts": recorder.contexts,
        "epsilon": None if unknown else epsilon,
        "delta": delta,
        "rho": rho,
    }


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
    if id(value) in recorder.release_ids:
        return "dp", "returned as released by an OpenDP measurement"
    if id(value) in recorder.dpl_models:
        return "dp", "a diffprivlib model that spent privacy budget"
    dumped = recorder.dumped.get(id(value))
    if dumped is not None and id(dumped[1]) in recorder.dpl_models:
        return "dp", "a skops dump of a diffprivlib model that spent privacy budget"
    if not replay_ok or name not in again:
        return "unknown", "the replay on other data did not line up with the first run"
    if outputs.fingerprint(value) == outputs.fingerprint(again[name]):
        if recorder.groups or recorder.contexts:
            return "post_processing", "unchanged on other data with the DP releases held fixed"
        return "post_processing", "unchanged on other data (no DP release involved)"
    if recorder.dpl_spends:
        return "unknown", "changed on other data; diffprivlib noise cannot be held fixed"
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
        report.spend = answer["spend"]["groups"] + answer["spend"]["diffprivlib"]
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
        report.spend = spend["groups"] + spend["diffprivlib"]


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
