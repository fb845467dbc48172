"""The site makes an asset's mock itself: a DP synthetic copy of the real table.

``POST /datasets`` with an asset's ``synthetic`` settings (instead of a ``mock_upload``)
calls :func:`make_synthetic_mock` on the uploaded real table before the dataset exists,
so a refusal (epsilon 0, a column the synthesizer cannot handle, a table over the limit)
leaves no dataset, no audit event and no spend. The fit runs in the request's worker
thread (FastAPI runs the sync route in its pool) with the site's own code only:
``researcher_kit.dp.synthesize`` on the real table, no user code, so the sandbox (built
for untrusted code, with a releaser per request) would only add a process hop.

The spend is recorded as an owner-level ``synthetic_mock_released`` audit event against
the dataset (the ledger holds per-researcher grants only), with the settings, so the
quality report and the canary test can re-run the same synthesizer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

#: The largest real table the site synthesizes (rows x columns); the fit holds the
#: table and the model in memory. ``DATASITE_MAX_SYNTHETIC_CELLS`` overrides it.
MAX_SYNTHETIC_CELLS = 2_000_000
AUDIT_ACTION = "synthetic_mock_released"


class SyntheticMockError(ValueError):
    """The mock cannot be synthesized as asked; the message says why (owner-facing)."""


def cell_limit() -> int:
    return int(os.environ.get("DATASITE_MAX_SYNTHETIC_CELLS", MAX_SYNTHETIC_CELLS))


def synthesizer_for(settings: dict[str, Any]):  # type: ignore[no-untyped-def]
    """``fit(table, epsilon)`` with the owner's settings (for the mock and the canary)."""
    from researcher_kit.dp.synthetic import synthesize

    def fit(table: pd.DataFrame, epsilon: float) -> pd.DataFrame:
        return synthesize(
            table,
            epsilon,
            delta=settings.get("delta") or None,
            synthesizer=settings.get("synthesizer", "mst"),
            rows=settings.get("rows"),
            public_categories=settings.get("public_categories") or None,
            bounds=settings.get("bounds") or None,
            bins=int(settings.get("bins", 10)),
            binning=settings.get("binning", "uniform"),
            quantile_share=float(settings.get("quantile_share", 0.1)),
            exact_integers=int(settings.get("exact_integers", 100)),
        )

    return fit


def make_synthetic_mock(real_path: Path, out_path: Path, settings: dict[str, Any]) -> dict:
    """Fit on the real table at ``real_path``, write the synthetic mock to ``out_path``.

    Returns what the audit event records (settings and spend). Raises
    :class:`SyntheticMockError` before any fit for input the synthesizer refuses.
    """
    import pyarrow.parquet as pq

    from researcher_kit.dp import track
    from researcher_kit.dp.synthetic import plan_columns

    meta = pq.ParquetFile(real_path).metadata
    cells, limit = meta.num_rows * meta.num_columns, cell_limit()
    if cells > limit:
        raise SyntheticMockError(
            f"the table has {meta.num_rows:,} rows x {meta.num_columns} columns, over this "
            f"site's limit of {limit:,} cells for a synthetic mock: upload a mock instead"
        )
    if not settings.get("epsilon") or settings["epsilon"] <= 0:
        raise SyntheticMockError("a synthetic mock needs epsilon > 0")
    real = pd.read_parquet(real_path)
    try:
        plan_columns(
            dict(real.dtypes.items()),
            bounds=settings.get("bounds"),
            public_categories=settings.get("public_categories"),
            delta=settings.get("delta"),
        )
    except ValueError as exc:
        raise SyntheticMockError(str(exc)) from None
    with track() as spent:
        fake = synthesizer_for(settings)(real, float(settings["epsilon"]))
    fake = _like(fake, real)
    import pyarrow as pa

    schema = pq.read_schema(real_path).remove_metadata()
    table = pa.Table.from_pandas(fake, preserve_index=False)
    pq.write_table(
        table.replace_schema_metadata(None).cast(schema), out_path
    )  # the real table's Arrow types exactly
    details = spent.entries[0].details if spent.entries else {}
    return {
        "settings": settings,
        "epsilon": spent.epsilon,
        "delta": spent.delta,
        "spend": [e.to_dict() for e in spent.entries],
        "rows": len(fake),
        "scheme": column_scheme(dict(real.dtypes.items()), settings, details),
    }


