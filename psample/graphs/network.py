"""Weighted networks ``G = ([n], A, α)`` as CSR arrays that pass through ``jit`` and ``vmap``.

A network carries non-negative edge weights ``A(w, z)`` (possibly asymmetric) and a
probability vector ``α`` on its nodes (Lyu, Mémoli & Sivakoff 2023, §2). The homomorphism
chains need two primitives, both with fixed shapes so that they vectorise over chains:

* ``edge_weight(network, a, b)``: ``A(a, b)``, by two probes of a cuckoo hash table of the
  entries (:mod:`psample.graphs.edge_table`), the same constant work for every pair;
* ``sample_neighbour(network, key, w)``: ``z ~ A(w, ·) α(·) / d(w)`` with the out-mass
  ``d(w) = Σ_z A(w, z) α(z)``, by bisection on the per-row cumulative masses.

Directed networks also store the transpose (in-neighbours, ``A(z, w) α(z)`` masses), used for
motif edges that point towards an already placed node, and the symmetrisation
``A_s = (A + Aᵀ) / 2`` on which the pivot chain's root walks: three structures of one type,
:class:`~psample.graphs.csr.Csr`, as ``network.out``, ``network.in_`` and ``network.sym``. For
symmetric ``A`` the three are the same arrays. :func:`as_network` is the one way in: every
function that takes a network converts and validates it there.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." Journal of Machine Learning Research 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from psample.errors import NetworkError
from psample.graphs import csr
from psample.graphs.csr import Csr
from psample.graphs.edge_table import EdgeTable, build_edge_table, lookup

__all__ = [
    "Network",
    "as_network",
    "edge_weight",
    "sample_neighbour",
    "sample_in_neighbour",
    "sample_node",
    "draw_node",
    "max_degree",
    "components",
    "bipartite_components",
    "require_connected",
]

Array = jax.Array


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["out", "in_", "sym", "node_weights", "node_cum_weights", "edge_table"],
    meta_fields=["directed"],
)
@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A weighted network with node weights, stored as CSR arrays (a pytree of arrays).

    Node ``i`` is row ``i`` of the adjacency matrix; for :meth:`from_networkx` it is
    ``list(G.nodes)[i]``. Build with :meth:`from_networkx`, :meth:`from_adjacency` or
    :func:`as_network`, which validate the input; the raw constructor does not.

    Attributes
    ----------
    out : Csr
        ``A``: row ``w`` lists the out-neighbours ``z`` of ``w``, weights ``A(w, z)``, masses
        ``A(w, z) α(z)`` and the out-mass ``d(w) = Σ_z A(w, z) α(z)`` (:class:`Csr`).
    in_ : Csr
        ``Aᵀ``: row ``w`` lists the in-neighbours ``z`` of ``w``, weights ``A(z, w)``, masses
        ``A(z, w) α(z)``. The same arrays as ``out`` when ``A`` is symmetric.
    sym : Csr
        ``A_s = (A + Aᵀ) / 2``, on which the pivot chain's root walks. ``out`` when symmetric.
    node_weights : float (n,)
        Node probabilities ``α`` (non-negative, sum 1).
    node_cum_weights : float (n,)
        Cumulative sums of ``α`` (sampling a node from ``α``).
    edge_table : EdgeTable
        Hash table of the entries of ``A`` (constant-time :func:`edge_weight`).
    directed : bool (static: part of the pytree structure, not a leaf)
        Whether ``A`` is not symmetric; samplers specialise their code on it at trace time.
    """

    out: Csr
    in_: Csr
    sym: Csr
    node_weights: Array
    node_cum_weights: Array
    edge_table: EdgeTable
    directed: bool

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_adjacency(cls, adjacency, node_weights=None) -> "Network":
        """Build a network from an ``(n, n)`` weight matrix.

        Parameters
        ----------
        adjacency
            Dense numpy / JAX array or scipy.sparse matrix of non-negative finite weights
            ``A(w, z)``. The network is directed when the matrix is not symmetric.
        node_weights
            ``None`` (uniform ``α``) or an array of ``n`` non-negative finite numbers with a
            positive sum; normalised to sum 1.

        Raises
        ------
        NetworkError
            Not a square matrix, no node, no edge, a negative or non-finite weight, or invalid
            node weights.
        """
        matrix = _as_csr(adjacency)
        n = matrix.shape[0]
        alpha = _node_weight_vector(node_weights, n)
        return _build(matrix, alpha)

    @classmethod
    def from_networkx(cls, graph, weight="weight", node_weight=None) -> "Network":
        """Build a network from a networkx graph (node ``i`` is ``list(graph.nodes)[i]``).

        Parameters
        ----------
        graph : networkx.Graph or networkx.DiGraph
            Undirected graphs give a symmetric ``A``; parallel edges of multigraphs add up.
        weight : str or None
            Edge attribute holding ``A(w, z)`` (edges without it weigh 1); ``None``: all 1.
        node_weight
            ``None`` (uniform ``α``), the name of a node attribute, a dict ``{node: weight}``
            or an array ordered like ``graph.nodes``; normalised to sum 1.
        """
        if not isinstance(graph, nx.Graph):
            raise NetworkError(f"graph must be a networkx graph, got {type(graph).__name__}")
        nodes = list(graph.nodes)
        if not nodes:
            raise NetworkError("graph has 0 nodes: a network needs at least one node and one edge")
        try:
            matrix = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight=weight, format="csr")
        except (TypeError, ValueError) as exc:
            raise NetworkError(f"edge attribute weight={weight!r} must hold numbers: {exc}") from None
        if isinstance(node_weight, str):
            missing = [u for u in nodes if node_weight not in graph.nodes[u]]
            if missing:
                raise NetworkError(f"node_weight={node_weight!r}: nodes {missing[:5]!r} lack this attribute")
            node_weight = np.array([graph.nodes[u][node_weight] for u in nodes], dtype=object)
        elif isinstance(node_weight, dict):
            missing = [u for u in nodes if u not in node_weight]
            if missing:
                raise NetworkError(f"node_weight dict lacks nodes {missing[:5]!r}")
            node_weight = np.array([node_weight[u] for u in nodes], dtype=object)
        return cls.from_adjacency(matrix, node_weights=node_weight)

    # ------------------------------------------------------------------ host helpers
    @property
    def num_nodes(self) -> int:
        """Number of nodes ``n`` (static, usable inside ``jit``)."""
        return self.node_weights.shape[0]

    @property
    def num_edges(self) -> int:
        """Number of stored (directed) entries ``nnz`` of ``A``."""
        return self.out.indices.shape[0]

    def to_scipy(self) -> sp.csr_array:
        """``A`` as a scipy CSR array (float64)."""
        return csr.to_scipy(self.out)

    def to_dense(self) -> np.ndarray:
        """``A`` as a dense ``(n, n)`` float64 numpy array."""
        return self.to_scipy().toarray()


