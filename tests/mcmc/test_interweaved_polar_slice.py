"""Tests of the interweaved (ASIS) polar slice sampler (psample/mcmc/interweaved_polar_slice.py).

The target: a two-level Gaussian hierarchy with exact posterior moments. Six group effects
``theta_j ~ N(mu_{g(j)}, tau^2)`` around two hyperparameters ``mu ~ N(0, 3^2 I)`` (groups 0-2 on
``mu_0``, 3-5 on ``mu_1``), data ``y_j ~ N(theta_j, sigma_j^2)`` with known ``tau`` and
``sigma``: the posterior of ``(theta, mu)`` is Gaussian, its mean and covariance solve one linear
system. The ancillary position is ``x = (z, mu)`` with ``theta = mu_g + tau z``; the sufficient
one ``y = (theta, mu)``. Statistical checks compare means and variances with the exact ones
within ``Z`` Monte Carlo standard errors (MCSE from the spread of independent chain means, many
vmapped chains, fixed seeds), ``Z`` a Bonferroni bound over the comparisons of this file; a
power check makes a stuck chain fail.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import psample
from psample.errors import InitialPointError, InvalidTuningError, ShapeError
from psample.mcmc import interweaved_polar_slice as ips

#: Bonferroni bound for 64 comparisons at a 0.1 % family-wise false-fail rate.
Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 64)))
NUM_CHAINS, NUM_STEPS = 32, 600
J, K = 6, 2
GROUP = np.array([0, 0, 0, 1, 1, 1])
A = np.eye(K)[GROUP]  # (J, K): theta's prior mean is A mu
TAU, PRIOR_SD = 0.7, 3.0
SIGMA = np.array([2.0, 1.5, 3.0, 0.5, 0.8, 2.5])  # weak and strong data: neither form is easy everywhere
Y = np.array([1.5, -0.3, 2.8, 4.1, 3.6, 5.0])
HYPER = [J, J + 1]

# exact posterior of (theta, mu): precision Q, mean Q^-1 b
_Q = np.zeros((J + K, J + K))
_Q[:J, :J] = np.diag(1 / SIGMA**2) + np.eye(J) / TAU**2
_Q[:J, J:] = -A / TAU**2
_Q[J:, :J] = -A.T / TAU**2
_Q[J:, J:] = A.T @ A / TAU**2 + np.eye(K) / PRIOR_SD**2
COV = np.linalg.inv(_Q)
MEAN = COV @ np.concatenate([Y / SIGMA**2, np.zeros(K)])


def logdensity_centered(y):
    theta, mu = y[:J], y[J:]
    return (-0.5 * jnp.sum((Y - theta) ** 2 / SIGMA**2) - 0.5 * jnp.sum((theta - A @ mu) ** 2) / TAU**2
            - 0.5 * jnp.sum(mu**2) / PRIOR_SD**2)  # fmt: skip


def to_centered(x):
    return jnp.concatenate([x[J:] @ A.T + TAU * x[:J], x[J:]])


def to_noncentered(y):
    return jnp.concatenate([(y[:J] - A @ y[J:]) / TAU, y[J:]])


def logdensity_noncentered(x):  # the change of variables adds the constant J log tau
    return logdensity_centered(to_centered(x))


def _algorithm(**kwargs):
    return psample.interweaved_polar_slice(logdensity_noncentered, logdensity_centered, to_centered, to_noncentered,
                                           HYPER, **kwargs)


@pytest.fixture(scope="module")
def trace():
    """``psample.sample`` with the sampler's own warm-up: many short chains, fixed seeds."""
    x0 = jax.random.normal(jax.random.key(3), (NUM_CHAINS, J + K))
    return psample.sample(_algorithm(w=2.0), x0, jax.random.key(4), NUM_STEPS, num_warmup=300, progress=False,
                          compute_convergence_checks=False)


