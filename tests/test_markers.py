"""`make test` runs the `timed` and `serial` tests from the Makefile's lists of files
(``TIMED_FILES``, ``SERIAL_FILES``) so as not to collect the whole suite three times: a
test marked in a file missing from its list would never run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: how each marker is spelled in the tests (test_execution_sandbox names `serial` for its
#: machine-wide checks)
SPELLINGS = {"TIMED": ("mark." + "timed",), "SERIAL": ("mark." + "serial", "MACHINE" + "_WIDE")}


def listed(kind: str) -> set[str]:
    found = re.search(rf"^{kind}_FILES := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, f"no {kind}_FILES in the Makefile"
    return set(found.group(1).split())


def test_every_file_with_timed_or_serial_tests_is_in_the_makefiles_list() -> None:
    for kind, spellings in SPELLINGS.items():
        marked = {
            str(path.relative_to(ROOT))
            for path in (ROOT / "tests").glob("test_*.py")
            if any(s in path.read_text() for s in spellings)
        }
        assert marked == listed(kind), kind