def column_scheme(
    dtypes: dict[str, Any], settings: dict[str, Any], details: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """How each column was prepared for the synthesizer, in words the owner can check.

    Per column: ``kind`` (numeric or categorical), ``how`` (kept integers, equal-width
    bins inside the public bounds, bins at DP quantiles, public categories, or categories
    found under delta), and where known the bounds, the bin ``edges`` (DP quantile edges
    are read from the fit's spend entry; equal-width ones follow from the bounds) and the
    number of public categories. ``details`` is the ``synthesize`` spend entry's details.
    """
    import math

    import numpy as np

    from researcher_kit.dp.synthetic import plan_columns

    details = details or {}
    bounds = settings.get("bounds") or {}
    public = settings.get("public_categories") or {}
    kinds = plan_columns(dtypes, bounds=bounds, public_categories=public, delta=1.0)
    bins, binning = int(settings.get("bins", 10)), settings.get("binning", "uniform")
    exact_limit = int(settings.get("exact_integers", 100))
    share = float(settings.get("quantile_share", 0.1))
    released = details.get("bin_edges") or {}
    rows = []
    for column, kind in kinds.items():
        row: dict[str, Any] = {"column": column, "kind": kind}
        if kind == "categorical":
            if column in public:
                row["how"] = (
                    "public categories (declared by the owner); other values become missing"
                )
                row["categories"] = len(public[column])
            else:
                row["how"] = "categories found by OpenDP's thresholded release (under delta)"
        else:
            lower, upper = (float(b) for b in bounds[column])
            row["bounds"] = [lower, upper]
            integer = str(dtypes[column]).lower().startswith(("int", "uint"))
            if integer and math.floor(upper) - math.ceil(lower) < exact_limit:
                row["how"] = "every integer inside the public bounds kept (no bins)"
            elif binning == "quantile":
                row["how"] = (
                    f"{bins} bins at DP quantiles inside the public bounds ({share:.0%} of "
                    "epsilon buys one DP histogram per binned column), plus the lower bound"
                )
                if column in released:
                    row["edges"] = released[column]
            else:
                row["how"] = f"{bins} equal-width bins inside the public bounds (no data used)"
                row["edges"] = [float(e) for e in np.linspace(lower, upper, bins + 1)]
        rows.append(row)
    return rows


def _like(fake: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """The synthetic table with the real table's dtypes (the site checks mock == real)."""
    out = {}
    for column, dtype in real.dtypes.items():
        values = fake[column]
        try:
            if pd.api.types.is_integer_dtype(dtype) and values.isna().any():
                values = values.fillna(values.median() if values.notna().any() else 0)
            out[column] = values.astype(dtype)
        except (TypeError, ValueError):
            out[column] = values
    return pd.DataFrame(out, columns=list(real.columns))


def released_settings(db: Any, dataset: str, asset: str | None) -> tuple[str, dict[str, Any]]:
    """The asset and settings of the dataset's synthetic mock (its audit event), or raise."""
    from sqlalchemy import select

    from datasite.db.models import AuditEvent

    events = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == AUDIT_ACTION, AuditEvent.target_type == "dataset")
        .where(AuditEvent.target_id == dataset)
        .order_by(AuditEvent.id.desc())
    ).all()
    for event in events:
        if asset is None or event.detail.get("asset") == asset:
            settings = dict(event.detail.get("settings") or {})
            if event.detail.get("scheme"):  # the report shows it; fits ignore it
                settings["scheme"] = event.detail["scheme"]
            return event.detail["asset"], settings
    raise LookupError(
        f"dataset {dataset!r} has no synthetic mock" + (f" for {asset!r}" if asset else "")
    )


def report(real: pd.DataFrame, mock: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The quality report, with each column's binning or categories (``scheme``)."""
    from datasite.synthetic_report import quality_report

    settings = dict(settings)
    scheme = settings.pop("scheme", None)  # the released one (with its DP edges), if kept
    target = settings.get("target")
    result = quality_report(
        real, mock, target=target if target in real.columns else None, settings=settings
    )
    try:
        result["scheme"] = scheme or column_scheme(dict(real.dtypes.items()), settings)
    except ValueError:  # settings of an older release that no longer plan: no scheme
        result["scheme"] = []
    return result


def canary(real: pd.DataFrame, settings: dict[str, Any]) -> dict[str, Any]:
    """The canary test with the mock's settings (owner only).

    DP run: the owner's settings, except that the secrets' column is never public (its
    categories are discovered under delta, at least 1e-6), else a planted secret could
    never appear. Non-DP run: an independent fit of the same synthesizer at epsilon
    ``NON_DP_EPSILON`` with that column's categories, secrets included, declared public
    (read from the planted table: nothing private about it, and nothing thresholded).
    """
    from datasite.synthetic_report import NON_DP_EPSILON, canary_test, make_canaries

    column, _ = make_canaries(real.head(1), (1,))
    public = {k: v for k, v in (settings.get("public_categories") or {}).items() if k != column}
    adjusted = {**settings, "public_categories": public, "delta": settings.get("delta") or 1e-6}

    def non_dp(table: pd.DataFrame, epsilon: float, secret_column: str) -> pd.DataFrame:
        values = list(pd.unique(table[secret_column].dropna().astype(str)))
        declared = {**public, secret_column: values}
        undeclared = [
            c for c in table.columns
            if c not in declared and not pd.api.types.is_numeric_dtype(table[c].dtype)
        ]  # fmt: skip
        declared |= {c: list(pd.unique(table[c].dropna().astype(str))) for c in undeclared}
        plain = {**settings, "public_categories": declared, "delta": 0.0}
        return synthesizer_for(plain)(table, epsilon)

    result = canary_test(real, synthesizer_for(adjusted), float(settings["epsilon"]), non_dp=non_dp)
    result["delta"] = adjusted["delta"]
    result["non_dp_how"] = (
        f"an independent fit of the same synthesizer at epsilon={NON_DP_EPSILON:g} with every "
        "category (secrets included) declared public: effectively not private"
    )
    return result
