"""Glauber and pivot chains: exact stationarity, exact laws by enumeration, errors.

Checks: G1 exact law by enumeration (G-tests), G2 the one-step kernel built
from the implementation's own probabilities is exactly stationary (and reversible for Glauber),
G6 the pivot root marginal is ∝ h_root (subtree DP), G8 bipartite networks need the lazy chain.
The test graphs are weighted, non-regular and non-bipartite, with random node weights α, so the
uniform-root shortcut of the authors' code fails (shown below, which also shows the G-tests have
power).

Every chain test starts all chains at one low-probability state x*, runs T steps with T chosen
from the exact kernel so that TV(δ_{x*} P^T, π) < 1e-3, and G-tests (p > 1e-3) both the
empirical law after one step against the row P[x*] (ties the sampling code to the probability
function) and the law after T steps against π.
"""

import functools
import itertools
import os
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
import scipy.stats

import psample
from psample.errors import InitialPointError, MotifError, NetworkError, ShapeError
from psample.graphs import glauber_chain, pivot_chain
from psample.graphs.embeddings import initial_embeddings
from psample.graphs.homomorphism import HomomorphismState, is_homomorphism, log_weight
from psample.graphs.motif import Motif
from psample.graphs.network import Network, sample_neighbour
from psample.graphs.pivot import PivotInfo
from psample.graphs.transitions import glauber_transition_probabilities, pivot_transition_probabilities

NUM_CHAINS = 4000
TV_BUDGET = 1e-3
P_MIN = 1e-3


# ---------------------------------------------------------------------- test networks
def weighted_graph():
    """K5 minus the edge 0-3, a self-loop at 4, weights U(0.5, 2), α ~ Dirichlet(5)."""
    rng = np.random.default_rng(0)
    n = 5
    A = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        if (i, j) != (0, 3):
            A[i, j] = A[j, i] = rng.uniform(0.5, 2.0)
    A[4, 4] = 1.0
    return A, rng.dirichlet(5.0 * np.ones(n))


def weighted_digraph():
    """A directed weighted graph on 5 nodes (about half the arcs, one self-loop), random α."""
    rng = np.random.default_rng(7)
    n = 5
    A = rng.uniform(0.5, 2.0, (n, n)) * (rng.random((n, n)) < 0.55)
    np.fill_diagonal(A, 0.0)
    A[2, 2] = 0.8
    return A, rng.dirichlet(5.0 * np.ones(n))


def weighted_even_cycle():
    """C_8 with weights U(0.5, 2) and random α: bipartite."""
    rng = np.random.default_rng(3)
    n = 8
    A = np.zeros((n, n))
    for i in range(n):
        A[i, (i + 1) % n] = A[(i + 1) % n, i] = rng.uniform(0.5, 2.0)
    return A, rng.dirichlet(5.0 * np.ones(n))


GRAPHS = {"weighted": weighted_graph, "directed": weighted_digraph, "even_cycle": weighted_even_cycle}

MOTIFS = {
    "path3": lambda: Motif.path(3),
    "path3_middle": lambda: Motif.path(3).rooted_at(1),
    "star4": lambda: Motif.star(4),
    "cycle3": lambda: Motif.cycle(3),
    "single": lambda: Motif.path(1),
    # x_1 -> x_0 and x_1 -> x_2, rooted at 0: node 1 is drawn among the in-neighbours of x_0.
    "directed_tree": lambda: Motif.from_edges([(1, 0), (1, 2), (2, 3)], directed=True).rooted_at(0),
    "directed_cycle3": lambda: Motif.from_edges([(0, 1), (1, 2), (2, 0)], directed=True),
}

