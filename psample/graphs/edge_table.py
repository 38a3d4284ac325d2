"""Constant-time edge lookups: a cuckoo hash table of a sparse matrix's entries.

``A(a, b)`` is read by probing two table positions ``h₁(a, b)`` and ``h₂(a, b)``: three
independent gathers (two tags, one weight or log-weight), the same for every pair. Bisecting
a sorted CSR row instead costs ``log₂(degree)`` dependent gathers, and under ``vmap`` every
chain pays for the largest degree, which makes lookups the bulk of a Glauber step on hub-heavy
graphs.

Every entry sits at one of its two positions (cuckoo hashing, Pagh & Rodler 2004). A position
stores a *tag*, the column ``b`` and which of the two functions placed the entry there, not
the row: the positions ``h_i(a, b) = (a·c_i + g_i(b)) mod m`` are a bijection of ``a`` for
fixed ``b`` (``c_i`` odd, ``m`` a power of two ``>= n``), so position and tag together
determine ``(a, b)`` and a matching tag is never a different entry. Empty positions hold tag
0, weight 0 and log-weight ``-inf``. Log-weights are stored too, so that samplers summing log
factors take no logarithm per lookup.

The table is built on the host, all keys at once: each round, every homeless key writes itself
to its current choice of position (one writer wins), the losers and the keys they displaced
switch to their other position, and the rounds repeat until every key is home (the parallel
construction of Alcantara et al. 2009). At load ``<= 0.4`` this takes a few dozen rounds; an
unlucky pair of hash functions is replaced by a fresh one.

References
----------
.. [1] R. Pagh, F. F. Rodler. "Cuckoo hashing." Journal of Algorithms 51(2), 2004.
.. [2] D. A. Alcantara et al. "Real-time parallel hashing on the GPU." ACM Transactions on
   Graphics 28(5), 2009.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["EdgeTable", "build_edge_table", "lookup", "lookup_log"]

Array = jax.Array

MAX_LOAD = 0.4  # keys per position; two-choice cuckoo hashing needs < 0.5
MAX_ROUNDS = 1000  # parallel insertion rounds before the hash functions are replaced
MAX_ATTEMPTS = 20  # hash-function draws (the table doubles every fifth)
# Multipliers of MurmurHash3's 32-bit finaliser.
_MIX1, _MIX2 = 0x85EBCA6B, 0xC2B2AE35


class EdgeTable(NamedTuple):
    """A cuckoo hash table of the entries of an ``(n, n)`` sparse matrix (a pytree of arrays).

    Attributes
    ----------
    tags : int32 (m,)
        ``b + 1`` at a position where the first hash function placed entry ``(a, b)``,
        ``-(b + 1)`` where the second did, 0 where empty; ``m >= n`` is a power of two.
    weights : float (m,)
        The entry's value at its position, 0 where empty.
    log_weights : float (m,)
        Its logarithm, ``-inf`` where empty.
    seeds : uint32 (2, 3)
        Per hash function: the odd row multiplier ``c_i`` and the column hash's multiplier and
        offset.
    """

    tags: Array
    weights: Array
    log_weights: Array
    seeds: Array


def _position(a: Array, b: Array, seed: Array, mask: int) -> Array:
    """``h(a, b) = (a·c + g(b)) mod m`` in uint32 arithmetic (it wraps), with ``g`` MurmurHash3's
    finaliser of ``b·s + t``; ``seed = (c, s, t)``, ``mask = m - 1``. The host build calls it
    too, so that the table and the lookups agree by construction.
    """
    x = jnp.asarray(b).astype(jnp.uint32) * seed[1] + seed[2]
    x = x ^ (x >> 16)
    x = x * jnp.uint32(_MIX1)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(_MIX2)
    x = x ^ (x >> 16)
    return ((jnp.asarray(a).astype(jnp.uint32) * seed[0] + x) & jnp.uint32(mask)).astype(jnp.int32)


def _insert_all(positions: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Place every key at one of its two positions ``(2, nnz)``.

    Returns the key at each position (-1 if empty) and each key's function (0 or 1), or
    ``None`` if the keys do not settle in ``MAX_ROUNDS`` rounds.
    """
    nnz = positions.shape[1]
    table = np.full(size, -1, dtype=np.int64)
    choice = np.zeros(nnz, dtype=np.int64)
    homeless = np.arange(nnz)
    for _ in range(MAX_ROUNDS):
        if homeless.size == 0:
            return table, choice
        target = positions[choice[homeless], homeless]
        previous = table[target]
        table[target] = homeless  # duplicates: one writer wins
        lost = homeless[table[target] != homeless]
        displaced = np.unique(previous[previous >= 0])
        homeless = np.concatenate([lost, displaced])
        choice[homeless] ^= 1
    return None


