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
``A_s = (A + Aᵀ) / 2`` on which the pivot chain's root walks. For symmetric ``A`` the three CSR
structures are the same arrays.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." Journal of Machine Learning Research 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import scipy.sparse as sp

from psample.errors import NetworkError
from psample.graphs.edge_table import EdgeTable, build_edge_table, lookup

__all__ = [
    "Network",
    "edge_weight",
    "sample_neighbour",
    "sample_in_neighbour",
    "sample_node",
    "max_degree",
    "bipartite_components",
]

Array = jax.Array


class Network(NamedTuple):
    """A weighted network with node weights, stored as CSR arrays (a pytree of arrays).

    Node ``i`` is row ``i`` of the adjacency matrix; for :meth:`from_networkx` it is
    ``list(G.nodes)[i]``. Build with :meth:`from_networkx` or :meth:`from_adjacency`, which
    validate the input; the raw constructor does not.

    Attributes
    ----------
    indptr : int32 (n + 1,)
        CSR row pointers of ``A`` (out-neighbours).
    indices : int32 (nnz,)
        Column indices, sorted within each row.
    weights : float (nnz,)
        Edge weights ``A(w, z) > 0``.
    node_weights : float (n,)
        Node probabilities ``α`` (non-negative, sum 1).
    out_mass : float (n,)
        ``d(w) = Σ_z A(w, z) α(z)``; equal to the last entry of ``cum_mass`` in row ``w``.
    cum_mass : float (nnz,)
        Per-row cumulative sums of ``A(w, z) α(z)``.
    in_indptr, in_indices, in_weights, in_mass, in_cum_mass
        The same for ``Aᵀ``: row ``w`` lists the in-neighbours ``z`` of ``w`` with weights
        ``A(z, w)``, masses ``Σ_z A(z, w) α(z)``. Same arrays as above when ``A`` is symmetric.
    sym_indptr, sym_indices, sym_weights, sym_mass, sym_cum_mass
        The same for ``A_s = (A + Aᵀ) / 2`` (the pivot chain's root walk).
    node_cum_weights : float (n,)
        Cumulative sums of ``α`` (sampling a node from ``α``).
    directed : bool scalar
        Whether ``A`` is not symmetric.
    edge_table : EdgeTable
        Hash table of the entries of ``A`` (constant-time :func:`edge_weight`).
    log_mass, in_log_mass : float (nnz,)
        ``log(A(w, z) α(z))`` per CSR slot of ``A`` and of ``Aᵀ`` (``-inf`` where ``α(z) = 0``),
        computed in float64 on the host: samplers sum log factors without taking logarithms.
    """

    indptr: Array
    indices: Array
    weights: Array
    node_weights: Array
    out_mass: Array
    cum_mass: Array
    in_indptr: Array
    in_indices: Array
    in_weights: Array
    in_mass: Array
    in_cum_mass: Array
    sym_indptr: Array
    sym_indices: Array
    sym_weights: Array
    sym_mass: Array
    sym_cum_mass: Array
    node_cum_weights: Array
    directed: Array
    edge_table: EdgeTable
    log_mass: Array
    in_log_mass: Array

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
        return self.indices.shape[0]

    @property
    def is_directed(self) -> bool:
        """Whether ``A`` is not symmetric (host-side; not for traced networks)."""
        return bool(self.directed)

    def to_scipy(self) -> sp.csr_array:
        """``A`` as a scipy CSR array (float64)."""
        n = self.num_nodes
        return sp.csr_array(
            (np.asarray(self.weights, dtype=np.float64), np.asarray(self.indices), np.asarray(self.indptr)),
            shape=(n, n),
        )

    def to_dense(self) -> np.ndarray:
        """``A`` as a dense ``(n, n)`` float64 numpy array."""
        return self.to_scipy().toarray()


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
def _csr_arrays(matrix: sp.csr_array, alpha: np.ndarray):
    """(indptr, indices, weights, mass, cum_mass) of a CSR matrix with masses A(w, z) α(z)."""
    indptr = matrix.indptr.astype(np.int64)
    indices = matrix.indices.astype(np.int64)
    weights = matrix.data.astype(np.float64)
    edge_mass = weights * alpha[indices]
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))
    # Per-row cumulative sums: global cumsum minus the running total before each row.
    cum = np.cumsum(edge_mass)
    row_offset = np.concatenate([[0.0], cum])[indptr[:-1]]
    cum_mass = cum - row_offset[rows]
    mass = np.zeros(matrix.shape[0])
    nonempty = np.diff(indptr) > 0
    mass[nonempty] = cum_mass[indptr[1:][nonempty] - 1]
    return (
        jnp.asarray(indptr, dtype=jnp.int32),
        jnp.asarray(indices, dtype=jnp.int32),
        jnp.asarray(weights),
        jnp.asarray(mass),
        jnp.asarray(cum_mass),
    )