# name: (graph, motif, chain, lazy)
CONFIGS = {
    "glauber-path3": ("weighted", "path3", "glauber", False),
    "glauber-star4": ("weighted", "star4", "glauber", False),
    "glauber-cycle3": ("weighted", "cycle3", "glauber", False),
    "glauber-single": ("weighted", "single", "glauber", False),
    "glauber-directed_cycle3": ("directed", "directed_cycle3", "glauber", False),
    "pivot-path3": ("weighted", "path3", "pivot", False),
    "pivot-path3_middle": ("weighted", "path3_middle", "pivot", False),
    "pivot-star4": ("weighted", "star4", "pivot", False),
    "pivot-single": ("weighted", "single", "pivot", False),
    "pivot-directed_tree": ("directed", "directed_tree", "pivot", False),
    "lazy_pivot-even_cycle-path3": ("even_cycle", "path3", "pivot", True),
}


# ---------------------------------------------------------------------- exact references
def enumerate_law(A, alpha, motif):
    """All maps [k] -> [n] and π ∝ Π α(x_i) Π A(x_i, x_j) (plain numpy, not the library)."""
    n, k = len(alpha), motif.num_nodes
    states = np.array(list(itertools.product(range(n), repeat=k)), dtype=np.int32).reshape(-1, k)
    weight = np.prod(alpha[states], axis=1)
    for i, j in motif.edges:
        weight = weight * A[states[:, i], states[:, j]]
    return states, weight / weight.sum()


@functools.cache
def setup(name):
    """Network, motif, algorithm, enumerated law and the exact kernel on the support."""
    graph, motif_name, chain, lazy = CONFIGS[name]
    A, alpha = GRAPHS[graph]()
    net = Network.from_adjacency(A, alpha)
    motif = MOTIFS[motif_name]()
    states, pi = enumerate_law(A, alpha, motif)
    support = np.flatnonzero(pi > 0)
    targets = jnp.asarray(states)
    if chain == "glauber":
        algorithm = glauber_chain(net, motif)
        row = lambda x: glauber_transition_probabilities(net, motif, x, targets)  # noqa: E731
    else:
        algorithm = pivot_chain(net, motif, lazy=lazy)
        row = lambda x: pivot_transition_probabilities(net, motif, x, targets, lazy=lazy)  # noqa: E731
    P = np.asarray(jax.jit(jax.vmap(row))(targets[support]))[:, support]
    return dict(
        net=net,
        motif=motif,
        A=A,
        alpha=alpha,
        states=states[support],
        pi=pi[support],
        P=P,
        algorithm=algorithm,
        n=len(alpha),
    )


def state_index(embeddings, n, states):
    """Row of ``states`` for each embedding (-1 if absent)."""
    k = states.shape[1]
    lookup = -np.ones(n**k, dtype=np.int64)
    lookup[np.ravel_multi_index(states.T, (n,) * k)] = np.arange(len(states))
    return lookup[np.ravel_multi_index(np.asarray(embeddings).T, (n,) * k)]


def g_test_pvalue(counts, probs):
    """G-test of counts against probabilities, pooling cells expected below 5."""
    expected = counts.sum() * probs
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert counts[probs == 0].sum() == 0, "mass on a state of probability 0"
    return scipy.stats.power_divergence(obs, exp, lambda_="log-likelihood").pvalue


def burn_in(P, pi, start, budget=TV_BUDGET, max_steps=2000):
    """Smallest multiple of 10 steps T with TV(δ_start P^T, π) < budget, from the exact kernel."""
    dist = np.zeros(P.shape[0])
    dist[start] = 1.0
    for t in range(1, max_steps + 1):
        dist = dist @ P
        if t % 10 == 0 and 0.5 * np.abs(dist - pi).sum() < budget:
            return t
    raise AssertionError(f"kernel did not reach TV < {budget} in {max_steps} steps")