@pytest.fixture(scope="module")
def trace_ancillary_only():
    """Without a sufficient parameterisation: the joint move and the hyperparameter move given ``z``."""
    x0 = jax.random.normal(jax.random.key(5), (NUM_CHAINS, J + K))
    algorithm = psample.interweaved_polar_slice(logdensity_noncentered, None, None, None, HYPER, w=2.0)
    return psample.sample(algorithm, x0, jax.random.key(6), NUM_STEPS, num_warmup=300, progress=False,
                          compute_convergence_checks=False)


def logprior_centered(y):
    """The centred log-density without the data term: the same conditional of ``mu`` given ``theta``."""
    theta, mu = y[:J], y[J:]
    return -0.5 * jnp.sum((theta - A @ mu) ** 2) / TAU**2 - 0.5 * jnp.sum(mu**2) / PRIOR_SD**2


@pytest.fixture(scope="module")
def trace_coordinatewise():
    """The joint move and the coordinatewise centred move on the prior alone, no ancillary move."""
    x0 = jax.random.normal(jax.random.key(7), (NUM_CHAINS, J + K))
    algorithm = psample.interweaved_polar_slice(logdensity_noncentered, logprior_centered, to_centered,
                                                to_noncentered, HYPER, w=2.0, centered_move="coordinatewise",
                                                ancillary_move=False)
    return psample.sample(algorithm, x0, jax.random.key(8), NUM_STEPS, num_warmup=300, progress=False,
                          compute_convergence_checks=False)


@pytest.mark.heavy
@pytest.mark.ci  # a statistical run: in CI's `make test-ci`, out of the fast loop
def test_moments_match_exact_posterior(trace):
    _check_moments(trace)


@pytest.mark.heavy
@pytest.mark.ci  # a statistical run: in CI's `make test-ci`, out of the fast loop
def test_ancillary_only_sweep(trace_ancillary_only):
    _check_moments(trace_ancillary_only)
    info = trace_ancillary_only.info
    assert not np.asarray(info.num_sufficient_evals).any()
    np.testing.assert_array_equal(np.asarray(info.num_evals),
                                  np.asarray(info.num_joint_evals) + np.asarray(info.num_ancillary_evals) + 1)
    assert not any(k.startswith("adapted.hyper_preconditioning.centered") for k in trace_ancillary_only.attrs)
    with pytest.raises(InvalidTuningError, match="to_centered given without centered_logdensity_fn"):
        psample.interweaved_polar_slice(logdensity_noncentered, None, to_centered, None, HYPER)


@pytest.mark.heavy
@pytest.mark.ci  # a statistical run: in CI's `make test-ci`, out of the fast loop
def test_coordinatewise_centered_move_on_the_prior(trace_coordinatewise):
    _check_moments(trace_coordinatewise)
    info = trace_coordinatewise.info
    assert not np.asarray(info.num_ancillary_evals).any()
    # two hyperparameters: at least both bracket ends and one shrinkage proposal each
    assert np.asarray(info.num_sufficient_evals).min() >= 3 * K
    np.testing.assert_array_equal(np.asarray(info.num_evals),
                                  np.asarray(info.num_joint_evals) + np.asarray(info.num_sufficient_evals) + 1)
    with pytest.raises(InvalidTuningError, match="centered_move must be 'polar' or 'coordinatewise'"):
        _algorithm(centered_move="gibbs")
    with pytest.raises(InvalidTuningError, match="ancillary_move=False needs centered_logdensity_fn"):
        psample.interweaved_polar_slice(logdensity_noncentered, None, None, None, HYPER, ancillary_move=False)


