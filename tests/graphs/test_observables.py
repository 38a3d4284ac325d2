"""Network observables: exact formulas against matrix powers and brute-force enumeration.

Homomorphism densities of trees, average clustering matrices, conditional densities and the
runner observables that read the network (psample.graphs.observables, psample.graphs.exact).
The MCMC estimates against these exact values are in test_estimate.py.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from scipy import stats

from psample.errors import MotifError, NetworkError, ShapeError
from psample.graphs import exact
from psample.graphs import observables as obs
from psample.graphs.homomorphism import HomomorphismState
from psample.graphs.motif import Motif
from psample.graphs.network import Network
from psample.models import graphs as zoo


def bonferroni_z(num_checks: int, alpha: float = 1e-3) -> float:
    """Two-sided z for a family of ``num_checks`` comparisons at overall level ``alpha`` (>= 4)."""
    return max(4.0, float(stats.norm.ppf(1 - alpha / (2 * num_checks))))


def random_network(n=6, directed=False, seed=0, loops=False) -> Network:
    """A small weighted, non-regular network with random node weights."""
    rng = np.random.default_rng(seed)
    A = (rng.random((n, n)) < 0.55) * rng.uniform(0.1, 1.0, (n, n))
    if not loops:
        np.fill_diagonal(A, 0.0)
    if not directed:
        A = np.triu(A, 1) + np.triu(A, 1).T + np.diag(np.diag(A))
    return Network.from_adjacency(A, node_weights=rng.uniform(0.2, 1.0, n))


TREES = [
    Motif.path(1),
    Motif.path(2),
    Motif.path(4),
    Motif.path(3).rooted_at(1),
    Motif.star(4),
    Motif.from_edges([(1, 0), (1, 2), (3, 2)], directed=True),
]


# ------------------------------------------------------------------ exact vs enumeration
@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("motif", TREES, ids=repr)
def test_tree_density_dp_matches_enumeration(motif, directed):
    network = random_network(directed=directed, seed=1 + directed)
    dp = exact.tree_hom_density(network, motif)
    brute = exact.brute_force_density(network, motif)
    assert dp > 0
    assert dp == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_path_macc_and_chd_profile_match_enumeration(k, directed):
    network = random_network(directed=directed, seed=3, loops=True)
    motif = Motif.path(k)
    np.testing.assert_allclose(exact.path_macc(network, k), exact.brute_force_macc(network, motif),
                               rtol=1e-12, atol=1e-15)
    thresholds = [0.0, 0.05, 0.3, 0.5, 0.9, 1.5]
    for i, j in [(0, k - 1), (k - 1, 0), (1, 1)]:
        np.testing.assert_allclose(
            exact.path_chd_profile(network, k, i, j, thresholds),
            exact.brute_force_chd_profile(network, motif, [(i, j)], thresholds), rtol=1e-12, atol=1e-15)
    assert exact.path_hom_density(network, k) == pytest.approx(exact.brute_force_density(network, motif), rel=1e-12)


def test_conditional_density_enumeration_is_ratio_of_densities():
    network = random_network(seed=4)
    F, H = Motif.path(3), Motif.cycle(3)
    value = exact.brute_force_conditional_density(network, F, H)
    assert value == pytest.approx(exact.triangle_chd(network), rel=1e-12)
    assert value == pytest.approx(exact.brute_force_density(network, H) / exact.tree_hom_density(network, F))


def test_path_density_dp_equals_matrix_powers():
    """G3: t(P_k, G) = n^-k 1ᵀ A^(k-1) 1 for uniform α, symmetric 0/1 A, any root."""
    graph = zoo.erdos_renyi(40, 0.15, seed=2)
    A = nx.to_numpy_array(graph)
    n = A.shape[0]
    network = Network.from_networkx(graph)
    for k in range(1, 7):
        powers = np.ones(n) @ np.linalg.matrix_power(A, k - 1) @ np.ones(n) / n**k
        for root in range(k):
            assert exact.tree_hom_density(network, Motif.path(k).rooted_at(root)) == pytest.approx(powers, rel=1e-12)
        assert exact.path_hom_density(network, k) == pytest.approx(powers, rel=1e-12)


def test_triangle_chd_closed_forms():
    """G4 (exact side): tr(A³)/1ᵀA²1 = 6·#triangles/Σ deg² on the unweighted karate club."""
    graph = zoo.karate()
    A = nx.to_numpy_array(graph)
    ones = np.ones(len(A))
    trace_form = np.trace(A @ A @ A) / (ones @ A @ A @ ones)
    triangles = sum(nx.triangles(graph).values()) / 3
    degree_form = 6 * triangles / sum(d * d for _, d in graph.degree())
    assert exact.triangle_chd(graph) == pytest.approx(trace_form, rel=1e-12)
    assert trace_form == pytest.approx(degree_form, rel=1e-12)
    # Homomorphisms allow x_1 = x_3: not the transitivity 6T / Σ d(d-1).
    assert abs(trace_form - nx.transitivity(graph)) > 0.01


