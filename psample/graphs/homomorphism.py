"""The homomorphism measure and the chain state that the Glauber and pivot chains share.

For a network ``G = ([n], A, α)`` and a motif ``F = ([k], E_F)`` the target is the
homomorphism measure on maps ``x : [k] -> [n]``

    π_{F→G}(x) ∝ Π_i α(x_i) Π_{(i,j) ∈ E_F} A(x_i, x_j)

(Lyu, Mémoli & Sivakoff, JMLR 24(9), 2023, arXiv:1910.09483, §2). A chain's ``position[i]`` is the network node of motif node
``i``; ``logdensity`` is the log of the unnormalised weight above (``-inf`` off the support).
The chains themselves are :mod:`psample.graphs.glauber` (any motif) and
:mod:`psample.graphs.pivot` (tree motifs); starting points come from
:mod:`psample.graphs.embeddings`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from psample.errors import ShapeError
from psample.graphs.motif import Motif, as_motif
from psample.graphs.network import Network, as_network, edge_weight

__all__ = ["HomomorphismState", "init", "log_weight", "is_homomorphism", "child_masses", "check_inputs"]

Array = jax.Array


class HomomorphismState(NamedTuple):
    """State of a homomorphism chain.

    position : int32 (k,)
        The embedding: ``position[i]`` is the network node of motif node ``i``.
    logdensity : float scalar
        ``log(Π_i α(x_i) Π_{(i,j)} A(x_i, x_j))``; ``-inf`` when ``position`` is not in the
        support (not a homomorphism, or a node of zero weight).
    """

    position: Array
    logdensity: Array


def _motif_edge_weights(network: Network, motif: Motif, position: Array) -> Array:
    """``A(x_i, x_j)`` for every motif edge ``(i, j)``, shape ``(m,)``."""
    edges = motif.edges
    return edge_weight(network, position[edges[:, 0]], position[edges[:, 1]])


def log_weight(network: Network, motif: Motif, position: Array) -> Array:
    """``log(Π_i α(x_i) Π_{(i,j) ∈ E_F} A(x_i, x_j))`` for one embedding (``-inf`` off support).

    Parameters
    ----------
    network : Network
    motif : Motif
    position : int (k,)

    Returns
    -------
    float scalar
    """
    position = jnp.asarray(position)
    total = jnp.sum(jnp.log(network.node_weights[position]))
    if motif.num_edges:
        total = total + jnp.sum(jnp.log(_motif_edge_weights(network, motif, position)))
    return total


def is_homomorphism(network: Network, motif: Motif, position: Array) -> Array:
    """Whether every motif edge ``(i, j)`` lands on an edge, ``A(x_i, x_j) > 0`` (bool scalar)."""
    position = jnp.asarray(position)
    if not motif.num_edges:
        return jnp.asarray(True)
    return jnp.all(_motif_edge_weights(network, motif, position) > 0)


def init(position: Array, network: Network, motif: Motif) -> HomomorphismState:
    """State at an embedding ``position`` (int, shape ``(k,)``)."""
    position = jnp.asarray(position)
    if position.shape != (motif.num_nodes,):
        raise ShapeError(
            f"position must be one embedding of shape ({motif.num_nodes},) (motif nodes), got "
            f"shape {position.shape}; run many chains with jax.vmap or psample.sample"
        )
    if not jnp.issubdtype(position.dtype, jnp.integer):
        raise ShapeError(f"position must hold integer node indices, got dtype {position.dtype}")
    position = position.astype(jnp.int32)
    return HomomorphismState(position, log_weight(network, motif, position))


def child_masses(network: Network, motif: Motif, position: Array) -> Array:
    """``d_c(x_{p(c)})`` for every non-root node ``c`` of a tree (breadth-first order), ``(k-1,)``.

    ``d_c`` is the out-mass ``d(w) = Σ_z A(w, z) α(z)`` for a tree edge parent -> ``c``, the
    in-mass for an edge pointing to the parent: the normaliser of the law from which the pivot
    proposal draws ``c``, and the terms of the importance identity for ``t(F, G)``.
    """
    children = motif.order[1:]
    parents = position[motif.parent[children]]
    forward = jnp.asarray(motif.parent_edge_forward[children])
    return jnp.where(forward, network.out.mass[parents], network.in_.mass[parents])


def check_inputs(network, motif) -> tuple[Network, Motif]:
    """The chains' input check: a :class:`Network` and a :class:`Motif` (no conversion)."""
    return as_network(network, convert=False), as_motif(motif, convert=False)
