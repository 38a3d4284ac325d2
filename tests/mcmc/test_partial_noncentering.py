"""Tests of psample.fit_partial_noncentering (psample/mcmc/partial_noncentering.py).

Targets: two Gaussian hierarchies with a Gaussian likelihood, where the partially non-centred
coordinates are exact: ``e`` is standard normal and independent of the hyperparameters, so
``log p(v, e) - log p(v, 0) = -|e|²/2`` for every ``v``. One has a diagonal likelihood curvature
(one observation per group: the elementwise path), the other a dense one (each observation a
linear combination of the latents: the Cholesky path). The maps are checked as inverses and
against the change of variables; the dense and elementwise paths against each other; a sampler
run on the new coordinates against the exact posterior moments (MCSE from independent chains,
fixed seeds).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import psample
from psample.errors import ShapeError

K = 5
SIGMA = np.array([2.0, 1.5, 3.0, 0.5, 0.8])
Y = np.array([1.5, -0.3, 2.8, 4.1, 3.6])
MIX = np.eye(K) + 0.4 * np.tril(np.ones((K, K)), -1)  # dense design: y ~ N(MIX h, diag(SIGMA²))


def loc_scale(v):
    """``h | v ~ N(mu, exp(log_tau)²)``, ``v = (mu, log_tau)``."""
    ones = jnp.ones(K)
    return v[0] * ones, jnp.exp(v[1]) * ones


def make_logdensity(design):
    def logdensity(y):  # y = (mu, log_tau, h): flat, hyperparameters first
        mu, log_tau, h = y[0], y[1], y[2:]
        m, s = loc_scale(y[:2])
        return (-0.5 * jnp.sum((Y - design @ h) ** 2 / SIGMA**2) - 0.5 * jnp.sum(((h - m) / s) ** 2)
                - K * log_tau - 0.5 * mu**2 / 9.0 - 0.5 * log_tau**2)  # fmt: skip

    return logdensity


HYPER, LATENT = [0, 1], list(range(2, 2 + K))
FIT = jnp.concatenate([jnp.array([1.0, -0.5]), jnp.zeros(K)])


@pytest.mark.parametrize("design", [np.eye(K), MIX], ids=["diagonal", "dense"])
def test_gaussian_likelihood_decouples_exactly(design):
    logdensity = make_logdensity(jnp.asarray(design))
    pncp = psample.fit_partial_noncentering(logdensity, FIT, HYPER, LATENT, loc_scale)
    expected_H = design.T @ np.diag(SIGMA**-2) @ design
    np.testing.assert_allclose(pncp.curvature, expected_H, rtol=1e-8, atol=1e-10)

    @jax.jit
    @jax.vmap
    def checks(x):
        round_trip = pncp.to_partial(pncp.to_centered(x))
        # the change of variables: log p_x(x) = log p_y(F(x)) + log |det F'(x)|
        jacobian = jax.jacfwd(pncp.to_centered)(x)
        gap = pncp.logdensity_fn(x) - logdensity(pncp.to_centered(x)) - jnp.linalg.slogdet(jacobian)[1]
        # exact decoupling: e | v is N(0, I) whatever v
        decoupling = pncp.logdensity_fn(x) - pncp.logdensity_fn(x.at[2:].set(0.0)) + 0.5 * jnp.sum(x[2:] ** 2)
        return round_trip, gap, decoupling

    xs = jax.random.normal(jax.random.key(0), (6, 2 + K)) * 1.5
    round_trip, gap, decoupling = checks(xs)
    np.testing.assert_allclose(round_trip, xs, rtol=1e-9, atol=1e-9)  # the maps are inverse bijections
    np.testing.assert_allclose(gap, 0.0, atol=1e-9)
    np.testing.assert_allclose(decoupling, 0.0, atol=1e-9)


def test_elementwise_path_equals_the_dense_path():
    logdensity = make_logdensity(jnp.eye(K))
    diagonal = psample.fit_partial_noncentering(logdensity, FIT, HYPER, LATENT, loc_scale)
    # a curvature with a tiny off-diagonal term forces the Cholesky path
    coupled = make_logdensity(jnp.eye(K) + 1e-7 * jnp.eye(K, k=-1))
    dense = psample.fit_partial_noncentering(coupled, FIT, HYPER, LATENT, loc_scale)
    x = jax.random.normal(jax.random.key(1), (2 + K,))
    np.testing.assert_allclose(diagonal.to_centered(x), dense.to_centered(x), rtol=1e-5)
    np.testing.assert_allclose(diagonal.logdensity_fn(x), dense.logdensity_fn(x), rtol=1e-5)


# heavy (a whole interweaved run, seconds of compilation; make test-heavy): in the fast suite the maps'
# exactness (test_gaussian_likelihood_decouples_exactly) and the interweaved sampler's moments
# (test_interweaved_polar_slice.py::test_moments_match_exact_posterior) cover what it combines.
@pytest.mark.heavy
def test_sampling_in_the_new_coordinates_matches_the_exact_posterior():
    """Interweaved polar slice (joint move and hyperparameter move) on the dense model's coordinates.

    ``mu`` and ``h`` are exactly Gaussian given ``log_tau``; the reference moments are a 1-d
    quadrature over ``log_tau`` of the conditional Gaussian moments.
    """
    design = jnp.asarray(MIX)
    logdensity = make_logdensity(design)
    pncp = psample.fit_partial_noncentering(logdensity, FIT, HYPER, LATENT, loc_scale)
    sampler = psample.interweaved_polar_slice(pncp.logdensity_fn, None, None, None, HYPER, w=2.0)
    num_chains, num_steps = 32, 400
    x0 = jax.vmap(pncp.to_partial)(jax.random.normal(jax.random.key(2), (num_chains, 2 + K)))
    trace = psample.sample(sampler, x0, jax.random.key(3), num_steps, num_warmup=200, progress=False,
                           compute_convergence_checks=False)
    ys = np.asarray(jax.vmap(jax.vmap(pncp.to_centered))(jnp.asarray(trace.positions)))  # (C, T, 2 + K)
    assert_moments_match_the_exact_posterior(ys, design)


def assert_moments_match_the_exact_posterior(draws, design):
    """First and second moments of ``(mu, log_tau, h)`` draws ``(C, T, 2 + K)`` against
    :func:`_exact_moments`, the MCSE from the ``C`` independent chains' means (Bonferroni, 0.1 %
    family-wise), and a check that each MCSE is small enough for the test to have power."""
    num_chains = draws.shape[0]
    mean, second = _exact_moments(np.asarray(design))
    z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 2 * (2 + K))))
    for j in range(2 + K):
        for name, values, exact in (("mean", draws[..., j], mean[j]), ("second moment", draws[..., j] ** 2, second[j])):
            chain_means = values.mean(axis=1)
            estimate, mcse = chain_means.mean(), chain_means.std(ddof=1) / math.sqrt(num_chains)
            assert abs(estimate - exact) <= z * mcse, f"{name}[{j}]: {estimate:.4f} vs {exact:.4f} (MCSE {mcse:.1e})"
            spread = math.sqrt(max(second[j] - mean[j] ** 2, 1e-12))
            assert mcse < 0.1 * spread * (1 if name == "mean" else 4 * (abs(mean[j]) + spread)), f"{name}[{j}]: no power"


def _exact_moments(design):
    """Posterior means and second moments of ``(mu, log_tau, h)``: quadrature over ``log_tau``."""
    grid = np.linspace(-8.0, 5.0, 4001)
    log_weights, means, seconds = [], [], []
    A = np.column_stack([np.zeros(K), design])  # y = design h; unknowns (mu, h)
    for log_tau in grid:
        tau2 = math.exp(2 * log_tau)
        precision = np.zeros((1 + K, 1 + K))
        precision[1:, 1:] = design.T @ np.diag(SIGMA**-2) @ design + np.eye(K) / tau2
        precision[0, 0] = K / tau2 + 1 / 9.0
        precision[0, 1:] = precision[1:, 0] = -1 / tau2
        rhs = A.T @ (Y / SIGMA**2)
        cov = np.linalg.inv(precision)
        m = cov @ rhs
        # log p(log_tau | y) up to a constant: the Gaussian integral over (mu, h) of the joint
        quad = 0.5 * rhs @ m - 0.5 * np.linalg.slogdet(precision)[1]
        log_weights.append(quad - K * log_tau - 0.5 * log_tau**2)
        means.append(np.concatenate([[m[0], log_tau], m[1:]]))
        seconds.append(np.concatenate([[cov[0, 0] + m[0] ** 2, log_tau**2], np.diag(cov)[1:] + m[1:] ** 2]))
    w = np.exp(np.array(log_weights) - max(log_weights))
    w /= w.sum()
    return w @ np.array(means), w @ np.array(seconds)


def test_bad_input_is_named():
    logdensity = make_logdensity(jnp.eye(K))
    with pytest.raises(ShapeError, match="overlap"):
        psample.fit_partial_noncentering(logdensity, FIT, [0, 1, 2], LATENT, loc_scale)
    with pytest.raises(ShapeError, match="loc_scale"):
        psample.fit_partial_noncentering(logdensity, FIT, HYPER, LATENT, lambda v: (v, v))
    with pytest.raises(ShapeError, match="one flat position"):
        psample.fit_partial_noncentering(logdensity, FIT[None], HYPER, LATENT, loc_scale)


def _numpyro_hierarchy():
    """The dense test model as NumPyro sites (``mu``, ``log_tau``, ``h``): the same density."""
    import numpyro
    import numpyro.distributions as dist

    def model():
        mu = numpyro.sample("mu", dist.Normal(0.0, 3.0))
        log_tau = numpyro.sample("log_tau", dist.Normal(0.0, 1.0))
        h = numpyro.sample("h", dist.Normal(mu, jnp.exp(log_tau)).expand([K]).to_event(1))
        numpyro.sample("y", dist.Normal(jnp.asarray(MIX) @ h, jnp.asarray(SIGMA)).to_event(1), obs=jnp.asarray(Y))

    return model


# heavy (hundreds of small eager compilations), out of the fast suite; CI runs it (make test-ci).
@pytest.mark.heavy
@pytest.mark.ci
def test_latent_gaussian_reads_the_prior_from_a_numpyro_model():
    import numpyro
    import numpyro.distributions as dist
    from jax.flatten_util import ravel_pytree

    from psample.errors import ModelError

    model = _numpyro_hierarchy()
    target = psample.from_numpyro(model)
    latents = psample.latent_gaussian(model, ["h"])
    # ravel_pytree's layout of the sites: h (5), log_tau, mu
    np.testing.assert_array_equal(latents.latent_indices, np.arange(K))
    np.testing.assert_array_equal(latents.hyper_indices, [K, K + 1])
    v = jnp.array([0.4, -1.2])  # (log_tau, mu)
    m, s = latents.loc_scale(v)
    np.testing.assert_allclose(m, np.full(K, -1.2))
    np.testing.assert_allclose(s, np.full(K, np.exp(0.4)))
    # with from_numpyro's flat log-density the Gaussian likelihood decouples exactly, as above
    example = jax.tree.map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
    _, unravel = ravel_pytree(example)
    logdensity = jax.jit(lambda y: target.logdensity_fn(unravel(y)))
    fit = jnp.zeros(K + 2).at[K:].set(v)
    pncp = psample.fit_partial_noncentering(logdensity, fit, latents.hyper_indices, latents.latent_indices,
                                            latents.loc_scale)
    x = jax.random.normal(jax.random.key(1), (K + 2,))
    decoupling = pncp.logdensity_fn(x) - pncp.logdensity_fn(x.at[:K].set(0.0)) + 0.5 * jnp.sum(x[:K] ** 2)
    assert abs(float(decoupling)) < 1e-6
    # the likelihood sees (log_tau, mu) only through h: their conditional given h is the prior's
    assert latents.likelihood_free
    y1, y2 = jax.random.normal(jax.random.key(2), (2, K + 2))
    y2 = y2.at[:K].set(y1[:K])  # the same latents, other hyperparameters
    conditional = latents.hyper_conditional_fn
    np.testing.assert_allclose(conditional(y1) - conditional(y2), logdensity(y1) - logdensity(y2), rtol=1e-10)
    np.testing.assert_allclose(latents.hyper_conditional_fn(y1), target.logprior_fn(unravel(y1)), rtol=1e-12)

    def scale_seen_by_the_data():  # sigma is a hyperparameter the likelihood sees directly
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
        h = numpyro.sample("h", dist.Normal(0.0, sigma).expand([3]).to_event(1))
        numpyro.sample("y", dist.Normal(h, sigma).to_event(1), obs=jnp.array([0.3, -0.2, 1.0]))

    direct = psample.latent_gaussian(scale_seen_by_the_data, "h")
    assert not direct.likelihood_free
    point = jnp.array([0.1, -0.4, 0.2, 0.3])
    direct_target = psample.from_numpyro(scale_seen_by_the_data)
    np.testing.assert_allclose(direct.hyper_conditional_fn(point), direct_target.logdensity_fn(direct.unravel(point)),
                               rtol=1e-12)

    def simplex_model():  # w has 2 unconstrained coordinates for 3 constrained ones
        w = numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("h", dist.Normal(w[0], s).expand([4]).to_event(1))

    simplex = psample.latent_gaussian(simplex_model, "h")
    np.testing.assert_array_equal(simplex.latent_indices, np.arange(4))
    np.testing.assert_array_equal(simplex.hyper_indices, [4, 5, 6])  # s (log), then w's 2 coordinates
    np.testing.assert_allclose(simplex.loc_scale(jnp.array([0.5, 0.0, 0.0]))[1], np.full(4, np.exp(0.5)), rtol=1e-6)

    with pytest.raises(ModelError, match="not a latent sample site"):
        psample.latent_gaussian(model, ["y"])
    with pytest.raises(ModelError, match="not a Normal"):
        psample.latent_gaussian(lambda: numpyro.sample("a", dist.Gamma(2.0, 1.0)), ["a"])

    def chained():  # b's location is a: naming both makes their prior depend on themselves
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        numpyro.sample("b", dist.Normal(a, 1.0))

    with pytest.raises(ModelError, match="depends on the sites themselves"):
        psample.latent_gaussian(chained, ["a", "b"])
