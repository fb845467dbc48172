"""The fast paths of ``researcher_kit.dp.synthetic`` give OpenDP's and mbi's own answers.

Each shortcut (the bracketed noise-scale search, the two-kernel mirror descent, the numpy
projection of an independent model, the tree sampler) is checked against the library
code it replaces, on tables small enough to compile in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from researcher_kit.dp import synthetic as S
from researcher_kit.dp._opendp import bracketed_search
from tests.conftest import needs

pytestmark = needs("mbi")


@pytest.mark.parametrize("d_out", [0.0123456, 0.75, 3e-4, 40.0])
def test_the_bracketed_search_finds_opendps_scale_bit_for_bit(d_out: float) -> None:
    import opendp.prelude as dp

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance()
    calls = []

    def make(scale: float):  # type: ignore[no-untyped-def]
        calls.append(scale)
        return space >> dp.t.then_count() >> dp.m.then_laplace(scale)

    expected = dp.binary_search_param(make, 3, d_out, T=float)
    calls.clear()
    found = S._fast_binary_search_param(make, 3, d_out, T=float)
    assert found == expected
    assert make(found).check(3, d_out)
    assert not make(float(np.nextafter(found, 0))).check(3, d_out)
    assert len(calls) < 100


def test_the_bracketed_search_falls_back_to_opendp_when_the_predicate_raises() -> None:
    def predicate(scale: float) -> bool:
        if scale < 4.0:
            raise ValueError("too small")
        return scale >= 5.0

    assert bracketed_search(predicate) == 5.0


def test_the_patches_touch_only_opendps_mbi_modules() -> None:
    from opendp.extras.mbi import _mst, _table
    from opendp.mod import binary_search_chain, binary_search_param

    S._patch_searches()
    assert _mst.binary_search_chain is S._fast_binary_search_chain
    assert _table.binary_search_param is S._fast_binary_search_param
    assert binary_search_chain is not S._fast_binary_search_chain  # the library itself is not
    assert binary_search_param is not S._fast_binary_search_param


def _small_measurements(pairs: bool):  # type: ignore[no-untyped-def]
    from mbi import Domain, LinearMeasurement

    rng = np.random.default_rng(0)
    domain = Domain.fromdict({"a": 3, "b": 4, "c": 5, "d": 2})
    cliques = [("a",), ("b",), ("c",), ("d",)]
    if pairs:
        cliques += [("a", "b"), ("b", "c"), ("c", "d")]
    measured = [
        LinearMeasurement(rng.random(domain.project(c).size()) * 50, c, stddev=3.0) for c in cliques
    ]
    return domain, measured


def test_the_two_kernel_mirror_descent_matches_mbis() -> None:
    from mbi.estimation import mirror_descent

    domain, oneway = _small_measurements(pairs=False)
    first_mbi = mirror_descent(domain, oneway, iters=20)
    first_ours = S._mirror_descent(domain, oneway, iters=20)
    domain, both = _small_measurements(pairs=True)
    theirs = mirror_descent(domain, both, iters=60, potentials=first_mbi.potentials)
    ours = S._mirror_descent(domain, both, iters=60, potentials=first_ours.potentials)
    assert float(ours.total) == pytest.approx(float(theirs.total))
    for clique in theirs.marginals.cliques:
        np.testing.assert_allclose(
            np.asarray(ours.marginals[clique].values),
            np.asarray(theirs.marginals[clique].values),
            rtol=1e-4,
            atol=1e-4,
        )


def test_an_independent_models_projection_is_the_outer_product() -> None:
    from mbi import marginal_oracles

    domain, oneway = _small_measurements(pairs=False)
    model = S._mirror_descent(domain, oneway, iters=20)
    S._patch_independent_projection()
    for attrs in [("a", "c"), ("d", "b", "a")]:
        fast = model.project(attrs)
        exact = marginal_oracles.variable_elimination(model.potentials, attrs, model.total)
        assert fast.domain.attrs == exact.domain.attrs
        np.testing.assert_allclose(
            np.asarray(fast.values), np.asarray(exact.values), rtol=1e-4, atol=1e-4
        )


def test_the_tree_sampler_draws_from_the_models_pair_marginals() -> None:
    domain, both = _small_measurements(pairs=True)
    model = S._mirror_descent(domain, both, iters=60)
    fake = S._sample_tree(model, 40_000, np.random.default_rng(1))
    assert fake is not None and list(fake.columns) == ["a", "b", "c", "d"]
    for clique in [("a", "b"), ("b", "c"), ("c", "d")]:
        expected = np.asarray(model.marginals[clique].values, dtype=float)
        expected = expected / expected.sum()
        shape = expected.shape
        observed = np.zeros(shape)
        np.add.at(observed, tuple(fake[c].to_numpy() for c in clique), 1)
        observed /= observed.sum()
        assert np.abs(observed - expected).sum() / 2 < 0.02  # TVD of 40,000 draws
    # a model with a cycle (or a triple) is left to mbi
    from mbi import Domain, LinearMeasurement

    cyc = Domain.fromdict({"a": 2, "b": 2, "c": 2, "d": 2})  # a triangle and a lone column
    rng = np.random.default_rng(2)
    loop = [
        LinearMeasurement(rng.random(4) * 10, c, stddev=1.0)
        for c in [("a", "b"), ("b", "c"), ("a", "c")]
    ]
    assert (
        S._sample_tree(S._mirror_descent(cyc, loop, iters=5), 10, np.random.default_rng()) is None
    )


def test_a_forest_models_pair_projection_matches_variable_elimination() -> None:
    """AIM's candidate scores: pairs along a path, across trees, and a cycle left to mbi."""
    from mbi import Domain, LinearMeasurement, marginal_oracles

    rng = np.random.default_rng(3)
    domain = Domain.fromdict({"a": 3, "b": 4, "c": 5, "d": 2, "e": 3})
    chain = [("a", "b"), ("c", "b"), ("c", "d"), ("e",)]
    measured = [
        LinearMeasurement(rng.random(domain.project(c).size()) * 50, c, stddev=3.0) for c in chain
    ]
    model = S._mirror_descent(domain, measured, iters=40)
    S._patch_independent_projection()
    for attrs in [("a", "c"), ("d", "a"), ("a", "e"), ("b", "d")]:
        fast = model.project(attrs)
        exact = marginal_oracles.variable_elimination(model.potentials, attrs, model.total)
        np.testing.assert_allclose(
            np.asarray(fast.values), np.asarray(exact.values), rtol=1e-3, atol=1e-3
        )
    loop = [*measured, LinearMeasurement(rng.random(15) * 50, ("a", "c"), stddev=3.0)]
    cyclic = S._mirror_descent(domain, loop, iters=5)
    assert S._forest_pair(cyclic, "a", "d") is None
