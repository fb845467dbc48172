"""Fitted trees load through the reviewed allowlist, and only sound ones.

``sklearn.tree._tree.Tree`` is trusted by name (``TRUSTED_TYPES``), so PySyft's tutorial
needs no extra ``trusted=`` entry for its forest, in its own ``skops.io.loads`` calls
(``trust_reviewed_types_in_skops``, installed by the sandbox's worker and by
``syft_compat``) or when the site decodes a result (``load_model``). scikit-learn follows
a tree's node arrays without bounds checks, so ``load_model`` refuses a tree whose
nodes point outside it before anything can predict with it.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor
from skops.io import dumps

from datasite.contract.results import UntrustedModelError, load_model


def forest() -> RandomForestRegressor:
    rng = np.random.default_rng(0)
    return RandomForestRegressor(n_estimators=3, random_state=0).fit(
        rng.random((40, 3)), rng.random(40)
    )


def test_the_tutorials_own_loads_calls_work_once_syft_compat_is_imported() -> None:
    """A fresh interpreter: skops alone refuses the forest; after the import, the
    tutorial's calls load it, and a type outside the allowlist is still refused."""
    script = """
import numpy as np
from sklearn.ensemble import RandomForestRegressor
from skops.io import dumps
m = RandomForestRegressor(n_estimators=2, random_state=0).fit(np.eye(4), np.arange(4.0))
data = dumps(m)
import skops.io
try:
    skops.io.loads(data, trusted=type(m))
    print("skops alone: loaded")
except Exception as exc:
    print("skops alone:", type(exc).__name__)
from researcher_kit import syft_compat as sy
from skops.io import loads
print(type(loads(data, trusted=type(m))).__name__)
print(type(loads(data, trusted="sklearn.ensemble._forest.RandomForestRegressor")).__name__)
from sklearn.ensemble import HistGradientBoostingRegressor
boosted = HistGradientBoostingRegressor(max_iter=2).fit(np.eye(4), np.arange(4.0))
try:  # its TreePredictor is not on the allowlist: skops refuses it as before
    loads(dumps(boosted), trusted=type(boosted))
    print("TreePredictor: loaded")
except Exception as exc:
    print("TreePredictor:", type(exc).__name__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == [
        "skops alone: UntrustedTypesFoundException",
        "RandomForestRegressor",
        "RandomForestRegressor",
        "TreePredictor: UntrustedTypesFoundException",
    ], done.stdout


def test_a_forest_loads_through_the_allowlist() -> None:
    model = forest()
    loaded = load_model(dumps(model))
    X = np.random.default_rng(1).random((5, 3))
    np.testing.assert_allclose(loaded.predict(X), model.predict(X))


def _with_nodes(model: DecisionTreeRegressor, change) -> DecisionTreeRegressor:  # type: ignore[no-untyped-def]
    """A copy of ``model`` whose tree's node array went through ``change``."""
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    change(nodes)
    tree = type(model.tree_)(
        model.tree_.n_features, np.array([1], dtype=np.intp), model.tree_.n_outputs
    )
    tree.__setstate__({**state, "nodes": nodes})
    crafted = copy.deepcopy(model)
    crafted.tree_ = tree
    return crafted


def _inner(nodes) -> int:  # type: ignore[no-untyped-def]
    return int(np.argmax(nodes["left_child"] > 0))


@pytest.mark.parametrize(
    "change",
    [
        lambda n: n["left_child"].__setitem__(0, 10**6),  # a child past the end
        lambda n: n["right_child"].__setitem__(0, 0),  # a loop back to the root
        lambda n: n["feature"].__setitem__(_inner(n), 7),  # a feature the model lacks
        lambda n: n["feature"].__setitem__(_inner(n), -5),
    ],
)
def test_a_tree_that_points_outside_itself_is_refused(change) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    model = DecisionTreeRegressor(max_depth=3, random_state=0).fit(
        rng.random((60, 3)), rng.random(60)
    )
    load_model(dumps(model))  # the sound one loads
    with pytest.raises(UntrustedModelError, match="point outside"):
        load_model(dumps(_with_nodes(model, change)))
    crafted_forest = forest()
    crafted_forest.estimators_[1] = _with_nodes(model, change)
    with pytest.raises(UntrustedModelError, match="point outside"):
        load_model(dumps(crafted_forest))
