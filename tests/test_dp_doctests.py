"""The runnable examples in the DP toolkit's docstrings, run with real OpenDP noise."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "researcher_kit.dp",
    "researcher_kit.dp.aggregates",
    "researcher_kit.dp.budget",
    "researcher_kit.dp.context",
    "researcher_kit.dp.models",
    "researcher_kit.dp.noise",
    "researcher_kit.dp.spend",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