def _check_moments(trace):
    ys = np.asarray(jax.vmap(jax.vmap(to_centered))(jnp.asarray(trace.positions)))  # (C, T, J + K)
    for j in range(J + K):
        for name, values, exact in (("mean", ys[..., j], MEAN[j]), ("var", (ys[..., j] - MEAN[j]) ** 2, COV[j, j])):
            chain_means = values.mean(axis=1)
            estimate, mcse = chain_means.mean(), chain_means.std(ddof=1) / math.sqrt(ys.shape[0])
            assert abs(estimate - exact) <= Z * mcse, f"{name}[{j}]: {estimate:.4f} vs {exact:.4f} (MCSE {mcse:.1e})"
            assert mcse < 0.05 * math.sqrt(COV[j, j]) * (1 if name == "mean" else 3), f"{name}[{j}]: no power"


@pytest.mark.heavy
@pytest.mark.ci  # a statistical run: in CI's `make test-ci`, out of the fast loop
def test_info_and_parameters(trace):
    info = trace.info
    evals = np.asarray(info.num_evals)
    parts = sum(np.asarray(getattr(info, k)) for k in ("num_joint_evals", "num_ancillary_evals", "num_sufficient_evals"))
    np.testing.assert_array_equal(evals, parts + 1)  # + the re-initialisation of the joint state
    assert not np.asarray(info.hit_max_proposals).any() and not np.asarray(info.num_nonfinite).any()
    assert np.shape(trace.attrs["adapted.hyper_preconditioning.hyper_scale"]) == (K, K)
    # the map leaves the hyperparameters as they are: the same centre in both parameterisations
    np.testing.assert_allclose(trace.attrs["adapted.hyper_preconditioning.centered_hyper_center"],
                               np.asarray(trace.attrs["adapted.center"])[HYPER], rtol=1e-10)


def test_hyper_preconditioners_of_every_scale_form():
    dense = jnp.tril(jnp.arange(1.0, 65.0).reshape(8, 8)) / 10 + jnp.eye(8)
    center = jnp.linspace(-1.0, 1.0, 8)
    expected = jnp.linalg.cholesky((dense @ dense.T)[np.ix_(HYPER, HYPER)])
    pre = ips.hyper_preconditioners({"center": center, "scale": dense}, jnp.zeros(8), to_centered, HYPER, HYPER)
    np.testing.assert_allclose(pre["hyper_scale"], expected, rtol=1e-6)
    np.testing.assert_allclose(pre["hyper_center"], center[J:])
    vector = jnp.arange(1.0, 9.0)
    pre = ips.hyper_preconditioners({"center": center, "scale": vector}, jnp.zeros(8), to_centered, HYPER, HYPER)
    np.testing.assert_allclose(pre["hyper_scale"], jnp.diag(vector[J:]), rtol=1e-6)
    basis = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (8, 2)))[0]
    low = psample.mcmc.polar_slice.LowRankScale(vector, basis, jnp.array([0.5, 2.0]))
    full = jax.vmap(lambda e: psample.mcmc.preconditioning.apply_scale(low, e), out_axes=1)(jnp.eye(8))
    pre = ips.hyper_preconditioners({"center": center, "scale": low}, jnp.zeros(8), to_centered, HYPER, HYPER)
    np.testing.assert_allclose(pre["hyper_scale"], jnp.linalg.cholesky((full @ full.T)[np.ix_(HYPER, HYPER)]),
                               rtol=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ShapeError, match="hyper_indices"):
        psample.interweaved_polar_slice(logdensity_noncentered, logdensity_centered, to_centered, to_noncentered,
                                        [J]).init(jnp.ones(J + K))
    with pytest.raises(ShapeError, match="distinct"):
        psample.interweaved_polar_slice(logdensity_noncentered, logdensity_centered, to_centered, to_noncentered,
                                        [J, J]).init(jnp.ones(J + K))
    with pytest.raises(InitialPointError, match="inverse"):
        psample.interweaved_polar_slice(logdensity_noncentered, logdensity_centered, to_centered, to_centered,
                                        HYPER).init(jnp.ones(J + K))
    with pytest.raises(InvalidTuningError, match="hyper_w"):
        _algorithm(hyper_w=0.0)
