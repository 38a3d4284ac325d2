"""Glauber and pivot chains over homomorphisms of a motif into a network.

For a network ``G = ([n], A, α)`` and a motif ``F = ([k], E_F)`` the target is the
homomorphism measure on maps ``x : [k] -> [n]``

    π_{F→G}(x) ∝ Π_i α(x_i) Π_{(i,j) ∈ E_F} A(x_i, x_j)

(Lyu, Mémoli & Sivakoff 2023, §2). The state's ``embedding[i]`` is the network node of motif
node ``i``; ``logdensity`` is the log of the unnormalised weight above (``-inf`` off the
support).

**Glauber** (any connected motif): pick a motif node ``v`` uniformly and resample ``x_v`` from
its full conditional ``∝ α(z) Π_{(u,v)} A(x_u, z) Π_{(v,w)} A(z, x_w)``. The conditional
vanishes outside the neighbourhood of the image of one motif neighbour of ``v`` (its
spanning-tree parent when it has one), so candidates are that CSR row, padded to the network's
largest degree; the other incident edges are looked up in the network's edge hash table
(constant work per candidate), and ``x_v`` is drawn by inverse CDF with one uniform. If the
conditional is all zero (only possible from a state that is not a homomorphism) ``x_v`` is
kept. Heat-bath updates are reversible with respect to π.

**Pivot** (tree motifs): the root takes one step of the walk ``Q(a, b) = A_s(a, b) α(b) / d_s(a)``
on the symmetrised network ``A_s = (A + Aᵀ)/2``; the other nodes are then redrawn top-down, each
from its parent's neighbourhood, ``q(z | w) = A(w, z) α(z) / d(w)`` (in-neighbours with
``A(z, w)`` for a tree edge pointing to the parent). The whole new embedding ``y`` is accepted
with the exact Metropolis–Hastings probability

    min{1, [d_s(x_root) Π_{c ≠ root} d_c(y_{p(c)})] / [d_s(y_root) Π_{c ≠ root} d_c(x_{p(c)})]},

``d_c`` the out- (or in-) mass used to draw ``c``, so that π_{F→G} is stationary on every graph.
(The authors' code by default targets a uniform root, accepting with ``deg(x)/deg(y)``; that
is exact only on regular graphs and is not used here.) On bipartite graphs the root walk is
periodic: use ``lazy=True``, which holds with probability 1/2.

Both chains move only within the connected component (of the symmetrised network) in which
they start.

References
----------
.. [1] H. Lyu, F. Mémoli, D. Sivakoff. "Sampling random graph homomorphisms and applications to
   network data analysis." Journal of Machine Learning Research 24(9), 2023. arXiv:1910.09483.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from blackjax.base import SamplingAlgorithm

from psample.errors import InitialPointError, MotifError, NetworkError, ShapeError, check_positive_int
from psample.graphs.categorical import draw_index
from psample.graphs.edge_table import lookup_log
from psample.graphs.motif import Motif
from psample.graphs.network import (
    Network,
    _at,
    _find_in_row,
    _first_in_row_where_greater,
    _sample_slot,
    bipartite_components,
    edge_weight,
    max_degree,
)

__all__ = [
    "HomomorphismState",
    "GlauberInfo",
    "PivotInfo",
    "init",
    "log_weight",
    "is_homomorphism",
    "build_glauber_kernel",
    "build_pivot_kernel",
    "glauber",
    "pivot",
    "glauber_conditional",
    "pivot_log_acceptance",
    "glauber_transition_probabilities",
    "pivot_transition_probabilities",
    "initial_embeddings",
]

Array = jax.Array


class HomomorphismState(NamedTuple):
    """State of a homomorphism chain.

    embedding : int32 (k,)
        ``embedding[i]`` is the network node of motif node ``i``.
    logdensity : float scalar
        ``log(Π_i α(x_i) Π_{(i,j)} A(x_i, x_j))``; ``-inf`` when ``embedding`` is not in the
        support (not a homomorphism, or a node of zero weight).
    """

    embedding: Array
    logdensity: Array

    @property
    def position(self) -> Array:
        """The embedding (BlackJAX's name for what a chain records)."""
        return self.embedding


class GlauberInfo(NamedTuple):
    """One Glauber step.

    node : int32
        The motif node whose image was resampled.
    is_stuck : bool
        The full conditional was all zero, so the image was kept.
    """

    node: Array
    is_stuck: Array


class PivotInfo(NamedTuple):
    """One pivot step.

    acceptance_rate : float
        Metropolis–Hastings acceptance probability of the proposed embedding (0 when the
        proposal could not be completed, or when a lazy step held).
    is_accepted : bool
        Whether the proposal was accepted.
    is_held : bool
        Whether a lazy step held without proposing.
    """

    acceptance_rate: Array
    is_accepted: Array
    is_held: Array


# ---------------------------------------------------------------------- weights
def _edge_lookup(network: Network, rows: Array, cols: Array) -> Array:
    return jax.vmap(lambda a, b: edge_weight(network, a, b))(rows, cols)


def log_weight(network: Network, motif: Motif, embedding: Array) -> Array:
    """``log(Π_i α(x_i) Π_{(i,j) ∈ E_F} A(x_i, x_j))`` for one embedding (``-inf`` off support).

    Parameters
    ----------
    network : Network
    motif : Motif
    embedding : int (k,)

    Returns
    -------
    float scalar
    """
    embedding = jnp.asarray(embedding)
    total = jnp.sum(jnp.log(network.node_weights[embedding]))
    if motif.num_edges:
        edges = motif.edges
        weights = _edge_lookup(network, embedding[edges[:, 0]], embedding[edges[:, 1]])
        total = total + jnp.sum(jnp.log(weights))
    return total


def is_homomorphism(network: Network, motif: Motif, embedding: Array) -> Array:
    """Whether every motif edge ``(i, j)`` lands on an edge, ``A(x_i, x_j) > 0`` (bool scalar)."""
    embedding = jnp.asarray(embedding)
    if not motif.num_edges:
        return jnp.asarray(True)
    edges = motif.edges
    return jnp.all(_edge_lookup(network, embedding[edges[:, 0]], embedding[edges[:, 1]]) > 0)


def init(position: Array, network: Network, motif: Motif) -> HomomorphismState:
    """State at an embedding ``position`` (int, shape ``(k,)``)."""
    embedding = jnp.asarray(position)
    if embedding.shape != (motif.num_nodes,):
        raise ShapeError(
            f"position must be one embedding of shape ({motif.num_nodes},) (motif nodes), got "
            f"shape {embedding.shape}; run many chains with jax.vmap or psample.sample"
        )
    if not jnp.issubdtype(embedding.dtype, jnp.integer):
        raise ShapeError(f"position must hold integer node indices, got dtype {embedding.dtype}")
    embedding = embedding.astype(jnp.int32)
    return HomomorphismState(embedding, log_weight(network, motif, embedding))


# ---------------------------------------------------------------------- Glauber
def glauber_conditional(
    network: Network, motif: Motif, embedding: Array, node: Array, num_slots: int, directed: bool = True
) -> tuple[Array, Array]:
    """Candidates and unnormalised log-probabilities of the full conditional of ``node``.

    Candidates are the ``num_slots`` CSR slots of the anchor neighbour's image (padding has
    log-probability ``-inf``); a motif without edges (``k = 1``) uses all ``n`` nodes.

    Parameters
    ----------
    network, motif
    embedding : int (k,)
    node : int scalar (traced)
        The motif node ``v`` to resample.
    num_slots : int (static)
        At least the largest out- or in-degree of the network.
    directed : bool (static)
        ``False`` promises a symmetric network (in-neighbours = out-neighbours), which halves
        the gathers.

    Returns
    -------
    candidates : int32 (S,)
    logits : float (S,)
        ``log α(z) + Σ log A`` over the motif edges at ``v``; ``-inf`` where zero or padding.
    """
    if motif.num_edges == 0:
        candidates = jnp.arange(network.num_nodes, dtype=jnp.int32)
        return candidates, jnp.log(network.node_weights)
    nbr_nodes = jnp.asarray(motif.neighbour_nodes)[node]
    nbr_out = jnp.asarray(motif.neighbour_outgoing)[node]
    nbr_mask = jnp.asarray(motif.neighbour_mask)[node]
    nbr_images = embedding[nbr_nodes]
    # The anchor: edge u -> v means z is an out-neighbour of x_u; v -> u an in-neighbour.
    anchor, anchor_out = nbr_images[0], nbr_out[0]
    start, stop = _at(network.indptr, anchor), _at(network.indptr, anchor + 1)
    if directed:
        start = jnp.where(anchor_out, _at(network.in_indptr, anchor), start)
        stop = jnp.where(anchor_out, _at(network.in_indptr, anchor + 1), stop)
    slots = start + jnp.arange(num_slots, dtype=start.dtype)
    in_row = slots < stop
    safe = jnp.clip(slots, 0, network.num_edges - 1)
    candidates = network.indices[safe]
    logits = network.log_mass[safe]  # log(A(x_u, z) α(z)): the anchor edge and the node weight
    if directed:
        candidates = jnp.where(anchor_out, network.in_indices[safe], candidates)
        logits = jnp.where(anchor_out, network.in_log_mass[safe], logits)

    # log A(x_w, z) (or log A(z, x_w) for an edge v -> w) for the other incident edges, by
    # hash-table lookups of stored log-weights: constant work per candidate whatever the degree
    # of x_w, and no logarithm.
    def incident_log_weight(image, outgoing, z):
        if not directed:
            return lookup_log(network.edge_table, image, z)
        return lookup_log(network.edge_table, jnp.where(outgoing, z, image), jnp.where(outgoing, image, z))

    for j in range(1, nbr_nodes.shape[0]):  # static: the motif's largest degree
        terms = jax.vmap(incident_log_weight, (None, None, 0))(nbr_images[j], nbr_out[j], candidates)
        logits = logits + jnp.where(nbr_mask[j], terms, 0.0)
    logits = jnp.where(in_row, logits, -jnp.inf)
    return candidates, logits


def build_glauber_kernel(motif: Motif, num_slots: int, directed: bool = True) -> Callable:
    """Glauber kernel ``kernel(rng_key, state, network) -> (state, GlauberInfo)``.

    Parameters
    ----------
    motif : Motif
        Any connected motif (static).
    num_slots : int
        Candidate slots, at least the network's largest degree (see
        :func:`psample.graphs.network.max_degree`).
    directed : bool
        ``False`` promises the kernel only meets symmetric networks (a cheaper step).
    """

    def kernel(rng_key, state: HomomorphismState, network: Network):
        u_node, u_value = jax.random.uniform(rng_key, (2,), dtype=network.weights.dtype)
        embedding = state.embedding
        k = motif.num_nodes
        node = jnp.minimum(jnp.floor(u_node * k).astype(jnp.int32), k - 1)
        candidates, logits = glauber_conditional(network, motif, embedding, node, num_slots, directed)
        # Inverse-CDF draw from the conditional (one uniform; zero-weight slots never hit).
        top = jnp.max(logits)
        is_stuck = top == -jnp.inf
        choice = draw_index(jnp.exp(logits - jnp.where(is_stuck, 0.0, top)), u_value)
        value = jnp.where(is_stuck, embedding[node], candidates[choice])
        embedding = embedding.at[node].set(value.astype(jnp.int32))
        new_state = HomomorphismState(embedding, log_weight(network, motif, embedding))
        return new_state, GlauberInfo(node, is_stuck)

    return kernel


def glauber_transition_probabilities(
    network: Network, motif: Motif, embedding: Array, targets: Array, num_slots: int | None = None
) -> Array:
    """One-step Glauber probabilities ``P(embedding -> y)`` for each row ``y`` of ``targets``.

    Built from :func:`glauber_conditional`, the function the kernel samples from:
    ``P(x, y) = (1/k) Σ_v 1[y_{-v} = x_{-v}] p_v(y_v | x)``, with ``p_v`` the normalised
    conditional (a point mass at ``x_v`` when it is all zero).

    Parameters
    ----------
    embedding : int (k,)
    targets : int (S, k)
    num_slots : int, optional
        Default: the network's largest degree.

    Returns
    -------
    float (S,)
    """
    num_slots = max_degree(network) if num_slots is None else num_slots
    embedding = jnp.asarray(embedding, dtype=jnp.int32)
    targets = jnp.asarray(targets, dtype=jnp.int32)
    k = motif.num_nodes
    nodes = jnp.arange(k, dtype=jnp.int32)
    candidates, logits = jax.vmap(lambda v: glauber_conditional(network, motif, embedding, v, num_slots))(nodes)
    stuck = jnp.all(logits == -jnp.inf, axis=1)  # (k,)
    probs = jnp.where(stuck[:, None], 0.0, jax.nn.softmax(logits, axis=1))  # (k, S)
    differs = targets != embedding  # (T, k)
    # same_rest[t, v]: target t agrees with the embedding off node v.
    same_rest = (jnp.sum(differs, axis=1, keepdims=True) - differs) == 0
    # to_value[t, v] = p_v(targets[t, v] | embedding).
    matches = candidates[None, :, :] == targets[:, :, None]  # (T, k, S)
    to_value = jnp.sum(jnp.where(matches, probs[None], 0.0), axis=2)
    to_value = jnp.where(stuck[None, :], (~differs).astype(to_value.dtype), to_value)
    return jnp.sum(jnp.where(same_rest, to_value, 0.0), axis=1) / k


# ---------------------------------------------------------------------- pivot
def _child_masses(network: Network, motif: Motif, embedding: Array) -> Array:
    """``d_c(x_{p(c)})`` for every non-root node ``c`` (breadth-first order), shape (k-1,)."""
    children = motif.order[1:]
    parents = embedding[motif.parent[children]]
    forward = jnp.asarray(motif.parent_edge_forward[children])
    return jnp.where(forward, network.out_mass[parents], network.in_mass[parents])


def pivot_log_acceptance(network: Network, motif: Motif, current: Array, proposal: Array) -> Array:
    """Log Metropolis–Hastings ratio of the pivot move ``current -> proposal`` (both in support).

    ``log[d_s(x_r) Π_c d_c(y_{p(c)})] - log[d_s(y_r) Π_c d_c(x_{p(c)})]``: the target times the
    reverse proposal over the target times the forward proposal, after the edge and node weights
    of the top-down draws cancel (the symmetric ``A_s`` cancels in the root walk).

    Parameters
    ----------
    current, proposal : int (k,)

    Returns
    -------
    float scalar
    """
    root = motif.root
    log_ratio = jnp.log(network.sym_mass[current[root]]) - jnp.log(network.sym_mass[proposal[root]])
    if motif.num_nodes > 1:
        log_ratio = log_ratio + jnp.sum(jnp.log(_child_masses(network, motif, proposal)))
        log_ratio = log_ratio - jnp.sum(jnp.log(_child_masses(network, motif, current)))
    return log_ratio


def _draw_from(network: Network, uniform: Array, w: Array, forward) -> tuple[Array, Array, Array]:
    """A neighbour of ``w`` along a tree edge: ``(node, edge weight, ok)``, from a U[0, 1) draw.

    ``forward`` (bool, static or traced): out-neighbour ``A(w, z) α(z)``, else in-neighbour
    ``A(z, w) α(z)``.
    """

    def draw(indptr, indices, weights, cum_mass, mass):
        slot, ok = _sample_slot(indptr, cum_mass, mass, uniform, w)
        return _at(indices, slot), _at(weights, slot), ok

    out = draw(network.indptr, network.indices, network.weights, network.cum_mass, network.out_mass)
    if forward is True:
        return out
    back = draw(network.in_indptr, network.in_indices, network.in_weights, network.in_cum_mass, network.in_mass)
    if forward is False:
        return back
    return tuple(jnp.where(forward, a, b) for a, b in zip(out, back, strict=True))


def _draw_subtree(network: Network, motif: Motif, uniforms: Array, embedding: Array, directed: bool = True):
    """Redraw every non-root node top-down from its parent; returns (embedding, log weight, ok).

    ``uniforms`` holds ``k - 1`` U[0, 1) draws, one per non-root node in breadth-first order.
    The log weight covers the non-root nodes and the tree edges only. ``directed=False``
    promises a symmetric network, where every tree edge can be drawn forward.
    """
    if motif.num_nodes == 1:
        return embedding, jnp.zeros(()), jnp.asarray(True)
    children = jnp.asarray(motif.order[1:])
    parents = jnp.asarray(motif.parent)
    forward_table = jnp.asarray(motif.parent_edge_forward)
    static_forward = True if (not directed or bool(np.all(motif.parent_edge_forward))) else None

    def body(i, carry):
        embedding, log_w, ok = carry
        c = children[i]
        forward = static_forward if static_forward is not None else forward_table[c]
        node, weight, found = _draw_from(network, uniforms[i], embedding[parents[c]], forward)
        embedding = embedding.at[c].set(node)
        log_w = log_w + jnp.log(_at(network.node_weights, node)) + jnp.log(weight)
        return embedding, log_w, ok & found

    init_carry = (embedding, jnp.zeros((), network.weights.dtype), jnp.asarray(True))
    return jax.lax.fori_loop(0, motif.num_nodes - 1, body, init_carry)


def build_pivot_kernel(motif: Motif, lazy: bool = False, directed: bool = True) -> Callable:
    """Pivot kernel ``kernel(rng_key, state, network) -> (state, PivotInfo)`` for a tree motif.

    Parameters
    ----------
    motif : Motif
        A tree (static).
    lazy : bool
        Hold with probability 1/2 (needed on bipartite networks).
    directed : bool
        ``False`` promises the kernel only meets symmetric networks (a cheaper step).
    """
    motif.require_tree("the pivot chain")
    root = motif.root

    def kernel(rng_key, state: HomomorphismState, network: Network):
        # All uniforms in one draw: root walk, k - 1 tree nodes, acceptance, lazy hold.
        k = motif.num_nodes
        uniforms = jax.random.uniform(rng_key, (k + 2,), dtype=network.weights.dtype)
        current = state.embedding
        slot, root_ok = _sample_slot(
            network.sym_indptr, network.sym_cum_mass, network.sym_mass, uniforms[0], current[root]
        )
        new_root = _at(network.sym_indices, slot)
        proposal = current.at[root].set(new_root)
        proposal, log_w, tree_ok = _draw_subtree(network, motif, uniforms[1:k], proposal, directed)
        log_w = log_w + jnp.log(network.node_weights[new_root])
        proposal_ok = root_ok & tree_ok & jnp.isfinite(log_w)
        current_ok = jnp.isfinite(state.logdensity)
        log_ratio = pivot_log_acceptance(network, motif, current, proposal)
        # From outside the support any valid proposal is accepted (π(x) = 0).
        log_ratio = jnp.where(current_ok, log_ratio, jnp.inf)
        log_ratio = jnp.where(proposal_ok, log_ratio, -jnp.inf)
        acceptance_rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
        accept = uniforms[k] < acceptance_rate
        held = uniforms[k + 1] < 0.5 if lazy else jnp.asarray(False)
        accept = accept & ~held
        new_state = HomomorphismState(
            jnp.where(accept, proposal, current),
            jnp.where(accept, log_w, state.logdensity),
        )
        info = PivotInfo(jnp.where(held, 0.0, acceptance_rate), accept, held)
        return new_state, info

    return kernel


def pivot_transition_probabilities(
    network: Network, motif: Motif, embedding: Array, targets: Array, lazy: bool = False
) -> Array:
    """One-step pivot probabilities ``P(embedding -> y)`` for each row ``y`` of ``targets``.

    ``P(x, y) = λ q(y | x) min(1, r(x, y))`` for ``y ≠ x`` with ``r`` from
    :func:`pivot_log_acceptance` (the kernel's acceptance), ``q`` the probability of the
    root-walk-then-top-down proposal, and ``λ = 1/2`` if lazy else 1. The holding probability
    ``1 - Σ_{y ≠ x} P(x, y)`` is put on the row equal to ``embedding``, so ``targets`` must
    list every embedding the proposal can reach from ``embedding`` (e.g. all of ``[n]^k``).

    Parameters
    ----------
    embedding : int (k,), a homomorphism in the support
    targets : int (S, k)

    Returns
    -------
    float (S,)
    """
    motif.require_tree("the pivot chain")
    embedding = jnp.asarray(embedding, dtype=jnp.int32)
    targets = jnp.asarray(targets, dtype=jnp.int32)
    root = motif.root

    def proposal_probability(y):
        x_root, y_root = embedding[root], y[root]
        a_sym = _find_in_row(network.sym_indptr, network.sym_indices, network.sym_weights, x_root, y_root)
        prob = a_sym * network.node_weights[y_root] / network.sym_mass[x_root]
        if motif.num_nodes > 1:
            children = motif.order[1:]
            parents = motif.parent[children]
            forward = motif.parent_edge_forward[children]
            rows = jnp.where(forward, y[parents], y[children])
            cols = jnp.where(forward, y[children], y[parents])
            edge = _edge_lookup(network, rows, cols)
            masses = _child_masses(network, motif, y)
            safe = jnp.where(masses > 0, masses, 1.0)
            prob = prob * jnp.prod(jnp.where(masses > 0, edge * network.node_weights[y[children]] / safe, 0.0))
        return prob

    def move_probability(y):
        log_ratio = pivot_log_acceptance(network, motif, embedding, y)
        q = proposal_probability(y)
        accept = jnp.where(q > 0, jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)
        return q * accept * (0.5 if lazy else 1.0)

    is_current = jnp.all(targets == embedding, axis=1)
    moves = jnp.where(is_current, 0.0, jax.vmap(move_probability)(targets))
    return jnp.where(is_current, 1.0 - jnp.sum(moves), moves)


# ---------------------------------------------------------------------- initial embeddings
def _spanning_tree_support(network: Network, motif: Motif) -> np.ndarray:
    """Nodes that can host the root of a homomorphism of the spanning tree (host-side DP).

    ``s_c(z) = [α(z) > 0] Π_{children c'} [∃ z' : A_{c'}(z, z') > 0, s_{c'}(z')]``.
    """
    A = network.to_scipy()
    alpha_pos = np.asarray(network.node_weights) > 0
    support = np.tile(alpha_pos, (motif.num_nodes, 1))
    for c in motif.order[::-1][:-1] if motif.num_nodes > 1 else []:
        p = motif.parent[c]
        matrix = A if motif.parent_edge_forward[c] else sp.csr_array(A.T)
        reachable = (matrix @ support[c].astype(np.float64)) > 0
        support[p] &= reachable
    return support[motif.root]


def initial_embeddings(
    network: Network, motif: Motif, rng_key: Array, num_chains: int, *, max_attempts: int = 1000
) -> Array:
    """Draw one homomorphism per chain (a non-stationary start, all in the support).

    The root is drawn from ``α`` restricted to nodes that can host the root of the motif's
    breadth-first spanning tree (an exact dynamic program over that tree), the other nodes
    top-down from their parent's neighbourhood, ``A(w, z) α(z)`` (as in the pivot proposal).
    Draws that are not in the support (a leaf-ward dead end, or for a motif with cycles an
    off-tree edge that misses) are redrawn, all chains at once, up to ``max_attempts`` times.

    Parameters
    ----------
    network : Network
    motif : Motif
    rng_key : PRNG key
    num_chains : int
    max_attempts : int

    Returns
    -------
    int32 (num_chains, k)

    Raises
    ------
    NetworkError
        No node can host the root: the motif has no homomorphism into the network.
    InitialPointError
        Some chains found no homomorphism within ``max_attempts`` rounds (a motif with cycles
        that the network rarely or never contains).
    """
    num_chains = check_positive_int("num_chains", num_chains)
    max_attempts = check_positive_int("max_attempts", max_attempts)
    if not isinstance(motif, Motif):
        raise MotifError(f"motif must be a psample Motif, got {type(motif).__name__}")
    roots = _spanning_tree_support(network, motif)
    if not roots.any():
        raise NetworkError(
            f"no homomorphism of {motif!r} into the network exists (no node can host the root of "
            "its spanning tree): its homomorphism density is 0"
        )
    root_weights = np.where(roots, np.asarray(network.node_weights), 0.0)
    root_cum = jnp.asarray(np.cumsum(root_weights))
    k = motif.num_nodes

    def draw(key):
        uniforms = jax.random.uniform(key, (k,), dtype=root_cum.dtype)
        u = uniforms[0] * root_cum[-1]
        root = _first_in_row_where_greater(root_cum, jnp.int32(0), jnp.int32(root_cum.shape[0]), u)
        root = jnp.minimum(root, root_cum.shape[0] - 1).astype(jnp.int32)
        embedding = jnp.zeros(k, jnp.int32).at[motif.root].set(root)
        embedding, _, _ = _draw_subtree(network, motif, uniforms[1:], embedding, network.is_directed)
        return embedding, jnp.isfinite(log_weight(network, motif, embedding))

    @jax.jit
    def run(key):
        def cond(carry):
            _, _, valid, attempt = carry
            return (attempt < max_attempts) & ~jnp.all(valid)

        def body(carry):
            key, embeddings, valid, attempt = carry
            key, subkey = jax.random.split(key)
            fresh, fresh_valid = jax.vmap(draw)(jax.random.split(subkey, num_chains))
            embeddings = jnp.where(valid[:, None], embeddings, fresh)
            return key, embeddings, valid | fresh_valid, attempt + 1

        start = (key, jnp.zeros((num_chains, k), jnp.int32), jnp.zeros(num_chains, bool), 0)
        _, embeddings, valid, _ = jax.lax.while_loop(cond, body, start)
        return embeddings, valid

    embeddings, valid = run(rng_key)
    if not bool(jnp.all(valid)):
        bad = int(np.sum(~np.asarray(valid)))
        raise InitialPointError(
            f"{bad} of {num_chains} chains found no homomorphism of {motif!r} in "
            f"max_attempts={max_attempts} draws; the network may contain few or no copies of its "
            "cycles (increase max_attempts, or pass embeddings you know to be homomorphisms)"
        )
    return embeddings


# ---------------------------------------------------------------------- top-level API
def _check_inputs(network, motif) -> None:
    if not isinstance(network, Network):
        raise NetworkError(
            f"network must be a psample Network (Network.from_networkx / from_adjacency), got {type(network).__name__}"
        )
    if not isinstance(motif, Motif):
        raise MotifError(
            f"motif must be a psample Motif (Motif.path, Motif.from_networkx, ...), got {type(motif).__name__}"
        )


def glauber(network: Network, motif: Motif) -> SamplingAlgorithm:
    """Glauber chain over homomorphisms of any connected ``motif`` into ``network``.

    One step costs ``O(Δ_G · deg_F(v))``: every slot of the anchor's CSR row, padded to the
    network's largest degree ``Δ_G``, is weighed by looking up the other motif edges in the
    network's edge hash table.
    Mixing can be slow on sparse or very inhomogeneous networks (the paper's motivation for the
    pivot chain); the one-step kernel is exact regardless.

    Examples
    --------
    >>> algorithm = glauber(network, Motif.cycle(3))
    >>> x0 = initial_embeddings(network, Motif.cycle(3), key, 1)[0]
    >>> state, info = algorithm.step(key, algorithm.init(x0))

    Returns
    -------
    blackjax.base.SamplingAlgorithm
        ``init(position)`` with ``position`` an int ``(k,)`` embedding;
        ``step(rng_key, state) -> (HomomorphismState, GlauberInfo)``.
    """
    _check_inputs(network, motif)
    kernel = build_glauber_kernel(motif, max_degree(network), directed=network.is_directed)
    return _sampling_algorithm(kernel, network, motif)


def _sampling_algorithm(kernel: Callable, network: Network, motif: Motif) -> SamplingAlgorithm:
    """``SamplingAlgorithm`` closing ``kernel(rng_key, state, network)`` over ``network``."""
    init_jit = jax.jit(lambda position: init(position, network, motif))

    def init_fn(position, rng_key=None):
        return init_jit(position)

    def step_fn(rng_key, state):
        return kernel(rng_key, state, network)

    return SamplingAlgorithm(init_fn, step_fn)


def pivot(network: Network, motif: Motif, lazy: bool = False) -> SamplingAlgorithm:
    """Pivot chain over homomorphisms of a tree ``motif`` into ``network`` (exact MH rule).

    Parameters
    ----------
    network : Network
    motif : Motif
        A tree; its ``root`` is the pivot.
    lazy : bool
        Hold with probability 1/2 each step. Required when a component of the (symmetrised)
        network is bipartite, where the root walk would be periodic.

    Raises
    ------
    MotifError
        The motif is not a tree (use :func:`glauber`).
    NetworkError
        ``lazy=False`` on a network with a bipartite component.
    """
    _check_inputs(network, motif)
    motif.require_tree("pivot")
    if not lazy:
        bipartite = bipartite_components(network)
        if bipartite:
            nodes = bipartite[0]
            shown = f"{nodes[:8]}{' ...' if len(nodes) > 8 else ''}"
            raise NetworkError(
                f"the network has a bipartite component (nodes {shown}, {len(bipartite)} such "
                "component(s)): the pivot root walk is periodic there and does not converge; "
                "use pivot(network, motif, lazy=True)"
            )
    kernel = build_pivot_kernel(motif, lazy=bool(lazy), directed=network.is_directed)
    return _sampling_algorithm(kernel, network, motif)
