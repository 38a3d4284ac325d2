"""Polar slice on hierarchical posteriors: automatic non-centring and the convergence check (#28)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample
from psample import models
from psample.errors import ConvergenceWarning
from psample.models import hierarchical
from psample.models.schools import eight_schools_model
from psample.targets import from_numpyro, noncentered


@pytest.fixture(scope="module")
def schools():
    """The centred eight-schools model and its non-centred rewrite, as targets."""
    centred = from_numpyro(eight_schools_model, centered=True)
    rewritten = from_numpyro(noncentered(eight_schools_model), centered=True)
    return centred, rewritten


def test_noncentred_density_is_the_centred_one_times_the_jacobian(schools):
    """mu = 5 mu_dec, theta = mu + tau theta_dec: log p_nc(z) = log p_c(x(z)) + log 5 + 8 log tau."""
    centred, rewritten = schools
    z = jax.tree.map(lambda a: a[0], rewritten.initial_positions(jax.random.key(3), 1))
    assert set(z) == {"mu_decentered", "tau", "theta_decentered"}
    sites = rewritten.postprocess(jax.tree.map(lambda a: a[None, None], z))
    mu, tau, theta = (np.asarray(sites[k])[0, 0] for k in ("mu", "tau", "theta"))
    np.testing.assert_allclose(mu, 5.0 * np.asarray(z["mu_decentered"]), rtol=1e-12)
    np.testing.assert_allclose(theta, mu + tau * np.asarray(z["theta_decentered"]), rtol=1e-12)
    x = {"mu": jnp.asarray(mu), "tau": z["tau"], "theta": jnp.asarray(theta)}  # tau: the same log scale
    expected = centred.logdensity_fn(x) + np.log(5.0) + 8 * np.log(tau)
    np.testing.assert_allclose(rewritten.logdensity_fn(z), expected, rtol=1e-10)


# heavy (hundreds of small eager compilations), out of the fast suite; CI runs it (make test-ci).
@pytest.mark.heavy
@pytest.mark.ci
def test_a_multivariate_normal_site_is_driven_by_its_innovations():
    """The AR(1) factor is the Cholesky factor of the stationary covariance, and the non-centred
    SV density is the centred one times |det L| (and 5 for the Cauchy mean's rescaling)."""
    s, num_timesteps = 0.3, 6
    lag = np.abs(np.subtract.outer(np.arange(num_timesteps), np.arange(num_timesteps)))
    for p in (0.9, -0.76):  # a negative persistence too (no NaN from a float power)
        L = np.asarray(hierarchical.ar1_scale_tril(num_timesteps, p, s))
        np.testing.assert_allclose(L @ L.T, s**2 / (1 - p**2) * p**lag, rtol=1e-12, atol=1e-15)
    returns = hierarchical.sp500_small_returns()[:num_timesteps]
    centred = from_numpyro(hierarchical.stochastic_volatility_model, returns)
    rewritten = from_numpyro(noncentered(hierarchical.stochastic_volatility_model), returns)
    z = jax.tree.map(lambda a: a[0], rewritten.initial_positions(jax.random.key(0), 1))
    sites = {k: np.asarray(v)[0, 0] for k, v in rewritten.postprocess(jax.tree.map(lambda a: a[None, None], z)).items()}
    L = np.asarray(hierarchical.ar1_scale_tril(num_timesteps, sites["persistence_of_volatility"],
                                               sites["white_noise_shock_scale"]))  # fmt: skip
    np.testing.assert_allclose(sites["log_volatility"], sites["mean_log_volatility"] + L @ np.asarray(z["log_volatility_decentered"]))
    x = {"persistence_beta": z["persistence_beta"], "white_noise_shock_scale": z["white_noise_shock_scale"],
         "mean_log_volatility": jnp.asarray(sites["mean_log_volatility"]),
         "log_volatility": jnp.asarray(sites["log_volatility"])}  # fmt: skip
    expected = centred.logdensity_fn(x) + np.log(5.0) + np.sum(np.log(np.diag(L)))
    np.testing.assert_allclose(rewritten.logdensity_fn(z), expected, rtol=1e-9)


def test_noncentered_can_be_restricted_to_named_sites_and_refuses_a_non_model():
    target = from_numpyro(noncentered(eight_schools_model, sites=["theta"]), centered=True)
    z = target.initial_positions(jax.random.key(0), 1)
    assert set(z) == {"mu", "tau", "theta_decentered"}
    with pytest.raises(TypeError, match="model must be a NumPyro model"):
        noncentered("not a model")


def test_the_shipped_data_are_the_gyms():
    """Sizes the gym's loaders check: 100 returns (centred), 919 houses in 85 counties."""
    returns = hierarchical.sp500_small_returns()
    assert returns.shape == (100,) and abs(returns.mean()) < 1e-9
    data = hierarchical.radon_minnesota_data()
    assert data["num_counties"] == 85 and data["log_radon"].shape == (919,)
    assert set(np.unique(data["floor"])) == {0, 1}


@pytest.mark.heavy
def test_polar_slice_on_the_noncentred_model_recovers_the_centred_posterior(schools):
    """Adapted polar slice on the non-centred rewrite of the *centred* eight schools: the original
    sites' moments match the quadrature values within 4 Monte Carlo SE (ArviZ's MCSE), and the
    run passes the convergence check (no ConvergenceWarning)."""
    import arviz as az

    _, rewritten = schools
    algorithm = psample.polar_slice(rewritten.logdensity_fn, w=5.0)
    positions = rewritten.initial_positions(jax.random.key(1), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        trace = psample.sample(algorithm, positions, jax.random.key(2), 2000, num_warmup=500,
                               target=rewritten, progress=False)  # fmt: skip
    posterior = {name: values.values for name, values in trace.posterior.data_vars.items()}
    exact = models.eight_schools().exact
    for name, values, truth in (
        ("mu", np.asarray(posterior["mu"]), exact["E[mu]"]),
        ("log tau", np.log(np.asarray(posterior["tau"])), exact["E[log tau]"]),
        ("theta_0", np.asarray(posterior["theta"])[..., 0], exact["E[theta_0]"]),
    ):
        mcse = float(az.mcse(values, method="mean"))
        assert abs(values.mean() - truth) < 4 * mcse, (name, values.mean(), truth, mcse)


@pytest.mark.heavy
def test_an_unconverged_polar_slice_run_ends_with_the_convergence_warning(schools):
    """Centred eight schools, chains started far apart, no warm-up, 40 draws: the run warns."""
    centred, _ = schools
    algorithm = psample.polar_slice(centred.logdensity_fn, w=5.0)
    positions = centred.initial_positions(jax.random.key(1), 4)
    positions = {**positions, "mu": positions["mu"] + jnp.array([-30.0, -10.0, 10.0, 30.0])}
    with pytest.warns(ConvergenceWarning, match="R-hat > 1.01"):
        psample.sample(algorithm, positions, jax.random.key(2), 40, target=centred, progress=False)


def test_german_credit_sparse_is_the_gyms_model_on_the_shipped_data():
    """Data as the gym preprocesses them, and the log-joint written out by hand (numpy, scipy)."""
    import scipy.stats

    data = hierarchical.german_credit_numeric_data()
    features, labels = data["features"], data["labels"]
    assert features.shape == (1000, 24) and labels.shape == (1000,)
    np.testing.assert_allclose(features.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(features.std(0), 1.0, rtol=1e-12)
    assert set(np.unique(labels)) == {0, 1} and labels.sum() == 300  # 300 bad credits (label 1)
    target = hierarchical.german_credit_sparse()
    position = jax.tree.map(lambda a: a[0], target.initial_positions(jax.random.key(2), 1))
    assert {k: np.shape(v) for k, v in position.items()} == {
        "unscaled_weights": (25,), "local_scales": (25,), "global_scale": ()}  # fmt: skip
    sites = {k: np.asarray(v)[0, 0] for k, v in target.postprocess(jax.tree.map(lambda a: a[None, None], position)).items()}
    weights = sites["unscaled_weights"] * sites["local_scales"] * sites["global_scale"]
    logits = np.c_[features, np.ones(1000)] @ weights
    expected = (
        scipy.stats.norm.logpdf(sites["unscaled_weights"]).sum()
        + scipy.stats.gamma.logpdf(sites["local_scales"], 0.5, scale=2.0).sum()
        + scipy.stats.gamma.logpdf(sites["global_scale"], 0.5, scale=2.0)
        + np.sum(labels * logits - np.logaddexp(0.0, logits))
        # log-Jacobian of the exp bijector of the 26 scales
        + np.log(sites["local_scales"]).sum() + np.log(sites["global_scale"])
    )
    np.testing.assert_allclose(target.logdensity_fn(position), expected, rtol=1e-10)
