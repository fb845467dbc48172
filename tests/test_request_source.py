"""What the researcher's function becomes when it leaves the notebook."""

from __future__ import annotations

import linecache

from researcher_kit.request import function_source

CELL = """
import numpy as np
import researcher_kit as rk
from researcher_kit.dp import mean

HELPER_CONSTANT = 3

def analysis(df):
    spread = np.ptp(df["age"])
    return rk.dp.count(df, epsilon=0.5), mean(df["age"], (18, 90), 0.5), spread, HELPER_CONSTANT
"""


def notebook_function() -> object:
    """Define ``analysis`` the way a notebook cell does (its source lives in linecache)."""
    name = "<notebook cell 1>"
    linecache.cache[name] = (len(CELL), None, CELL.splitlines(True), name)
    namespace: dict[str, object] = {}
    exec(compile(CELL, name, "exec"), namespace)  # noqa: S102 - the test's own cell
    return namespace["analysis"]


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


def test_a_notebook_constant_is_not_invented() -> None:
    source = function_source(notebook_function())
    assert "HELPER_CONSTANT =" not in source
    assert source.count("def analysis(df):") == 1
