"""Networks and motifs: construction, the jittable edge/neighbour primitives, and every error."""

import itertools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats

from psample.errors import MotifError, NetworkError
from psample.graphs import csr
from psample.graphs.motif import MAX_MOTIF_NODES, Motif
from psample.graphs.network import (
    Network,
    bipartite_components,
    draw_node,
    edge_weight,
    max_degree,
    sample_in_neighbour,
    sample_neighbour,
    sample_node,
)


def weighted_digraph(seed=0, n=6):
    """A directed weighted matrix with a self-loop, an isolated-in node and no symmetry."""
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.5, 2.0, (n, n)) * (rng.random((n, n)) < 0.5)
    A[0, 0] = 1.5
    A[:, n - 1] = 0.0  # node n-1 has no in-neighbour
    A[n - 1, 0] = 0.7
    return A


def all_pairs(fn, n):
    nodes = jnp.arange(n)
    return np.asarray(jax.vmap(jax.vmap(fn, (None, 0)), (0, None))(nodes, nodes))


# ---------------------------------------------------------------------- construction
def test_from_networkx_matches_adjacency_and_node_weights():
    graph = nx.karate_club_graph()  # weighted: attribute "weight"
    for u in graph:
        graph.nodes[u]["mass"] = 1.0 + u
    net = Network.from_networkx(graph, node_weight="mass")
    dense = nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight="weight")
    np.testing.assert_array_equal(net.to_dense(), dense)
    alpha = np.arange(1.0, 35.0) / np.arange(1.0, 35.0).sum()
    np.testing.assert_allclose(net.node_weights, alpha, rtol=1e-14)
    assert net.num_nodes == 34 and not net.directed
    # CSR invariants the primitives rely on: sorted rows, per-row cumulative masses, d(w).
    indptr, indices = np.asarray(net.out.indptr), np.asarray(net.out.indices)
    for w in range(34):
        row = indices[indptr[w] : indptr[w + 1]]
        assert np.all(np.diff(row) > 0)
        masses = dense[w, row] * alpha[row]
        np.testing.assert_allclose(np.asarray(net.out.cum_mass)[indptr[w] : indptr[w + 1]], np.cumsum(masses))
    np.testing.assert_allclose(net.out.mass, dense @ alpha, rtol=1e-13)
    # Unweighted view and the dict / array forms of node weights agree.
    unweighted = Network.from_networkx(graph, weight=None, node_weight={u: 1.0 + u for u in graph})
    np.testing.assert_array_equal(unweighted.to_dense(), (dense > 0).astype(float))
    np.testing.assert_allclose(unweighted.node_weights, alpha, rtol=1e-14)


def test_from_adjacency_dense_sparse_and_jax_agree_and_detect_direction():
    A = weighted_digraph()
    alpha = np.arange(1.0, 7.0)
    nets = [
        Network.from_adjacency(A, alpha),
        Network.from_adjacency(sp.csr_array(A), alpha),
        Network.from_adjacency(sp.coo_matrix(A), alpha),
        Network.from_adjacency(jnp.asarray(A), jnp.asarray(alpha)),
    ]
    for net in nets:
        assert net.directed
        np.testing.assert_array_equal(net.to_dense(), A)
        assert sp.issparse(net.to_scipy())
        np.testing.assert_allclose(net.in_.mass, A.T @ (alpha / alpha.sum()), rtol=1e-13)
        sym = sp.csr_array(
            (np.asarray(net.sym.weights), np.asarray(net.sym.indices), np.asarray(net.sym.indptr)), shape=A.shape
        ).toarray()
        np.testing.assert_allclose(sym, (A + A.T) / 2)
    symmetric = Network.from_adjacency(A + A.T)
    assert not symmetric.directed
    np.testing.assert_allclose(symmetric.node_weights, np.full(6, 1 / 6))
    assert max_degree(nets[0]) == max(np.count_nonzero(A, 0).max(), np.count_nonzero(A, 1).max())


