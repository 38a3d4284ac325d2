"""Tests of the model zoo (models/, imported as psample.models).

Log-densities are compared with SciPy's densities (``multivariate_normal``, ``multivariate_t``,
``norm``, ``halfcauchy``, ``log_expit``) through differences at random points, so constants do
not matter but every term does. The ``exact`` quantities are checked against independent closed
forms or against large i.i.d. draws from NumPy/SciPy, within ``Z`` Monte Carlo standard errors
(``Z`` a Bonferroni bound over the statistical comparisons of this file; seeds fixed).
"""

from __future__ import annotations

import ast
import hashlib
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import psample.models as models
from psample.errors import ModelError

#: Bonferroni bound for about 80 i.i.d. comparisons (70 here) at a 0.1 % family-wise false-fail rate.
Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 80)))
MODELS_DIR = pathlib.Path(models.__file__).parent
REGISTRY_NAMES = {
    "radon",
    "convection_lorenz_bridge",
    "stochastic_volatility",
    "german_credit_sparse",
    "gmm25",
    "gmm40",
    "many_well",
    "two_mode_mixture",
    "eight_schools",
    "eight_schools_centered",
    "gaussian",
    "ill_conditioned_gaussian",
    "hyperplane_disk",
    "student_t",
    "cauchy",
    "funnel",
    "logistic_regression",
    "conjugate_gaussian",
    "linear_regression",
    "student_t_regression",
}


# ----------------------------------------------------------------------------- helpers


def assert_logdensity_matches(logdensity_fn, reference_logpdf, points):
    """``logdensity_fn`` equals ``reference_logpdf`` up to one additive constant on ``points``."""
    ours = np.asarray(jax.jit(jax.vmap(logdensity_fn))(jnp.asarray(points)))
    theirs = np.asarray(reference_logpdf(points))
    assert np.all(np.isfinite(ours))
    np.testing.assert_allclose(ours - ours[0], theirs - theirs[0], rtol=1e-10, atol=1e-8)


def assert_mean_within_mcse(values, truth, label):
    """The sample mean of i.i.d. ``values`` is within ``Z`` MCSE of ``truth``."""
    values = np.asarray(values, dtype=float)
    mcse = values.std(ddof=1) / np.sqrt(values.size)
    error = abs(values.mean() - truth)
    assert error <= Z * mcse, f"{label}: mean {values.mean():.6g}, exact {truth:.6g}, MCSE {mcse:.3g}"


def assert_quantile(samples, q_value, p, label):
    """``P(sample <= q_value)`` estimated from i.i.d. draws is within ``Z`` binomial MCSE of ``p``."""
    n = samples.shape[0]
    frac = np.mean(samples <= q_value)
    mcse = np.sqrt(p * (1.0 - p) / n)
    assert abs(frac - p) <= Z * mcse, f"{label}: P(<= {q_value:.6g}) = {frac:.6g}, want {p}"


def assert_radius_law(target, radii, x0):
    """Check every exact radius/marginal entry a target has against i.i.d. ``radii`` and ``x0``."""
    exact = target.exact
    for p in models.QUANTILE_LEVELS:
        if f"q{p:g}[|x|]" in exact:
            assert_quantile(radii, exact[f"q{p:g}[|x|]"], p, f"{target.name} q{p}[|x|]")
        if f"q{p:g}[x_0]" in exact:
            assert_quantile(x0, exact[f"q{p:g}[x_0]"], p, f"{target.name} q{p}[x_0]")
    assert exact["median[|x|]"] == pytest.approx(exact["q0.5[|x|]"], rel=1e-12)
    log_r = np.log(radii)
    assert_mean_within_mcse(log_r, exact["E[log|x|]"], f"{target.name} E[log|x|]")
    centred_sq = (log_r - exact["E[log|x|]"]) ** 2
    assert_mean_within_mcse(centred_sq, exact["Var[log|x|]"], f"{target.name} Var[log|x|]")
    if "P(|x|>median[|x|], x_0>0)" in exact:
        event = (radii > exact["median[|x|]"]) & (x0 > 0)
        assert_mean_within_mcse(event, exact["P(|x|>median[|x|], x_0>0)"], f"{target.name} P(...)")


def batched_logdensity(target, positions):
    """Log-density of every chain's position, as one compiled call."""
    return np.asarray(jax.jit(jax.vmap(target.logdensity_fn))(positions))


