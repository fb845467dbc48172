"""The owner's local description of a dataset before upload: ``sy.Asset``, ``sy.Dataset``.

These hold the real and mock tables in the owner's process; ``upload_dataset`` sends
them to the site through ``datasite.client.admin``.

>>> import pandas as pd
>>> real, mock = pd.DataFrame({"age": [31, 45]}), pd.DataFrame({"age": [50]})
>>> dataset = Dataset(name="Ages", summary="Ages of users")
>>> dataset.add_asset(Asset(name="ages", data=real, mock=mock))
>>> [a.name for a in dataset.asset_list]
['ages']
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from datasite.client.records import html_table


@dataclass
class Asset:
    """One table of a dataset: the private ``data`` and the ``mock`` researchers see."""

    name: str
    data: pd.DataFrame
    mock: pd.DataFrame
    description: str = ""

    def __post_init__(self) -> None:
        for label, table in (("data", self.data), ("mock", self.mock)):
            if not isinstance(table, pd.DataFrame):
                raise TypeError(
                    f"Asset {self.name!r}: {label}= must be a pandas DataFrame, "
                    f"not {type(table).__name__}."
                )
        if list(self.data.columns) != list(self.mock.columns):
            raise ValueError(
                f"Asset {self.name!r}: the mock must have the real table's columns "
                f"{list(self.data.columns)}, it has {list(self.mock.columns)}."
            )

    def _repr_html_(self) -> str:
        return (
            f"<h4>Asset {html.escape(self.name)}</h4>"
            f"<p>{len(self.data):,} private rows · {len(self.mock):,} mock rows</p>"
            f"<p>Mock preview</p>{self.mock.head(5).to_html(max_cols=20)}"
        )


@dataclass
class Dataset:
    """A named dataset with its metadata and assets, ready for ``upload_dataset``."""

    name: str
    description: str = ""
    summary: str = ""
    citation: str = ""
    contributors: list[str] = field(default_factory=list)
    asset_list: list[Asset] = field(default_factory=list)

    def add_asset(self, asset: Asset) -> None:
        if any(a.name == asset.name for a in self.asset_list):
            raise ValueError(f"Dataset {self.name!r} has an asset {asset.name!r} already.")
        self.asset_list.append(asset)

    def add_contributor(self, name: str, email: str = "", **_: object) -> None:
        self.contributors.append(f"{name} <{email}>" if email else name)

    def _repr_html_(self) -> str:
        rows = [
            {"asset": a.name, "private rows": len(a.data), "mock rows": len(a.mock)}
            for a in self.asset_list
        ]
        return (
            f"<h4>{html.escape(self.name)}</h4><p>{html.escape(self.summary)}</p>"
            f"<pre>{html.escape(self.description)}</pre>"
            + html_table(rows, ["asset", "private rows", "mock rows"])
        )