def _build(matrix: sp.csr_array, alpha: np.ndarray) -> Network:
    if matrix.shape[0] >= 2**31 - 1 or matrix.nnz >= 2**31 - 1:
        raise NetworkError(f"network too large for int32 indices: shape {matrix.shape}, nnz {matrix.nnz}")
    transpose = sp.csr_array(matrix.T)
    transpose.sort_indices()
    directed = (matrix != transpose).nnz > 0
    forward = _csr_arrays(matrix, alpha)
    if directed:
        backward = _csr_arrays(transpose, alpha)
        symmetric = sp.csr_array((matrix + transpose) * 0.5)
        symmetric.sort_indices()
        sym = _csr_arrays(symmetric, alpha)
    else:
        backward = sym = forward
    log_mass = _log_mass(matrix, alpha)
    return Network(
        *forward[:3],
        jnp.asarray(alpha),
        *forward[3:],
        *backward[:3],
        *backward[3:],
        *sym[:3],
        *sym[3:],
        jnp.asarray(np.cumsum(alpha)),
        jnp.asarray(directed),
        build_edge_table(
            np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr)), matrix.indices, forward[2], matrix.shape[0]
        ),
        log_mass,
        _log_mass(transpose, alpha) if directed else log_mass,
    )


def _log_mass(matrix: sp.csr_array, alpha: np.ndarray) -> Array:
    with np.errstate(divide="ignore"):
        return jnp.asarray(np.log(matrix.data.astype(np.float64) * alpha[matrix.indices]))


# ---------------------------------------------------------------------- jittable helpers
def _num_bisection_steps(length: int) -> int:
    """Iterations that bisect any sub-range of an array of ``length`` entries to one point."""
    return max(1, int(math.ceil(math.log2(length + 1))))


def _at(values: Array, index: Array) -> Array:
    """``values[index]`` for a scalar index, clamped into range (``dynamic_slice`` clamps)."""
    return jax.lax.dynamic_index_in_dim(values, index, keepdims=False)


def _first_in_row_where_greater(values: Array, start: Array, stop: Array, threshold: Array) -> Array:
    """Smallest ``j`` in ``[start, stop)`` with ``values[j] > threshold`` (``stop`` if none).

    ``values`` must be non-decreasing on ``[start, stop)``. A fixed number of bisection steps,
    unrolled at trace time (about log2(nnz)): straight-line code vectorises over chains, needs no
    device-side loop, and keeps the compiled program small (every chain step calls this).
    """
    lo, hi = start, stop
    for _ in range(_num_bisection_steps(values.shape[0])):
        mid = jax.lax.shift_right_logical(lo + hi, jnp.ones_like(lo))
        active = lo < hi
        right = _at(values, mid) <= threshold
        lo = jax.lax.select(active & right, mid + 1, lo)
        hi = jax.lax.select(active & ~right, mid, hi)
        # Each step reads lo and hi twice: fused across steps, XLA can duplicate the chain
        # into a tree of 2^steps nodes (minutes of XLA:CPU compile time at 10⁵ nodes).
        lo, hi = jax.lax.optimization_barrier((lo, hi))
    return lo


def _find_in_row(indptr: Array, indices: Array, weights: Array, a: Array, b: Array) -> Array:
    start, stop = _at(indptr, a), _at(indptr, a + 1)
    # indices are integers sorted in the row: the first index > b - 1 is the first index >= b.
    b = jnp.asarray(b, indices.dtype)
    slot = _first_in_row_where_greater(indices, start, stop, b - 1)
    found = (slot < stop) & (_at(indices, slot) == b)
    return jnp.where(found, _at(weights, slot), jnp.zeros((), weights.dtype))