def run_chains(algorithm, start, num_chains, num_steps, key):
    """All chains from ``start``: (states after one step, final states, info means over steps)."""
    starts = jnp.tile(jnp.asarray(start, jnp.int32), (num_chains, 1))

    @jax.jit
    def run(starts, key):
        states = jax.vmap(algorithm.init)(starts)

        def body(carry, step_key):
            states, first, t = carry
            states, info = jax.vmap(algorithm.step)(jax.random.split(step_key, num_chains), states)
            first = jax.tree.map(lambda a, b: jnp.where(t == 0, a, b), states, first)
            return (states, first, t + 1), jax.tree.map(jnp.mean, info)

        (final, first, _), info = jax.lax.scan(body, (states, states, 0), jax.random.split(key, num_steps))
        return first, final, jax.tree.map(jnp.mean, info)

    return run(starts, key)


# ---------------------------------------------------------------------- G2: exact kernels
@pytest.mark.heavy
@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_step_kernel_is_exactly_stationary(name):
    """π P = π to 1e-12 with P built from the implementation's probability functions."""
    s = setup(name)
    P, pi = s["P"], s["pi"]
    assert np.all(P >= -1e-15)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert np.max(np.abs(pi @ P - pi)) < 1e-12
    assert np.max(np.diag(P)) < 1.0 - 1e-3  # every state can move
    if CONFIGS[name][2] == "glauber":  # heat-bath updates are reversible
        flow = pi[:, None] * P
        assert np.max(np.abs(flow - flow.T)) < 1e-12


def test_even_cycle_non_lazy_pivot_is_periodic_and_refused():
    """G8: on C_8 the non-lazy pivot kernel has eigenvalue -1; the constructor refuses it."""
    A = nx.to_numpy_array(nx.cycle_graph(8))  # regular: every proposal is accepted
    alpha = np.full(8, 1 / 8)
    net = Network.from_adjacency(A, alpha)
    motif = Motif.path(3)
    states, pi = enumerate_law(A, alpha, motif)
    support = states[pi > 0]
    P = np.asarray(jax.jit(jax.vmap(lambda x: pivot_transition_probabilities(net, motif, x, support)))(support))
    assert np.min(np.real(np.linalg.eigvals(P))) < -1 + 1e-9
    lazy = setup("lazy_pivot-even_cycle-path3")["P"]
    assert np.min(np.real(np.linalg.eigvals(lazy))) > -1e-9
    with pytest.raises(NetworkError, match=r"bipartite.*lazy=True"):
        pivot_chain(net, motif)
    with pytest.raises(NetworkError, match=r"bipartite.*lazy=True"):
        pivot_chain(Network.from_adjacency(*weighted_even_cycle()), motif)


def test_pivot_root_marginal_is_subtree_partition_function():
    """G6 (exact part): the enumerated root marginal equals h_root / Σ h_root by the subtree DP."""
    for name in ["pivot-path3_middle", "pivot-star4", "pivot-directed_tree"]:
        s = setup(name)
        A, alpha, motif = s["A"], s["alpha"], s["motif"]
        h = np.tile(alpha, (motif.num_nodes, 1))
        for c in motif.order[::-1][:-1]:
            p = motif.parent[c]
            h[p] *= (A @ h[c]) if motif.parent_edge_forward[c] else (A.T @ h[c])
        marginal = np.bincount(s["states"][:, motif.root], weights=s["pi"], minlength=s["n"])
        np.testing.assert_allclose(marginal, h[motif.root] / h[motif.root].sum(), atol=1e-14)


def test_log_weight_and_is_homomorphism_match_enumeration():
    for graph, motif_name in [("weighted", "star4"), ("directed", "directed_tree")]:
        A, alpha = GRAPHS[graph]()
        net = Network.from_adjacency(A, alpha)
        motif = MOTIFS[motif_name]()
        n, k = len(alpha), motif.num_nodes
        states = np.array(list(itertools.product(range(n), repeat=k)), dtype=np.int32)
        weight = np.prod(alpha[states], axis=1)
        edges_ok = np.ones(len(states), bool)
        for i, j in motif.edges:
            weight = weight * A[states[:, i], states[:, j]]
            edges_ok &= A[states[:, i], states[:, j]] > 0
        def both_fn(x, net=net, motif=motif):
            return log_weight(net, motif, x), is_homomorphism(net, motif, x)

        both = jax.jit(jax.vmap(both_fn))
        log_w, is_hom = both(jnp.asarray(states))
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(np.asarray(log_w), np.log(weight), rtol=1e-12)
        np.testing.assert_array_equal(np.asarray(is_hom), edges_ok)


