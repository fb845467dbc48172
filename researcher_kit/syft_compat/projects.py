"""``client.create_project(...)`` and ``project.create_code_request(fn, client)``."""

from __future__ import annotations

import html
from typing import Any

import researcher_kit.client as rkc
from researcher_kit.syft_compat.functions import SyftFunction
from researcher_kit.syft_compat.views import RequestList


class Project:
    """A researcher's project on the site; code requests are submitted into it."""

    def __init__(self, site: rkc.Site, record: dict[str, Any]) -> None:
        self._site = site
        self.record = record
        self.name: str = record["name"]
        self.description: str = record.get("description", "")

    def create_code_request(
        self, obj: SyftFunction, client: Any = None, reason: str = ""
    ) -> rkc.Request:
        """Submit ``obj`` into this project; returns the request (state ``submitted``).

        Without a declared epsilon, the spend is measured on the mock first (see
        ``functions``). ``client`` is accepted as in PySyft; it must be yours.
        """
        if not isinstance(obj, SyftFunction):
            raise TypeError("Submit a function wrapped by sy.syft_function(...).")
        site = getattr(client, "site", None) or self._site
        if site.email != self._site.email:
            raise PermissionError("Submit with the client of the project's owner.")
        obj.declare_budget()
        return site.submit(obj, project=self.name, description=reason, create_project=False)

    @property
    def requests(self) -> RequestList:
        return RequestList(r for r in self._site.requests if r.project == self.name)

    def __repr__(self) -> str:
        return f"<Project {self.name}>"

    def _repr_html_(self) -> str:
        return (
            f"<h4>Project {html.escape(self.name)}</h4><pre>{html.escape(self.description)}</pre>"
            + self.requests._repr_html_()
        )
