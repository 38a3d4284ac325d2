"""Compressed sparse rows with per-row cumulative masses, and the jittable reads of them.

A network ``G = ([n], A, α)`` (Lyu, Mémoli & Sivakoff, JMLR 24(9), 2023, §2) keeps ``A`` (out-neighbours),
``Aᵀ`` (in-neighbours) and ``A_s = (A + Aᵀ) / 2`` (the pivot chain's root walk) as three
:class:`Csr` structures of one type. Besides the usual CSR arrays each row ``w`` stores the
masses ``A(w, z) α(z)`` of its entries, their running sums and their logarithms, so that a
neighbour ``z ~ A(w, ·) α(·) / d(w)`` is drawn by inverse CDF with one uniform and a log-weight
is read without taking a logarithm.

Every read has fixed shapes and a fixed amount of work (bisections are unrolled to
``⌈log₂(nnz + 1)⌉`` steps), so it vectorises over chains under ``vmap``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = ["Csr", "from_scipy", "to_scipy", "at", "first_greater", "find_weight", "inverse_cdf_threshold", "sample_slot"]

Array = jax.Array


class Csr(NamedTuple):
    """One sparse matrix ``M`` with node weights ``α`` folded into per-entry masses.

    Attributes
    ----------
    indptr : int32 (n + 1,)
        Row pointers.
    indices : int32 (nnz,)
        Column indices, sorted within each row.
    weights : float (nnz,)
        Entries ``M(w, z) > 0``.
    mass : float (n,)
        Row masses ``d(w) = Σ_z M(w, z) α(z)``; equal to the last running sum of row ``w``.
    cum_mass : float (nnz,)
        Per-row running sums of the masses ``M(w, z) α(z)``.
    log_mass : float (nnz,)
        ``log(M(w, z) α(z))`` (``-inf`` where ``α(z) = 0``), computed in float64 on the host.
    """

    indptr: Array
    indices: Array
    weights: Array
    mass: Array
    cum_mass: Array
    log_mass: Array


# ---------------------------------------------------------------------- host side
def from_scipy(matrix: sp.csr_array, alpha: np.ndarray) -> Csr:
    """:class:`Csr` of a canonical scipy CSR matrix (sorted indices, no explicit zeros)."""
    indptr = matrix.indptr.astype(np.int64)
    indices = matrix.indices.astype(np.int64)
    weights = matrix.data.astype(np.float64)
    edge_mass = weights * alpha[indices]
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))
    # Per-row running sums: the global running sum minus its value before each row.
    cum = np.cumsum(edge_mass)
    row_offset = np.concatenate([[0.0], cum])[indptr[:-1]]
    cum_mass = cum - row_offset[rows]
    mass = np.zeros(matrix.shape[0])
    nonempty = np.diff(indptr) > 0
    mass[nonempty] = cum_mass[indptr[1:][nonempty] - 1]
    with np.errstate(divide="ignore"):
        log_mass = np.log(edge_mass)
    return Csr(
        jnp.asarray(indptr, dtype=jnp.int32),
        jnp.asarray(indices, dtype=jnp.int32),
        jnp.asarray(weights),
        jnp.asarray(mass),
        jnp.asarray(cum_mass),
        jnp.asarray(log_mass),
    )


def to_scipy(csr: Csr) -> sp.csr_array:
    """The matrix as a scipy CSR array (float64, host-side)."""
    n = csr.indptr.shape[0] - 1
    return sp.csr_array(
        (np.asarray(csr.weights, dtype=np.float64), np.asarray(csr.indices), np.asarray(csr.indptr)),
        shape=(n, n),
    )


# ---------------------------------------------------------------------- jittable reads
def _num_bisection_steps(length: int) -> int:
    """Iterations that bisect any sub-range of an array of ``length`` entries to one point."""
    return max(1, int(math.ceil(math.log2(length + 1))))


def at(values: Array, index: Array) -> Array:
    """``values[index]`` for a scalar index, clamped into range (``dynamic_slice`` clamps)."""
    return jax.lax.dynamic_index_in_dim(values, index, keepdims=False)


def first_greater(values: Array, start: Array, stop: Array, threshold: Array) -> Array:
    """Smallest ``j`` in ``[start, stop)`` with ``values[j] > threshold`` (``stop`` if none).

    ``values`` must be non-decreasing on ``[start, stop)``. A fixed number of bisection steps,
    unrolled at trace time (about log2(len(values))): straight-line code vectorises over chains,
    needs no device-side loop, and keeps the compiled program small (every chain step calls it).
    """
    lo, hi = start, stop
    for _ in range(_num_bisection_steps(values.shape[0])):
        mid = jax.lax.shift_right_logical(lo + hi, jnp.ones_like(lo))
        active = lo < hi
        right = at(values, mid) <= threshold
        lo = jax.lax.select(active & right, mid + 1, lo)
        hi = jax.lax.select(active & ~right, mid, hi)
        # Each step reads lo and hi twice: fused across steps, XLA can duplicate the chain
        # into a tree of 2^steps nodes (minutes of XLA:CPU compile time at 10⁵ nodes).
        lo, hi = jax.lax.optimization_barrier((lo, hi))
    return lo


def find_weight(csr: Csr, a: Array, b: Array) -> Array:
    """``M(a, b)`` by bisection of row ``a`` (0 when absent)."""
    start, stop = at(csr.indptr, a), at(csr.indptr, a + 1)
    # indices are integers sorted in the row: the first index > b - 1 is the first index >= b.
    b = jnp.asarray(b, csr.indices.dtype)
    slot = first_greater(csr.indices, start, stop, b - 1)
    found = (slot < stop) & (at(csr.indices, slot) == b)
    return jnp.where(found, at(csr.weights, slot), jnp.zeros((), csr.weights.dtype))


def inverse_cdf_threshold(uniform: Array, total: Array) -> Array:
    """``u · total`` kept strictly below ``total``, for the inverse CDF of running sums.

    The first running sum ``> u · total`` then always exists and is an entry of positive mass
    (the sum rose there): at ``u = 0`` the first entry of positive mass, and for ``u`` just
    below 1 (or ``u = 1``) the entry at which the sum reaches ``total``, never a trailing entry
    of zero mass.
    """
    return jnp.minimum(uniform * total, jnp.nextafter(total, jnp.zeros_like(total)))


def sample_slot(csr: Csr, uniform: Array, w: Array) -> tuple[Array, Array]:
    """Slot ``j`` of row ``w`` drawn with probability ∝ its mass (inverse CDF, one uniform).

    Parameters
    ----------
    csr : Csr
    uniform : float scalar
        A U[0, 1) draw (the kernels draw all their uniforms in one call: fewer random-number
        kernels to compile). Any value in ``[0, 1]`` gives a slot of positive mass.
    w : int scalar
        The row.

    Returns
    -------
    slot : int32 scalar
    ok : bool scalar
        False when the row has zero mass (``slot`` is then some valid index, not to be used).
    """
    start, stop = at(csr.indptr, w), at(csr.indptr, w + 1)
    total = at(csr.mass, w)
    slot = first_greater(csr.cum_mass, start, stop, inverse_cdf_threshold(uniform, total))
    slot = jnp.clip(jnp.minimum(slot, stop - 1), 0, csr.cum_mass.shape[0] - 1)
    return slot, total > 0
