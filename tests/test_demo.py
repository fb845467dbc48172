"""``datasite demo`` as a new user sees it: a real subprocess, its transcript read line by
line as it arrives.

- each number is explained as it appears ("… is a noisy count of 442 patients, epsilon
  0.25"), the spent budget is broken down per request, the DP model's accuracy on
  held-out mock rows is given;
- the demo's own DP requests draw no warning from the checker or its audit at the
  default settings (only the raw aggregate, there to be blocked, does);
- no silent wait: every pause longer than ``LONG`` seconds comes right after a line
  saying what is running ("… training the DP model"). This is the issue's "no 15-second
  silent gaps", asserted as what the demo says rather than how fast this machine is.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.one_database]

#: A pause this long must have been announced (the issue allows no 15 s silent gap).
LONG = 8.0
TIMEOUT = 600


@pytest.fixture(scope="module")
def transcript() -> list[tuple[float, str]]:
    """``(seconds since start, line)`` for every line the demo prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "100", "NO_COLOR": "1"}
    started = time.monotonic()
    demo = subprocess.Popen(
        [sys.executable, "-m", "datasite", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(TIMEOUT, demo.kill)
    watchdog.start()
    try:
        assert demo.stdout is not None
        lines = [(time.monotonic() - started, line.rstrip("\n")) for line in demo.stdout]
    finally:
        watchdog.cancel()
    assert demo.wait() == 0, "\n".join(line for _, line in lines[-40:])
    return lines


def prose(lines: list[tuple[float, str]]) -> str:
    """The transcript as running text: Rich wraps at spaces, so joined lines read as
    printed, with runs of spaces (table padding) as one."""
    return re.sub(r"\s+", " ", " ".join(line.strip(" │") for _, line in lines))


def section(lines: list[tuple[float, str]], title: str) -> list[tuple[float, str]]:
    """The lines under one of the demo's ``step`` rules, up to the next rule."""
    start = next(i for i, (_, line) in enumerate(lines) if "─" in line and title in line)
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"^─+ .+ ─+$", lines[i][1])),
        len(lines),
    )
    return lines[start:end]


def test_every_number_is_explained_as_it_appears(transcript) -> None:  # type: ignore[no-untyped-def]
    text = prose(transcript)
    explained = [
        r"On the mock: \d+\.\d is a noisy mean of the 200 mock ages, measured epsilon 0\.5",
        r"DP mean age: \d+\.\d is a noisy mean of the 442 patients' ages, clamped to 18-90, "
        r"epsilon 0\.5",
        r"-?\d+ is a noisy count of 442 patients, epsilon 0\.25; \d+\.\d is a noisy mean BMI "
        r"\(true \d+\.\d\), clamped to 15-45, epsilon 0\.25",
        r"LogisticRegression trained with epsilon 1\.0: accuracy \d+% on 200 held-out mock rows",
        # the spent budget, request by request, then in all
        r"request 1 mean_age released epsilon 0\.50",
        r"request 2 cohort released epsilon 0\.50",
        r"request 3 progression_model released epsilon 1\.00",
        r"bob@uni\.example on Diabetes: spent 2\.00 of 3\.0, 1\.00 left \(the denied request "
        r"spent nothing\)",
    ]
    missing = [pattern for pattern in explained if not re.search(pattern, text)]
    assert not missing, (missing, text[-3000:])


def test_the_demos_own_requests_draw_no_warning(transcript) -> None:  # type: ignore[no-untyped-def]
    checked = prose(section(transcript, "Policy checker and reviewer"))
    assert "Verdict: pass" in checked and "No findings." in checked, checked
    assert "the site's verdict: pass" in prose(transcript)
    # Only the raw aggregate draws findings: it is there to be blocked.
    raw = section(transcript, "A raw aggregate")
    assert "Verdict: blocked" in prose(raw) and "[blocking]" in prose(raw)
    rest = [line for line in transcript if line not in raw]
    warned = [line for _, line in rest if re.search(r"warn|audit stopped", line, re.I)]
    assert not warned, warned


def test_no_silent_gaps(transcript) -> None:  # type: ignore[no-untyped-def]
    assert transcript[0][1].startswith("…"), transcript[0]  # before the first slow step
    silent = [
        (round(later - earlier, 1), before)
        for (earlier, before), (later, _) in zip(transcript, transcript[1:], strict=False)
        if later - earlier > LONG and not before.lstrip().startswith("…")
    ]
    assert not silent, silent
