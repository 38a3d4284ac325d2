"""The layout-invariant sums over agents (psample.mcmc.admm.collectives)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from psample.mcmc.admm.collectives import _fixed_point_total


def test_fixed_point_total_is_exact_and_order_free():
    """The layout-invariant sum: any order of the terms gives the same bits, within 1 ulp of the
    correctly rounded sum (math.fsum); a non-finite term makes it NaN."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(60, 3)) * np.array([1.0, 1e-8, 1e12]) + np.array([1e3, 0.0, -1e12])
    values[5, 1] = 1e-300  # far below the others: truncated, harmlessly
    total = jax.jit(lambda v: _fixed_point_total(v, 60, False))
    ref = np.asarray(total(jnp.asarray(values)))
    for seed in range(3):
        perm = np.random.default_rng(seed + 1).permutation(60)
        assert np.array_equal(np.asarray(total(jnp.asarray(values[perm]))), ref)
    exact = np.array([math.fsum(values[:, j]) for j in range(3)])
    assert np.all(np.abs(ref - exact) <= np.spacing(np.abs(exact))), (ref - exact, np.spacing(exact))
    values[7, 2] = np.inf
    out = np.asarray(total(jnp.asarray(values)))
    assert np.isnan(out[2]) and np.isfinite(out[:2]).all()
