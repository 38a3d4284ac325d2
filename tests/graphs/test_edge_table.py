"""The cuckoo hash table behind constant-time edge lookups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from psample.graphs import edge_table as et


def random_matrix(seed, n, nnz):
    """A random sparse (n, n) matrix with entries in [1, 2) and its COO arrays."""
    rng = np.random.default_rng(seed)
    matrix = sp.random_array((n, n), density=nnz / n**2, format="csr", rng=rng)
    matrix.data = 1.0 + matrix.data
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))
    return matrix, rows, matrix.indices, matrix.data


def lookup_all(table, a, b):
    return np.asarray(jax.jit(jax.vmap(lambda x, y: et.lookup(table, x, y)))(jnp.asarray(a), jnp.asarray(b)))


@pytest.mark.parametrize(("n", "nnz"), [(7, 30), (5000, 60_000), (70_000, 20_000)])
def test_every_entry_is_found_with_its_value(n, nnz):
    _, rows, cols, values = random_matrix(0, n, nnz)
    table = et.build_edge_table(rows, cols, values, n)
    size = table.tags.shape[0]
    assert size >= max(len(rows) / et.MAX_LOAD, n)  # load <= 0.4, and m >= n
    assert size & (size - 1) == 0  # a power of two: masks, no modulo
    assert np.count_nonzero(np.asarray(table.tags)) == len(rows)
    np.testing.assert_array_equal(lookup_all(table, rows, cols), values.astype(table.weights.dtype))


def test_one_entry():
    table = et.build_edge_table([0], [0], np.array([2.5]), 1)
    np.testing.assert_array_equal(lookup_all(table, [0], [0]), [2.5])


def test_pairs_that_are_not_entries_read_zero():
    """Random queries, mostly misses, against the matrix itself (hits and misses both occur)."""
    n = 3000
    matrix, rows, cols, values = random_matrix(1, n, 20_000)
    table = et.build_edge_table(rows, cols, values, n)
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, n, 300_000), rng.integers(0, n, 300_000)
    expected = np.asarray(matrix[a, b]).ravel()
    assert 0 < np.count_nonzero(expected) < len(a)
    np.testing.assert_array_equal(lookup_all(table, a, b), expected.astype(table.weights.dtype))


def test_a_tag_names_one_entry_even_where_positions_collide():
    """Same column, rows that are congruent modulo m where m < n would allow it: m >= n prevents it.

    Every ``(a, 0)`` with ``a`` in ``[0, n)`` is queried against a matrix holding only ``(1, 0)``;
    only ``a = 1`` may read the entry.
    """
    n = 4096
    table = et.build_edge_table([1], [0], np.array([3.0]), n)
    got = lookup_all(table, np.arange(n), np.zeros(n, int))
    expected = np.zeros(n)
    expected[1] = 3.0
    np.testing.assert_array_equal(got, expected)


def test_the_table_is_reproducible_and_the_seed_changes_the_hash():
    _, rows, cols, values = random_matrix(3, 500, 4000)
    first, again = et.build_edge_table(rows, cols, values, 500), et.build_edge_table(rows, cols, values, 500)
    np.testing.assert_array_equal(first.tags, again.tags)
    np.testing.assert_array_equal(first.seeds, again.seeds)
    other = et.build_edge_table(rows, cols, values, 500, seed=1)
    assert not np.array_equal(first.seeds, other.seeds)


def test_the_position_is_a_bijection_of_the_row_for_each_column():
    seed = np.array([0x9E3779B1, 0x7F4A7C15, 12345], dtype=np.uint32)
    m = 2**12
    position = jax.jit(lambda a, b: et._position(a, b, jnp.asarray(seed), m - 1))
    for b in (0, 7, 123_456):
        positions = np.asarray(position(jnp.arange(m), jnp.full(m, b)))
        assert len(np.unique(positions)) == m


def test_hash_functions_that_cannot_settle_are_replaced(monkeypatch):
    """Functions sending every key to one position never settle: fresh ones are drawn."""
    real = et._position
    calls = []

    def degenerate_at_first(a, b, seed, mask):
        calls.append(1)
        return jnp.zeros(len(a), dtype=jnp.int32) if len(calls) <= 2 else real(a, b, seed, mask)

    monkeypatch.setattr(et, "_position", degenerate_at_first)
    _, rows, cols, values = random_matrix(5, 50, 200)
    table = et.build_edge_table(rows, cols, values, 50)
    assert len(calls) == 4  # one failed attempt (two functions), one good one
    monkeypatch.undo()
    np.testing.assert_array_equal(lookup_all(table, rows, cols), values.astype(table.weights.dtype))
