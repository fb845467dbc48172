"""The data owner's admin client.

>>> from datasite import admin
>>> owner = admin.connect("http://127.0.0.1:8080", email="steward@hospital.example",
...                       password="...")  # doctest: +SKIP
>>> owner.datasets.upload(name="Pings", assets={"pings": (real_df, mock_df)})  # doctest: +SKIP
>>> owner.users.create(email="bob@uni.example", name="Dr. Bob")  # doctest: +SKIP
>>> owner.budgets.grant("bob@uni.example", "Pings", epsilon=3.0)  # doctest: +SKIP
>>> for req in owner.requests.pending():  # doctest: +SKIP
...     print(req.policy_report.verdict); req.approve()
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pandas as pd

from datasite.client.http import ApiSession, DatasiteError
from datasite.client.records import RequestRecord, html_table
from datasite.contract.schemas import GeneraliseIn, PrivateTextIn

__all__ = ["OwnerClient", "connect", "DatasiteError"]


class OwnerRequest(RequestRecord):
    """A request as the owner or a reviewer sees it: with decisions and run details."""

    def approve(self, justification: str | None = None) -> OwnerRequest:
        """Approve; a request the checker blocked needs an owner's written justification."""
        self.data = self._session.post(
            f"/requests/{self.id}/approve", json={"justification": justification}
        )
        return self

    def deny(self, reason: str) -> OwnerRequest:
        self.data = self._session.post(f"/requests/{self.id}/deny", json={"reason": reason})
        return self

    def release_result(self, run_id: int | None = None) -> OwnerRequest:
        """Release a result the site withheld (the run did not match its dry-run)."""
        return self._decide_withheld(run_id, release=True)

    def discard_result(self, run_id: int | None = None) -> OwnerRequest:
        """Discard a withheld result: the request fails and its budget stays spent."""
        return self._decide_withheld(run_id, release=False)

    def _decide_withheld(self, run_id: int | None, release: bool) -> OwnerRequest:
        run = run_id if run_id is not None else self.data["runs"][-1]["id"]
        path = f"/requests/{self.id}/runs/{run}/withheld"
        self.data = self._session.post(path, json={"release": release})
        return self

    def release_detail(self, run_id: int | None = None) -> dict[str, Any]:
        """Let the researcher see a run's stdout, stderr and traceback (they may hold data)."""
        run_id = run_id or self.runs[-1]["id"]
        return self._session.post(f"/requests/{self.id}/runs/{run_id}/release-detail")


class _Section:
    def __init__(self, session: ApiSession) -> None:
        self._session = session