@pytest.mark.parametrize("directed", [False, True])
def test_edge_weight_is_the_matrix_entry_for_every_pair(directed):
    A = weighted_digraph(seed=1)
    A = A if directed else A + A.T
    net = Network.from_adjacency(A)
    got = all_pairs(jax.jit(lambda a, b: edge_weight(net, a, b)), A.shape[0])
    np.testing.assert_array_equal(got, A)


def test_neighbour_and_node_samplers_follow_their_laws():
    """G-tests (p > 1e-3 each, fixed seed) of z ~ A(w,·)α/d(w), A(·,w)α/d_in(w) and z ~ α."""
    A = weighted_digraph(seed=2)
    alpha = np.array([1.0, 2.0, 0.0, 3.0, 1.0, 2.0])  # node 2 has zero weight: never drawn
    net = Network.from_adjacency(A, alpha)
    alpha = alpha / alpha.sum()
    num = 20_000
    keys = jax.random.split(jax.random.PRNGKey(0), num)

    def check(draws, probs):
        counts = np.bincount(np.asarray(draws), minlength=len(probs))
        assert np.all(counts[probs == 0] == 0)
        keep = probs > 0
        if keep.sum() > 1:
            p = scipy.stats.power_divergence(counts[keep], num * probs[keep], lambda_="log-likelihood").pvalue
            assert p > 1e-3

    draw_out = jax.jit(jax.vmap(lambda k, w: sample_neighbour(net, k, w), (0, None)))
    draw_in = jax.jit(jax.vmap(lambda k, w: sample_in_neighbour(net, k, w), (0, None)))
    for w in range(6):
        if A[w] @ alpha > 0:
            check(draw_out(keys, w), A[w] * alpha / (A[w] @ alpha))
        if A[:, w] @ alpha > 0:
            check(draw_in(keys, w), A[:, w] * alpha / (A[:, w] @ alpha))
    assert int(sample_in_neighbour(net, keys[0], 5)) == -1  # no in-neighbour
    check(jax.jit(jax.vmap(lambda k: sample_node(net, k)))(keys), alpha)


def test_bipartite_components():
    assert bipartite_components(Network.from_networkx(nx.cycle_graph(8))) == [list(range(8))]
    assert bipartite_components(Network.from_networkx(nx.cycle_graph(7))) == []
    two = nx.disjoint_union(nx.complete_graph(3), nx.path_graph(3))
    assert bipartite_components(Network.from_networkx(two)) == [[3, 4, 5]]


def test_network_is_a_pytree_that_passes_through_jit():
    net = Network.from_networkx(nx.karate_club_graph())
    total = jax.jit(lambda network: jnp.sum(network.out.mass * network.node_weights))(net)
    np.testing.assert_allclose(total, np.asarray(net.out.mass) @ np.asarray(net.node_weights))


# ---------------------------------------------------------------------- network errors
@pytest.mark.parametrize(
    "adjacency, node_weights, match",
    [
        (np.zeros((0, 0)), None, "0 nodes"),
        (np.zeros((3, 3)), None, "no edge"),
        (np.array([[0.0, -1.0], [1.0, 0.0]]), None, "negative weight"),
        (np.array([[0.0, np.nan], [1.0, 0.0]]), None, "non-finite"),
        (np.array([[0.0, np.inf], [1.0, 0.0]]), None, "non-finite"),
        (np.ones((2, 3)), None, "square"),
        (np.ones((2, 2)), [1.0, -1.0], "node_weights must be finite and >= 0"),
        (np.ones((2, 2)), [0.0, 0.0], "positive finite"),
        (np.ones((2, 2)), [np.nan, 1.0], "finite"),
        (np.ones((2, 2)), [1.0, 2.0, 3.0], r"shape \(2,\)"),
    ],
)
def test_network_errors(adjacency, node_weights, match):
    with pytest.raises(NetworkError, match=match):
        Network.from_adjacency(adjacency, node_weights)


