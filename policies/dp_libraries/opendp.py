"""OpenDP's measurements: ``make_laplace``, ``then_gaussian``, ... (family ``opendp``).

Statically, the implied epsilon of a Laplace-family call is ``sensitivity / scale``;
Gaussian calls give zCDP ``rho = sensitivity**2 / (2 * scale**2)``, converted to epsilon
at the declared delta (see ``policies.mechanisms``).

In the dry-run every ``opendp.measurements.make_*`` constructor is wrapped to name its
measurement and the line that built it (chains keep the tag), and
``Measurement.__call__``/``invoke`` go through ``Recorder.invoke``, which records each
release (and replays it on the neighbour and the resample). Each group of releases is
then charged through its privacy map at ``d_in``: ``max_contributions`` for dataset
metrics, else the largest of the sensitivity stated in the code, the width of the
domain's bounds and the local sensitivity seen on the mock.

>>> LIBRARY.recognise("opendp.prelude.m.then_laplace"), LIBRARY.recognise("opendp.mod.Domain")
('then_laplace', None)
"""

from __future__ import annotations

import ast
import math
import re
from typing import TYPE_CHECKING, Any

from policies.dp_libraries.base import (
    DPLibrary,
    MechanismCall,
    Patch,
    Tally,
    arg,
    base_name,
    sensitivity,
    zcdp_to_epsilon,
)
from policies.names import fold
from policies.report import MechanismUse

if TYPE_CHECKING:  # pragma: no cover - types only
    from policies.instrument import Recorder, _Group

MEASUREMENTS = frozenset(
    prefix + name
    for prefix in ("make_", "then_")
    for name in (
        "alp_queryable",
        "canonical_noise",
        "gaussian",
        "gaussian_threshold",
        "geometric",
        "laplace",
        "laplace_threshold",
        "noise",
        "noise_threshold",
        "noisy_max",
        "noisy_top_k",
        "private_expr",
        "private_lazyframe",
        "private_quantile",
        "randomized_response",
        "randomized_response_bitvec",
        "randomized_response_bool",
        "report_noisy_max_gumbel",
        "user_measurement",
    )
)
_LAPLACE_LIKE = {"laplace", "geometric", "laplace_threshold"}
_GAUSSIAN_LIKE = {"gaussian", "gaussian_threshold"}
_BOUNDS = re.compile(r"bounds=\[([-+0-9.eEinf]+), ([-+0-9.eEinf]+)\]")
_DATASET_METRICS = ("Symmetric", "InsertDelete", "ChangeOne", "Hamming", "Frame", "Id")
_ADD_REMOVE_METRICS = ("Symmetric", "InsertDelete")  # a change counts 2 in these


def recognise(qualname: str) -> str | None:
    last = qualname.rsplit(".", 1)[-1]
    if last in MEASUREMENTS and (qualname.startswith("opendp") or qualname == last):
        return last
    return None


def read(
    call: ast.Call, qualname: str, use: MechanismCall, env: dict[str, Any], delta: float
) -> MechanismCall:
    name = use.name
    kind = base_name(name)
    position = 2 if name.startswith("make_") else 0
    scale_node = arg(call, "scale", position)
    scale = fold(scale_node, env)
    if scale_node is not None and isinstance(scale, int | float) and scale > 0:
        use.scale = float(scale)
        if kind in _LAPLACE_LIKE or kind in _GAUSSIAN_LIKE:
            use.sensitivity, use.sensitivity_source = sensitivity(scale_node, env)
        if kind in _LAPLACE_LIKE:
            use.epsilon = use.sensitivity / use.scale
        elif kind in _GAUSSIAN_LIKE:
            rho = use.sensitivity**2 / (2 * use.scale**2)
            use.epsilon, use.delta = zcdp_to_epsilon(rho, delta), delta
    return use


# -- the dry-run -------------------------------------------------------------------------


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


def install(recorder: Recorder, patch: Patch) -> None:
    import opendp.combinators as combinators
    import opendp.measurements as measurements
    from opendp.mod import Measurement

    for attr in dir(measurements):
        if attr.startswith("make_"):
            patch(measurements, attr, _tagging(getattr(measurements, attr), attr, recorder))
    for attr in ("make_chain_mt", "make_chain_pm"):
        patch(combinators, attr, _chaining(getattr(combinators, attr)))
    call, invoke = Measurement.__call__, Measurement.invoke
    patch(Measurement, "__call__", lambda self, arg: recorder.invoke(call, self, arg))
    patch(Measurement, "invoke", lambda self, arg: recorder.invoke(invoke, self, arg))


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


def _d_in(recorder: Recorder, group: _Group, metric: str) -> tuple[float, str, int]:
    """(d_in, where it came from, releases one row touched) for a group."""
    if any(m in metric for m in _DATASET_METRICS):
        if recorder.neighbouring == "change" and any(m in metric for m in _ADD_REMOVE_METRICS):
            # changing a person's rows is removing them and adding others
            return 2 * recorder.max_contributions, "2 x max_contributions (change)", 0
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


def account(recorder: Recorder, n_rows: int, tally: Tally) -> list[dict[str, Any]]:
    """One entry per group of releases (measurement, construction line, calling line)."""
    groups = []
    for group in recorder.groups.values():
        count = len(group.inputs.get("record", []))
        if not count:
            continue
        metric = str(group.measurement.input_metric)
        d_in, source, moved = _d_in(recorder, group, metric)
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
            tally.unknown = True
        elif kind == "zcdp":
            tally.rho += total
        else:
            tally.epsilon += total
            tally.delta += delta_each * per_row
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
    return groups


def report(groups: list[dict[str, Any]]) -> list[MechanismUse]:
    return [
        MechanismUse(
            name=g["name"],
            line=g.get("construct_line") or g.get("line"),
            invocations=g["invocations"],
            epsilon_each=g.get("each"),
            delta_each=g.get("delta_each") or 0.0,
            epsilon_total=g.get("total"),
            delta_total=(g.get("delta_each") or 0.0) * g.get("per_individual", 1),
            composition=g.get("composition", "")
            + (" (zCDP rho)" if g.get("measure") == "zcdp" else ""),
            d_in=g.get("d_in"),
            d_in_source=g.get("d_in_source", ""),
        )
        for g in groups
    ]


def output_class(recorder: Recorder, value: Any) -> tuple[str, str] | None:
    if id(value) in recorder.release_ids:
        return "dp", "returned as released by an OpenDP measurement"
    return None


LIBRARY = DPLibrary(
    family="opendp",
    title="OpenDP",
    recognise=recognise,
    read=read,
    returns=lambda qualname: "meas",
    # the noise measurements (make_* and the chaining then_* forms)
    default_mechanisms=(
        "make_laplace",
        "make_gaussian",
        "make_geometric",
        "make_noise",
        "make_laplace_threshold",
        "make_gaussian_threshold",
        "make_noisy_max",
        "make_noisy_top_k",
        "make_report_noisy_max_gumbel",
        "make_randomized_response",
        "make_randomized_response_bool",
        "make_private_quantile",
        "make_private_lazyframe",
        "make_private_expr",
    ),
    imports=("opendp",),
    install=install,
    spend_key="groups",
    account=account,
    report=report,
    output_class=output_class,
)
