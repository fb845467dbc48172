"""The README's owner, researcher and reviewer snippets, run in order against a real server.

The README is the first thing a new user copies from; this keeps every line of those
workflows true. Blocks preceded by a ``<!-- not run ... -->`` comment are skipped.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path
from typing import Any

import pytest

from datasite.client.embedded import EmbeddedSite
from tests.conftest import pings_tables
from tests.server import OWNER_EMAIL, OWNER_PASSWORD

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- not run[^>]*-->\n)?```python\n(.*?)```", re.S)
WORKFLOW = ("## The data owner", "## Policies")

pytestmark = pytest.mark.integration


def workflow_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index(WORKFLOW[0]) : text.index(WORKFLOW[1])]
    blocks = [code for skipped, code in BLOCK.findall(section) if not skipped]
    return [b for b in blocks if "syft_compat" not in b]  # covered by the syft_compat tests


def test_the_readme_workflows_run_as_written(server: EmbeddedSite) -> None:
    assert OWNER_EMAIL in README.read_text()  # the owner the snippets connect as
    blocks = workflow_blocks()
    assert len(blocks) >= 4, "the owner, researcher, reviewer and result snippets"
    real_df, mock_df = pings_tables()
    namespace: dict[str, Any] = {
        "owner_password": OWNER_PASSWORD,
        "real_df": real_df,
        "mock_df": mock_df,
    }
    for number, code in enumerate(blocks):
        code = code.replace("http://127.0.0.1:8080", server.url)
        # Like a notebook cell: the kit reads a function's source back with inspect.
        name = f"<README.md block {number}>"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        exec(compile(code, name, "exec"), namespace)  # noqa: S102 - our own README

    released = namespace["req"]
    assert released.state == "released"
    assert 18 <= released.result() <= 90  # a noised mean of ages clamped to [18, 90]
    left = {b["dataset"]: b for b in namespace["site"].budgets()}["Pings"]
    # the data-blind mean (1.0) and the raw total the reviewer approved (0.5)
    assert (left["spent_epsilon"], left["remaining_epsilon"]) == pytest.approx((1.5, 1.5))
