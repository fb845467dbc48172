"""What a logged-in client shows: datasets, assets, requests and users, PySyft style.

These wrap the foundation clients' views (``researcher_kit.client``, ``datasite.client.admin``)
and add what PySyft users expect: ``asset.data`` that refuses clearly instead of holding
metadata, positional and named indexing, and notebook HTML reprs.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

import researcher_kit.client as rkc
from datasite.client import admin
from datasite.client.records import Named, html_table
from datasite.contract.lifecycle import State


def delegate(obj: object, holder: str, name: str) -> Any:
    """``getattr(obj.<holder>, name)``; an AttributeError while ``holder`` is not set yet."""
    inner = obj.__dict__.get(holder)
    if inner is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(inner, name)


class RemoteAsset:
    """An asset on the site: ``.mock`` is here, ``.data`` (the private table) is not."""

    def __init__(self, inner: rkc.Asset, role: str) -> None:
        self.inner = inner
        self.role = role

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dataset(self) -> str:
        return self.inner.dataset

    @property
    def mock(self) -> pd.DataFrame:
        return self.inner.mock

    @property
    def data(self) -> pd.DataFrame:
        """Refused: the private table never leaves the site."""
        who = "a researcher" if self.role == "researcher" else "any client"
        raise PermissionError(
            f"The private data of asset {self.name!r} ({self.dataset}) never leaves the "
            f"datasite; {who} cannot download it. Use .mock to write your code, then submit "
            "it with a syft_function; approved code runs next to the data."
        )

    def __getattr__(self, name: str) -> Any:
        return delegate(self, "inner", name)

    def __repr__(self) -> str:
        return repr(self.inner)

    def _repr_html_(self) -> str:
        return self.inner._repr_html_()


def unwrap_asset(asset: Any) -> rkc.Asset:
    """The researcher-kit asset behind ``asset``, for a request's bindings."""
    if isinstance(asset, RemoteAsset):
        return asset.inner
    if isinstance(asset, rkc.Asset):
        return asset
    raise TypeError(
        f"Bind an asset fetched from the site (client.datasets[name].assets[0]), "
        f"not {type(asset).__name__}: the site runs the code on its own copy of the data."
    )


class RemoteDataset:
    """A dataset on the site: its metadata (``.description``, ``.summary``...) and assets."""

    def __init__(self, inner: rkc.Dataset, role: str) -> None:
        self.inner = inner
        self.assets = Named([RemoteAsset(a, role) for a in inner.assets], "asset")

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, name: str) -> Any:
        return delegate(self, "inner", name)

    def __repr__(self) -> str:
        return repr(self.inner)

    def _repr_html_(self) -> str:
        return self.inner._repr_html_()


class DatasetList:
    """``client.datasets``: index by name or position; always the site's current list."""

    def __init__(self, inner: rkc.Datasets, role: str) -> None:
        self.inner = inner
        self.role = role

    def __getitem__(self, key: int | str) -> RemoteDataset:
        return RemoteDataset(self.inner[key], self.role)

    def __iter__(self) -> Iterator[RemoteDataset]:
        return (RemoteDataset(d, self.role) for d in self.inner.list())

    def __len__(self) -> int:
        return len(self.inner)

    def __repr__(self) -> str:
        return repr(self.inner.list())

    def _repr_html_(self) -> str:
        return self.inner._repr_html_()


class RequestList(list):
    """A list of code requests that renders as a table in a notebook."""

    def _repr_html_(self) -> str:
        rows = [
            {
                "id": r.id,
                "function": r.entry,
                "author": r.author,
                "dataset": r.dataset,
                "epsilon": r.epsilon,
                "state": r.state,
                "verdict": (r.data.get("policy_report") or {}).get("verdict", "not checked yet"),
            }
            for r in self
        ]
        columns = ["id", "function", "author", "dataset", "epsilon", "state", "verdict"]
        return "<h4>Code requests</h4>" + html_table(rows, columns)


class OwnerRequest(admin.OwnerRequest):
    """A request as a reviewer decides on it; decisions wait for the policy check first.

    PySyft lets an owner approve at once; here the checker's report must be attached
    before anyone decides, so ``approve``/``deny`` wait (up to ``timeout``) for it.
    """

    def wait_checked(self, timeout: float = 600.0) -> OwnerRequest:
        checked = tuple(s.value for s in State if s is not State.SUBMITTED)
        if self.refresh().state == State.SUBMITTED:
            self.data = rkc.Request(self._session, self.data).wait(timeout, until=checked).data
        return self

    def approve(self, justification: str | None = None, timeout: float = 600.0) -> OwnerRequest:
        """Approve once checked; a blocked report needs an owner's ``justification``."""
        self.wait_checked(timeout)
        return super().approve(justification)  # type: ignore[return-value]

    def deny(self, reason: str, timeout: float = 600.0) -> OwnerRequest:
        """Deny once checked, telling the researcher ``reason``."""
        self.wait_checked(timeout)
        return super().deny(reason)  # type: ignore[return-value]


@dataclass
class UserView:
    """An account as ``users.create`` returns it."""

    email: str
    name: str
    role: str
    institution: str = ""
    website: str = ""

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> UserView:
        return cls(**{k: record.get(k, "") for k in cls.__dataclass_fields__})

    def _repr_html_(self) -> str:
        return (
            f"<p><b>{html.escape(self.name)}</b> ({html.escape(self.email)}) · "
            f"role {html.escape(self.role)} · {html.escape(self.institution)}</p>"
        )
