"""Tests of the open-interval uniforms (psample/rng.py) that slice levels are drawn from."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample.rng
from psample.rng import log_uniform, open_uniform

#: A step key whose slice-level uniform is exactly 0.0 in float32 (found by a search over
#: 2^22 seeds; jax.random.uniform returns 0.0 with probability 2^-23 in float32).
ZERO_LEVEL_SEED = 3353848


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_extreme_uniforms_map_inside_the_open_interval(monkeypatch, dtype):
    eps = float(jnp.finfo(dtype).eps)
    for raw, expected in [(0.0, eps / 2), (1.0 - eps, 1.0 - eps / 2)]:
        monkeypatch.setattr(psample.rng.jax.random, "uniform", lambda key, shape, dt, v=raw: jnp.full(shape, v, dt))
        u = open_uniform(jax.random.PRNGKey(0), (3,), dtype)
        assert u.dtype == dtype
        np.testing.assert_array_equal(np.asarray(u), expected)
        assert np.all(np.isfinite(np.asarray(log_uniform(jax.random.PRNGKey(0), (3,), dtype))))
        assert np.all(np.asarray(jnp.log1p(-u)) < 0)


def test_the_zero_uniform_key_really_gives_zero():
    """The key the polar-slice regression test injects does hit the rare event."""
    level_key, _ = jax.random.split(jax.random.PRNGKey(ZERO_LEVEL_SEED))
    assert float(jax.random.uniform(level_key, dtype=jnp.float32)) == 0.0
    assert float(open_uniform(level_key, dtype=jnp.float32)) == 2.0**-24


def test_open_uniform_is_uniform():
    u = np.asarray(open_uniform(jax.random.PRNGKey(3), (200_000,), jnp.float64))
    assert 0 < u.min() and u.max() < 1
    # Mean 1/2 and variance 1/12 within 5 standard errors.
    n = u.size
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