def test_networkx_errors():
    with pytest.raises(NetworkError, match="0 nodes"):
        Network.from_networkx(nx.Graph())
    with pytest.raises(NetworkError, match="no edge"):
        Network.from_networkx(nx.empty_graph(4))
    graph = nx.path_graph(3)
    graph.edges[0, 1]["weight"] = -2.0
    with pytest.raises(NetworkError, match="negative"):
        Network.from_networkx(graph)
    with pytest.raises(NetworkError, match="'mass'"):
        Network.from_networkx(nx.path_graph(3), node_weight="mass")
    with pytest.raises(NetworkError, match="lacks nodes"):
        Network.from_networkx(nx.path_graph(3), node_weight={0: 1.0})
    with pytest.raises(NetworkError, match="networkx graph"):
        Network.from_networkx(np.ones((2, 2)))


# ---------------------------------------------------------------------- motifs
def test_motif_helpers_structure():
    path = Motif.path(4)
    assert path.num_nodes == 4 and path.is_tree and path.root == 0
    np.testing.assert_array_equal(path.edges, [[0, 1], [1, 2], [2, 3]])
    np.testing.assert_array_equal(path.parent, [-1, 0, 1, 2])
    np.testing.assert_array_equal(path.order, [0, 1, 2, 3])
    np.testing.assert_array_equal(path.children_count, [1, 1, 1, 0])

    middle = path.rooted_at(1)  # undirected: re-oriented away from the new root
    np.testing.assert_array_equal(middle.parent, [1, -1, 1, 2])
    assert middle.order[0] == 1 and sorted(map(tuple, middle.edges)) == [(1, 0), (1, 2), (2, 3)]
    np.testing.assert_array_equal(middle.children_count, [0, 2, 1, 0])

    star = Motif.star(4)  # 4 nodes: centre 0 and 3 leaves
    assert star.num_nodes == 4 and star.num_edges == 3
    np.testing.assert_array_equal(star.children_count, [3, 0, 0, 0])

    cycle = Motif.cycle(4)
    assert not cycle.is_tree and cycle.num_edges == 4
    assert cycle.order[0] == 0 and set(cycle.parent[1:]) <= {0, 1, 3}
    # Glauber tables: every node lists all its incident edges, tree parent first.
    for v in range(4):
        listed = set(cycle.neighbour_nodes[v][cycle.neighbour_mask[v]].tolist())
        assert listed == {(v - 1) % 4, (v + 1) % 4}
        if v != 0:
            assert cycle.neighbour_nodes[v, 0] == cycle.parent[v]

    single = Motif.path(1)
    assert single.num_nodes == 1 and single.is_tree and single.num_edges == 0


def test_motif_from_networkx_and_from_edges():
    graph = nx.Graph([("a", "b"), ("b", "c")])
    motif = Motif.from_networkx(graph, root="b")
    assert motif.root == 1 and motif.is_tree and not motif.directed
    assert motif == Motif.path(3).rooted_at(1)
    assert Motif.from_networkx(nx.path_graph(3)) == Motif.path(3)
    assert Motif.from_edges([(2, 1), (1, 0)]) == Motif.path(3)  # unordered pairs, oriented from root
    # A directed tree keeps its orientation, also when re-rooted; edges towards the parent are flagged.
    directed = Motif.from_networkx(nx.DiGraph([(1, 0), (1, 2)]), root=1)
    assert directed.directed and directed.is_tree
    np.testing.assert_array_equal(directed.parent, [-1, 0, 0])  # labels: 1 -> 0, 0 -> 1, 2 -> 2
    rerooted = Motif.from_edges([(1, 0), (1, 2)], directed=True).rooted_at(0)
    np.testing.assert_array_equal(rerooted.edges, [[1, 0], [1, 2]])
    np.testing.assert_array_equal(rerooted.parent_edge_forward, [True, False, True])
    # Directed 2-cycle is not a tree.
    assert not Motif.from_edges([(0, 1), (1, 0)], directed=True).is_tree


