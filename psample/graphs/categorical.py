"""One categorical draw from unnormalised weights and one uniform, cheap under ``vmap``.

The draw is the inverse CDF: the first index whose running sum exceeds ``u · total``. Running
sums by ``jnp.cumsum`` lower to a slow sequential loop on XLA:CPU for a batch of short rows and
would dominate the Glauber step. Here they are products with a triangular matrix of ones: one ``S x S`` matrix for short rows, and for long rows two levels of
``√S``-sized blocks (pick a block by its running block sum, then an entry inside it), so that
both the work and the constant stay small.

Rounding can put ``u · total`` at or above the last running sum; the draw then takes the last
entry of positive weight, so a zero-weight entry is never drawn.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["draw_index"]

Array = jax.Array

SINGLE_LEVEL_MAX = 64  # rows up to this length use one S x S triangular product; longer rows two levels of blocks


def _running_sums(weights: Array) -> Array:
    size = weights.shape[-1]
    return jnp.dot(weights, jnp.triu(jnp.ones((size, size), weights.dtype)))


def _first_above(weights: Array, running: Array, threshold: Array) -> Array:
    """First ``j`` with ``running[j] > threshold``, else the last ``j`` with positive weight.

    For ``threshold >= 0`` the first index past the threshold has positive weight (its running
    sum rose there); the fallback only catches ``threshold >= running[-1]`` from rounding.
    """
    count = jnp.sum(running <= threshold)
    positions = jnp.arange(weights.shape[0])
    last_positive = jnp.max(jnp.where(weights > 0, positions, 0))
    return jnp.minimum(count, last_positive)


def draw_index(weights: Array, uniform: Array) -> Array:
    """Index ``j`` drawn with probability ``weights[j] / Σ weights`` by inverse CDF.

    Parameters
    ----------
    weights : float (S,)
        Non-negative, finite; at least one positive (otherwise the index is meaningless).
    uniform : float scalar
        A U[0, 1) draw.

    Returns
    -------
    int32 scalar
        In ``[0, S)``; never an index of zero weight.
    """
    size = weights.shape[0]
    if size <= SINGLE_LEVEL_MAX:
        running = _running_sums(weights)
        return _first_above(weights, running, uniform * running[-1]).astype(jnp.int32)
    width = math.ceil(math.sqrt(size))
    num_blocks = math.ceil(size / width)
    blocks = jnp.pad(weights, (0, num_blocks * width - size)).reshape(num_blocks, width)
    block_sums = jnp.sum(blocks, axis=1)
    block_running = _running_sums(block_sums)
    threshold = uniform * block_running[-1]
    block = _first_above(block_sums, block_running, threshold)
    # What is left of the threshold inside the block (>= 0 so the pick has positive weight).
    rest = jnp.maximum(threshold - (block_running[block] - block_sums[block]), 0.0)
    row = blocks[block]
    within = _first_above(row, _running_sums(row), rest)
    return (block * width + within).astype(jnp.int32)