def build_edge_table(rows, columns, values, num_nodes: int, seed: int = 0) -> EdgeTable:
    """Hash table of the entries ``(rows[s], columns[s]) -> values[s]`` (host-side).

    Parameters
    ----------
    rows, columns : int arrays (nnz,)
        Distinct pairs in ``[0, num_nodes)``, ``nnz >= 1``.
    values : float array (nnz,)
        The entries (non-zero; a lookup that misses returns 0).
    num_nodes : int
        ``n``: rows and columns are below it.
    seed : int
        Seeds the hash functions (a fixed seed keeps networks reproducible).

    Returns
    -------
    EdgeTable
    """
    rows = np.asarray(rows, dtype=np.int64)
    columns = np.asarray(columns, dtype=np.int64)
    values = np.asarray(values)
    rows32, columns32 = jnp.asarray(rows, dtype=jnp.int32), jnp.asarray(columns, dtype=jnp.int32)
    nnz = rows.shape[0]
    # m >= n makes the positions a bijection of the row for each column (see the module docstring).
    size = 1 << max(4, math.ceil(math.log2(max(nnz / MAX_LOAD, num_nodes))))
    rng = np.random.default_rng(seed)
    for attempt in range(MAX_ATTEMPTS):
        if attempt and attempt % 5 == 0:
            size *= 2
        seeds = rng.integers(0, 2**32, size=(2, 3), dtype=np.uint64).astype(np.uint32)
        seeds[:, 0] |= np.uint32(1)  # odd row multipliers: a bijection modulo a power of two
        positions = np.stack(
            [np.asarray(_position(rows32, columns32, jnp.asarray(s), size - 1), dtype=np.int64) for s in seeds]
        )
        placed = _insert_all(positions, size)
        if placed is not None:
            keys, choice = placed
            occupied = keys >= 0
            key = keys[occupied]
            tags = np.zeros(size, dtype=np.int64)
            tags[occupied] = np.where(choice[key] == 0, columns[key] + 1, -(columns[key] + 1))
            weights = np.zeros(size, dtype=values.dtype)
            weights[occupied] = values[key]
            with np.errstate(divide="ignore"):
                log_weights = np.log(weights)
            return EdgeTable(
                jnp.asarray(tags, dtype=jnp.int32), jnp.asarray(weights), jnp.asarray(log_weights), jnp.asarray(seeds)
            )
    raise RuntimeError(f"cuckoo hashing of {nnz} entries did not settle in {MAX_ATTEMPTS} attempts")


def _probe(table: EdgeTable, a: Array, b: Array) -> tuple[Array, Array]:
    """Position of the entry ``(a, b)`` (some valid position if absent) and whether it exists."""
    mask = table.tags.shape[0] - 1
    first = _position(a, b, table.seeds[0], mask)
    second = _position(a, b, table.seeds[1], mask)
    tag = jnp.asarray(b).astype(jnp.int32) + 1
    in_first = table.tags[first] == tag
    in_second = table.tags[second] == -tag
    return jnp.where(in_first, first, second), in_first | in_second


def lookup(table: EdgeTable, a: Array, b: Array) -> Array:
    """The entry ``(a, b)``, or 0 where the matrix has none (jittable, vmappable).

    Parameters
    ----------
    table : EdgeTable
    a, b : int scalar arrays
        Row and column in ``[0, n)``.

    Returns
    -------
    float scalar
    """
    position, found = _probe(table, a, b)
    return jnp.where(found, table.weights[position], jnp.zeros((), table.weights.dtype))


def lookup_log(table: EdgeTable, a: Array, b: Array) -> Array:
    """``log`` of the entry ``(a, b)``, or ``-inf`` where the matrix has none (jittable, vmappable)."""
    position, found = _probe(table, a, b)
    return jnp.where(found, table.log_weights[position], -jnp.inf)
