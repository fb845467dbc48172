"""Rendering pages: the Jinja2 environment, its filters, and safe response headers.

Templates autoescape everything; the only markup inserted unescaped is what
``datasite.web.highlight`` builds from escaped token text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from datasite.db.models import User

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# No inline script or style anywhere, so the policy can be strict.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, in words a person reads at a glance.

    >>> from datetime import timedelta
    >>> now = datetime(2024, 1, 2, tzinfo=UTC)
    >>> age(now - timedelta(seconds=20), now), age(now - timedelta(hours=5), now)
    ('just now', '5 hours ago')
    """
    if moment is None:
        return ""
    now = now or datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = max((now - moment).total_seconds(), 0)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def timestamp(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: Any) -> str:
    """Budgets as people write them: ``0.5``, ``1e-06``, never ``0.49999999999999994``."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=age, timestamp=timestamp, number=number, pretty_json=pretty_json)
    return env


ENV = _environment()


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    user: User | None = None,
    csrf: str = "",
    status: int = 200,
) -> HTMLResponse:
    """A page with the layout's shared context (the user, their CSRF token, the site)."""
    site = request.app.state.site
    html = ENV.get_template(template).render(
        request=request,
        user=user,
        csrf=csrf,
        site_name=site.settings.site_name,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
