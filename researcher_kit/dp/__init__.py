"""The researcher's differential-privacy toolkit: DP statistics, noise, budgets, models.

Every release goes through an OpenDP measurement (or a diffprivlib model), so noise is
drawn by OpenDP's own secure sampler, and every helper records what it spends.

>>> import pandas as pd
>>> from researcher_kit import dp
>>> df = pd.DataFrame({"age": [23, 45, 67, 34] * 250})
>>> with dp.track() as spent:
...     avg = dp.mean(df["age"], bounds=(18, 90), epsilon=0.5)
...     n = dp.count(df, epsilon=0.5)
>>> spent.epsilon
1.0

Privacy units, stated per helper:

* ``count``/``sum``/``mean``/``quantile``/``histogram``: add/remove one person's rows
  (at most ``max_contributions`` of them).
* ``noisy_column``: change one row's value (input privacy, each row noised).
* ``privatize_text``: metric DP per word (or per document), each row privatized on
  its own; word counts and the row count are not hidden (see ``dp/text.py``).
* ``ctx_*``: whatever the Context was bound with (add/remove, ``max_contributions``).
* ``fit_model``: diffprivlib's add/remove-one-row guarantee.
* ``synthesize``: a DP synthetic table (OpenDP's MST/AIM), add/remove, as the aggregates.
* ``train_torch``: Opacus DP-SGD, add/remove one row (group privacy for
  ``max_contributions > 1``, see ``dp/deep.py``); needs the ``.[torch]`` extra.

OpenDP, diffprivlib and skops are imported on first use, so importing this package
is cheap (the site imports it in every sandbox).
"""

from researcher_kit.dp import deep
from researcher_kit.dp.aggregates import count, histogram, mean, quantile, sum
from researcher_kit.dp.budget import Budget, BudgetExceeded
from researcher_kit.dp.context import (
    ctx_count,
    ctx_histogram,
    ctx_mean,
    ctx_quantile,
    ctx_sum,
    local_context,
)
from researcher_kit.dp.deep import train_torch
from researcher_kit.dp.models import MODELS, UntrustedModelError, fit_model, load_model
from researcher_kit.dp.noise import noisy_column
from researcher_kit.dp.spend import SpendEntry, SpendLog, record, total_spend, track
from researcher_kit.dp.synthetic import synthesize
from researcher_kit.dp.text import privatize_text

#: The helpers that release DP outputs (and record spend); everything else in this
#: package (budgets, logs, ``load_model``, ``local_context``) releases nothing.
RELEASE_HELPERS = frozenset(
    {
        "count",
        "sum",
        "mean",
        "quantile",
        "histogram",
        "noisy_column",
        "privatize_text",
        "fit_model",
        "synthesize",
        "train_torch",
        "ctx_count",
        "ctx_sum",
        "ctx_mean",
        "ctx_quantile",
        "ctx_histogram",
    }
)

__all__ = [
    "MODELS",
    "RELEASE_HELPERS",
    "Budget",
    "BudgetExceeded",
    "SpendEntry",
    "SpendLog",
    "UntrustedModelError",
    "count",
    "ctx_count",
    "ctx_histogram",
    "ctx_mean",
    "ctx_quantile",
    "ctx_sum",
    "fit_model",
    "histogram",
    "load_model",
    "local_context",
    "mean",
    "noisy_column",
    "privatize_text",
    "quantile",
    "record",
    "sum",
    "synthesize",
    "total_spend",
    "track",
    "train_torch",
    "deep",
]
