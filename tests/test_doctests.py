"""Every runnable example in the three packages' docstrings, run for real (OpenDP noise,
skops, SQLite); examples that need a running site are marked ``+SKIP`` where they stand."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import datasite
import policies
import researcher_kit


def modules() -> list[str]:
    names = []
    for package in (datasite, policies, researcher_kit):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            # migrations are run by Alembic, __main__ runs the CLI when imported
            if ".migrations" not in info.name and not info.name.endswith("__main__"):
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", modules())
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_dp_toolkit_documents_every_public_helper_with_an_example() -> None:
    from researcher_kit import dp

    public = set(dp.RELEASE_HELPERS) | {"load_model", "track", "Budget", "local_context"}
    missing = sorted(name for name in public if ">>>" not in (getattr(dp, name).__doc__ or ""))
    assert missing == []
