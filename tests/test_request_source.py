"""What the researcher's function becomes when it leaves the notebook."""

from __future__ import annotations

import linecache

import pytest

from researcher_kit.request import function_source

CELL = """
import numpy as np
import researcher_kit as rk
from researcher_kit.dp import mean

HELPER_CONSTANT = 3

def display(obj):  # the notebook's display(); the sandbox has its own
    print(obj)

def analysis(df):
    display(df.head())
    spread = np.ptp(df["age"])
    ages = [a for a in df["age"] if a > 0]
    return rk.dp.count(df, epsilon=0.5), mean(df["age"], (18, 90), 0.5), spread, len(ages)

def stranded(df):
    return df["age"].clip(0, HELPER_CONSTANT)
"""


def notebook_function(name: str = "analysis") -> object:
    """Define the cell's functions as a notebook does (their source lives in linecache)."""
    cell = "<notebook cell 1>"
    linecache.cache[cell] = (len(CELL), None, CELL.splitlines(True), cell)
    namespace: dict[str, object] = {}
    exec(compile(CELL, cell, "exec"), namespace)  # noqa: S102 - the test's own cell
    return namespace[name]


def test_modules_and_functions_from_the_notebook_travel_as_imports() -> None:
    source = function_source(notebook_function())
    head = source.splitlines()[:3]
    assert head == [
        "from researcher_kit.dp.aggregates import mean",
        "import numpy as np",
        "import researcher_kit as rk",
    ]
    namespace: dict[str, object] = {}
    exec(compile(source, "<submitted>", "exec"), namespace)  # noqa: S102
    assert callable(namespace["analysis"])
    assert "display" not in source.split("def analysis")[0]


def test_a_notebook_constant_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match="uses HELPER_CONSTANT from your notebook.*define them"):
        function_source(notebook_function("stranded"))
