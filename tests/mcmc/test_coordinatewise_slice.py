"""Tests of the coordinatewise slice sweep (psample/mcmc/coordinatewise_slice.py).

Targets with exact answers: a correlated Gaussian (moments of the swept coordinates, the others
untouched) and a density that is NaN on a half-line (the NaN values are counted and no draw lands
there). Moments are compared within ``Z`` Monte Carlo standard errors from the spread of
independent chain means (many vmapped chains, fixed seeds), ``Z`` a Bonferroni bound over the
comparisons of this file.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from psample.mcmc.coordinatewise_slice import coordinatewise_slice

Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 8)))
NUM_CHAINS, NUM_STEPS = 64, 400
COV = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, 0.0], [0.0, 0.0, 1.0]])
PRECISION = np.linalg.inv(COV)
MEAN = np.array([1.0, -2.0, 0.5])


def gaussian(x):
    r = x - MEAN
    return -0.5 * r @ PRECISION @ r


def _run(logdensity_fn, x0, key, indices, widths, num_steps=NUM_STEPS):
    def one(x, k):
        x, _, info = coordinatewise_slice(k, x, logdensity_fn, jnp.asarray(indices), jnp.asarray(widths))
        return x, (x, info)

    def chain(k, x):
        return jax.lax.scan(one, x, jax.random.split(k, num_steps))[1]

    return jax.jit(jax.vmap(chain))(jax.random.split(key, x0.shape[0]), x0)


def test_sweep_samples_the_conditionals_and_leaves_the_rest():
    x0 = jnp.tile(jnp.array([0.0, 0.0, 7.0]), (NUM_CHAINS, 1))
    draws, info = _run(gaussian, x0, jax.random.key(0), [0, 1], [0.5, 5.0])  # widths too small and too large
    draws = np.asarray(draws)[:, 50:]
    np.testing.assert_array_equal(draws[..., 2], 7.0)  # not swept: untouched
    # the swept pair given x2 = 7 is the marginal of (x0, x1): x2 is independent of them
    for name, values, exact, sd in (
        ("mean 0", draws[..., 0], MEAN[0], math.sqrt(COV[0, 0])),
        ("mean 1", draws[..., 1], MEAN[1], math.sqrt(COV[1, 1])),
        ("var 1", (draws[..., 1] - MEAN[1]) ** 2, COV[1, 1], COV[1, 1]),
        ("cov 01", (draws[..., 0] - MEAN[0]) * (draws[..., 1] - MEAN[1]), COV[0, 1], 1.0),
    ):
        chain_means = values.mean(axis=1)
        estimate, mcse = chain_means.mean(), chain_means.std(ddof=1) / math.sqrt(NUM_CHAINS)
        assert abs(estimate - exact) <= Z * mcse, f"{name}: {estimate:.4f} vs {exact:.4f} (MCSE {mcse:.1e})"
        assert mcse < 0.05 * sd, f"{name}: no power"
    evals = np.asarray(info.num_evals)
    assert evals.min() >= 2 * 3 + 1  # the first evaluation, two bracket ends and a proposal per coordinate
    assert not np.asarray(info.num_nonfinite).any() and not np.asarray(info.hit_max_proposals).any()


def test_nonfinite_values_are_counted_and_never_entered():
    def nan_above_one(x):  # a standard normal pair whose density the user's code breaks for x0 > 1
        return jnp.where(x[0] > 1.0, jnp.nan, -0.5 * jnp.sum(x**2))

    x0 = jnp.zeros((16, 2))
    draws, info = _run(nan_above_one, x0, jax.random.key(1), [0, 1], [2.0, 2.0], num_steps=100)
    assert np.asarray(draws)[..., 0].max() <= 1.0
    assert np.asarray(info.num_nonfinite).sum() > 0
    # the known log-density is reused: no first evaluation
    x, logdensity, info = coordinatewise_slice(jax.random.key(2), jnp.zeros(2), gaussian_2d := lambda x: -0.5 * x @ x,
                                               jnp.array([0, 1]), jnp.ones(2), logdensity=jnp.zeros(()))
    assert float(logdensity) == float(gaussian_2d(x))
