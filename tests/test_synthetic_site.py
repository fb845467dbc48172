"""A synthetic mock made through the CLI (``--mock-synthetic --mock-epsilon``) on the
in-process site, and its quality report read as the owner's browser reads it.

The table is small (scikit-learn's bundled wine data, offline) and cut in few bins, so a
fit takes seconds.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from datasite.web.session import SESSION_COOKIE
from tests.conftest import OWNER_EMAIL, OWNER_PASSWORD, RESEARCHER_EMAIL, needs
from tests.test_synthetic import BOUNDS, CLASSES, wine

pytestmark = [needs("mbi"), pytest.mark.integration]

NAME = "WineCli"


@pytest.fixture(scope="module")
def cli_upload(inprocess_site, inprocess_study_clients, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The owner uploads the real wine table by the CLI; the site synthesizes the mock."""
    from datasite.cli import app

    owner, researcher = inprocess_study_clients
    folder = tmp_path_factory.mktemp("cli-synth")
    wine().to_parquet(folder / "real.parquet")
    settings = {"bounds": BOUNDS, "public_categories": CLASSES, "bins": 4,
                "binning": "quantile", "target": "cultivar"}  # fmt: skip
    env = {
        "DATASITE_NO_TOKEN_CACHE": "1",
        "COLUMNS": "250",
        "DATASITE_URL": inprocess_site.url,
        "DATASITE_EMAIL": OWNER_EMAIL,
        "DATASITE_PASSWORD": OWNER_PASSWORD,
    }
    args = ["datasets", "upload", NAME, "--real", str(folder / "real.parquet"),
            "--mock-synthetic", "--mock-epsilon", "1.0",
            "--mock-settings", json.dumps(settings)]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        result = CliRunner().invoke(app, args)
        refused = CliRunner().invoke(
            app, [*args[:5], "--mock-synthetic", "--mock-epsilon", "0", "--mock-settings",
                  json.dumps(settings)],
        )  # fmt: skip
    return owner, researcher, result, refused


def test_the_cli_uploads_a_real_table_with_a_synthetic_mock(cli_upload) -> None:  # type: ignore[no-untyped-def]
    owner, researcher, result, refused = cli_upload
    assert result.exit_code == 0, result.output
    assert f"Uploaded {NAME}." in result.output
    real = wine()
    mock = owner.datasets.mock(NAME, "data")  # the CLI's default asset name
    assert list(mock.columns) == list(real.columns) and not mock.equals(real)
    events = [e for e in owner.audit() if e["action"] == "synthetic_mock_released"]
    event = next(e for e in events if e["target_id"] == NAME)
    assert event["detail"]["epsilon"] == pytest.approx(1.0)
    spend = event["detail"]["spend"]
    assert [s["helper"] for s in spend] == ["synthesize"]
    assert spend[0]["details"]["binning"] == "quantile"
    assert set(spend[0]["details"]["bin_edges"]) <= set(BOUNDS)
    # the researcher reads the synthetic mock
    assert len(researcher.datasets[NAME].assets["data"].mock) == len(mock)
    # epsilon 0 is refused with a clear error and leaves no second event
    assert refused.exit_code != 0
    assert "epsilon" in refused.output
    after = [e for e in owner.audit() if e["action"] == "synthetic_mock_released"]
    assert len(after) == len(events)


def test_the_report_page_shows_the_score_baseline_plots_and_privacy_notes(
    cli_upload, inprocess_site
) -> None:  # type: ignore[no-untyped-def]
    from datasite import admin
    from tests.conftest import RESEARCHER_PASSWORD

    owner, _, result, _ = cli_upload
    assert result.exit_code == 0, result.output
    cookie = {"Cookie": f"{SESSION_COOKIE}={owner.session.token}"}
    page = inprocess_site.client.get(f"/datasets/{NAME}", headers=cookie)
    assert page.status_code == 200
    link = f"/datasets/{NAME}/synthetic-report?asset=data"
    assert link in page.text and "Quality report" in page.text
    report = inprocess_site.client.get(link, headers=cookie)
    assert report.status_code == 200
    text = report.text
    assert "quality report" in text and "/ 100" in text
    assert "independent marginals, same run" in text
    assert 'aria-label="distributions"' in text and 'aria-label="correlations"' in text
    assert "What touched the real data" in text and "owner only" in text
    for column in wine().columns:
        assert f"<code>{column}</code>" in text
    # the binning the owner set, with the DP quantile edges the fit released
    assert "Binning and categories" in text and "bins at DP quantiles" in text
    assert "public categories (declared by the owner)" in text
    edges = next(
        e for e in owner.audit() if e["action"] == "synthetic_mock_released"
        and e["target_id"] == NAME
    )["detail"]["spend"][0]["details"]["bin_edges"]  # fmt: skip
    assert f"{round(edges['alcohol'][1], 4)}" in text
    # a researcher is refused the page: it reads the real table
    researcher = admin.connect(inprocess_site.url, RESEARCHER_EMAIL, RESEARCHER_PASSWORD)
    other = inprocess_site.client.get(
        link, headers={"Cookie": f"{SESSION_COOKIE}={researcher.session.token}"}
    )
    assert other.status_code in (401, 403, 404)
    assert "What touched the real data" not in other.text