def test_motif_is_hashable_static_data():
    motif = Motif.star(3)
    assert hash(motif) == hash(Motif.from_edges([(0, 1), (0, 2)]))
    assert len({motif, Motif.star(3), Motif.path(3)}) == 2
    with pytest.raises(ValueError):
        motif.parent[0] = 3  # read-only arrays

    def count_edges(x, m):
        return x + m.num_edges

    f = jax.jit(lambda x: x + motif.num_edges)
    assert int(f(1)) == 3
    assert int(jax.jit(count_edges, static_argnums=1)(1, motif)) == 3


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Motif.from_edges([], num_nodes=0), "empty"),
        (lambda: Motif.from_networkx(nx.Graph()), "empty"),
        (lambda: Motif.path(MAX_MOTIF_NODES + 1), "max_nodes=32"),
        (lambda: Motif.from_edges([(0, 1), (1, 1)]), "self-loop"),
        (lambda: Motif.from_edges([(0, 1), (1, 0)]), "more than once"),
        (lambda: Motif.from_edges([(0, 1), (2, 3)]), "not connected"),
        (lambda: Motif.from_edges([(0, 1)], root=5), "root"),
        (lambda: Motif.from_edges([(0, 3)], num_nodes=2), "0..1"),
        (lambda: Motif.from_edges([(0, 1, 2)]), r"shape \(m, 2\)"),
        (lambda: Motif.path(0), "k must be an integer >= 1"),
        (lambda: Motif.cycle(2), "k must be an integer >= 3"),
        (lambda: Motif.from_networkx(nx.path_graph(3), root=7), "root=7"),
        (lambda: Motif.from_networkx(nx.MultiGraph([(0, 1), (0, 1)])), "multigraph"),
    ],
)
def test_motif_errors(build, match):
    with pytest.raises(MotifError, match=match):
        build()


def test_require_tree_message_suggests_glauber():
    with pytest.raises(MotifError, match=r"not a tree|has a cycle") as excinfo:
        Motif.cycle(3).require_tree("pivot")
    assert "glauber" in str(excinfo.value)
    Motif.path(5).require_tree()  # a tree passes
    assert Motif.from_edges([(0, 1)], max_nodes=2).num_nodes == 2
    with pytest.raises(MotifError, match="max_nodes=2"):
        Motif.from_edges(list(itertools.pairwise(range(3))), max_nodes=2)


# ---------------------------------------------------------------------- extreme uniforms (issue 8 §1)
def _as_dtype(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_inverse_cdf_draws_at_the_ends_of_the_unit_interval_never_hit_zero_mass(dtype):
    """Injected uniforms 0, just below 1, and 1: neighbour and node draws keep to positive mass.

    Node 0 sees nodes 1..4 with α = (·, 0, 1, 2, 0): its row starts and ends with an entry of zero
    mass. ``jax.random.uniform`` returns exactly 0.0 about once in 2²³ float32 draws; at u = 0
    the draw is the first entry of positive mass, just below 1 the last. u = 1 itself (which the
    generator never returns) used to pick the trailing zero-mass entry (the bisection ran past
    the row and was clamped to its last slot): the threshold ``u · total`` is now kept below the
    total. The u = 0 and u < 1 cases were already right; this test documents them.
    """
    A = np.zeros((5, 5))
    A[0, 1:] = A[1:, 0] = 1.0
    net = Network.from_adjacency(A, node_weights=[1.0, 0.0, 1.0, 2.0, 0.0])
    rows, cum = _as_dtype(net.out, dtype), jnp.asarray(net.node_cum_weights, dtype)
    below_one = np.nextafter(np.array(1.0, dtype), np.array(0.0, dtype))
    expected = {0.0: (2, 0), below_one: (3, 3), 1.0: (3, 3)}  # u -> (neighbour of 0, node ~ α)
    for u, (neighbour, node) in expected.items():
        uniform = jnp.asarray(u, dtype)
        slot, ok = jax.jit(csr.sample_slot)(rows, uniform, jnp.int32(0))
        assert bool(ok) and int(rows.indices[slot]) == neighbour, u
        assert int(jax.jit(draw_node)(cum, uniform)) == node, u
    # Node 1 (α = 0) has only node 0 as neighbour: a positive mass, drawn at either end.
    for u in (0.0, below_one, 1.0):
        slot, ok = csr.sample_slot(rows, jnp.asarray(u, dtype), jnp.int32(1))
        assert bool(ok) and int(rows.indices[slot]) == 0