def edge_weight(network: Network, a: Array, b: Array) -> Array:
    """``A(a, b)``, or 0 when there is no edge ``a -> b`` (jittable, vmappable).

    Two hash-table probes (:func:`psample.graphs.edge_table.lookup`), whatever the degrees.

    Parameters
    ----------
    network : Network
    a, b : int scalar arrays
        Source and target nodes.

    Returns
    -------
    float scalar
    """
    return lookup(network.edge_table, a, b)


def _sample_slot(indptr: Array, cum_mass: Array, mass: Array, uniform: Array, w: Array):
    """CSR slot ``j`` of row ``w`` drawn with probability ∝ its mass increment (inverse CDF).

    ``uniform`` is a U[0, 1) draw (the kernels draw all their uniforms in one call: fewer
    random-number kernels to compile). Returns ``(slot, ok)``; ``ok`` is False when the row has
    zero mass (slot is then some valid array index and must not be used).
    """
    start, stop = _at(indptr, w), _at(indptr, w + 1)
    total = _at(mass, w)
    slot = _first_in_row_where_greater(cum_mass, start, stop, uniform * total)
    # u < total up to rounding; never step past the row's last entry.
    slot = jnp.clip(jnp.minimum(slot, stop - 1), 0, cum_mass.shape[0] - 1)
    return slot, total > 0


def sample_neighbour(network: Network, key: Array, w: Array) -> Array:
    """Draw an out-neighbour ``z ~ A(w, ·) α(·) / d(w)`` of ``w`` (jittable, vmappable).

    Returns ``-1`` when ``d(w) = 0`` (no out-neighbour of positive node weight).

    Parameters
    ----------
    network : Network
    key : PRNG key
    w : int scalar array

    Returns
    -------
    int32 scalar
    """
    u = jax.random.uniform(key, dtype=network.cum_mass.dtype)
    slot, ok = _sample_slot(network.indptr, network.cum_mass, network.out_mass, u, w)
    return jnp.where(ok, _at(network.indices, slot), -1).astype(jnp.int32)


def sample_in_neighbour(network: Network, key: Array, w: Array) -> Array:
    """Draw an in-neighbour ``z ~ A(·, w) α(·) / Σ_z A(z, w) α(z)`` of ``w``; ``-1`` if none."""
    u = jax.random.uniform(key, dtype=network.in_cum_mass.dtype)
    slot, ok = _sample_slot(network.in_indptr, network.in_cum_mass, network.in_mass, u, w)
    return jnp.where(ok, _at(network.in_indices, slot), -1).astype(jnp.int32)


def sample_node(network: Network, key: Array) -> Array:
    """Draw a node ``z ~ α`` (jittable, vmappable)."""
    cum = network.node_cum_weights
    u = jax.random.uniform(key, dtype=cum.dtype) * cum[-1]
    node = _first_in_row_where_greater(cum, jnp.int32(0), jnp.int32(cum.shape[0]), u)
    return jnp.minimum(node, cum.shape[0] - 1).astype(jnp.int32)


# ---------------------------------------------------------------------- host-side analysis
def max_degree(network: Network) -> int:
    """Largest out- or in-degree (number of stored neighbours) of any node (host-side)."""
    out_degree = np.diff(np.asarray(network.indptr))
    in_degree = np.diff(np.asarray(network.in_indptr))
    return int(max(out_degree.max(initial=0), in_degree.max(initial=0)))


def bipartite_components(network: Network) -> list[list[int]]:
    """Connected components (of the symmetrised graph, with an edge) that are bipartite.

    A random walk started in such a component is periodic (period 2), so the non-lazy pivot
    chain does not converge there. Host-side (networkx).
    """
    n = network.num_nodes
    matrix = sp.csr_array(
        (np.asarray(network.sym_weights), np.asarray(network.sym_indices), np.asarray(network.sym_indptr)),
        shape=(n, n),
    )
    graph = nx.from_scipy_sparse_array(matrix)
    found = []
    for component in nx.connected_components(graph):
        sub = graph.subgraph(component)
        if sub.number_of_edges() > 0 and nx.is_bipartite(sub):
            found.append(sorted(int(v) for v in component))
    return found