# NumPyro targets are slow to build (``initialize_model`` traces the model), so each is built
# once per module, through the registry, which the registry tests below then rely on.
@pytest.fixture(scope="module")
def eight_schools_targets():
    return {False: models.get("eight_schools"), True: models.get("eight_schools_centered")}


@pytest.fixture(scope="module")
def logistic_target():
    return models.get("logistic_regression")


# ----------------------------------------------------------------------------- Gaussians


def test_isotropic_gaussian_logdensity_matches_scipy():
    d, scale = 5, 1.7
    target = models.isotropic_gaussian(d, scale)
    points = np.random.default_rng(0).normal(scale=3.0, size=(20, d))
    reference = stats.multivariate_normal(np.zeros(d), scale**2 * np.eye(d))
    assert_logdensity_matches(target.logdensity_fn, reference.logpdf, points)


def test_isotropic_gaussian_exact_radius_law_matches_iid_draws_and_closed_forms():
    d, scale = 5, 1.7
    target = models.isotropic_gaussian(d, scale)
    exact = target.exact
    # Independent closed forms: E‖x‖ = scale √2 Γ((d+1)/2) / Γ(d/2), E‖x‖² = d scale².
    chi_mean = scale * np.sqrt(2.0) * np.exp(special.gammaln((d + 1) / 2) - special.gammaln(d / 2))
    assert exact["E[|x|]"] == pytest.approx(chi_mean, rel=1e-12)
    assert exact["E[|x|^2]"] == pytest.approx(d * scale**2, rel=1e-12)
    np.testing.assert_array_equal(exact["mean"], np.zeros(d))
    np.testing.assert_allclose(exact["var"], np.full(d, scale**2))
    x = np.random.default_rng(1).normal(scale=scale, size=(200_000, d))
    radii = np.linalg.norm(x, axis=1)
    assert_mean_within_mcse(radii, exact["E[|x|]"], "E|x|")
    assert_mean_within_mcse(x[:, 0] ** 2, exact["Var[x_0]"], "Var x_0")
    assert_radius_law(target, radii, x[:, 0])


@pytest.mark.parametrize("rotate", [True, False])
def test_ill_conditioned_gaussian_logdensity_and_covariance(rotate):
    d, kappa = 6, 50.0
    target = models.ill_conditioned_gaussian(d, kappa, rotate=rotate)
    exact = target.exact
    cov = exact["cov"]
    eig = np.linalg.eigvalsh(cov)
    assert eig.max() / eig.min() == pytest.approx(kappa, rel=1e-9)
    assert eig.max() == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(np.sort(exact["eigenvalues"]), eig, rtol=1e-10)
    q = exact["eigenvectors"]
    np.testing.assert_allclose(q.T @ q, np.eye(d), atol=1e-12)
    np.testing.assert_allclose(np.diag(cov), exact["var"], rtol=1e-12)
    assert exact["E[|x|^2]"] == pytest.approx(np.trace(cov), rel=1e-12)
    off_diagonal = np.abs(cov - np.diag(np.diag(cov))).max()
    if rotate:
        assert off_diagonal > 1e-3  # a dense covariance, not a diagonal one
    else:
        assert off_diagonal == 0.0
    # The density is the Gaussian with exactly this covariance.
    points = np.random.default_rng(2).normal(size=(20, d))
    reference = stats.multivariate_normal(np.zeros(d), cov)
    assert_logdensity_matches(target.logdensity_fn, reference.logpdf, points)