# ---------------------------------------------------------------------- G1: exact laws
FAST_LAW_CONFIGS = ["glauber-star4", "glauber-cycle3", "pivot-path3", "lazy_pivot-even_cycle-path3"]
SLOW_LAW_CONFIGS = [
    "glauber-path3",
    "glauber-directed_cycle3",
    "pivot-path3_middle",
    "pivot-star4",
    "pivot-directed_tree",
    "glauber-single",
    "pivot-single",
]


@pytest.mark.parametrize("name", FAST_LAW_CONFIGS + [pytest.param(n, marks=pytest.mark.slow) for n in SLOW_LAW_CONFIGS])
def test_exact_law(name):
    s = setup(name)
    P, pi, states = s["P"], s["pi"], s["states"]
    start = int(np.argmin(pi))  # the least likely homomorphism: a hard start
    num_steps = burn_in(P, pi, start)
    first, final, info = run_chains(
        s["algorithm"], states[start], NUM_CHAINS, num_steps, jax.random.PRNGKey(zlib.crc32(name.encode()))
    )
    # One step from x*: the sampler's transition law is the row the stationarity check used.
    first_idx = state_index(first.position, s["n"], states)
    assert np.all(first_idx >= 0)
    assert g_test_pvalue(np.bincount(first_idx, minlength=len(pi)), P[start]) > P_MIN
    # After T steps: π.
    final_idx = state_index(final.position, s["n"], states)
    assert np.all(final_idx >= 0) and np.all(np.isfinite(final.logdensity))
    counts = np.bincount(final_idx, minlength=len(pi))
    assert g_test_pvalue(counts, pi) > P_MIN
    assert np.mean(final_idx != start) > 0.5  # the chains left x*
    if hasattr(info, "is_accepted"):
        assert float(info.is_accepted) > 0.1
    if CONFIGS[name][2] == "pivot":
        # G6 (Monte Carlo part): root frequencies ∝ h_root.
        root = final.position[:, s["motif"].root]
        root_probs = np.bincount(states[:, s["motif"].root], weights=pi, minlength=s["n"])
        assert g_test_pvalue(np.bincount(np.asarray(root), minlength=s["n"]), root_probs) > P_MIN


def uniform_root_kernel(net, motif):
    """The authors' default pivot rule: simple-random-walk root accepted with min(1, deg x/deg y)
    (a uniform root), children by neighbour steps; only exact on regular graphs."""
    degree = jnp.asarray(np.diff(np.asarray(net.sym.indptr)))
    unit = Network.from_adjacency(net.to_dense() + net.to_dense().T > 0)  # uniform neighbour picks
    root = motif.root

    def step(key, state):
        key_root, key_accept, *keys = jax.random.split(key, motif.num_nodes + 1)
        x = state.position
        y = x.at[root].set(sample_neighbour(unit, key_root, x[root]))
        for c in motif.order[1:]:
            y = y.at[c].set(sample_neighbour(net, keys[c - 1], y[motif.parent[c]]))
        accept = jax.random.uniform(key_accept) < degree[x[root]] / degree[y[root]]
        new = jnp.where(accept, y, x)
        # (logdensity is not tracked: this test only reads the embeddings)
        return HomomorphismState(new, state.logdensity), PivotInfo(0.0, accept, False)

    return step