class Datasets(_Section):
    def upload(
        self,
        name: str,
        assets: dict[str, tuple[Any, Any]] | dict[str, Any],
        description: str = "",
        summary: str = "",
        citation: str = "",
        contributors: list[str] | None = None,
        asset_descriptions: dict[str, str] | None = None,
        progress: bool = True,
        mock: str | None = None,
        mock_epsilon: float | None = None,
        mock_settings: dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upload a dataset whose assets are ``{name: (real_df, mock_df)}``.

        Each table streams to the site as Parquet; the dataset appears only once every
        asset has arrived and its mock matches its real table column for column. A
        table is a DataFrame, a ``.parquet`` or ``.csv`` path, or an iterable of
        DataFrame chunks, so tables larger than memory upload in bounded memory; the
        site stores real tables as partitions (``DATASITE_PARTITION_ROWS`` rows each).

        With ``mock="synthetic"`` the assets are ``{name: real_df}`` and the site makes
        each mock itself, a DP synthetic copy spending ``mock_epsilon`` (recorded against
        the dataset). ``mock_settings`` (``bounds`` for numeric columns, required;
        ``public_categories``, ``delta``, ``synthesizer``, ``bins``, ``target``) are the
        fields of ``datasite.contract.schemas.SyntheticMockIn``.

        ``policy`` (a policy document) is in force from the start; a mock less k-anonymous
        on its ``k_anonymity_qis`` than its ``min_group_size`` is refused, naming its
        smallest groups, and nothing is stored.
        """
        if mock not in (None, "synthetic"):
            raise ValueError('mock is None (give (real, mock) pairs) or "synthetic"')
        synthetic = None
        if mock == "synthetic":
            synthetic = {**(mock_settings or {}), "epsilon": mock_epsilon}
        described = []
        for asset, tables in assets.items():
            real = tables if synthetic is not None else tables[0]
            real_up = self._session.upload_table(real, f"{asset} (real)", progress)
            entry = {
                "name": asset,
                "real_upload": real_up["upload_id"],
                "description": (asset_descriptions or {}).get(asset, ""),
            }
            if synthetic is not None:
                entry["synthetic"] = synthetic
            else:
                mock_up = self._session.upload_table(tables[1], f"{asset} (mock)", progress)
                entry["mock_upload"] = mock_up["upload_id"]
            described.append(entry)
        extra = {"policy": policy} if policy is not None else {}
        if synthetic is not None:  # the site fits the synthesizer before it answers
            return self._session.post(
                "/datasets",
                json={
                    "name": name, "description": description, "summary": summary,
                    "citation": citation, "contributors": contributors or [],
                    "assets": described, **extra,
                },
                timeout=600,
            )  # fmt: skip
        return self._session.post(
            "/datasets",
            json={
                "name": name,
                "description": description,
                "summary": summary,
                "citation": citation,
                "contributors": contributors or [],
                "assets": described,
                **extra,
            },
            timeout=600,  # the site partitions each real table before it answers
        )

    def list(self) -> list[dict[str, Any]]:
        return self._session.get("/datasets")

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._session.get(f"/datasets/{name}")

    def mock(self, dataset: str, asset: str) -> pd.DataFrame:
        return self._session.get_table(f"/datasets/{dataset}/assets/{asset}/mock")

    def check_anonymity(
        self,
        name: str,
        quasi_identifiers: list[str] | None = None,
        k: int | None = None,
        sensitive: list[str] | None = None,
        side: str = "real",
        asset: str | None = None,
    ) -> dict[str, Any]:
        """k (and l on ``sensitive``) and the smallest groups of the real table or the
        mock (``side``) on ``quasi_identifiers``; the policy's QIs and ``min_group_size``
        unless given. Owner only: the groups' sizes and values are private."""
        params: dict[str, Any] = {"side": side}
        if quasi_identifiers:
            params["quasi_identifiers"] = list(quasi_identifiers)
        if sensitive:
            params["sensitive"] = list(sensitive)
        if k is not None:
            params["k"] = k
        if asset:
            params["asset"] = asset
        return self._session.get(
            f"/datasets/{quote(name, safe='')}/anonymity", params=params, timeout=600
        )

    def generalise(
        self,
        name: str,
        quasi_identifiers: list[str],
        k: int,
        *,
        sensitive: str | None = None,
        l: int | None = None,  # noqa: E741 - the property's name
        identifiers: list[str] | None = None,
        max_suppressed_percent: float = 5.0,
        hierarchies: dict[str, list[dict[str, Any]]] | None = None,
        asset: str | None = None,
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """A k-anonymous (and, with ``sensitive`` and ``l``, l-diverse) copy of an asset's
        real table and its report: levels per QI, rows dropped, k and l measured again.

        The site generalises with anjana (``datasite.generalisation``); ``hierarchies``
        maps a QI to its levels, each a ``{value: label}`` map; without one, numbers go
        into widening intervals and codes lose trailing characters. Not DP: publish the
        copy only where k-anonymity is the agreed standard. Owner only, audited.
        """
        import base64
        import io

        body = GeneraliseIn(
            quasi_identifiers=list(quasi_identifiers), k=k, sensitive=sensitive, l=l,
            identifiers=list(identifiers or []), max_suppressed_percent=max_suppressed_percent,
            hierarchies=hierarchies, asset=asset,
        )  # fmt: skip
        answer = self._session.post(
            f"/datasets/{quote(name, safe='')}/generalise",
            json=body.model_dump(mode="json"),
            timeout=600,
        )
        table = pd.read_parquet(io.BytesIO(base64.b64decode(answer["parquet"])))
        return table, answer["report"]

    def privatize_text(
        self,
        name: str,
        column: str,
        epsilon: float,
        *,
        unit: str = "word",
        oov: str = "sample",
        max_words: int = 100,
        vocabulary: int = 50_000,
        asset: str | None = None,
    ) -> dict[str, Any]:
        """Replace the mock's text ``column`` by the real documents under metric-DP word
        replacement (``rk.dp.privatize_text``'s mechanism, run by the site); returns what
        was spent and its privacy unit (also an audit event). Look first with
        :meth:`text_report`. Owner only.
        """
        body = PrivateTextIn(
            column=column, epsilon=epsilon, unit=unit, oov=oov, max_words=max_words,
            vocabulary=vocabulary, asset=asset,
        )  # fmt: skip
        return self._session.post(
            f"/datasets/{quote(name, safe='')}/private-text",
            json=body.model_dump(mode="json"),
            timeout=600,
        )

    def text_report(
        self,
        name: str,
        column: str,
        epsilons: list[float] | None = None,
        words: list[str] | None = None,
        asset: str | None = None,
    ) -> dict[str, Any]:
        """How the mechanism treats a few common ``words`` at each per-word epsilon, and
        the share of the real column's words it changes (owner only)."""
        params: dict[str, Any] = {"column": column}
        if epsilons:
            params["epsilons"] = list(epsilons)
        if words:
            params["words"] = list(words)
        if asset:
            params["asset"] = asset
        return self._session.get(
            f"/datasets/{quote(name, safe='')}/private-text/report", params=params, timeout=600
        )

    def synthetic_report(self, name: str, asset: str | None = None) -> dict[str, Any]:
        """The quality report of a synthetic mock (owner only; it reads the real table)."""
        params = {"asset": asset} if asset else {}
        return self._session.get(
            f"/datasets/{quote(name, safe='')}/synthetic-report", params=params, timeout=600
        )

    def canary_test(self, name: str, asset: str | None = None) -> dict[str, Any]:
        """Plant secrets in a copy of the real table, synthesize (DP, non-DP), count replays."""
        params = {"asset": asset} if asset else {}
        return self._session.post(
            f"/datasets/{quote(name, safe='')}/synthetic-canary", params=params, timeout=600
        )

    def archive(self, name: str) -> dict[str, Any]:
        """Hide ``name`` from researchers and refuse new requests on it; its requests,
        results and ledger entries stay. :meth:`restore` undoes it."""
        return self._session.post(f"/datasets/{quote(name, safe='')}/archive")

    def restore(self, name: str) -> dict[str, Any]:
        """Undo :meth:`archive`."""
        return self._session.post(f"/datasets/{quote(name, safe='')}/restore")

    def delete(self, name: str) -> dict[str, Any]:
        """Delete a dataset no request used (its assets, policy and unspent budgets go).

        One that requests refer to is archived instead, so its ledger history stays: the
        answer's ``outcome`` is ``"deleted"`` or ``"archived"`` and ``detail`` says why.
        """
        return self._session.request("DELETE", f"/datasets/{quote(name, safe='')}")


class Users(_Section):
    def create(
        self,
        email: str,
        name: str,
        role: str = "researcher",
        password: str | None = None,
        institution: str = "",
        website: str = "",
    ) -> dict[str, Any]:
        """Create an account; without ``password`` the site generates one and returns it once."""
        return self._session.post(
            "/users",
            json={
                "email": email,
                "name": name,
                "role": role,
                "password": password,
                "institution": institution,
                "website": website,
            },
        )

    def disable(self, email: str) -> dict[str, Any]:
        return self._session.patch(f"/users/{email}", json={"disabled": True})

    def enable(self, email: str) -> dict[str, Any]:
        return self._session.patch(f"/users/{email}", json={"disabled": False})

    def list(self) -> list[dict[str, Any]]:
        return self._session.get("/users")


class Budgets(_Section):
    def grant(self, email: str, dataset: str, epsilon: float, delta: float = 0.0) -> dict:
        """Set the total privacy loss ``email`` may spend on ``dataset``."""
        return self._session.put(
            "/budgets",
            json={"email": email, "dataset": dataset, "epsilon": epsilon, "delta": delta},
        )

    def list(self) -> list[dict[str, Any]]:
        return self._session.get("/budgets")

    def ledger(self) -> list[dict[str, Any]]:
        return self._session.get("/ledger")


class Policies(_Section):
    def get(self, dataset: str) -> dict[str, Any]:
        return self._session.get(f"/datasets/{dataset}/policy")

    def set(self, dataset: str, **fields: Any) -> dict[str, Any]:
        """Change the named fields of the dataset's policy; the rest stay as they are."""
        current = self.get(dataset)
        current.pop("version", None)
        return self._session.put(f"/datasets/{dataset}/policy", json={**current, **fields})

    def override(self, dataset: str, email: str, **fields: Any) -> dict[str, Any]:
        """Per-researcher overrides laid over the dataset's policy."""
        return self._session.put(f"/datasets/{dataset}/policy/overrides/{email}", json=fields)


class Requests(_Section):
    def all(self, state: str | None = None, dataset: str | None = None) -> list[OwnerRequest]:
        params = {k: v for k, v in (("state", state), ("dataset", dataset)) if v}
        return [
            OwnerRequest(self._session, d) for d in self._session.get("/requests", params=params)
        ]

    def pending(self) -> list[OwnerRequest]:
        """Requests waiting for a decision (checked, not yet approved or denied)."""
        return self.all(state="checked")

    def get(self, request_id: int) -> OwnerRequest:
        return OwnerRequest(self._session, self._session.get(f"/requests/{request_id}"))

    def __getitem__(self, index: int) -> OwnerRequest:
        return self.all()[index]

    def __len__(self) -> int:
        return len(self.all())


class OwnerClient:
    """An owner's (or reviewer's) session with a datasite."""

    def __init__(self, session: ApiSession) -> None:
        self.session = session
        self.datasets = Datasets(session)
        self.users = Users(session)
        self.budgets = Budgets(session)
        self.policies = Policies(session)
        self.requests = Requests(session)

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """The audit log, newest first; filter by action, actor, target_type, target_id."""
        return self.session.get("/audit", params=filters)

    def _repr_html_(self) -> str:
        rows = [
            {"dataset": d["name"], "assets": ", ".join(a["name"] for a in d["assets"])}
            for d in self.datasets.list()
        ]
        return f"<h4>Datasite {self.session.url}</h4>" + html_table(rows, ["dataset", "assets"])


def connect(url: str, email: str, password: str) -> OwnerClient:
    """Log in as the owner or a reviewer."""
    return OwnerClient(ApiSession.login(url, email, password))
