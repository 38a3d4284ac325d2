"""Network observables as time averages of graph-homomorphism chains, with their standard errors.

A homomorphism chain (:func:`psample.graphs.glauber_chain` or :func:`psample.graphs.pivot_chain`) has the
homomorphism measure ``π_{F→G}`` as its stationary law. Time averages of functions of its state
``x`` (the embedding: motif node → network node) estimate network observables (Lyu, Mémoli &
Sivakoff, JMLR 24(9), 2023, arXiv:1910.09483):

* **conditional homomorphism density** of ``H ⊇ F`` (extra edges on F's nodes):
  ``t(H, G | F) = t(H, G) / t(F, G) = E_π[Π_{(i,j) ∈ E_H \\ E_F} A(x_i, x_j)]``;
* **CHD profile** ``θ ↦ P_π(min_{(i,j) ∈ E_H \\ E_F} A(x_i, x_j) ≥ θ)``;
* **MACC** of the k-path, ``MACC[i, j] = E_π[A(x_i, x_j)]`` = the mean of the sampled patches
  ``A[x, x]`` (the k×k adjacency induced on the embedding);
* **homomorphism density** ``t(F, G)`` of a tree motif. It is exact by dynamic programming
  (:func:`psample.graphs.exact.tree_hom_density`); the chain estimates it only to check itself,
  through the importance identity ``E_π[Π_{c ≠ root} 1 / d(x_p(c))] = 1 / t(F, G)`` (the
  reciprocal of that time average, its standard error by the delta method; the derivation is
  on the :doc:`family page </families/graphs>`).

Runner observables are functions ``fn(state) -> array`` of one chain's state, jittable and
vmappable, evaluated inside the runner's scan (``psample.sample(..., observables=...)`` or the
time averages of :mod:`psample.runtime.observables`). They read edge weights through
:func:`psample.graphs.network.edge_weight`, so they work on CSR networks of any size. Their
error bars are batch means across chains (:mod:`psample.diagnostics.batch_means`).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import MotifError, ShapeError
from psample.graphs.homomorphism import child_masses
from psample.graphs.network import edge_weight

__all__ = [
    "extra_edges",
    "embedding",
    "edge_weights",
    "edge_product",
    "threshold_indicators",
    "patch",
    "inverse_out_mass_product",
]


# ------------------------------------------------------------------------- motif helpers
def _pairs(motif) -> set[frozenset]:
    return {frozenset((int(i), int(j))) for i, j in np.asarray(motif.edges).reshape(-1, 2)}


def extra_edges(motif_F, motif_H) -> np.ndarray:
    """Edges of ``H`` that are not edges of ``F`` (same node set), shape ``(m, 2)``.

    An edge is matched regardless of orientation (``(i, j)`` in ``H`` is ``F``'s edge ``(j, i)``),
    and the ``H`` orientation is kept: the observable reads ``A(x_i, x_j)``.

    Raises
    ------
    MotifError
        If the node counts differ, ``F`` has an edge ``H`` lacks, or ``H`` adds no edge.
    """
    if int(motif_F.num_nodes) != int(motif_H.num_nodes):
        raise MotifError(
            f"motif_H must have the nodes of motif_F: got {motif_H.num_nodes} nodes, expected "
            f"{motif_F.num_nodes}")
    f_pairs = _pairs(motif_F)
    missing = f_pairs - _pairs(motif_H)
    if missing:
        raise MotifError(f"motif_H must contain every edge of motif_F; missing "
                         f"{sorted(tuple(sorted(p)) for p in missing)}")
    extra = [(int(i), int(j)) for i, j in np.asarray(motif_H.edges).reshape(-1, 2)
             if frozenset((int(i), int(j))) not in f_pairs]
    if not extra:
        raise MotifError("motif_H adds no edge to motif_F: the conditional density is 1")
    return np.asarray(extra, dtype=np.int32)


def _as_pairs(pairs, k: int | None = None) -> jnp.ndarray:
    pairs = np.asarray(pairs, dtype=np.int32).reshape(-1, 2)
    if pairs.shape[0] == 0:
        raise ShapeError("pairs must hold at least one (i, j) motif-node pair, got none")
    if k is not None and (pairs.min() < 0 or pairs.max() >= k):
        raise MotifError(f"pairs must be motif nodes 0..{k - 1}, got {pairs.tolist()}")
    return jnp.asarray(pairs)


# ------------------------------------------------------------------- runner observables
def embedding(state) -> jax.Array:
    """The embedding ``x`` (motif node → network node) of one chain's state, shape ``(k,)``."""
    return state.position


def edge_weights(network, pairs) -> Callable:
    """Observable ``state -> (A(x_i, x_j))_{(i, j) ∈ pairs}``, shape ``(m,)``."""
    pairs = _as_pairs(pairs)

    def fn(state):
        x = state.position
        return edge_weight(network, x[pairs[:, 0]], x[pairs[:, 1]])

    return fn


def edge_product(network, pairs) -> Callable:
    """Observable ``state -> Π_{(i, j) ∈ pairs} A(x_i, x_j)``, a scalar.

    Its mean under ``π_{F→G}`` is ``t(H, G | F)`` when ``pairs = extra_edges(F, H)``.
    """
    weights = edge_weights(network, pairs)
    return lambda state: jnp.prod(weights(state))


def threshold_indicators(network, pairs, thresholds) -> Callable:
    """Observable ``state -> (min_{pairs} A(x_i, x_j) ≥ θ)_θ``, shape ``(len(thresholds),)``.

    Its mean is the CHD profile at the given thresholds.
    """
    weights = edge_weights(network, pairs)
    thresholds = jnp.atleast_1d(jnp.asarray(thresholds, dtype=float))

    def fn(state):
        return (jnp.min(weights(state)) >= thresholds).astype(thresholds.dtype)

    return fn


def patch(network, k: int) -> Callable:
    """Observable ``state -> A[x, x]``, the ``(k, k)`` adjacency induced on the embedding.

    Its mean is the MACC matrix of the motif.
    """
    rows = jnp.repeat(jnp.arange(k), k)
    cols = jnp.tile(jnp.arange(k), k)

    def fn(state):
        x = state.position
        return edge_weight(network, x[rows], x[cols]).reshape(k, k)

    return fn


def inverse_out_mass_product(network, motif) -> Callable:
    """Observable ``state -> Π_{c ≠ root} 1 / d_c(x_{p(c)})`` of a tree motif (scalar).

    ``d_c`` is the out-mass ``d(w) = Σ_z A(w, z) α(z)`` (the in-mass for a tree edge pointing to
    the parent). ``E_π`` of the observable is ``1 / t(F, G)`` when every network node with
    ``α > 0`` has positive masses (see the module docstring).
    """
    motif.require_tree("the importance estimate of t(F, G)")

    def fn(state):
        return jnp.prod(1.0 / child_masses(network, motif, state.position))

    return fn
