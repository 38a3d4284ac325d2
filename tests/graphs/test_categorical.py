"""The one-uniform categorical draw behind the Glauber step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from psample.graphs.categorical import SINGLE_LEVEL_MAX, draw_index

SIZES = [1, 5, SINGLE_LEVEL_MAX, SINGLE_LEVEL_MAX + 1, 119, 427, 1280]


def sparse_weights(size, seed):
    """Random weights, about a third zeros, zero at both ends when ``size > 2``, one in the middle."""
    rng = np.random.default_rng(seed)
    weights = rng.exponential(size=size) * (rng.random(size) < 0.67)
    if size > 2:
        weights[0] = weights[-1] = 0.0
    weights[size // 2] = 1.0
    return weights


def draws(weights, uniforms, dtype):
    fn = jax.jit(jax.vmap(draw_index, (None, 0)))
    return np.asarray(fn(jnp.asarray(weights, dtype), jnp.asarray(uniforms, dtype)))


@pytest.mark.parametrize("size", SIZES)
def test_the_draw_is_the_inverse_cdf(size):
    """On a stratified grid of uniforms the draw is the first index whose running sum exceeds u·total.

    Away from the grid points where ``u · total`` ties a running sum within rounding (skipped),
    the index must match float64 ``searchsorted`` exactly; the counts then match the weights to
    one grid cell.
    """
    weights = sparse_weights(size, seed=size)
    grid = 20_000
    uniforms = (np.arange(grid) + 0.5) / grid
    got = draws(weights, uniforms, jnp.float64)
    running = np.cumsum(weights)
    expected = np.searchsorted(running, uniforms * running[-1], side="right")
    gap = np.min(np.abs(running[None, :] - (uniforms * running[-1])[:, None]), axis=1)
    clear = gap > 1e-9 * running[-1]
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(got[clear], expected[clear])
    counts = np.bincount(got, minlength=size)
    np.testing.assert_allclose(counts / grid, weights / running[-1], atol=1.5 / grid)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_zero_weights_are_never_drawn_even_at_the_ends_of_the_unit_interval(size, dtype):
    weights = sparse_weights(size, seed=100 + size)
    below_one = np.nextafter(np.array(1.0, dtype), np.array(0.0, dtype))
    uniforms = np.concatenate([[0.0, below_one], np.random.default_rng(0).random(5000)]).astype(dtype)
    got = draws(weights, uniforms, dtype)
    assert np.all((got >= 0) & (got < size))
    assert np.all(weights[got] > 0)
    positive = np.flatnonzero(weights > 0)
    assert got[0] == positive[0] and got[1] == positive[-1]


def test_rounding_past_the_total_takes_the_last_positive_entry():
    """u · total >= total (only reachable through rounding) must not fall on trailing zeros."""
    weights = np.array([0.0, 2.0, 1.0, 0.0, 0.0])
    fn = jax.jit(lambda w, u: draw_index(w, u))
    assert int(fn(jnp.asarray(weights), jnp.asarray(1.0))) == 2
    long = np.zeros(200)
    long[[3, 150]] = 1.0
    assert int(fn(jnp.asarray(long), jnp.asarray(1.0))) == 150
