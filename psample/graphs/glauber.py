"""Glauber chain over homomorphisms of a connected motif into a network.

The target is the homomorphism measure ``π_{F→G}(x) ∝ Π_i α(x_i) Π_{(i,j) ∈ E_F} A(x_i, x_j)``
(:mod:`psample.graphs.homomorphism`). One step picks a motif node ``v`` uniformly and resamples
``x_v`` from its full conditional ``∝ α(z) Π_{(u,v)} A(x_u, z) Π_{(v,w)} A(z, x_w)``
(Lyu, Mémoli & Sivakoff 2023, §3). The conditional vanishes outside the neighbourhood of the
image of one motif neighbour of ``v`` (its spanning-tree parent when it has one), so candidates
are that CSR row, padded to the network's largest degree; the other incident edges are looked up
in the network's edge hash table (constant work per candidate), and ``x_v`` is drawn by inverse
CDF with one uniform. If the conditional is all zero (only possible from a state that is not a
homomorphism) ``x_v`` is kept. Heat-bath updates are reversible with respect to π.

The chain moves only within the connected component (of the symmetrised network) in which it
starts. Mixing can be slow on sparse or very inhomogeneous networks (the paper's motivation for
the pivot chain, :mod:`psample.graphs.pivot`); the one-step kernel is exact regardless.
See the :doc:`family page </families/graphs>` for the method, tuning and measured limits.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." Journal of Machine Learning Research 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm, build_sampling_algorithm

from psample.graphs.categorical import draw_index
from psample.graphs.csr import at
from psample.graphs.edge_table import lookup_log
from psample.graphs.homomorphism import HomomorphismState, check_inputs, init, log_weight
from psample.graphs.motif import Motif
from psample.graphs.network import Network, max_degree

__all__ = ["GlauberInfo", "init", "conditional", "build_kernel", "as_top_level_api"]

Array = jax.Array


class GlauberInfo(NamedTuple):
    """One Glauber step.

    node : int32 scalar
        The motif node whose image was resampled.
    is_stuck : bool scalar
        The full conditional was all zero, so the image was kept.
    """

    node: Array
    is_stuck: Array


def conditional(network: Network, motif: Motif, position: Array, node: Array, num_slots: int) -> tuple[Array, Array]:
    """Candidates and unnormalised log-probabilities of the full conditional of ``node``.

    Candidates are the ``num_slots`` CSR slots of the anchor neighbour's image (padding has
    log-probability ``-inf``); a motif without edges (``k = 1``) uses all ``n`` nodes. On a
    symmetric network (``network.directed`` False, static) in-neighbours are out-neighbours,
    which halves the gathers.

    Parameters
    ----------
    network, motif
    position : int (k,)
    node : int scalar (traced)
        The motif node ``v`` to resample.
    num_slots : int (static)
        At least the largest out- or in-degree of the network.

    Returns
    -------
    candidates : int32 (S,)
    logits : float (S,)
        ``log α(z) + Σ log A`` over the motif edges at ``v``; ``-inf`` where zero or padding.
    """
    if motif.num_edges == 0:
        return jnp.arange(network.num_nodes, dtype=jnp.int32), jnp.log(network.node_weights)
    directed, out, back = network.directed, network.out, network.in_
    nbr_nodes = jnp.asarray(motif.neighbour_nodes)[node]
    nbr_out = jnp.asarray(motif.neighbour_outgoing)[node]
    nbr_mask = jnp.asarray(motif.neighbour_mask)[node]
    nbr_images = position[nbr_nodes]
    # The anchor: edge u -> v means z is an out-neighbour of x_u; v -> u an in-neighbour.
    anchor, anchor_out = nbr_images[0], nbr_out[0]
    start, stop = at(out.indptr, anchor), at(out.indptr, anchor + 1)
    if directed:
        start = jnp.where(anchor_out, at(back.indptr, anchor), start)
        stop = jnp.where(anchor_out, at(back.indptr, anchor + 1), stop)
    slots = start + jnp.arange(num_slots, dtype=start.dtype)
    in_row = slots < stop
    safe = jnp.clip(slots, 0, network.num_edges - 1)
    candidates = out.indices[safe]
    logits = out.log_mass[safe]  # log(A(x_u, z) α(z)): the anchor edge and the node weight
    if directed:
        candidates = jnp.where(anchor_out, back.indices[safe], candidates)
        logits = jnp.where(anchor_out, back.log_mass[safe], logits)

    # log A(x_w, z) (or log A(z, x_w) for an edge v -> w) for the other incident edges, by
    # hash-table lookups of stored log-weights: constant work per candidate whatever the degree
    # of x_w, and no logarithm.
    for j in range(1, nbr_nodes.shape[0]):  # static: the motif's largest degree
        image = nbr_images[j]
        if directed:
            rows = jnp.where(nbr_out[j], candidates, image)
            cols = jnp.where(nbr_out[j], image, candidates)
        else:
            rows, cols = image, candidates
        terms = lookup_log(network.edge_table, rows, cols)
        logits = logits + jnp.where(nbr_mask[j], terms, 0.0)
    logits = jnp.where(in_row, logits, -jnp.inf)
    return candidates, logits


def build_kernel(motif: Motif, num_slots: int) -> Callable:
    """Glauber kernel ``kernel(rng_key, state, network) -> (state, GlauberInfo)``.

    Parameters
    ----------
    motif : Motif
        Any connected motif (static).
    num_slots : int
        Candidate slots, at least the network's largest degree (see
        :func:`psample.graphs.network.max_degree`).
    """

    def kernel(rng_key, state: HomomorphismState, network: Network):
        u_node, u_value = jax.random.uniform(rng_key, (2,), dtype=network.out.weights.dtype)
        position = state.position
        k = motif.num_nodes
        # u in [0, 1): floor(u k) in [0, k); the minimum guards u = 1 after rounding.
        node = jnp.minimum(jnp.floor(u_node * k).astype(jnp.int32), k - 1)
        candidates, logits = conditional(network, motif, position, node, num_slots)
        # Inverse-CDF draw from the conditional (one uniform; zero-weight slots never hit).
        top = jnp.max(logits)
        is_stuck = top == -jnp.inf
        choice = draw_index(jnp.exp(logits - jnp.where(is_stuck, 0.0, top)), u_value)
        value = jnp.where(is_stuck, position[node], candidates[choice])
        position = position.at[node].set(value.astype(jnp.int32))
        new_state = HomomorphismState(position, log_weight(network, motif, position))
        return new_state, GlauberInfo(node, is_stuck)

    return kernel


def as_top_level_api(network: Network, motif: Motif) -> SamplingAlgorithm:
    """Glauber chain over homomorphisms of any connected ``motif`` into ``network``.

    One step costs ``O(Δ_G · deg_F(v))``: every slot of the anchor's CSR row, padded to the
    network's largest degree ``Δ_G``, is weighed by looking up the other motif edges in the
    network's edge hash table.

    Examples
    --------
    >>> algorithm = glauber_chain(network, Motif.cycle(3))
    >>> x0 = initial_embeddings(network, Motif.cycle(3), key, 1)[0]
    >>> state, info = algorithm.step(key, algorithm.init(x0))

    Returns
    -------
    blackjax.base.SamplingAlgorithm
        ``init(position)`` with ``position`` an int ``(k,)`` embedding;
        ``step(rng_key, state) -> (HomomorphismState, GlauberInfo)``.

    Raises
    ------
    NetworkError, MotifError
        ``network`` is not a :class:`Network` or ``motif`` not a :class:`Motif`.
    """
    network, motif = check_inputs(network, motif)
    kernel = build_kernel(motif, max_degree(network))
    return build_sampling_algorithm(kernel, init, network, init_args=(motif,))