def test_macc_closed_form_g5():
    """G5 (exact side): MACC[i,j] = u_iᵀ (A^(j-i) ∘ A) v_j / 1ᵀ A^(k-1) 1 on ER(200, 0.05)."""
    graph = zoo.erdos_renyi(200, 0.05, seed=7)
    A = nx.to_numpy_array(graph)
    ones = np.ones(len(A))
    k = 4
    power = np.linalg.matrix_power
    reference = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            u, v = power(A, i) @ ones, power(A, k - 1 - j) @ ones
            reference[i, j] = reference[j, i] = u @ (power(A, j - i) * A) @ v / (ones @ power(A, k - 1) @ ones)
    np.testing.assert_allclose(exact.path_macc(graph, k), reference, rtol=1e-12, atol=1e-15)
    assert np.all(np.diag(reference) == 0) and np.allclose(np.diag(reference, 1), 1.0)


# ---------------------------------------------------------------- runner observables
def test_runner_observables_read_the_network():
    network = random_network(directed=True, seed=5, loops=True)
    A = network.to_dense()
    x = np.random.default_rng(0).integers(0, network.num_nodes, size=(50, 4))
    states = HomomorphismState(jnp.asarray(x, dtype=jnp.int32), jnp.zeros(len(x)))
    motif = Motif.path(4)
    pairs = [(0, 3), (2, 0)]
    thresholds = np.array([0.0, 0.2, 0.5, 2.0])

    def evaluate(fn):
        return np.asarray(jax.jit(jax.vmap(fn))(states))

    np.testing.assert_allclose(evaluate(obs.patch(network, 4)), A[x[:, :, None], x[:, None, :]])
    weights = np.stack([A[x[:, 0], x[:, 3]], A[x[:, 2], x[:, 0]]], axis=1)
    assert (weights > 0).any() and (weights == 0).any()
    np.testing.assert_allclose(evaluate(obs.edge_weights(network, pairs)), weights)
    np.testing.assert_allclose(evaluate(obs.edge_product(network, pairs)), weights.prod(axis=1))
    np.testing.assert_array_equal(evaluate(obs.threshold_indicators(network, pairs, thresholds)),
                                  weights.min(axis=1)[:, None] >= thresholds[None, :])
    d = np.asarray(network.out.mass)
    np.testing.assert_allclose(evaluate(obs.inverse_out_mass_product(network, motif)),
                               1 / (d[x[:, 0]] * d[x[:, 1]] * d[x[:, 2]]))
    np.testing.assert_array_equal(evaluate(obs.embedding), x)


def test_importance_identity_is_exact_by_enumeration():
    """E_π[Π_c 1/d_c(x_p(c))] = 1/t(F, G), the identity behind the MCMC hom density."""
    network = random_network(directed=True, seed=6)
    out_mass, in_mass = np.asarray(network.out.mass), np.asarray(network.in_.mass)
    for motif in TREES[1:]:
        maps, weights = exact.enumerate_maps(network, motif)
        values = np.ones(len(maps))
        for c in range(motif.num_nodes):
            if motif.parent[c] >= 0:
                mass = out_mass if motif.parent_edge_forward[c] else in_mass
                values /= mass[maps[:, motif.parent[c]]]
        expectation = np.sum(weights * values) / weights.sum()
        assert expectation == pytest.approx(1 / exact.tree_hom_density(network, motif), rel=1e-10)


def test_extra_edges_and_errors():
    np.testing.assert_array_equal(obs.extra_edges(Motif.path(3), Motif.cycle(3)), [[0, 2]])
    np.testing.assert_array_equal(obs.extra_edges(Motif.path(4), Motif.cycle(4)), [[0, 3]])
    with pytest.raises(MotifError, match="nodes"):
        obs.extra_edges(Motif.path(3), Motif.cycle(4))
    with pytest.raises(MotifError, match="missing"):
        obs.extra_edges(Motif.path(4), Motif.star(4))
    with pytest.raises(MotifError, match="no edge"):
        obs.extra_edges(Motif.path(3), Motif.path(3))
    with pytest.raises(ShapeError, match="pairs"):
        obs.edge_weights(random_network(), np.zeros((0, 2)))


def test_exact_values_reject_invalid_weights():
    """One way in: the exact references validate their input like the samplers (NaN included)."""
    with pytest.raises(NetworkError, match="non-finite"):
        exact.tree_hom_density(np.array([[0.0, np.nan], [1.0, 0.0]]), Motif.path(2))
    with pytest.raises(NetworkError, match="negative"):
        exact.path_macc(np.array([[0.0, -1.0], [1.0, 0.0]]), 2)
