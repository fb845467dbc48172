"""``client.code.<function>(df=asset)``: fetch what an approved request computed.

The name is the submitted function's name; the latest request of that name is the one
called. A request still waiting for a reviewer raises ``ApprovalPendingError`` at once
(as PySyft refuses with ``UserCodeStatus.PENDING``); an approved one is waited for while
it runs; a denied one raises with the reviewer's reason.

>>> result = client.code.mean_age(df=asset)  # doctest: +SKIP
>>> result.syft_action_data  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import researcher_kit.client as rkc
from datasite.client.records import html_table
from datasite.contract.lifecycle import PENDING
from researcher_kit.syft_compat.results import ActionObject
from researcher_kit.syft_compat.views import unwrap_asset


class ApprovalPendingError(PermissionError):
    """The request exists but no reviewer has approved it yet."""


class RemoteFunction:
    """A submitted function, callable once a reviewer approved it."""

    def __init__(self, site: rkc.Site, name: str) -> None:
        self._site = site
        self.name = name

    def request(self) -> rkc.Request:
        """The latest request submitted under this function name."""
        mine = [r for r in self._site.requests if r.entry == self.name]
        if not mine:
            raise AttributeError(
                f"You have submitted no function {self.name!r}; submit it with "
                "project.create_code_request(fn, client)."
            )
        return max(mine, key=lambda r: r.id)

    def __call__(self, timeout: float = 600.0, **inputs: Any) -> ActionObject:
        request = self.request()
        self._check_inputs(request, inputs)
        if request.state in PENDING:
            raise ApprovalPendingError(
                f"UserCodeStatus.PENDING: request {request.id} ({self.name}) is waiting for "
                f"approval (it is {request.state}). It runs on the private data once an owner "
                "or reviewer approves it; check client.requests."
            )
        if request.state == "denied":
            raise PermissionError(
                f"UserCodeStatus.DENIED: request {request.id} ({self.name}) was denied: "
                f"{request.deny_reason}"
            )
        if request.state == "released" and request.runs_used < request.runs_allowed:
            request.run()  # an execute-count policy with runs left: this call runs again
        return ActionObject(request.result(timeout=timeout))

    def _check_inputs(self, request: rkc.Request, inputs: dict[str, Any]) -> None:
        if set(inputs) != set(request.bindings):
            raise TypeError(
                f"{self.name} was approved for the inputs {sorted(request.bindings)}; "
                f"got {sorted(inputs)}."
            )
        for arg, value in inputs.items():
            asset = unwrap_asset(value)
            if (asset.dataset, asset.name) != (request.dataset, request.bindings[arg]):
                raise ValueError(
                    f"ExactMatch: {self.name} was approved for {arg}={request.dataset}/"
                    f"{request.bindings[arg]}, not {asset.dataset}/{asset.name}."
                )

    def __repr__(self) -> str:
        return f"<RemoteFunction {self.name}>"


class CodeNamespace:
    """``client.code``: one attribute per function you submitted."""

    def __init__(self, site: rkc.Site) -> None:
        self._site = site

    def __getattr__(self, name: str) -> RemoteFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        function = RemoteFunction(self._site, name)
        function.request()  # raises AttributeError if nothing of that name was submitted
        return function

    def __dir__(self) -> list[str]:
        return sorted({r.entry for r in self._site.requests})

    def __repr__(self) -> str:
        return f"<Code: {', '.join(dir(self)) or 'nothing submitted yet'}>"

    def _repr_html_(self) -> str:
        latest: dict[str, rkc.Request] = {}
        for r in self._site.requests:
            latest[r.entry] = r
        rows = [{"function": name, "request": r.id, "state": r.state} for name, r in latest.items()]
        return "<h4>Your functions</h4>" + html_table(rows, ["function", "request", "state"])
