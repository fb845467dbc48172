"""``/docs`` works without internet: the page and everything it loads come from the site."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.testclient import TestClient

from datasite.app import create_app
from datasite.config import Settings
from tests.server import OWNER_EMAIL, OWNER_PASSWORD


def test_the_docs_page_loads_only_local_assets_and_each_answers(tmp_path: Path) -> None:
    app = create_app(
        Settings(data_dir=tmp_path, owner_email=OWNER_EMAIL, owner_password=OWNER_PASSWORD)
    )
    with TestClient(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        html = page.text
        assert "SwaggerUIBundle" in html
        assert not re.search(r"https?://|//cdn|unpkg|jsdelivr", html), html
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)
        assert len(urls) >= 4, urls  # the css, the favicon, the script, the schema
        for url in urls:
            assert url.startswith("/"), url
            answer = client.get(url)
            assert answer.status_code == 200, url
            assert len(answer.content) > 100, url
        script = client.get("/docs-assets/swagger-ui-bundle.js").text
        # FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on.
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
        assert "OpenAPI 3.1" in script or "3.1.0" in script
        assert client.get("/docs/oauth2-redirect").status_code == 200