def as_network(network, *, weight="weight", convert: bool = True) -> Network:
    """A :class:`Network` from a Network, a networkx graph or an ``(n, n)`` adjacency matrix.

    The one way in: every function that takes a network goes through here.

    Parameters
    ----------
    network
        A :class:`Network` (returned as is), a networkx graph (:meth:`Network.from_networkx`)
        or a dense / scipy-sparse adjacency matrix (:meth:`Network.from_adjacency`, uniform α).
    weight : str or None
        Edge attribute of a networkx graph holding the weights.
    convert : bool
        ``False`` accepts only a :class:`Network` (the samplers, which close over the arrays).

    Raises
    ------
    NetworkError
        Anything else, or invalid weights (negative, NaN, infinite, no edge).
    """
    if isinstance(network, Network):
        return network
    if convert:
        if isinstance(network, nx.Graph):
            return Network.from_networkx(network, weight=weight)
        if sp.issparse(network) or isinstance(network, (np.ndarray, jax.Array)):
            return Network.from_adjacency(network)
    accepted = "a psample Network" + (", a networkx graph or an (n, n) adjacency matrix" if convert else
                                      " (Network.from_networkx / from_adjacency / as_network)")
    raise NetworkError(f"network must be {accepted}, got {type(network).__name__}")


# ---------------------------------------------------------------------- validation
def _as_csr(adjacency) -> sp.csr_array:
    if sp.issparse(adjacency):
        matrix = sp.csr_array(adjacency)
    else:
        try:
            dense = np.asarray(adjacency)
        except Exception as exc:  # noqa: BLE001 - report what we got
            raise NetworkError(f"adjacency must be an (n, n) array, got {type(adjacency).__name__}") from exc
        if dense.ndim != 2 or dense.shape[0] != dense.shape[1]:
            raise NetworkError(f"adjacency must be a square (n, n) matrix, got shape {dense.shape}")
        if dense.size and not np.issubdtype(dense.dtype, np.number) and dense.dtype != bool:
            raise NetworkError(f"adjacency must hold numbers, got dtype {dense.dtype}")
        matrix = sp.csr_array(dense.astype(np.float64))
    if matrix.shape[0] != matrix.shape[1]:
        raise NetworkError(f"adjacency must be a square (n, n) matrix, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise NetworkError("adjacency has 0 nodes: a network needs at least one node and one edge")
    matrix = matrix.astype(np.float64)
    matrix.sum_duplicates()
    data = matrix.data
    if not np.all(np.isfinite(data)):
        bad = data[~np.isfinite(data)][0]
        raise NetworkError(f"adjacency has a non-finite weight ({bad!r}): weights must be finite and >= 0")
    if np.any(data < 0):
        raise NetworkError(
            f"adjacency has a negative weight ({data[data < 0].min()!r}): weights must be finite and >= 0"
        )
    matrix.eliminate_zeros()
    matrix.sort_indices()
    if matrix.nnz == 0:
        raise NetworkError(
            f"adjacency ({matrix.shape[0]} nodes) has no edge with positive weight: no homomorphism "
            "of a motif with an edge exists"
        )
    return matrix


def _node_weight_vector(node_weights, n: int) -> np.ndarray:
    if node_weights is None:
        return np.full(n, 1.0 / n)
    try:
        alpha = np.asarray(node_weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise NetworkError(f"node_weights must be {n} numbers, got {node_weights!r}") from None
    if alpha.shape != (n,):
        raise NetworkError(f"node_weights must have shape ({n},) (one per node), got {alpha.shape}")
    if not np.all(np.isfinite(alpha)) or np.any(alpha < 0):
        raise NetworkError(f"node_weights must be finite and >= 0, got {alpha!r}")
    total = alpha.sum()
    if not (total > 0 and math.isfinite(total)):
        raise NetworkError(f"node_weights must sum to a positive finite number, got sum {total!r}")
    return alpha / total


# ---------------------------------------------------------------------- construction
def _build(matrix: sp.csr_array, alpha: np.ndarray) -> Network:
    if matrix.shape[0] >= 2**31 - 1 or matrix.nnz >= 2**31 - 1:
        raise NetworkError(f"network too large for int32 indices: shape {matrix.shape}, nnz {matrix.nnz}")
    transpose = sp.csr_array(matrix.T)
    transpose.sort_indices()
    directed = bool((matrix != transpose).nnz > 0)
    out = csr.from_scipy(matrix, alpha)
    if directed:
        symmetric = sp.csr_array((matrix + transpose) * 0.5)
        symmetric.sort_indices()
        in_, sym = csr.from_scipy(transpose, alpha), csr.from_scipy(symmetric, alpha)
    else:
        in_ = sym = out
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    table = build_edge_table(rows, matrix.indices, out.weights, matrix.shape[0])
    return Network(out, in_, sym, jnp.asarray(alpha), jnp.asarray(np.cumsum(alpha)), table, directed)


# ---------------------------------------------------------------------- jittable helpers
def edge_weight(network: Network, a: Array, b: Array) -> Array:
    """``A(a, b)``, or 0 where there is no edge ``a -> b`` (jittable; elementwise on arrays).

    Two hash-table probes (:func:`psample.graphs.edge_table.lookup`), whatever the degrees.

    Parameters
    ----------
    network : Network
    a, b : int arrays of one shape
        Source and target nodes.

    Returns
    -------
    float array, the shape of ``a``
    """
    return lookup(network.edge_table, a, b)


def _neighbour(rows: Csr, key: Array, w: Array) -> Array:
    u = jax.random.uniform(key, dtype=rows.cum_mass.dtype)
    slot, ok = csr.sample_slot(rows, u, w)
    return jnp.where(ok, csr.at(rows.indices, slot), -1).astype(jnp.int32)


def sample_neighbour(network: Network, key: Array, w: Array) -> Array:
    """Draw an out-neighbour ``z ~ A(w, ·) α(·) / d(w)`` of node ``w`` (int32 scalar; jittable).

    Returns ``-1`` when ``d(w) = 0`` (no out-neighbour of positive node weight).
    """
    return _neighbour(network.out, key, w)


def sample_in_neighbour(network: Network, key: Array, w: Array) -> Array:
    """Draw an in-neighbour ``z ~ A(·, w) α(·) / Σ_z A(z, w) α(z)`` of ``w``; ``-1`` if none."""
    return _neighbour(network.in_, key, w)


def draw_node(cum_weights: Array, uniform: Array) -> Array:
    """Node ``z`` drawn ∝ the increments of ``cum_weights`` by inverse CDF (never one of weight 0).

    ``uniform`` is a U[0, 1) draw; any value in ``[0, 1]`` gives a node of positive weight.
    """
    n = cum_weights.shape[0]
    threshold = csr.inverse_cdf_threshold(uniform, cum_weights[-1])
    node = csr.first_greater(cum_weights, jnp.int32(0), jnp.int32(n), threshold)
    return jnp.minimum(node, n - 1).astype(jnp.int32)


def sample_node(network: Network, key: Array) -> Array:
    """Draw a node ``z ~ α`` (jittable, vmappable)."""
    cum = network.node_cum_weights
    return draw_node(cum, jax.random.uniform(key, dtype=cum.dtype))


# ---------------------------------------------------------------------- host-side analysis
def max_degree(network: Network) -> int:
    """Largest out- or in-degree (number of stored neighbours) of any node (host-side)."""
    out_degree = np.diff(np.asarray(network.out.indptr))
    in_degree = np.diff(np.asarray(network.in_.indptr))
    return int(max(out_degree.max(initial=0), in_degree.max(initial=0)))


def components(network: Network) -> list[np.ndarray]:
    """Connected components of the symmetrised network that have an edge (host-side).

    Returns
    -------
    list of int arrays
        The sorted nodes of each component, in order of their smallest node.
    """
    sym = csr.to_scipy(network.sym)
    _, labels = csgraph.connected_components(sym, directed=False)
    with_edges = np.unique(labels[np.diff(sym.indptr) > 0])
    return [np.flatnonzero(labels == label) for label in with_edges]


def bipartite_components(network: Network) -> list[list[int]]:
    """Connected components (of the symmetrised graph, with an edge) that are bipartite.

    A random walk started in such a component is periodic (period 2), so the non-lazy pivot
    chain does not converge there. Host-side.
    """
    sym = csr.to_scipy(network.sym)
    found = []
    for nodes in components(network):
        # Two-colour by breadth-first depth: bipartite iff no edge joins nodes of one parity.
        order, predecessors = csgraph.breadth_first_order(sym, int(nodes[0]), directed=False)
        depth = np.zeros(network.num_nodes, dtype=np.int64)
        for v in order[1:]:
            depth[v] = depth[predecessors[v]] + 1
        sub = sp.coo_array(sym[nodes][:, nodes])
        if np.all(depth[nodes[sub.row]] % 2 != depth[nodes[sub.col]] % 2):
            found.append(nodes.tolist())
    return found


def require_connected(network: Network) -> None:
    """Raise :class:`NetworkError` unless at most one component of the network has an edge.

    The homomorphism chains cannot move between components, and their starts are not spread
    over components in proportion to the homomorphism measure.
    """
    parts = components(network)
    if len(parts) > 1:
        raise NetworkError(
            f"network has {len(parts)} connected components with edges: the chains cannot "
            "move between them and their starts are not spread over them in proportion to the "
            "homomorphism measure; restrict it to one component (e.g. "
            "psample.models.graphs.largest_component)")
