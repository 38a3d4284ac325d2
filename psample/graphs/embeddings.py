"""Starting points of the homomorphism chains: one homomorphism per chain, all in the support.

The root is drawn from ``α`` restricted to the nodes that can host the root of the motif's
breadth-first spanning tree (an exact dynamic program over that tree, :func:`spanning_tree_support`),
the other nodes top-down from their parent's neighbourhood, as the pivot proposal draws them
(:func:`psample.graphs.pivot.draw_subtree`; Lyu, Mémoli & Sivakoff, JMLR 24(9), 2023, §3). The starts are not
draws from the homomorphism measure: the chains need a burn-in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from psample.errors import InitialPointError, NetworkError, check_positive_int
from psample.graphs.homomorphism import check_inputs, log_weight
from psample.graphs.motif import Motif
from psample.graphs.network import Network, draw_node
from psample.graphs.pivot import draw_subtree

__all__ = ["spanning_tree_support", "initial_embeddings"]

Array = jax.Array


def spanning_tree_support(network: Network, motif: Motif) -> np.ndarray:
    """Nodes that can host the root of a homomorphism of the spanning tree (host-side DP).

    ``s_c(z) = [α(z) > 0] Π_{children c'} [∃ z' : A_{c'}(z, z') > 0, s_{c'}(z')]``.

    Returns
    -------
    bool ndarray (n,)
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
    network, motif = check_inputs(network, motif)
    roots = spanning_tree_support(network, motif)
    if not roots.any():
        raise NetworkError(
            f"no homomorphism of {motif!r} into the network exists (no node can host the root of "
            "its spanning tree): its homomorphism density is 0"
        )
    root_cum = jnp.asarray(np.cumsum(np.where(roots, np.asarray(network.node_weights), 0.0)))
    k = motif.num_nodes

    def draw(key):
        uniforms = jax.random.uniform(key, (k,), dtype=root_cum.dtype)
        position = jnp.zeros(k, jnp.int32).at[motif.root].set(draw_node(root_cum, uniforms[0]))
        position, _, _ = draw_subtree(network, motif, uniforms[1:], position)
        return position, jnp.isfinite(log_weight(network, motif, position))

    @jax.jit
    def run(key):
        def cond(carry):
            _, _, valid, attempt = carry
            return (attempt < max_attempts) & ~jnp.all(valid)

        def body(carry):
            key, positions, valid, attempt = carry
            key, subkey = jax.random.split(key)
            fresh, fresh_valid = jax.vmap(draw)(jax.random.split(subkey, num_chains))
            positions = jnp.where(valid[:, None], positions, fresh)
            return key, positions, valid | fresh_valid, attempt + 1

        start = (key, jnp.zeros((num_chains, k), jnp.int32), jnp.zeros(num_chains, bool), 0)
        _, positions, valid, _ = jax.lax.while_loop(cond, body, start)
        return positions, valid

    positions, valid = run(rng_key)
    if not bool(jnp.all(valid)):
        bad = int(np.sum(~np.asarray(valid)))
        raise InitialPointError(
            f"{bad} of {num_chains} chains found no homomorphism of {motif!r} in "
            f"max_attempts={max_attempts} draws; the network may contain few or no copies of its "
            "cycles (increase max_attempts, or pass embeddings you know to be homomorphisms)"
        )
    return positions
