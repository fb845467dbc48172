"""The benchmark table and timing summary, in numpy and pandas only so both sides share them.

PySyft 0.9.5 runs in its own virtualenv (``bench/.venv-syft``) that cannot import the
project, so the table generator lives here with no project imports; the datasite side can
import it too and both sides then measure the very same bytes.

    >>> make_table(3).columns.tolist()
    ['id', 'age', 'income', 'score', 'group']
"""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd

#: The steps both sides add up to "the cycle" (our policy check and PySyft's login are
#: reported beside it, having no twin).
CYCLE_STEPS = ("upload", "submit", "approve", "run", "fetch")
REAL_SEED = 0
MOCK_SEED = 99
MOCK_ROWS = 1_000


def make_table(rows: int, seed: int = REAL_SEED) -> pd.DataFrame:
    """Deterministic 5-column table: id, age (18..89), income, score, group (0..9)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "age": rng.integers(18, 90, rows).astype("int64"),
            "income": rng.normal(50_000, 15_000, rows),
            "score": rng.random(rows),
            "group": rng.integers(0, 10, rows).astype("int64"),
        }
    )


def make_mock() -> pd.DataFrame:
    """The public mock that goes with the real table: same schema, other seed, 1,000 rows."""
    return make_table(MOCK_ROWS, seed=MOCK_SEED)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), NaN for no samples."""
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per step: p50, p95, mean and the sample count, in seconds."""
    return {
        step: {
            "p50": percentile(v, 50),
            "p95": percentile(v, 95),
            "mean": statistics.fmean(v),
            "n": len(v),
        }
        for step, v in samples.items()
    }