def test_ill_conditioned_gaussian_rotation_is_seeded():
    a = models.ill_conditioned_gaussian(4, 10.0, seed=3).exact["cov"]
    b = models.ill_conditioned_gaussian(4, 10.0, seed=3).exact["cov"]
    c = models.ill_conditioned_gaussian(4, 10.0, seed=4).exact["cov"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_hyperplane_disk_matches_precision_inverse_and_paper_values():
    d = 200
    target = models.hyperplane_disk(d)
    exact = target.exact
    ones = np.ones(d)
    precision = 2.0 * (np.eye(d) + np.outer(ones, ones))
    np.testing.assert_allclose(exact["cov"], np.linalg.inv(precision), atol=1e-12)
    # The covariance is (I - 1 1^T / (d + 1)) / 2, so for d = 200: Var[x_0] = Var[sum x] = d / (2 (d + 1)),
    # Cov[x_0, x_1] = -1 / (2 (d + 1)), E|x|^2 = d^2 / (2 (d + 1)).
    assert exact["Var[x_0]"] == pytest.approx(0.497512, abs=1e-6)
    assert exact["Cov[x_0,x_1]"] == pytest.approx(-0.0024876, abs=1e-7)
    assert exact["E[|x|^2]"] == pytest.approx(99.5025, abs=1e-4)
    assert exact["Var[sum x]"] == pytest.approx(0.497512, abs=1e-6)
    assert target.hints["polar_slice_w"] == 20.0


def test_hyperplane_disk_logdensity_matches_scipy():
    d = 7
    target = models.hyperplane_disk(d)
    points = np.random.default_rng(3).normal(size=(20, d))
    reference = stats.multivariate_normal(np.zeros(d), target.exact["cov"])
    assert_logdensity_matches(target.logdensity_fn, reference.logpdf, points)
    x = points[0]
    assert float(target.logdensity_fn(jnp.asarray(x))) == pytest.approx(-(x @ x) - x.sum() ** 2, rel=1e-12)


# ----------------------------------------------------------------------------- heavy tails


@pytest.mark.parametrize("d, df", [(4, 3.0), (3, 1.0), (6, 0.5)])
def test_student_t_logdensity_matches_scipy(d, df):
    target = models.student_t(d, df) if df != 1.0 else models.cauchy(d)
    points = np.random.default_rng(4).standard_cauchy(size=(20, d))
    reference = stats.multivariate_t(np.zeros(d), np.eye(d), df=df)
    assert_logdensity_matches(target.logdensity_fn, reference.logpdf, points)


def test_student_t_exact_quantities_match_iid_draws():
    d, df = 5, 3.0
    target = models.student_t(d, df)
    exact = target.exact
    x = stats.multivariate_t(np.zeros(d), np.eye(d), df=df).rvs(size=200_000, random_state=5)
    radii = np.linalg.norm(x, axis=1)
    assert_radius_law(target, radii, x[:, 0])
    assert exact["Var[x_0]"] == pytest.approx(df / (df - 2), rel=1e-12)
    assert exact["E[|x|^2]"] == pytest.approx(d * df / (df - 2), rel=1e-12)
    assert_mean_within_mcse(x[:, 0], exact["E[x_0]"], "E x_0")


def test_cauchy_exact_quantities_match_iid_draws_and_paper_threshold():
    target = models.cauchy(100)
    exact = target.exact
    assert exact["median[|x|]"] == pytest.approx(14.7721, abs=1e-4)  # the paper's b
    assert exact["P(|x|>median[|x|], x_0>0)"] == pytest.approx(0.25, rel=1e-12)
    assert "mean" not in exact and "Var[x_0]" not in exact  # no moments exist for df = 1
    assert target.hints["polar_slice_w"] == 100.0
    x = stats.multivariate_t(np.zeros(100), np.eye(100), df=1.0).rvs(size=40_000, random_state=6)
    assert_radius_law(target, np.linalg.norm(x, axis=1), x[:, 0])


# ----------------------------------------------------------------------------- funnel


def test_funnel_logdensity_matches_scipy():
    d = 10
    target = models.neal_funnel(d)
    points = np.random.default_rng(7).normal(size=(20, d)) * np.r_[3.0, np.ones(d - 1)]

    def reference(x):
        return stats.norm(0.0, 3.0).logpdf(x[:, 0]) + stats.norm(0.0, np.exp(x[:, :1] / 2)).logpdf(
            x[:, 1:]
        ).sum(axis=1)

    assert_logdensity_matches(target.logdensity_fn, reference, points)


def test_funnel_exact_quantities_match_iid_draws_and_closed_forms():
    d = 10
    target = models.neal_funnel(d)
    exact = target.exact
    assert exact["q0.999[x_0]"] == pytest.approx(9.2707, abs=1e-4)  # the paper's reference value
    assert exact["q0.001[x_0]"] == pytest.approx(-exact["q0.999[x_0]"], rel=1e-12)
    assert exact["Var[x_1]"] == pytest.approx(np.exp(4.5), rel=1e-12)  # E e^{x_0}, x_0 ~ N(0, 9)
    np.testing.assert_allclose(exact["var"], np.r_[9.0, np.full(d - 1, np.exp(4.5))], rtol=1e-12)
    rng = np.random.default_rng(8)
    x0 = rng.normal(scale=3.0, size=400_000)
    x1 = rng.normal(size=x0.shape) * np.exp(x0 / 2)
    for p in models.QUANTILE_LEVELS:
        assert_quantile(x0, exact[f"q{p:g}[x_0]"], p, f"funnel q{p}[x_0]")
    assert_mean_within_mcse(x0, exact["E[x_0]"], "funnel E x_0")
    assert_mean_within_mcse(x0**2, exact["Var[x_0]"], "funnel Var x_0")
    assert_mean_within_mcse(x1, exact["E[x_1]"], "funnel E x_1")
    assert exact["sd[x_0]"] ** 2 == exact["Var[x_0]"]


# ----------------------------------------------------------------------------- flat targets: init


@pytest.mark.parametrize(
    "factory",
    [
        lambda: models.isotropic_gaussian(4, 0.5),
        lambda: models.ill_conditioned_gaussian(4, 100.0),
        lambda: models.hyperplane_disk(4),
        lambda: models.neal_funnel(4),
        lambda: models.student_t(4, 3.0),
    ],
    ids=["gaussian", "ill_conditioned", "hyperplane", "funnel", "student_t"],
)
def test_flat_initial_positions_have_chain_axis_and_overdispersed_spread(factory):
    target = factory()
    x = target.initial_positions(jax.random.PRNGKey(0), 2000)
    d = x.shape[1]
    assert x.shape == (2000, d)
    assert np.all(np.isfinite(batched_logdensity(target, x)))
    assert np.all(np.linalg.norm(np.asarray(x), axis=1) > 0)
    # Gaussians: every coordinate at least as spread as under the target (init N(0, (2σ_max)² I)).
    if "var" in target.exact and target.name.startswith(("gaussian", "ill", "hyperplane")):
        assert np.all(np.asarray(x).var(axis=0) >= target.exact["var"])
    post = target.postprocess(x[:, None, :])
    assert set(post) == {"x"} and post["x"].shape == (2000, 1, d)


# ----------------------------------------------------------------------------- eight schools


@pytest.mark.heavy
@pytest.mark.parametrize("centered", [False, True])
def test_eight_schools_initial_positions_and_postprocess(eight_schools_targets, centered):
    target = eight_schools_targets[centered]
    assert target.name == ("eight_schools_centered" if centered else "eight_schools")
    z = target.initial_positions(jax.random.PRNGKey(1), 4)
    latent = "theta" if centered else "theta_tilde"
    assert set(z) == {"mu", "tau", latent}
    assert z["mu"].shape == (4,) and z["tau"].shape == (4,) and z[latent].shape == (4, 8)
    assert float(jnp.std(z["mu"])) > 0  # chains start apart
    # A (chain, draw) = (4, 3) block of unconstrained draws, with tau very negative in one spot.
    draws = jax.tree.map(lambda a: jnp.stack([a, a + 0.5, a - 1.0], axis=1), z)
    draws["tau"] = draws["tau"].at[0, 0].set(-30.0)
    sites = jax.jit(target.postprocess)(draws)
    expected = {"mu", "tau", "theta"} | ({"theta_tilde"} if not centered else set())
    assert set(sites) == expected
    assert sites["mu"].shape == (4, 3) and sites["tau"].shape == (4, 3)
    assert sites["theta"].shape == (4, 3, 8)
    assert np.all(np.asarray(sites["tau"]) > 0)
    np.testing.assert_allclose(sites["tau"], jnp.exp(draws["tau"]), rtol=1e-12)
    if not centered:
        np.testing.assert_allclose(
            sites["theta"],
            sites["mu"][..., None] + sites["tau"][..., None] * sites["theta_tilde"],
            rtol=1e-12,
        )


def _eight_schools_reference_logdensity(mu, log_tau, latent, centered):
    """Log joint on the unconstrained scale (``tau = e^{log_tau}``, Jacobian ``+log_tau``), by SciPy."""
    y, sigma = models.EIGHT_SCHOOLS_Y, models.EIGHT_SCHOOLS_SIGMA
    tau = np.exp(log_tau)
    value = stats.norm(0, 5).logpdf(mu) + stats.halfcauchy(scale=5).logpdf(tau) + log_tau
    if centered:
        theta = latent
        value += stats.norm(mu, tau).logpdf(theta).sum()
    else:
        theta = mu + tau * latent
        value += stats.norm.logpdf(latent).sum()
    return value + stats.norm(theta, sigma).logpdf(y).sum()


@pytest.mark.parametrize("centered", [False, True])
def test_eight_schools_logdensity_matches_scipy(eight_schools_targets, centered):
    target = eight_schools_targets[centered]
    latent = "theta" if centered else "theta_tilde"
    rng = np.random.default_rng(9)
    mu, log_tau, vec = rng.normal(scale=3, size=5), rng.normal(size=5), rng.normal(size=(5, 8)) * 3
    z = {"mu": jnp.asarray(mu), "tau": jnp.asarray(log_tau), latent: jnp.asarray(vec)}
    theirs = [_eight_schools_reference_logdensity(*args, centered) for args in zip(mu, log_tau, vec)]
    np.testing.assert_allclose(batched_logdensity(target, z), np.array(theirs), rtol=1e-10)


def test_eight_schools_model_defaults_to_classic_data():
    np.testing.assert_array_equal(models.EIGHT_SCHOOLS_Y, [28, 8, -3, 7, -1, 1, 18, 12])
    np.testing.assert_array_equal(models.EIGHT_SCHOOLS_SIGMA, [15, 10, 16, 11, 9, 11, 10, 18])
    from numpyro.handlers import seed, trace

    tr = trace(seed(models.eight_schools_model, 0)).get_trace()
    np.testing.assert_array_equal(tr["obs"]["value"], models.EIGHT_SCHOOLS_Y)
    assert tr["theta"]["type"] == "deterministic"


def test_eight_schools_exact_posterior_matches_two_dimensional_quadrature(eight_schools_targets):
    """An independent route: integrate theta out only (y_j | mu, tau ~ N(mu, σ_j² + tau²)) and do the
    (mu, log tau) integral on a 2-D grid, with SciPy's normal densities instead of the
    Sherman-Morrison marginal likelihood the model module uses."""
    exact = eight_schools_targets[False].exact
    assert eight_schools_targets[True].exact["E[mu]"] == exact["E[mu]"]  # one posterior, two forms
    y, sigma = models.EIGHT_SCHOOLS_Y, models.EIGHT_SCHOOLS_SIGMA
    mu = np.linspace(-35.0, 45.0, 801)[:, None]
    u = np.linspace(-20.0, 7.0, 1351)[None, :]
    tau = np.exp(u)
    log_post = stats.norm(0, 5).logpdf(mu) + stats.halfcauchy(scale=5).logpdf(tau) + u
    for y_j, sigma_j in zip(y, sigma):
        log_post = log_post + stats.norm.logpdf(y_j, mu, np.sqrt(sigma_j**2 + tau**2))
    weight = np.exp(log_post - log_post.max())
    weight /= integrate.simpson(integrate.simpson(weight, x=u[0], axis=1), x=mu[:, 0])

    def expect(values):
        return integrate.simpson(integrate.simpson(weight * values, x=u[0], axis=1), x=mu[:, 0])

    # Both routes are Simpson rules on smooth integrands: they agree to round-off; 1e-9 still
    # catches any wrong term of the conjugate algebra.
    assert exact["E[mu]"] == pytest.approx(expect(mu), abs=1e-9)
    assert exact["Var[mu]"] == pytest.approx(expect(mu**2) - expect(mu) ** 2, abs=1e-9)
    assert exact["E[tau]"] == pytest.approx(expect(tau), abs=1e-9)
    assert exact["Var[tau]"] == pytest.approx(expect(tau**2) - expect(tau) ** 2, abs=1e-9)
    assert exact["E[log tau]"] == pytest.approx(expect(u), abs=1e-9)
    assert exact["Var[log tau]"] == pytest.approx(expect(u**2) - expect(u) ** 2, abs=1e-9)
    shrink_0 = sigma[0] ** 2 / (sigma[0] ** 2 + tau**2)  # E[theta_0 | mu, tau, y]
    assert exact["E[theta_0]"] == pytest.approx(expect(shrink_0 * mu + (1 - shrink_0) * y[0]), abs=1e-9)
    # Quantiles of tau from the marginal CDF of log tau on the coarser grid.
    cdf = integrate.cumulative_simpson(integrate.simpson(weight, x=mu[:, 0], axis=0), x=u[0], initial=0.0)
    for p in (0.1, 0.5, 0.9):
        assert exact[f"q{p:g}[tau]"] == pytest.approx(np.exp(np.interp(p, cdf, u[0])), rel=1e-4)
    assert exact["E[theta]"].shape == (8,) and np.all(exact["Var[theta]"] > 0)


@pytest.mark.slow
def test_eight_schools_exact_posterior_matches_numpyro_nuts():
    """NumPyro NUTS on the raw non-centred model reproduces the quadrature values within MCSE."""
    from numpyro.infer import MCMC, NUTS

    exact = models.eight_schools_posterior()
    num_chains, num_samples, num_batches = 4, 20_000, 40
    mcmc = MCMC(
        NUTS(models.eight_schools_model, target_accept_prob=0.9),
        num_warmup=2_000,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(10))
    samples = mcmc.get_samples(group_by_chain=True)
    checks = {
        "E[mu]": samples["mu"],
        "E[log tau]": jnp.log(samples["tau"]),
        "E[tau]": samples["tau"],
        "E[theta_0]": samples["theta"][..., 0],
    }
    for key, values in checks.items():
        # Batch means: 40 batches of 500 draws per chain are far longer than the autocorrelation.
        batches = np.asarray(values).reshape(num_chains * num_batches, -1).mean(axis=1)
        mcse = batches.std(ddof=1) / np.sqrt(batches.size)
        assert mcse < 0.05, f"{key}: MCSE {mcse} too large for the test to have power"
        assert abs(batches.mean() - exact[key]) <= Z * mcse, f"{key}: {batches.mean()} vs {exact[key]}"


# ----------------------------------------------------------------------------- logistic regression


def test_breast_cancer_data_loads_with_documented_shape_and_checksum():
    data = models.load_dataset("breast_cancer")
    assert data.features.shape == (569, 30)
    assert data.labels.shape == (569,)
    assert not np.isnan(data.features).any()
    assert set(np.unique(data.labels)) == {0, 1}
    assert np.bincount(data.labels).tolist() == [212, 357]  # malignant, benign (UCI description)
    assert data.label_names == ("malignant", "benign")
    assert len(data.feature_names) == 30 and data.feature_names[20] == "worst radius"
    # Mean radius range stated in the data set description: 6.981 to 28.11.
    assert data.features[:, 0].min() == 6.981 and data.features[:, 0].max() == 28.11
    readme = (MODELS_DIR / "data" / "README.md").read_text()
    digest = hashlib.sha256((MODELS_DIR / "data" / "breast_cancer.csv").read_bytes()).hexdigest()
    assert digest in readme
    assert (MODELS_DIR / "data" / "breast_cancer.csv").stat().st_size < 1_000_000


def test_logistic_regression_design_is_standardised_with_intercept():
    design, labels = models.logistic_regression_data("breast_cancer")
    assert design.shape == (569, 31) and labels.shape == (569,)
    np.testing.assert_array_equal(design[:, 0], 1.0)
    np.testing.assert_allclose(design[:, 1:].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(design[:, 1:].std(axis=0), 1.0, rtol=1e-12)


def test_logistic_regression_logdensity_matches_scipy(logistic_target):
    design, labels = models.logistic_regression_data()
    prior_scale = 1.0
    rng = np.random.default_rng(11)
    beta = rng.normal(scale=0.5, size=(5, 31))
    logits = beta @ design.T
    loglik = np.sum(labels * special.log_expit(logits) + (1 - labels) * special.log_expit(-logits), axis=1)
    theirs = stats.norm(0, prior_scale).logpdf(beta).sum(axis=1) + loglik
    ours = batched_logdensity(logistic_target, {"beta": jnp.asarray(beta)})
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert logistic_target.hints["polar_slice_w"] == 0.5


def test_logistic_regression_initial_positions_and_postprocess(logistic_target):
    z = logistic_target.initial_positions(jax.random.PRNGKey(2), 3)
    assert set(z) == {"beta"} and z["beta"].shape == (3, 31)
    assert float(jnp.std(z["beta"][:, 0])) > 0
    sites = jax.jit(logistic_target.postprocess)(jax.tree.map(lambda a: a[:, None], z))
    assert set(sites) == {"beta"} and sites["beta"].shape == (3, 1, 31)
    np.testing.assert_allclose(sites["beta"][:, 0], z["beta"])


def test_logistic_regression_rejects_bad_arguments():
    with pytest.raises(ModelError, match=r"dataset.*breast_cancer.*'iris'"):
        models.logistic_regression(dataset="iris")
    with pytest.raises(ModelError, match=r"prior_scale.*-1"):
        models.logistic_regression(prior_scale=-1.0)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: models.isotropic_gaussian(0), r"\bd\b.*0"),
        (lambda: models.isotropic_gaussian(2.5), r"\bd\b.*2\.5"),
        (lambda: models.isotropic_gaussian(3, scale=-1.0), r"scale.*-1"),
        (lambda: models.ill_conditioned_gaussian(1), r"\bd\b.*>= 2.*1"),
        (lambda: models.ill_conditioned_gaussian(3, 0.5), r"condition_number.*>= 1.*0\.5"),
        (lambda: models.ill_conditioned_gaussian(3, float("inf")), r"condition_number.*inf"),
        (lambda: models.hyperplane_disk(0), r"\bd\b.*0"),
        (lambda: models.student_t(3, 0.0), r"df.*0"),
        (lambda: models.student_t(0, 3.0), r"\bd\b.*0"),
        (lambda: models.cauchy(-2), r"\bd\b.*-2"),
        (lambda: models.neal_funnel(1), r"\bd\b.*>= 2.*1"),
    ],
)
def test_invalid_arguments_raise_model_error_naming_the_argument(call, pattern):
    with pytest.raises(ModelError, match=pattern):
        call()


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_descriptions():
    assert set(models.MODELS) == REGISTRY_NAMES
    assert next(iter(models.MODELS)) == "eight_schools"  # the default model comes first
    descriptions = models.describe()
    assert list(descriptions) == list(models.MODELS)
    for text in descriptions.values():
        assert isinstance(text, str) and text and "\n" not in text