def test_uniform_root_rule_of_the_authors_code_fails_the_exact_law_test():
    """Same graph, motif, start, T and chains as the exact pivot test: the G-test rejects."""
    s = setup("pivot-path3")
    start = int(np.argmin(s["pi"]))
    num_steps = burn_in(s["P"], s["pi"], start)
    algorithm = type(s["algorithm"])(s["algorithm"].init, uniform_root_kernel(s["net"], s["motif"]))
    _, final, info = run_chains(algorithm, s["states"][start], NUM_CHAINS, num_steps, jax.random.PRNGKey(5))
    idx = state_index(final.position, s["n"], s["states"])
    assert float(info.is_accepted) > 0.1
    assert g_test_pvalue(np.bincount(idx, minlength=len(s["pi"])), s["pi"]) < 1e-10


# ---------------------------------------------------------------------- runner, starts, errors
def test_initial_embeddings_are_homomorphisms():
    for graph, motif_name in [("weighted", "cycle3"), ("directed", "directed_tree")]:
        A, alpha = GRAPHS[graph]()
        net = Network.from_adjacency(A, alpha)
        motif = MOTIFS[motif_name]()
        x0 = initial_embeddings(net, motif, jax.random.PRNGKey(1), 64)
        assert x0.shape == (64, motif.num_nodes) and x0.dtype == jnp.int32
        weights = np.prod(alpha[np.asarray(x0)], axis=1)
        for i, j in motif.edges:
            weights = weights * A[np.asarray(x0)[:, i], np.asarray(x0)[:, j]]
        assert np.all(weights > 0)
        assert len({tuple(r) for r in np.asarray(x0).tolist()}) > 1  # random, not one fixed map


def test_initial_embedding_errors():
    chain = Network.from_adjacency(np.array([[0.0, 1.0], [0.0, 0.0]]))  # one arc 0 -> 1
    directed_path = Motif.from_edges([(0, 1), (1, 2)], directed=True)
    with pytest.raises(NetworkError, match="no homomorphism"):
        initial_embeddings(chain, directed_path, jax.random.PRNGKey(0), 4)
    even_cycle = Network.from_networkx(nx.cycle_graph(8))
    with pytest.raises(InitialPointError, match="max_attempts=5"):
        initial_embeddings(even_cycle, Motif.cycle(3), jax.random.PRNGKey(0), 4, max_attempts=5)
    net = Network.from_adjacency(weighted_graph()[0])
    with pytest.raises(Exception, match="num_chains"):
        initial_embeddings(net, Motif.path(3), jax.random.PRNGKey(0), 0)


def test_constructor_errors():
    net = Network.from_adjacency(weighted_graph()[0])
    with pytest.raises(MotifError, match="glauber"):
        pivot_chain(net, Motif.cycle(4))
    with pytest.raises(NetworkError, match="Network"):
        glauber_chain(np.ones((3, 3)), Motif.path(3))
    with pytest.raises(MotifError, match="Motif"):
        pivot_chain(net, nx.path_graph(3))
    with pytest.raises(ShapeError, match=r"shape \(3,\)"):
        glauber_chain(net, Motif.path(3)).init(jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ShapeError, match="integer"):
        pivot_chain(net, Motif.path(3)).init(jnp.zeros(3))


