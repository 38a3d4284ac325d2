"""The end-of-run check of the network average's mean (psample.mcmc.admm.mean_offset)."""

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample
from psample.errors import NumericalWarning, ShapeError
from psample.mcmc import admm

from .reference import RHO, d, posterior, regression_data


def skewed_logistic(num_agents=10, rows=20, seed=0):
    """Intercept-only logistic regression (d = 1, 15% ones, prior N(0, 4)): a skewed posterior.

    Returns the sharded data, log-prior, log-likelihood and the exact posterior mean and sd
    (quadrature on a fine grid).
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(num_agents * rows) < 0.15).astype(float)
    grid = np.linspace(-8.0, 4.0, 40001)
    logpost = -0.125 * grid**2 + y.sum() * grid - y.size * np.logaddexp(0.0, grid)
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    mean = float(w @ grid)
    sd = float(np.sqrt(w @ (grid - mean) ** 2))

    def logprior_b(b):
        return -0.125 * jnp.sum(b**2)

    def loglik_b(b, ys):
        return jnp.sum(ys * b[0] - jnp.logaddexp(0.0, b[0]))

    return admm.shard(jnp.asarray(y), num_agents), logprior_b, loglik_b, mean, sd


@pytest.mark.heavy
def test_mean_offset_check_fires_on_a_biased_run_and_names_rho():
    """Ring, rho = 0.5 on a skewed posterior: the network average's mean is 0.9 posterior sd off.

    check_mean_offset sees it from the run alone (the posterior score's mean at the average,
    against the spread of the 20 chains' means): measured z 14 against a threshold of 4, and
    an offset estimate within 0.05 sd of the offset measured against the exact mean. The
    tolerance, 0.25 sd, is 4 Monte Carlo errors of the measured offset (0.05 sd each, from the
    chain means) plus 0.05 for the Gaussian approximation behind the estimate.
    """
    data, lp, ll, mean, sd = skewed_logistic()
    alg = psample.admm(lp, ll, data, rho=0.5, graph="ring", prox="newton")
    # psample.sample runs the check at the end of the run; called again, it returns its findings.
    with pytest.warns(NumericalWarning, match=r"rho=0\.5.*larger rho in psample\.admm"):
        trace = psample.sample(alg, jnp.full((20, 1), mean), jax.random.PRNGKey(1), 100, num_warmup=50,
                               progress=False, compute_convergence_checks=False)  # fmt: skip
    with pytest.warns(NumericalWarning, match=r"rho=0\.5.*larger rho in psample\.admm"):
        found = alg.check_trace(trace)
    draws = np.asarray(trace.positions)[..., 0]
    measured = (draws.mean() - mean) / sd
    assert found.biased and abs(found.z[0]) > found.threshold
    assert measured < -0.5 and abs(found.offset_sd[0] - measured) < 0.25, (found.offset_sd, measured)


def test_mean_offset_check_is_quiet_on_a_gaussian_posterior(ring_quadratic):
    """Gaussian shards: the network average's stationary mean is the posterior mean (exactly)
    and so is the score's mean 0; the check's false-alarm rate is 1e-3 by construction (a t-test
    of 40 independent chains' means), and its offset estimate is within 4 Monte Carlo errors of 0.
    """
    X, y = regression_data()
    mu, _ = posterior(X, y)
    alg = ring_quadratic  # the reference data on the ring, closed-form prox, rho = 5
    trace = psample.sample(alg, jnp.broadcast_to(jnp.asarray(mu), (40, d)), jax.random.PRNGKey(5), 200,
                           num_warmup=200, progress=False)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = admm.check_mean_offset(trace, rho=RHO)
    assert not found.biased and found.num_groups == 40
    # offset_sd is the score's mean mapped through the fitted precision: its error is the z's.
    assert np.all(np.abs(found.z) < found.threshold)
    assert np.all(np.isfinite(found.offset_sd)) and np.all(np.abs(found.offset_sd) < 0.2)


class OtherInfo(NamedTuple):
    """Another sampler's info: no ``average_score``."""

    acceptance_rate: np.ndarray


@pytest.mark.parametrize("info", [OtherInfo(np.ones((2, 5))), None])
def test_mean_offset_check_refuses_a_trace_without_scores(info):
    """A trace of another sampler (built directly: the check reads ``trace.info`` and
    ``trace.positions`` only), or one without info."""
    trace = psample.Trace(positions=np.ones((2, 5, 2)), info=info, logdensity=None, observables={}, final_state=None)
    with pytest.raises(ShapeError, match="average_score"):
        admm.check_mean_offset(trace)

