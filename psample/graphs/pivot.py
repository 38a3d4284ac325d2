"""Pivot chain over homomorphisms of a tree motif into a network (exact Metropolis–Hastings).

The target is the homomorphism measure ``π_{F→G}(x) ∝ Π_i α(x_i) Π_{(i,j) ∈ E_F} A(x_i, x_j)``
(:mod:`psample.graphs.homomorphism`). One step (Lyu, Mémoli & Sivakoff 2023, §3): the root takes
one step of the walk ``Q(a, b) = A_s(a, b) α(b) / d_s(a)`` on the symmetrised network
``A_s = (A + Aᵀ)/2``; the other nodes are then redrawn top-down, each from its parent's
neighbourhood, ``q(z | w) = A(w, z) α(z) / d(w)`` (in-neighbours with ``A(z, w)`` for a tree
edge pointing to the parent). The whole new embedding ``y`` is accepted with the exact
Metropolis–Hastings probability

    min{1, [d_s(x_root) Π_{c ≠ root} d_c(y_{p(c)})] / [d_s(y_root) Π_{c ≠ root} d_c(x_{p(c)})]},

``d_c`` the out- (or in-) mass used to draw ``c``, so that π_{F→G} is stationary on every graph.
(The authors' code by default targets a uniform root, accepting with ``deg(x)/deg(y)``; that
is exact only on regular graphs and is not used here.) On bipartite graphs the root walk is
periodic: use ``lazy=True``, which holds with probability 1/2. The chain moves only within the
connected component (of the symmetrised network) in which it starts. See the :doc:`family page
</families/graphs>` for the method, tuning and measured limits.

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
from blackjax.base import SamplingAlgorithm, build_sampling_algorithm

from psample.errors import NetworkError
from psample.graphs.csr import at, sample_slot
from psample.graphs.homomorphism import HomomorphismState, check_inputs, child_masses, init
from psample.graphs.motif import Motif
from psample.graphs.network import Network, bipartite_components

__all__ = ["PivotInfo", "init", "log_acceptance", "draw_subtree", "build_kernel", "as_top_level_api"]

Array = jax.Array


class PivotInfo(NamedTuple):
    """One pivot step.

    acceptance_rate : float scalar
        Metropolis–Hastings acceptance probability of the proposed embedding (0 when the
        proposal could not be completed, or when a lazy step held).
    is_accepted : bool scalar
        Whether the proposal was accepted.
    is_held : bool scalar
        Whether a lazy step held without proposing.
    """

    acceptance_rate: Array
    is_accepted: Array
    is_held: Array


def log_acceptance(network: Network, motif: Motif, current: Array, proposal: Array) -> Array:
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
    root, mass = motif.root, network.sym.mass
    log_ratio = jnp.log(mass[current[root]]) - jnp.log(mass[proposal[root]])
    if motif.num_nodes > 1:
        log_ratio = log_ratio + jnp.sum(jnp.log(child_masses(network, motif, proposal)))
        log_ratio = log_ratio - jnp.sum(jnp.log(child_masses(network, motif, current)))
    return log_ratio


def _draw_from(network: Network, uniform: Array, w: Array, forward) -> tuple[Array, Array, Array]:
    """A neighbour of ``w`` along a tree edge: ``(node, edge weight, ok)``, from a U[0, 1) draw.

    ``forward`` (bool, static or traced): out-neighbour ``A(w, z) α(z)``, else in-neighbour
    ``A(z, w) α(z)``.
    """

    def draw(rows):
        slot, ok = sample_slot(rows, uniform, w)
        return at(rows.indices, slot), at(rows.weights, slot), ok

    out = draw(network.out)
    if forward is True:
        return out
    back = draw(network.in_)
    if forward is False:
        return back
    return tuple(jnp.where(forward, a, b) for a, b in zip(out, back, strict=True))


def draw_subtree(network: Network, motif: Motif, uniforms: Array, position: Array):
    """Redraw every non-root node top-down from its parent: ``(position, log weight, ok)``.

    ``uniforms`` holds ``k - 1`` U[0, 1) draws, one per non-root node in breadth-first order.
    The log weight covers the non-root nodes and the tree edges only; ``ok`` is False when some
    parent had no neighbour of positive mass. On a symmetric network every tree edge is drawn
    forward.
    """
    if motif.num_nodes == 1:
        return position, jnp.zeros(()), jnp.asarray(True)
    children = jnp.asarray(motif.order[1:])
    parents = jnp.asarray(motif.parent)
    forward_table = jnp.asarray(motif.parent_edge_forward)
    static_forward = True if (not network.directed or bool(np.all(motif.parent_edge_forward))) else None

    def body(i, carry):
        position, log_w, ok = carry
        c = children[i]
        forward = static_forward if static_forward is not None else forward_table[c]
        node, weight, found = _draw_from(network, uniforms[i], position[parents[c]], forward)
        position = position.at[c].set(node)
        log_w = log_w + jnp.log(at(network.node_weights, node)) + jnp.log(weight)
        return position, log_w, ok & found

    init_carry = (position, jnp.zeros((), network.out.weights.dtype), jnp.asarray(True))
    return jax.lax.fori_loop(0, motif.num_nodes - 1, body, init_carry)


def build_kernel(motif: Motif, lazy: bool = False) -> Callable:
    """Pivot kernel ``kernel(rng_key, state, network) -> (state, PivotInfo)`` for a tree motif.

    Parameters
    ----------
    motif : Motif
        A tree (static).
    lazy : bool
        Hold with probability 1/2 (needed on bipartite networks).
    """
    motif.require_tree("the pivot chain")
    root = motif.root

    def kernel(rng_key, state: HomomorphismState, network: Network):
        # All uniforms in one draw: root walk, k - 1 tree nodes, acceptance, lazy hold.
        k = motif.num_nodes
        uniforms = jax.random.uniform(rng_key, (k + 2,), dtype=network.out.weights.dtype)
        current = state.position
        slot, root_ok = sample_slot(network.sym, uniforms[0], current[root])
        new_root = at(network.sym.indices, slot)
        proposal = current.at[root].set(new_root)
        proposal, log_w, tree_ok = draw_subtree(network, motif, uniforms[1:k], proposal)
        log_w = log_w + jnp.log(network.node_weights[new_root])
        proposal_ok = root_ok & tree_ok & jnp.isfinite(log_w)
        current_ok = jnp.isfinite(state.logdensity)
        log_ratio = log_acceptance(network, motif, current, proposal)
        # From outside the support any valid proposal is accepted (π(x) = 0).
        log_ratio = jnp.where(current_ok, log_ratio, jnp.inf)
        log_ratio = jnp.where(proposal_ok, log_ratio, -jnp.inf)
        acceptance_rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
        # Strict: u = 0 never accepts a move of probability 0 (an incomplete proposal).
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


def as_top_level_api(network: Network, motif: Motif, lazy: bool = False) -> SamplingAlgorithm:
    """Pivot chain over homomorphisms of a tree ``motif`` into ``network`` (exact MH rule).

    Parameters
    ----------
    network : Network
    motif : Motif
        A tree; its ``root`` is the pivot.
    lazy : bool
        Hold with probability 1/2 each step. Required when a component of the (symmetrised)
        network is bipartite, where the root walk would be periodic.

    Returns
    -------
    blackjax.base.SamplingAlgorithm
        ``step(rng_key, state)`` gives ``(HomomorphismState, PivotInfo)``; ``init`` as for
        :func:`psample.graphs.glauber_chain`.

    Raises
    ------
    MotifError
        The motif is not a tree (use :func:`psample.graphs.glauber_chain`).
    NetworkError
        ``lazy=False`` on a network with a bipartite component.
    """
    network, motif = check_inputs(network, motif)
    motif.require_tree("pivot")
    if not lazy:
        bipartite = bipartite_components(network)
        if bipartite:
            nodes = bipartite[0]
            shown = f"{nodes[:8]}{' ...' if len(nodes) > 8 else ''}"
            raise NetworkError(
                f"the network has a bipartite component (nodes {shown}, {len(bipartite)} such "
                "component(s)): the pivot root walk is periodic there and does not converge; "
                "use pivot_chain(network, motif, lazy=True)"
            )
    kernel = build_kernel(motif, lazy=bool(lazy))
    return build_sampling_algorithm(kernel, init, network, init_args=(motif,))