def test_pivot_enters_the_support_and_glauber_keeps_stuck_nodes():
    A, alpha = weighted_graph()
    net = Network.from_adjacency(A, alpha)
    outside = jnp.array([0, 3, 0], jnp.int32)  # A(0, 3) = 0: not a homomorphism
    algorithm = pivot_chain(net, Motif.path(3))
    state = algorithm.init(outside)
    assert state.logdensity == -jnp.inf
    step = jax.jit(algorithm.step)
    for key in jax.random.split(jax.random.PRNGKey(0), 8):
        new, info = step(key, state)
        assert bool(info.is_accepted) and np.isfinite(new.logdensity)
        new_state = algorithm.init(new.position)  # init computes the log weight from scratch
        np.testing.assert_allclose(new.logdensity, new_state.logdensity, rtol=1e-12)
    # Glauber for a triangle on the path 0-1-2-3 from (0, 1, 3): nodes 1 and 2 each need a common
    # neighbour of two images that have none, so their conditionals are all zero and x stays.
    path = Network.from_networkx(nx.path_graph(4))
    chain = glauber_chain(path, Motif.cycle(3))
    state = chain.init(jnp.array([0, 1, 3], jnp.int32))
    step = jax.jit(chain.step)
    nodes = set()
    for key in jax.random.split(jax.random.PRNGKey(1), 12):
        new, info = step(key, state)
        node = int(info.node)
        nodes.add(node)
        assert bool(info.is_stuck) == (node in (1, 2))
        expected = [0, 1, 3] if node in (1, 2) else [2, 1, 3]  # node 0 -> the only choice, 2
        np.testing.assert_array_equal(new.position, expected)
    assert nodes == {0, 1, 2}


def test_runs_through_psample_sample():
    A, alpha = weighted_graph()
    net = Network.from_adjacency(A, alpha)
    motif = Motif.path(3)
    algorithm = pivot_chain(net, motif)
    x0 = jnp.array([[0, 1, 2], [4, 4, 4], [3, 2, 1], [1, 0, 4]], jnp.int32)
    trace = psample.sample(
        algorithm,
        x0,
        jax.random.PRNGKey(1),
        5,
        progress=False,
        chunk_size=5,
        observables={"root": lambda state: state.position[0]},
    )
    assert np.asarray(trace.positions).shape == (4, 5, 3)
    np.testing.assert_array_equal(trace.observables["root"], np.asarray(trace.positions)[..., 0])
    assert np.all(np.isfinite(trace.logdensity))
    with pytest.raises(InitialPointError):
        psample.sample(
            algorithm, x0.at[0].set(jnp.array([0, 3, 0], jnp.int32)), jax.random.PRNGKey(1), 2, progress=False
        )



HUB_HEAVY_SCRIPT = """
import jax, jax.numpy as jnp, networkx as nx
from psample.graphs import glauber_chain, pivot_chain
from psample.graphs.embeddings import initial_embeddings
from psample.graphs.motif import Motif
from psample.graphs.network import Network, edge_weight

assert not jax.config.jax_enable_x64
network = Network.from_networkx(nx.barabasi_albert_graph(100_000, 3, seed=0))
rows = jnp.repeat(jnp.arange(network.num_nodes), jnp.diff(network.out.indptr), total_repeat_length=network.num_edges)
found = jax.jit(jax.vmap(lambda a, b: edge_weight(network, a, b)))(rows, network.out.indices)
assert bool(jnp.all(found == network.out.weights))
motif = Motif.path(4)
starts = initial_embeddings(network, motif, jax.random.PRNGKey(0), 64)
for algorithm in (glauber_chain(network, motif), pivot_chain(network, motif)):
    def one(states, key):
        states, _ = jax.vmap(algorithm.step)(jax.random.split(key, starts.shape[0]), states)
        return states, states.logdensity
    run = jax.jit(lambda key: jax.lax.scan(one, jax.vmap(algorithm.init)(starts), jax.random.split(key, 50))[1])
    assert bool(jnp.all(jnp.isfinite(run(jax.random.PRNGKey(1)))))
print("OK")
"""