def test_registry_builds_flat_models_with_finite_logdensity():
    numpyro_models = {"eight_schools", "eight_schools_centered", "logistic_regression",
                      "conjugate_gaussian", "linear_regression", "student_t_regression",
                      "radon", "stochastic_volatility", "german_credit_sparse",
                      "convection_lorenz_bridge"}  # fmt: skip
    for name in sorted(REGISTRY_NAMES - numpyro_models):
        target = models.get(name)
        x = target.initial_positions(jax.random.PRNGKey(3), 5)
        assert x.ndim == 2 and x.shape[0] == 5, name
        assert np.all(np.isfinite(batched_logdensity(target, x))), name
        assert target.hints["polar_slice_w"] > 0 and target.exact, name


def test_registry_numpyro_entries_pick_the_parameterisation(eight_schools_targets, logistic_target):
    # The fixtures were built with models.get; the names and latent sites show which factory ran.
    assert eight_schools_targets[False].name == "eight_schools"
    assert eight_schools_targets[True].name == "eight_schools_centered"
    assert logistic_target.name == "logistic_regression(dataset='breast_cancer', prior_scale=1)"


def test_registry_get_overrides_defaults_and_reports_errors():
    target = models.get("gaussian", d=3, scale=2.0)
    assert target.exact["var"].shape == (3,) and target.exact["Var[x_0]"] == 4.0
    assert models.get("cauchy", d=7).initial_positions(jax.random.PRNGKey(0), 2).shape == (2, 7)
    with pytest.raises(ValueError, match="unknown model 'nope'") as info:
        models.get("nope")
    for name in REGISTRY_NAMES:
        assert name in str(info.value)
    expected = r"model 'gaussian' takes parameters \(d=10, scale=1.0\), got \{'df': 3\}"
    with pytest.raises(ModelError, match=expected):
        models.get("gaussian", df=3)
    with pytest.raises(ModelError, match=r"df.*-1"):
        models.get("student_t", df=-1.0)


# ----------------------------------------------------------------------------- dependency rule


def test_models_never_import_a_sampler_or_the_runner():
    """DESIGN §8: models/ defines targets and imports no sampler, runner, trace, CLI or ArviZ."""
    forbidden = re.compile(
        r"^(blackjax|arviz|psample\.(mcmc|graphs\.homomorphism|smc|diffusion|run|trace|cli|diagnostics))(\.|$)"
    )
    for path in MODELS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                assert not forbidden.match(name), f"{path.name} imports {name}"
