"""A loss-threshold membership-inference attack on a returned model, run before release.

The site does not know which rows the researcher trained the released model on, so it
attacks the *training procedure*: a copy of the model with the same hyperparameters
(``sklearn.base.clone``, so a diffprivlib model keeps its epsilon and bounds) is fitted on
a random half of the real table (members) and scored on the other half (non-members).
Each row's loss (squared error for a regressor, log-loss of the true class for a
classifier) is a membership score: lower loss, more likely a member. The attack's AUC and
its advantage (the largest TPR - FPR over thresholds) go in the owner's report; a non-DP
model above the policy's ``mia_max_auc`` is withheld. sacroml (LiRA, shadow models) would
serve better once torch can be an optional extra; this is its simplest attack.

The label is the real column the released model predicts best among the table's columns
that are not its features (a classifier's labels must be among its ``classes_``). The
released model itself is never refitted or changed.

>>> import numpy as np
>>> round(attack_auc(np.array([0.0, 0.0]), np.array([1.0, 2.0]))[0], 2)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class AttackReport:
    model: str
    label: str | None
    auc: float | None
    advantage: float | None
    members: int = 0
    nonmembers: int = 0
    note: str = ""

    def describe(self) -> str:
        if self.auc is None:
            return f"membership attack on {self.model}: not run ({self.note})"
        return (
            f"membership attack (loss threshold) on {self.model}, label {self.label}: "
            f"AUC {self.auc:.3f}, advantage {self.advantage:.3f} "
            f"({self.members} members, {self.nonmembers} non-members)"
        )


def attack_auc(member_loss: Any, nonmember_loss: Any) -> tuple[float, float]:
    """(AUC, advantage) of ``-loss`` as a score for membership."""
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = -np.nan_to_num(np.concatenate([member_loss, nonmember_loss]), nan=1e6, posinf=1e6)
    truth = np.r_[np.ones(len(member_loss)), np.zeros(len(nonmember_loss))]
    fpr, tpr, _ = roc_curve(truth, scores)
    return float(roc_auc_score(truth, scores)), float(np.max(tpr - fpr))


def _losses(model: Any, x: Any, y: Any) -> Any:
    import numpy as np

    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        proba = model.predict_proba(x)
        index = {c: i for i, c in enumerate(model.classes_)}
        cols = np.array([index.get(v, -1) for v in y])
        p = np.where(cols >= 0, proba[np.arange(len(y)), np.maximum(cols, 0)], 0.0)
        return -np.log(np.clip(p, 1e-12, 1.0))
    return (np.asarray(model.predict(x), dtype=float) - np.asarray(y, dtype=float)) ** 2


def _features(model: Any, raw: pd.DataFrame) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        names = [str(n) for n in names]
        return names if all(n in raw.columns for n in names) else None
    width = getattr(model, "n_features_in_", None)
    numeric = [c for c in raw.columns if raw[c].dtype.kind in "biuf"]
    return None if width is None else numeric[:width] if len(numeric) > width else None


def _label(model: Any, raw: pd.DataFrame, features: list[str]) -> str | None:
    import warnings

    import numpy as np

    best, best_score = None, -np.inf
    x = raw[features].to_numpy(float)
    classes = set(getattr(model, "classes_", []))
    for column in raw.columns:
        if column in features or raw[column].dtype.kind not in "biuf":
            continue
        y = raw[column].to_numpy()
        if classes and not set(np.unique(y)) <= classes:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                score = float(model.score(x, y))
        except Exception:  # noqa: BLE001 - a column the model cannot score is not its label
            continue
        if score > best_score:
            best, best_score = str(column), score
    return best


def attack_model(model: Any, raw: pd.DataFrame, seed: int = 0) -> AttackReport:
    """Attack a copy of ``model`` trained the same way on half of ``raw`` (see above)."""
    import warnings

    import numpy as np
    from sklearn.base import clone

    name = f"{type(model).__module__}.{type(model).__qualname__}"
    raw = raw.reset_index(drop=True).dropna()
    features = _features(model, raw)
    if features is None:
        return AttackReport(name, None, None, None, note="its features are not table columns")
    label = _label(model, raw, features)
    if label is None:
        return AttackReport(name, None, None, None, note="no table column is its label")
    order = np.random.default_rng(seed).permutation(len(raw))
    half = len(raw) // 2
    members, outside = raw.iloc[order[:half]], raw.iloc[order[half:]]
    shadow = clone(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shadow.fit(members[features], members[label].to_numpy())
        inside_loss = _losses(shadow, members[features], members[label].to_numpy())
        outside_loss = _losses(shadow, outside[features], outside[label].to_numpy())
    auc, advantage = attack_auc(inside_loss, outside_loss)
    return AttackReport(name, label, auc, advantage, len(members), len(outside))


def is_dp_model(model: Any) -> bool:
    """diffprivlib models carry their own DP guarantee; the attack is evidence only."""
    return type(model).__module__.startswith("diffprivlib.")
