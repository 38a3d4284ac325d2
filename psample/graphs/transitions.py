"""Exact one-step transition probabilities of the Glauber and pivot chains (test oracles).

The chains are those of Lyu, Mémoli & Sivakoff (JMLR 24(9), 2023, arXiv:1910.09483).

``P(x, ·)`` is computed from the very functions the kernels sample from
(:func:`psample.graphs.glauber.conditional`, :func:`psample.graphs.pivot.log_acceptance` and the
proposal's masses), so that on a small network the whole kernel ``P`` can be enumerated and
checked for stationarity ``π P = π`` against the exact law (:mod:`psample.graphs.exact`), and the
samplers' one-step draws G-tested against its rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from psample.graphs.csr import find_weight
from psample.graphs.glauber import conditional
from psample.graphs.homomorphism import child_masses
from psample.graphs.motif import Motif
from psample.graphs.network import Network, edge_weight, max_degree
from psample.graphs.pivot import log_acceptance

__all__ = ["glauber_transition_probabilities", "pivot_transition_probabilities"]

Array = jax.Array


def glauber_transition_probabilities(
    network: Network, motif: Motif, position: Array, targets: Array, num_slots: int | None = None
) -> Array:
    """One-step Glauber probabilities ``P(position -> y)`` for each row ``y`` of ``targets``.

    ``P(x, y) = (1/k) Σ_v 1[y_{-v} = x_{-v}] p_v(y_v | x)``, with ``p_v`` the normalised
    conditional :func:`psample.graphs.glauber.conditional` (a point mass at ``x_v`` when it is
    all zero).

    Parameters
    ----------
    position : int (k,)
    targets : int (S, k)
    num_slots : int, optional
        Default: the network's largest degree.

    Returns
    -------
    float (S,)
    """
    num_slots = max_degree(network) if num_slots is None else num_slots
    position = jnp.asarray(position, dtype=jnp.int32)
    targets = jnp.asarray(targets, dtype=jnp.int32)
    k = motif.num_nodes
    nodes = jnp.arange(k, dtype=jnp.int32)
    candidates, logits = jax.vmap(lambda v: conditional(network, motif, position, v, num_slots))(nodes)
    stuck = jnp.all(logits == -jnp.inf, axis=1)  # (k,)
    probs = jnp.where(stuck[:, None], 0.0, jax.nn.softmax(logits, axis=1))  # (k, S)
    differs = targets != position  # (T, k)
    # same_rest[t, v]: target t agrees with the position off node v.
    same_rest = (jnp.sum(differs, axis=1, keepdims=True) - differs) == 0
    # to_value[t, v] = p_v(targets[t, v] | position).
    matches = candidates[None, :, :] == targets[:, :, None]  # (T, k, S)
    to_value = jnp.sum(jnp.where(matches, probs[None], 0.0), axis=2)
    to_value = jnp.where(stuck[None, :], (~differs).astype(to_value.dtype), to_value)
    return jnp.sum(jnp.where(same_rest, to_value, 0.0), axis=1) / k


def pivot_transition_probabilities(
    network: Network, motif: Motif, position: Array, targets: Array, lazy: bool = False
) -> Array:
    """One-step pivot probabilities ``P(position -> y)`` for each row ``y`` of ``targets``.

    ``P(x, y) = λ q(y | x) min(1, r(x, y))`` for ``y ≠ x`` with ``r`` from
    :func:`psample.graphs.pivot.log_acceptance` (the kernel's acceptance), ``q`` the probability
    of the root-walk-then-top-down proposal, and ``λ = 1/2`` if lazy else 1. The holding
    probability ``1 - Σ_{y ≠ x} P(x, y)`` is put on the row equal to ``position``, so
    ``targets`` must list every embedding the proposal can reach from ``position`` (e.g. all of
    ``[n]^k``).

    Parameters
    ----------
    position : int (k,), a homomorphism in the support
    targets : int (S, k)

    Returns
    -------
    float (S,)
    """
    motif.require_tree("the pivot chain")
    position = jnp.asarray(position, dtype=jnp.int32)
    targets = jnp.asarray(targets, dtype=jnp.int32)
    root = motif.root

    def proposal_probability(y):
        x_root, y_root = position[root], y[root]
        a_sym = find_weight(network.sym, x_root, y_root)
        prob = a_sym * network.node_weights[y_root] / network.sym.mass[x_root]
        if motif.num_nodes > 1:
            children = motif.order[1:]
            parents = motif.parent[children]
            forward = motif.parent_edge_forward[children]
            rows = jnp.where(forward, y[parents], y[children])
            cols = jnp.where(forward, y[children], y[parents])
            edge = edge_weight(network, rows, cols)
            masses = child_masses(network, motif, y)
            safe = jnp.where(masses > 0, masses, 1.0)
            prob = prob * jnp.prod(jnp.where(masses > 0, edge * network.node_weights[y[children]] / safe, 0.0))
        return prob

    def move_probability(y):
        log_ratio = log_acceptance(network, motif, position, y)
        q = proposal_probability(y)
        accept = jnp.where(q > 0, jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)
        return q * accept * (0.5 if lazy else 1.0)

    is_current = jnp.all(targets == position, axis=1)
    moves = jnp.where(is_current, 0.0, jax.vmap(move_probability)(targets))
    return jnp.where(is_current, 1.0 - jnp.sum(moves), moves)
