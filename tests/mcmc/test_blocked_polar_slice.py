"""Tests of the blocked Gibbsian polar slice sampler (psample/mcmc/blocked_polar_slice.py).

Statistical checks compare estimates with exact moments within ``Z`` Monte Carlo standard errors
(MCSE from the spread of independent chain means, many vmapped chains, fixed seeds); ``Z`` is a
Bonferroni bound over the comparisons of this file. The chain must also move (the draws' spread
is checked against the exact one, so a chain stuck at its start fails).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import psample
from psample.errors import InvalidTuningError, ShapeError
from psample.mcmc import blocked_polar_slice as bps

#: Bonferroni bound for about 40 comparisons at a 0.1 % family-wise false-fail rate.
Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 40)))
NUM_CHAINS, NUM_STEPS = 32, 1500

# A correlated Gaussian in d = 5 whose blocks are dependent (cross-block correlations up to 0.6),
# split as a dict position {"a": (2,), "b": (3,)}, off the origin.
_A = np.array([[1.0, 0.0, 0.0, 0.0, 0.0], [0.5, 1.0, 0.0, 0.0, 0.0], [0.6, -0.4, 1.0, 0.0, 0.0],
               [0.0, 0.7, 0.3, 0.8, 0.0], [-0.5, 0.2, 0.0, 0.4, 0.6]])  # fmt: skip
COV = _A @ _A.T
MEAN = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
PRECISION = np.linalg.inv(COV)


def logdensity(position):
    x = jnp.concatenate([position["a"], position["b"]]) - MEAN
    return -0.5 * x @ PRECISION @ x


def _moments_check(draws):
    """Means and variances (draws ``(T, C, k)``) of every coordinate within ``Z`` MCSE (batch means over chains)."""
    x = np.concatenate([np.asarray(draws["a"]), np.asarray(draws["b"])], axis=-1).swapaxes(0, 1)  # (C, T, 5)
    x = x[:, NUM_STEPS // 10 :]
    for j in range(5):
        for name, values, exact in (("mean", x[..., j], MEAN[j]), ("var", (x[..., j] - MEAN[j]) ** 2, COV[j, j])):
            chain_means = values.mean(axis=1)
            estimate, mcse = chain_means.mean(), chain_means.std(ddof=1) / math.sqrt(x.shape[0])
            assert abs(estimate - exact) <= Z * mcse, f"{name}[{j}]: {estimate:.4f} vs {exact:.4f} (MCSE {mcse:.1e})"
            assert mcse < 0.1 * math.sqrt(COV[j, j]) * (1 if name == "mean" else 3), f"{name}[{j}]: no power"


def _run(algorithm, states, key, num_steps=NUM_STEPS):
    def one(s, k):
        s, info = jax.vmap(algorithm.step)(jax.random.split(k, NUM_CHAINS), s)
        return s, (s.position, info.num_evals)

    return jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, num_steps)))(states, key)


@pytest.fixture(scope="module")
def starts():
    rng = np.random.default_rng(0)
    return {"a": jnp.asarray(rng.normal(size=(NUM_CHAINS, 2))), "b": jnp.asarray(rng.normal(size=(NUM_CHAINS, 3)))}


def test_fixed_parameters_leave_a_correlated_gaussian_invariant(starts):
    """Exactness for fixed per-block parameters (centre off the mean, a dense and a vector scale)."""
    parameters = (
        {"w": 2.0, "center": jnp.array([0.5, -1.5]), "scale": jnp.array([[1.0, 0.0], [0.3, 0.8]])},
        {"w": 3.0, "center": jnp.zeros(3), "scale": jnp.array([1.0, 2.0, 1.5])},
    )
    sampler = psample.blocked_polar_slice(logdensity, [["a"], ["b"]], parameters=parameters)
    states = jax.vmap(sampler.init)(starts)
    _, (draws, evals) = _run(sampler, states, jax.random.key(1))
    _moments_check(draws)
    assert 4 < float(np.mean(evals)) < 60  # two blocks, a handful of evaluations each


# heavy (a whole warm-up adaptation compiled), out of the fast suite; CI runs it (make test-ci).
@pytest.mark.heavy
@pytest.mark.ci
def test_adapted_blocks_of_flat_indices(starts):
    """The warm-up adaptation estimates one ``(w, center, scale)`` per block; blocks by flat index."""
    flat_starts = jnp.concatenate([starts["a"], starts["b"]], axis=1)
    flat_logdensity = lambda x: logdensity({"a": x[:2], "b": x[2:]})  # noqa: E731
    sampler = psample.blocked_polar_slice(flat_logdensity, [[0, 2, 4], [1, 3]], structure="diagonal")
    (states, parameters), info = sampler.adaptation.run(jax.random.key(2), flat_starts, 300)
    assert len(parameters) == 2 and parameters[0]["center"].shape == (3,) and parameters[1]["scale"].shape == (2,)
    # the block centres moved to the target's mean (the conditional centres' average)
    np.testing.assert_allclose(parameters[0]["center"], MEAN[[0, 2, 4]], atol=0.5)
    np.testing.assert_allclose(parameters[1]["center"], MEAN[[1, 3]], atol=0.5)
    tuned = sampler.with_parameters(parameters)
    _, (draws, _) = _run(tuned, states, jax.random.key(3))
    _moments_check({"a": draws[..., :2], "b": draws[..., 2:]})


def test_block_indices_by_site_and_index():
    position = {"b": jnp.zeros(3), "a": jnp.zeros((2,)), "c": jnp.zeros(())}
    # ravel_pytree's layout: sorted keys a (0, 1), b (2, 3, 4), c (5)
    blocks = bps.block_indices(position, [["a"], ["b", "c"]])
    assert [b.tolist() for b in blocks] == [[0, 1], [2, 3, 4, 5]]
    assert [b.tolist() for b in bps.block_indices(position, [[5, "a"], [2, 3, 4]])] == [[0, 1, 5], [2, 3, 4]]
    # overlapping blocks are allowed (each update is exact)
    assert [b.tolist() for b in bps.block_indices(position, [["a", "b"], ["b", "c"]])] == [[0, 1, 2, 3, 4], [2, 3, 4, 5]]


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([["a"], ["b"], ["c"]], "block 2 has 1 coordinate"),
        ([["a", "b"], ["b", "c", 2]], "twice"),
        ([["a"], ["b"]], "not covered: \\[5\\]"),
        ([["a", "b"], [5, 6]], "outside"),
        ("ab", "sequence of blocks"),
    ],
)
def test_bad_blocks_are_refused_before_sampling(blocks, message):
    position = {"b": jnp.zeros(3), "a": jnp.zeros((2,)), "c": jnp.zeros(())}
    with pytest.raises(ShapeError, match=message):
        sampler = psample.blocked_polar_slice(lambda p: -jnp.sum(p["a"] ** 2), blocks)
        sampler.init(position)


def test_unknown_site_and_bad_parameters():
    position = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    with pytest.raises(KeyError, match="site 'z'"):
        psample.blocked_polar_slice(logdensity, [["a"], ["z"]]).init(position)
    with pytest.raises(InvalidTuningError):
        psample.blocked_polar_slice(logdensity, [["a"], ["b"]], w=-1.0)
    bad = ({"w": 1.0, "center": jnp.zeros(2), "scale": jnp.ones(2)},)
    with pytest.raises(ShapeError, match="one dict per block"):
        psample.blocked_polar_slice(logdensity, [["a"], ["b"]], parameters=bad).init(position)