@pytest.mark.slow
def test_both_chains_compile_and_stay_in_the_support_on_a_hub_heavy_graph_of_1e5_nodes():
    """Scale guard, in float32 (a fresh process: the test session runs in float64).

    On a Barabási–Albert graph of 10⁵ nodes, unrolled bisections that XLA fused across steps
    once made XLA:CPU compile the initial-embedding loop for many minutes (float32 only); the
    timeout catches that. Every edge must be found by the hash table, and every state of both
    chains must stay a homomorphism.
    """
    env = dict(os.environ, JAX_ENABLE_X64="0", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", HUB_HEAVY_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


# ---------------------------------------------------------------------- extreme uniforms (issue 8 §1)
def zero_mass_ends_network():
    """The weighted K5-minus-an-edge with α = 0 at nodes 0 and 4: most CSR rows start and end
    with an entry of zero mass, so an inverse-CDF draw off by one slot lands on α = 0."""
    A, _ = weighted_graph()
    alpha = np.array([0.0, 0.3, 0.5, 0.2, 0.0])
    return A, alpha, Network.from_adjacency(A, alpha)


@pytest.mark.heavy
@pytest.mark.parametrize("u", [0.0, "below_one"])
@pytest.mark.parametrize("chain", ["glauber", "pivot", "lazy_pivot"])
def test_kernels_with_extreme_injected_uniforms_stay_in_the_support(monkeypatch, chain, u):
    """Every uniform a step draws is forced to 0 or to the largest float below 1.

    ``jax.random.uniform`` returns exactly 0.0 about once in 2²³ float32 draws. At u = 0 the
    draws must take the first candidate of positive weight (never a zero-weight one, and a
    proposal of probability 0 is never accepted: ``u < rate`` is strict); just below 1 the last
    one. The kernels were already right at both ends; this test pins it (and would catch a
    ``u <= rate`` acceptance or a ``log(u)`` draw).
    """
    A, alpha, net = zero_mass_ends_network()
    dtype = net.out.weights.dtype
    value = np.nextafter(np.array(1.0, dtype), np.array(0.0, dtype)) if u == "below_one" else 0.0

    def constant_uniform(key, shape=(), dtype=float, *args, **kwargs):
        return jnp.full(shape, value, dtype)

    motif = Motif.path(3)
    algorithm = glauber_chain(net, motif) if chain == "glauber" else pivot_chain(net, motif, lazy=chain == "lazy_pivot")
    start = jnp.array([1, 2, 3], jnp.int32)  # a homomorphism of positive weight
    state = algorithm.init(start)
    monkeypatch.setattr(jax.random, "uniform", constant_uniform)
    for _ in range(3):
        state, info = algorithm.step(jax.random.PRNGKey(0), state)
        x = np.asarray(state.position)
        assert np.all(alpha[x] > 0) and bool(is_homomorphism(net, motif, state.position)), (chain, u, x)
        assert float(state.logdensity) == pytest.approx(float(log_weight(net, motif, state.position)), rel=1e-12)
    if chain == "glauber":
        # u = 0: motif node 0; just below 1: node k - 1 (the last).
        assert int(info.node) == (0 if u == 0.0 else motif.num_nodes - 1)
    elif chain == "lazy_pivot":
        assert bool(info.is_held) == (u == 0.0)  # u < 1/2 holds
    else:
        assert bool(info.is_accepted) == (u == 0.0 or float(info.acceptance_rate) == 1.0)


@pytest.mark.parametrize("u", [0.0, "below_one", 1.0])
def test_initial_embeddings_with_extreme_injected_uniforms(monkeypatch, u):
    """Root and tree draws of the starting embeddings at u = 0, just below 1, and 1: the root is
    the first / last node that can host it (α > 0), never a trailing node of weight 0. u = 1
    (never returned by the generator) used to give the last node, of weight 0; the others were
    already right."""
    A, alpha, net = zero_mass_ends_network()
    dtype = net.out.weights.dtype
    value = np.nextafter(np.array(1.0, dtype), np.array(0.0, dtype)) if u == "below_one" else u

    def constant_uniform(key, shape=(), dtype=float, *args, **kwargs):
        return jnp.full(shape, value, dtype)

    monkeypatch.setattr(jax.random, "uniform", constant_uniform)
    x0 = np.asarray(initial_embeddings(net, Motif.path(3), jax.random.PRNGKey(0), 4, max_attempts=1))
    assert np.all(alpha[x0] > 0)
    assert np.all(x0[:, 0] == (1 if u == 0.0 else 3))
