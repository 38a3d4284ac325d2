"""Exact network observables: the reference values the homomorphism chains are checked against.

For a network ``G = ([n], A, α)`` (edge weights ``A ≥ 0``, node probabilities ``α``) and a motif
``F = ([k], E_F)`` the homomorphism measure is

    π_{F→G}(x) = Π_i α(x_i) Π_{(i,j)∈E_F} A(x_i, x_j) / t(F, G),

with homomorphism density ``t(F, G)`` its normaliser (Lyu, Mémoli & Sivakoff 2023, §2). When
``F`` is a tree everything below is exact in ``O(k · nnz(A))`` (one sparse mat-vec per motif
edge, never a dense ``n × n`` matrix): subtree partition functions and ``t(F, G)``
(:func:`subtree_partition_functions`, :func:`tree_hom_density`), the path density
(:func:`path_hom_density`), the k-path's MACC ``E_π[A(x_i, x_j)]`` (:func:`path_macc`,
:func:`path_edge_expectation`), the triangle conditional density (:func:`triangle_chd`) and
CHD profiles of a k-path plus one extra edge (:func:`path_chd_profile`). Brute-force
enumeration over all ``n^k`` maps (tiny graphs only) computes the same quantities for any
motif and cross-checks the formulas in the tests. See the :doc:`family page
</families/graphs>` for the formulas, the method and measured limits.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." JMLR 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import scipy.sparse as sp

from psample.errors import MotifError, NetworkError, check_positive_int
from psample.graphs.network import as_network

__all__ = [
    "adjacency_and_weights",
    "subtree_partition_functions",
    "tree_hom_density",
    "path_hom_density",
    "path_macc",
    "path_edge_expectation",
    "path_chd_profile",
    "triangle_chd",
    "enumerate_maps",
    "brute_force_density",
    "brute_force_expectation",
    "brute_force_conditional_density",
    "brute_force_macc",
    "brute_force_chd_profile",
]

#: Largest number of maps ``n^k`` brute-force enumeration accepts.
MAX_ENUMERATION = 2_000_000


# --------------------------------------------------------------------------------- inputs
def adjacency_and_weights(network) -> tuple[sp.csr_array, np.ndarray]:
    """Return ``(A, α)`` as a CSR array and a float64 probability vector.

    Parameters
    ----------
    network
        Anything :func:`psample.graphs.network.as_network` takes: a
        :class:`~psample.graphs.network.Network`, a networkx graph (weights from the
        ``"weight"`` attribute, default 1; α uniform) or an ``(n, n)`` dense or scipy-sparse
        adjacency matrix (α uniform), validated there (negative, NaN or infinite weights raise
        :class:`~psample.errors.NetworkError`).

    Returns
    -------
    A : scipy.sparse.csr_array, shape (n, n)
    alpha : ndarray, shape (n,)
    """
    network = as_network(network)
    return network.to_scipy(), np.asarray(network.node_weights, dtype=np.float64)


def _tree_structure(motif) -> tuple[int, np.ndarray, np.ndarray, int]:
    """``(k, parent, order, root)`` of a tree motif; ``parent[root] = -1``, ``order`` top-down."""
    motif.require_tree("the exact dynamic programme",
                       instead="the brute_force_* functions take any motif (on tiny networks)")
    parent = np.asarray(motif.parent, dtype=np.int64)
    order = np.asarray(motif.order, dtype=np.int64)
    return int(motif.num_nodes), parent, order, int(motif.root)


def _edge_list(motif) -> list[tuple[int, int]]:
    return [(int(i), int(j)) for i, j in np.asarray(motif.edges, dtype=np.int64).reshape(-1, 2)]


# ------------------------------------------------------------------------ tree motifs (DP)
def subtree_partition_functions(network, motif) -> np.ndarray:
    """Subtree partition functions ``h_j(z) = α(z) Π_{c child of j} (A h_c)(z)``.

    ``h_j(z)`` is the total weight of the embeddings of the subtree rooted at motif node ``j``
    that send ``j`` to network node ``z``. A tree edge parent → child contributes
    ``A(x_parent, x_child)``; one pointing to the parent (directed motifs,
    ``motif.parent_edge_forward[c]`` False) contributes ``A(x_child, x_parent)``.

    Parameters
    ----------
    network
        See :func:`adjacency_and_weights`.
    motif
        A tree :class:`psample.graphs.motif.Motif` (``parent``, ``order`` top-down, ``root``).

    Returns
    -------
    ndarray, shape (k, n)
        Row ``j`` is ``h_j``; ``h[root].sum()`` is ``t(F, G)``.
    """
    A, alpha = adjacency_and_weights(network)
    k, parent, order, _ = _tree_structure(motif)
    forward = np.asarray(motif.parent_edge_forward)
    A_T = sp.csr_array(A.T)
    h = np.tile(alpha, (k, 1))
    for j in order[::-1]:  # bottom-up: every child is finished before its parent
        if parent[j] >= 0:
            # Tree edge parent -> j weighs A(x_p, x_j); an edge j -> parent weighs A(x_j, x_p).
            h[parent[j]] *= (A if forward[j] else A_T) @ h[j]
    return h


def tree_hom_density(network, motif) -> float:
    """Homomorphism density ``t(F, G) = Σ_z h_root(z)`` of a tree motif, exactly.

    Returns
    -------
    float
    """
    h = subtree_partition_functions(network, motif)
    return float(h[int(motif.root)].sum())


def path_hom_density(network, k: int) -> float:
    """Density of the k-node path ``1 → 2 → … → k``: ``αᵀ (A D_α)^{k−1} 1`` by matrix powers.

    For uniform α and 0/1 ``A`` this is ``n^{−k} 1ᵀ A^{k−1} 1``.
    """
    k = check_positive_int("k", k)
    A, alpha = adjacency_and_weights(network)
    right = _right_partials(A, alpha, k)
    return float(alpha @ right[0])


# ---------------------------------------------------------------------------- k-path MACC
def _left_partials(A, alpha, k):
    """``L[i](z)``: weight of the prefix x_1..x_i with x_i = z, α(x_i) included."""
    left = [alpha.copy()]
    for _ in range(k - 1):
        left.append(alpha * (A.T @ left[-1]))
    return left


def _right_partials(A, alpha, k):
    """``R[j](z)``: weight of the suffix x_{j+1}..x_k given x_j = z, α(x_j) excluded."""
    right = [np.ones_like(alpha)]
    for _ in range(k - 1):
        right.append(A @ (alpha * right[-1]))
    return right[::-1]


def _walk_matrix(A, D, m):
    """``A (D A)^{m−1}``: weighted walks of m edges, intermediate nodes weighted by α."""
    M = A
    for _ in range(m - 1):
        M = M @ (D @ A)
    return sp.csr_array(M)


def _masked_walk_sum(A, alpha, left, right, m, mask):
    """``Σ_{a,b} left(a) M_m(a, b) mask(a, b) α(b) right(b)`` for sparse ``mask``.

    ``M_m = A (D A)^{m−1}`` is split as ``M_a D M_b`` (``m_a + m_b = m``) so that only products
    supported near ``A`` are formed: ``Σ_{c,b} α(c) M_b(c, b) (M_aᵀ X)(c, b)`` with
    ``X(a, b) = left(a) mask(a, b) α(b) right(b)``.
    """
    X = sp.csr_array(sp.diags_array(left) @ mask @ sp.diags_array(alpha * right))
    if m == 1:
        return float(X.multiply(A).sum())
    D = sp.diags_array(alpha)
    m_a = m // 2
    M_a = _walk_matrix(A, D, m_a)
    M_b = _walk_matrix(A, D, m - m_a)
    return float(sp.csr_array(D @ M_b).multiply(M_a.T @ X).sum())


def path_edge_expectation(network, k: int, i: int, j: int,
                          transform: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """``E_{π_{P_k→G}}[g(A(x_i, x_j))]`` for the k-path, exactly (0-indexed ``i``, ``j``).

    Parameters
    ----------
    network
        See :func:`adjacency_and_weights`.
    k
        Number of path nodes (edges ``0 → 1 → … → k−1``).
    i, j
        Motif nodes, ``0 <= i, j < k``.
    transform
        Vectorised ``g`` applied to edge weights (default identity). ``g(0)`` may be non-zero:
        the expectation is computed as ``g(0) + E[(g(A) − g(0))]`` so that only the support of
        ``A`` is visited.

    Returns
    -------
    float
    """
    k = check_positive_int("k", k)
    for name, v in (("i", i), ("j", j)):
        if not 0 <= int(v) < k:
            raise MotifError(f"{name} must be a node of the {k}-path (0..{k - 1}), got {v!r}")
    A, alpha = adjacency_and_weights(network)
    g = (lambda w: w) if transform is None else transform
    g0 = float(np.asarray(g(np.zeros(1)))[0])
    mask = A.copy()
    mask.data = np.asarray(g(A.data), dtype=np.float64) - g0
    mask.eliminate_zeros()
    left, right = _left_partials(A, alpha, k), _right_partials(A, alpha, k)
    total = float(alpha @ right[0])
    if total <= 0:
        raise NetworkError(f"the {k}-path has no homomorphism into the network (t(F, G) = 0)")
    a, b = sorted((int(i), int(j)))
    if a == b:
        num = float(left[a] @ (mask.diagonal() * right[a]))
    else:
        # E[g(A(x_i, x_j))] with i > j reads A(x_i, x_j) = Aᵀ(x_j, x_i).
        oriented = mask if int(i) < int(j) else sp.csr_array(mask.T)
        num = _masked_walk_sum(A, alpha, left[a], right[b], b - a, oriented)
    return g0 + num / total


def path_macc(network, k: int) -> np.ndarray:
    """Exact MACC matrix of the k-path: ``MACC[i, j] = E_{π_{P_k→G}}[A(x_i, x_j)]``.

    Returns
    -------
    ndarray, shape (k, k)
        Symmetric when ``A`` is; diagonal ``A(z, z)`` averages (0 without self-loops).
    """
    k = check_positive_int("k", k)
    return np.array([[path_edge_expectation(network, k, i, j) for j in range(k)]
                     for i in range(k)])


def path_chd_profile(network, k: int, i: int, j: int, thresholds) -> np.ndarray:
    """Exact CHD profile ``θ ↦ P_{π_{P_k→G}}(A(x_i, x_j) ≥ θ)`` of the k-path plus edge (i, j).

    Returns
    -------
    ndarray, shape (len(thresholds),)
    """
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    return np.array([path_edge_expectation(network, k, i, j, lambda w, t=t: (w >= t) * 1.0)
                     for t in thresholds])


def triangle_chd(network) -> float:
    """``t(C_3, G | P_3)``: triangle density conditional on the 3-path ``1 → 2 → 3``.

    Equals ``tr(A³) / 1ᵀ A² 1 = 6 · #triangles / Σ_v deg(v)²`` for uniform α and symmetric 0/1
    ``A`` (homomorphisms allow ``x_1 = x_3``, so this is not the transitivity ``6T / Σ d(d−1)``).
    """
    return path_edge_expectation(network, 3, 0, 2)


# ------------------------------------------------------------------------- brute force
def enumerate_maps(network, motif) -> tuple[np.ndarray, np.ndarray]:
    """All maps ``x: [k] → [n]`` and their unnormalised weights ``Π α(x_i) Π A(x_i, x_j)``.

    Returns
    -------
    maps : ndarray, shape (n**k, k), int64
    weights : ndarray, shape (n**k,)
    """
    A, alpha = adjacency_and_weights(network)
    n, k = A.shape[0], int(motif.num_nodes)
    if n ** k > MAX_ENUMERATION:
        raise NetworkError(f"brute-force enumeration needs n**k <= {MAX_ENUMERATION}, got "
                           f"n={n}, k={k}")
    dense = A.toarray()
    maps = np.array(list(itertools.product(range(n), repeat=k)), dtype=np.int64).reshape(-1, k)
    weights = np.prod(alpha[maps], axis=1)
    for a, b in _edge_list(motif):
        weights = weights * dense[maps[:, a], maps[:, b]]
    return maps, weights


def brute_force_density(network, motif) -> float:
    """``t(F, G)`` for any motif by enumeration of all ``n^k`` maps."""
    return float(enumerate_maps(network, motif)[1].sum())


def brute_force_expectation(network, motif, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    """``E_{π_{F→G}}[fn(x)]`` by enumeration.

    Parameters
    ----------
    fn
        ``fn(maps, dense_A) -> values`` with ``maps`` of shape (m, k) and values of shape
        (m, ...).
    """
    A, _ = adjacency_and_weights(network)
    maps, weights = enumerate_maps(network, motif)
    total = weights.sum()
    if total <= 0:
        raise NetworkError("the motif has no homomorphism into the network (t(F, G) = 0)")
    values = np.asarray(fn(maps, A.toarray()), dtype=np.float64)
    return np.tensordot(weights / total, values, axes=(0, 0))


def brute_force_conditional_density(network, motif_F, motif_H) -> float:
    """``t(H, G | F) = t(H, G) / t(F, G)`` by enumeration (``H`` and ``F`` on the same nodes)."""
    return brute_force_density(network, motif_H) / brute_force_density(network, motif_F)


def brute_force_macc(network, motif) -> np.ndarray:
    """``E_{π_{F→G}}[A(x_i, x_j)]`` for all motif-node pairs, shape (k, k), by enumeration."""
    return brute_force_expectation(network, motif,
                                   lambda maps, A: A[maps[:, :, None], maps[:, None, :]])


def brute_force_chd_profile(network, motif, extra_edges, thresholds) -> np.ndarray:
    """``P_{π_{F→G}}(min_{(i,j) ∈ extra_edges} A(x_i, x_j) ≥ θ)`` for each θ, by enumeration."""
    extra = np.asarray(extra_edges, dtype=np.int64).reshape(-1, 2)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))

    def indicator(maps, A):
        weights = A[maps[:, extra[:, 0]], maps[:, extra[:, 1]]].min(axis=1)
        return (weights[:, None] >= thresholds[None, :]) * 1.0

    return brute_force_expectation(network, motif, indicator)
