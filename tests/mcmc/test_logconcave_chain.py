"""Tests of the chain of log-concave Markov chains (psample/mcmc/logconcave_chain.py).

Every reference is exact: Gaussian and Gaussian-mixture targets whose smoothed densities are
known in closed form (psample/models/mixtures.py), the conditional law of one measurement, the
moment identities of the whole algorithm and the Gaussian under-dispersion formula (checks
C1-C7: smoothed densities, one conditional, moment identities, under-dispersion, modes,
log-concavity, importance sampling). Statistical comparisons use many
independent chains (vmapped), so their standard errors come from the i.i.d. spread across chains
(SE = sd/√C; for a variance, SE = sd((x - x̄)²)/√C), and pass within ``Z`` standard errors, ``Z``
a Bonferroni bound over the comparisons of this file. Where the walk is exact (MALA inner
kernel with enough steps) no bias budget is added; the unadjusted kernels get an explicit one.
Seeds are fixed, so the suite is deterministic.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg, stats

import psample
import psample.models as models
from psample.errors import InitialPointError, InvalidTuningError, ModelError
from psample.mcmc import logconcave_samples as lc_samples
from psample.mcmc import logconcave_chain as lc

#: Bonferroni bound for about 300 comparisons at a 0.1 % family-wise false-fail rate.
Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 300)))


def mean_and_se(x):
    """Mean over axis 0 of i.i.d. rows and its standard error."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=0), x.std(axis=0, ddof=1) / math.sqrt(x.shape[0])


def cov_and_se(x):
    """Sample covariance of i.i.d. rows and the standard error of each entry."""
    x = np.asarray(x, dtype=np.float64)
    c = x - x.mean(axis=0)
    prods = c[:, :, None] * c[:, None, :]
    return prods.mean(axis=0), prods.std(axis=0, ddof=1) / math.sqrt(x.shape[0])


def assert_within(name, estimate, se, exact, budget=0.0):
    estimate, se, exact = map(np.asarray, (estimate, se, exact))
    err = np.abs(estimate - exact)
    bad = err > Z * se + budget
    assert not np.any(bad), f"{name}: estimate {estimate[bad]} vs exact {exact[bad]} (SE {se[bad]})"


def run_steps(algorithm, positions, key, num_steps):
    """Run ``num_steps`` steps of every chain; returns the final states and the positions after each step."""

    @jax.jit
    def run(states, key):
        def body(states, k):
            states, info = jax.vmap(algorithm.step)(jax.random.split(k, positions.shape[0]), states)
            return states, (states.position, info)

        return jax.lax.scan(body, states, jax.random.split(key, num_steps))

    states = jax.vmap(algorithm.init)(positions)
    return run(states, key)


# ----------------------------------------------------------------------------- C1: smoothed densities


def test_smoothed_gaussian_score_matches_closed_form_and_autodiff():
    rng = np.random.default_rng(0)
    d = 5
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.2 * np.eye(d)
    mu = rng.normal(size=d)
    smoothed = models.smoothed_gaussian(mu, cov)
    for s in (0.0, 0.3, 2.0):
        for y in rng.normal(size=(4, d)) * 2:
            closed = np.linalg.solve(cov + s**2 * np.eye(d), mu - y)
            np.testing.assert_allclose(smoothed.score(jnp.asarray(y), s), closed, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(jax.grad(smoothed.logdensity)(jnp.asarray(y), s), closed, rtol=1e-8, atol=1e-10)
            logpdf = stats.multivariate_normal(mu, cov + s**2 * np.eye(d)).logpdf(y)
            assert float(smoothed.logdensity(jnp.asarray(y), s)) == pytest.approx(logpdf, rel=1e-10)


@pytest.mark.parametrize("cov_kind", ["isotropic", "diagonal", "full"])
def test_smoothed_mixture_logdensity_and_score_are_exact(cov_kind):
    rng = np.random.default_rng(1)
    k, d = 3, 4
    weights = np.array([0.2, 0.5, 0.3])
    means = rng.normal(size=(k, d)) * 2
    if cov_kind == "isotropic":
        covs = np.array([0.3, 0.7, 1.1])
        full = covs[:, None, None] * np.eye(d)
    elif cov_kind == "diagonal":
        covs = rng.uniform(0.2, 1.5, size=(k, d))
        full = np.stack([np.diag(c) for c in covs])
    else:
        a = rng.normal(size=(k, d, d))
        covs = a @ np.swapaxes(a, 1, 2) / d + 0.3 * np.eye(d)
        full = covs
    smoothed = models.smoothed_gaussian_mixture(weights, means, covs)
    for s in (0.0, 0.5, 3.0):
        for y in rng.normal(size=(4, d)) * 2:
            comps = [stats.multivariate_normal(means[j], full[j] + s**2 * np.eye(d)) for j in range(k)]
            logs = np.array([np.log(weights[j]) + comps[j].logpdf(y) for j in range(k)])
            exact_log = np.logaddexp.reduce(logs)
            resp = np.exp(logs - exact_log)
            exact_score = sum(
                resp[j] * np.linalg.solve(full[j] + s**2 * np.eye(d), means[j] - y) for j in range(k)
            )
            assert float(smoothed.logdensity(jnp.asarray(y), s)) == pytest.approx(exact_log, rel=1e-10)
            np.testing.assert_allclose(smoothed.score(jnp.asarray(y), s), exact_score, rtol=1e-8, atol=1e-10)
            autodiff = jax.grad(smoothed.logdensity)(jnp.asarray(y), s)
            np.testing.assert_allclose(autodiff, exact_score, rtol=1e-6, atol=1e-8)


def test_mixture_target_moments_and_hints():
    target = models.two_mode_mixture(d=8)
    exact = target.exact
    np.testing.assert_allclose(exact["mean"], np.full(8, 1 / 3))
    # Cov = 0.05 I + w(1-w) (2·1)(2·1)^T
    np.testing.assert_allclose(exact["cov"], 0.05 * np.eye(8) + (2 / 9) * 4 * np.ones((8, 8)), atol=1e-12)
    assert target.hints["logconcave_chain"]["sigma"] == pytest.approx(math.sqrt(8 + 0.05))
    x = jnp.linspace(-1, 1, 8)
    assert float(target.logdensity_fn(x)) == pytest.approx(float(exact["smoothed_logdensity"](x, 0.0)))
    assert models.get("two_mode_mixture").exact["means"].shape == (2, 32)
    with pytest.raises(ModelError, match="weights"):
        models.gaussian_mixture([1.0, -1.0], np.zeros((2, 3)), [1.0, 1.0])
    with pytest.raises(ModelError, match="covs"):
        models.gaussian_mixture([1.0, 1.0], np.zeros((2, 3)), np.ones((2, 2)))


# ----------------------------------------------------------------------------- C6: log-concavity


def test_conditional_score_is_the_gradient_of_the_conditional_logdensity():
    target = models.two_mode_mixture(d=3)
    smoothed = target.exact["smoothed_logdensity"]
    sigma = 1.3
    rng = np.random.default_rng(2)
    for k in (1, 2, 7):
        y, prev = jnp.asarray(rng.normal(size=3) * 2), jnp.asarray(rng.normal(size=3))
        ybar = prev + (y - prev) / k
        score = target.exact["smoothed_score"](ybar, sigma / math.sqrt(k))
        auto = jax.grad(lc.conditional_logdensity)(y, prev, k, sigma, smoothed)
        np.testing.assert_allclose(lc.conditional_score(y, prev, k, sigma, score), auto, rtol=1e-9, atol=1e-12)


def _hessian_eigenvalues(target, sigma, d, num_points, seed):
    smoothed = target.exact["smoothed_logdensity"]
    hess = jax.jit(jax.vmap(jax.hessian(lc.conditional_logdensity), in_axes=(0, 0, None, None, None)), static_argnums=4)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(1, 9):
        # Running means and candidates spread over the modes and the region between them.
        prev = jnp.asarray(rng.uniform(-2, 2, size=(num_points, d)))
        y = jnp.asarray(rng.uniform(-3, 3, size=(num_points, d)) * sigma / 2)
        out.append(np.linalg.eigvalsh(np.asarray(hess(y, prev, k, sigma, smoothed))))
    return np.stack(out)


def test_conditionals_are_log_concave_and_smooth_above_the_threshold():
    d = 4
    target = models.two_mode_mixture(d=d)  # modes ±1, variance 0.05: R² = d, τ² = 0.05
    sigma = math.sqrt(d + 0.05)
    eig = _hessian_eigenvalues(target, sigma, d, 400, seed=3)
    assert eig.max() <= 1e-12, f"a conditional is not log-concave: eigenvalue {eig.max()}"
    assert eig.min() >= -1 / sigma**2 - 1e-12, f"curvature {eig.min()} below -1/sigma^2 = {-1 / sigma**2}"
    # The bound is nearly attained within a mode: curvature -1/σ² + Cov(X|y)/σ⁴ with
    # Cov(X|y) ≈ τ² = 0.05 there, i.e. -0.988/σ² ...
    assert eig.min() <= -0.98 / sigma**2
    # ... and between the modes at k = 1 the smoothed density is nearly flat (σ at the threshold).
    assert eig[0].max() >= -0.05 / sigma**2


def test_conditionals_below_the_threshold_are_not_log_concave():
    d = 4
    target = models.two_mode_mixture(d=d)
    sigma = 0.5 * math.sqrt(d)
    eig = _hessian_eigenvalues(target, sigma, d, 400, seed=4)
    assert eig.max() > 0.1 / sigma**2, f"largest eigenvalue {eig.max()}: expected a convex direction"
    assert eig.min() >= -1 / sigma**2 - 1e-12  # still 1/σ²-smooth from above


# ----------------------------------------------------------------------------- C2: one conditional


GAUSS_MU = np.array([0.5, -1.0])
GAUSS_COV = np.array([[1.0, 0.3], [0.3, 0.5]])
GAUSS_SIGMA = 1.5
PREVIOUS_MEAN = np.array([1.0, 0.5])


def _one_conditional(inner, step_sizes, num_steps=300, num_chains=4000, seed=0):
    """Draws of ``y_3`` given ``ȳ_2`` from ``num_steps`` inner steps, one run per step size."""
    smoothed = models.smoothed_gaussian(GAUSS_MU, GAUSS_COV)
    source = lc.exact_smoothed_score(smoothed.score, smoothed.logdensity)
    kernel = lc.build_kernel(inner)
    schedule = jnp.asarray([1, 1, num_steps])
    d = 2
    state = lc.LogConcaveChainState(
        position=jnp.zeros(d),
        measurement=jnp.zeros(d),
        mean=jnp.asarray(PREVIOUS_MEAN),
        num_measurements=jnp.asarray(2, jnp.int32),
        logdensity_grad=jnp.zeros(d),
        chain_num_nonfinite=jnp.asarray(0, jnp.int32),
        first_score_ess=jnp.asarray(1.0),
    )
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), state)

    @jax.jit
    def run(key, h):
        keys = jax.random.split(key, num_chains)
        step = lambda k, s: kernel(k, s, source, GAUSS_SIGMA, 3, schedule, h, 1.0)  # noqa: E731
        return jax.vmap(step)(keys, states)

    return [run(jax.random.PRNGKey(seed), h) for h in step_sizes]


def _conditional_law():
    prec = np.linalg.inv(GAUSS_COV)
    cov_post = np.linalg.inv(prec + 2 * np.eye(2) / GAUSS_SIGMA**2)
    mu_post = cov_post @ (prec @ GAUSS_MU + 2 * PREVIOUS_MEAN / GAUSS_SIGMA**2)
    return mu_post, cov_post + GAUSS_SIGMA**2 * np.eye(2)


def test_one_measurement_follows_its_conditional_law_mala():
    mean, cov = _conditional_law()
    ((state, info),) = _one_conditional("mala", [0.5])
    y = np.asarray(state.measurement)
    m, se = mean_and_se(y)
    assert_within("E[y_3 | ybar_2]", m, se, mean)
    c, cse = cov_and_se(y)
    assert_within("Cov[y_3 | ybar_2]", c, cse, cov)
    assert np.all(info.measurement == 3) and np.all(info.num_inner_steps == 300)
    assert np.all(info.num_score_evals == 302)
    assert 0.6 < float(np.mean(info.acceptance_rate)) < 1.0
    # The jump: x̂_3 = ȳ_3 + σ²/3 ∇log p_{σ/√3}(ȳ_3) = E[X | ȳ_3] (Gaussian posterior mean).
    ybar = np.asarray(state.mean)
    np.testing.assert_allclose(ybar, (2 * PREVIOUS_MEAN + y) / 3, rtol=1e-12, atol=1e-14)
    prec = np.linalg.inv(GAUSS_COV)
    post = np.linalg.inv(prec + 3 * np.eye(2) / GAUSS_SIGMA**2)
    expected = (post @ (prec @ GAUSS_MU[:, None] + 3 * ybar.T / GAUSS_SIGMA**2)).T
    np.testing.assert_allclose(np.asarray(state.position), expected, rtol=1e-9, atol=1e-12)


def test_unadjusted_inner_kernels_bias_shrinks_with_the_step():
    mean, cov = _conditional_law()
    (ula_big, _), (ula_small, _) = _one_conditional("ula", [1.0, 0.1], num_steps=400)
    # ULA on a Gaussian inflates the variance by 1/(1 - hc/2) along curvature c (in σ² units):
    # clearly visible at h = 1, within the Monte Carlo error plus a 3 % budget at h = 0.1.
    err_big = np.abs(cov_and_se(ula_big.measurement)[0] - cov)
    c_small, se_small = cov_and_se(ula_small.measurement)
    assert err_big[0, 0] > Z * cov_and_se(ula_big.measurement)[1][0, 0]
    assert np.all(np.abs(c_small - cov) < err_big + 1e-12) or np.max(np.abs(c_small - cov)) < np.max(err_big)
    assert_within("ULA h=0.1 cov", c_small, se_small, cov, budget=0.03 * np.abs(cov).max())


def _underdamped_stationary_position_cov(h, friction=1.0):
    """Stationary covariance of y under the kernel's splitting (A B O B A, time in σ² units)
    on the Gaussian conditional, from the discrete Lyapunov equation of the linear recursion."""
    _, cov = _conditional_law()
    d, u = 2, GAUSS_SIGMA**2
    eye, zero = np.eye(d), np.zeros((d, d))
    zeta = np.exp(-friction * h)
    drift = np.block([[eye, h / 2 * eye], [zero, eye]])  # A: y += h v / 2
    kick = np.block([[eye, zero], [-u * h / 2 * np.linalg.inv(cov), eye]])  # B: v += u h ψ / 2
    friction_map = np.block([[eye, zero], [zero, zeta * eye]])  # O (mean part)
    step = drift @ kick @ friction_map @ kick @ drift
    noise = drift @ kick @ np.vstack([zero, np.sqrt(u * (1 - zeta**2)) * eye])
    return linalg.solve_discrete_lyapunov(step, noise @ noise.T)[:d, :d]


def test_underdamped_inner_kernel_is_exact_on_a_gaussian_conditional_at_two_step_sizes():
    """C2 for the default kernel. The A-B-O-B-A splitting leaves the position law of a Gaussian
    exactly invariant at every stable step (the Lyapunov solution below equals the conditional's
    covariance to rounding), so the draws must match the exact law within Monte Carlo error
    alone, with no discretisation budget, at h = 0.5 and at h = 1."""
    mean, cov = _conditional_law()
    for h in (0.5, 1.0):
        np.testing.assert_allclose(_underdamped_stationary_position_cov(h), cov, atol=1e-12)
    for h, (state, info) in zip((0.5, 1.0), _one_conditional("underdamped", [0.5, 1.0])):
        m, se = mean_and_se(state.measurement)
        assert_within(f"underdamped mean h={h}", m, se, mean)
        c, cse = cov_and_se(state.measurement)
        assert_within(f"underdamped cov h={h}", c, cse, cov)
        assert np.all(info.num_inner_steps == 300)


# ----------------------------------------------------------------------------- C3, C4: whole algorithm


@pytest.mark.heavy
def test_moment_identities_on_a_mixture_d2():
    """E[ȳ_m] = E[X], Cov(ȳ_m) = Cov(X) + σ²/m I and E[x̂_m] = E[X], for any target (C3)."""
    target = models.gaussian_mixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [0.2, 0.1])
    sigma, m, num_chains = 1.6, 4, 4000
    alg = psample.logconcave_chain(
        sigma=sigma,
        num_measurements=m,
        steps_per_measurement=[200, 60, 60, 60],
        step_size=0.6,
        inner="mala",
        smoothed_logdensity=target.exact["smoothed_logdensity"],
    )
    positions = target.initial_positions(jax.random.PRNGKey(0), num_chains)
    states, (_, info) = run_steps(alg, positions, jax.random.PRNGKey(1), m)
    ybar, xhat = np.asarray(states.mean), np.asarray(states.position)
    mean_x, cov_x = target.exact["mean"], target.exact["cov"]
    assert_within("E[ybar_m]", *mean_and_se(ybar), mean_x)
    assert_within("Cov[ybar_m]", *cov_and_se(ybar), cov_x + sigma**2 / m * np.eye(2))
    assert_within("E[xhat_m]", *mean_and_se(xhat), mean_x)
    assert np.all(np.asarray(states.num_measurements) == m)
    assert np.all(np.isnan(np.asarray(info.score_ess)))


@pytest.fixture(scope="module")
def gaussian_trajectory():
    """x̂_k for k = 1..64 of 3000 chains on N(μ, diag(λ)), d = 16, λ ∈ logspace(-1, 1), σ = 2 (MALA walk)."""
    d = 16
    lam = np.logspace(-1, 1, d)
    mu = np.linspace(-1.0, 2.0, d)
    smoothed = models.smoothed_gaussian(mu, lam)
    alg = psample.logconcave_chain(
        sigma=2.0,
        num_measurements=64,
        steps_per_measurement=[100] + [25] * 63,
        step_size=0.7,
        inner="mala",
        smoothed_logdensity=smoothed.logdensity,
    )
    positions = jnp.asarray(mu) + 3.0 * jax.random.normal(jax.random.PRNGKey(0), (3000, d))
    trace = psample.sample(alg, positions, jax.random.PRNGKey(1), 64, progress=False)
    return lam, mu, trace


@pytest.mark.slow
@pytest.mark.parametrize("m", [1, 4, 64])
def test_gaussian_output_is_the_exact_under_dispersed_gaussian(gaussian_trajectory, m):
    """x̂_m ~ N(μ, Σ(Σ + σ²/m I)^{-1}Σ): per-direction variance λ²/(λ + σ²/m) (C4; m = 1 is walk-jump)."""
    lam, mu, trace = gaussian_trajectory
    x = trace.positions[:, m - 1, :]
    assert np.all(trace.info.measurement[:, m - 1] == m)
    assert_within(f"E[xhat_{m}]", *mean_and_se(x), mu)
    centred = (x - mu) ** 2  # exact mean: centring at μ keeps the draws i.i.d.
    assert_within(f"Var[xhat_{m}]", *mean_and_se(centred), lam**2 / (lam + 4.0 / m))


def test_after_m_measurements_a_new_chain_of_measurements_starts():
    """m = 1 (walk-jump): every step restarts, every draw is a walk-jump sample of variance λ²/(λ+σ²)."""
    smoothed = models.smoothed_gaussian(np.zeros(1), np.ones(1))
    alg = psample.logconcave_chain(
        sigma=1.0, num_measurements=1, steps_per_measurement=50, inner="mala",
        smoothed_logdensity=smoothed.logdensity,
    )  # fmt: skip
    trace = psample.sample(alg, jnp.zeros((500, 1)), jax.random.PRNGKey(3), 40, progress=False)
    assert np.all(trace.info.measurement == 1)
    x = trace.positions[:, 5:, 0]  # chain means of successive samples: i.i.d. across chains
    assert_within("walk-jump E", *mean_and_se(x.mean(axis=1)), 0.0)
    assert_within("walk-jump Var", *mean_and_se((x**2).mean(axis=1)), 0.5)


# ----------------------------------------------------------------------------- C5: modes


@pytest.fixture(scope="module")
def two_mode_run():
    """Default schedule (the mode decision defaults), d = 32, every chain started in the wrong mode."""
    target = models.two_mode_mixture(d=32)
    sigma = target.hints["logconcave_chain"]["sigma"]
    alg = psample.logconcave_chain(
        sigma=sigma, num_measurements=64, smoothed_score=target.exact["smoothed_score"]
    )
    num_chains = 2000
    positions = jnp.tile(-jnp.ones(32), (num_chains, 1))
    theta = jnp.asarray(target.exact["mode_axis"])
    trace = psample.sample(
        alg, positions, jax.random.PRNGKey(5), 64, target=target, progress=False,
        observables={"proj": lambda s: s.position @ theta},
    )  # fmt: skip
    return target, sigma, trace


def _w2_1d(samples, reference):
    """1-D W2 between the empirical law of ``samples`` and ``reference`` (quantile coupling)."""
    samples = np.sort(samples)
    q = (np.arange(samples.size) + 0.5) / samples.size
    return float(np.sqrt(np.mean((samples - np.quantile(reference, q)) ** 2)))


@pytest.mark.slow
def test_mode_proportions_two_to_one_in_d32_from_the_wrong_mode(two_mode_run):
    target, sigma, trace = two_mode_run
    proj = trace.observables["proj"]
    num_chains = proj.shape[0]
    p_hat = float(np.mean(proj[:, -1] > 0))
    se = math.sqrt((2 / 9) / num_chains)
    assert abs(p_hat - 2 / 3) <= 4 * se, f"mode 0 fraction {p_hat:.4f}, expected 2/3 ± {4 * se:.4f}"
    # The DataTree and diagnostics work on the draws.
    tree = trace.to_datatree()
    assert tree.posterior["x"].shape == (num_chains, 64, 32)


@pytest.mark.slow
def test_plain_langevin_from_one_mode_never_tunnels(two_mode_run):
    """The baseline of C5: ULA with the same number of gradients stays in the starting mode."""
    target, _, _ = two_mode_run
    grad = jax.grad(target.logdensity_fn)
    euler = jax.vmap(lambda k, x, g: x + 0.01 * g + math.sqrt(0.02) * jax.random.normal(k, x.shape))

    @jax.jit
    def run(x, key):
        def body(x, k):
            return euler(jax.random.split(k, x.shape[0]), x, jax.vmap(grad)(x)), None

        return jax.lax.scan(body, x, jax.random.split(key, 1460))[0]

    x = run(jnp.tile(-jnp.ones(32), (500, 1)), jax.random.PRNGKey(6))
    assert float(np.mean(np.asarray(x).mean(axis=1) > 0)) == 0.0


@pytest.mark.slow
def test_w2_along_the_mode_axis_shrinks_with_measurements(two_mode_run):
    """1-D W2 along θ within the bound σ√(d/m); its within-mode part decreases over m = 4, 16, 64.

    The total W2 along θ is floored by the Monte Carlo error of the mode proportion: an error
    δ moves mass δ across the 2√d between the modes, W2 ≈ 2√(dδ) ≈ 1 at δ = SE ≈ 0.01 for
    2000 chains, far above the bias beyond m = 4. The within-mode part (W2 of each side against
    its component, combined with the exact weights) is not, and shows the bias shrinking.
    """
    target, sigma, trace = two_mode_run
    proj = trace.observables["proj"]
    rng = np.random.default_rng(7)
    n_ref = 400_000
    side = np.where(rng.uniform(size=n_ref) < 2 / 3, 1.0, -1.0)
    noise = math.sqrt(0.05) * rng.normal(size=n_ref)
    reference = side * math.sqrt(32) + noise
    w2 = {m: _w2_1d(proj[:, m - 1], reference) for m in (1, 4, 16, 64)}
    for m, value in w2.items():
        assert value <= sigma * math.sqrt(32 / m), f"W2 at m={m}: {value:.3f} above σ√(d/m)"
    assert w2[1] > w2[4], w2
    within = {}
    for m in (4, 16, 64):
        x = proj[:, m - 1]
        parts = [
            _w2_1d(x[x > 0], noise + math.sqrt(32)) ** 2 * (2 / 3),
            _w2_1d(x[x <= 0], noise - math.sqrt(32)) ** 2 * (1 / 3),
        ]
        within[m] = math.sqrt(sum(parts))
    # Exact values for x̂ = E[X | ȳ] within a decided mode: sd √(τ⁴/(τ² + σ²/m)) against τ,
    # so W2 = τ - √(τ⁴/(τ²+σ²/m)): 0.192 at m = 16, 0.157 at m = 64 (at m = 4 some chains are
    # still undecided, x̂ between the modes, which adds to the within-mode part).
    tau2 = 0.05
    for m in (16, 64):
        value = within[m]
        exact = math.sqrt(tau2) - math.sqrt(tau2**2 / (tau2 + sigma**2 / m))
        assert abs(value - exact) <= 0.02, f"within-mode W2 at m={m}: {value:.4f}, exact {exact:.4f}"
    assert within[4] > within[16] > within[64], within


# ----------------------------------------------------------------------------- C7: importance sampling


@pytest.mark.slow
@pytest.mark.parametrize("d", [2, 8])
def test_importance_sampling_score_error_shrinks_like_inverse_sqrt_n(d):
    lam = np.logspace(-0.3, 0.3, d)
    mu = np.linspace(-1.0, 1.0, d)
    smoothed = models.smoothed_gaussian(mu, lam)
    y, s = jnp.asarray(mu + 1.5), 0.5
    exact = np.asarray(smoothed.score(y, s))
    batch = 200
    rmse = {}
    for estimator in lc.SCORE_ESTIMATORS:
        for n in (100, 10_000):
            source = lc.importance_smoothed_score(lambda x: smoothed.logdensity(x, 0.0), n, estimator)
            keys = jax.random.split(jax.random.PRNGKey(d), batch)
            est, ess, _ = jax.jit(jax.vmap(lambda k: source.score(k, y, s)))(keys)  # noqa: B023
            err2 = np.sum((np.asarray(est) - exact) ** 2, axis=1) / np.sum(exact**2)
            rmse[estimator, n] = math.sqrt(err2.mean())
            assert 0 < float(np.mean(ess)) <= 1
    for estimator in lc.SCORE_ESTIMATORS:
        ratio = rmse[estimator, 100] / rmse[estimator, 10_000]
        # N^{-1/2}: a ratio of 10. The RMSE of 200 estimates has a relative error of about
        # 1/√(2·200) = 5 % (more with heavy-tailed weights), so ±35 % covers Z of those; at d = 8
        # the N = 100 estimates are still pre-asymptotic (a ratio below 10).
        assert 6.5 <= ratio <= 13.5, f"{estimator}, d={d}: RMSE ratio {ratio:.2f} for N 100 -> 10,000"
    # The variance-optimal mixture beats both estimators it mixes.
    for n in (100, 10_000):
        assert rmse["mixed", n] <= min(rmse["tweedie", n], rmse["identity", n]), rmse


@pytest.mark.heavy
def test_importance_sampling_degrades_with_dimension():
    """The failure mode of the paper's estimator (its App. H): weights degenerate as d grows."""
    out = {}
    for d in (2, 8, 32):
        lam = np.ones(d)
        smoothed = models.smoothed_gaussian(np.zeros(d), lam)
        source = lc.importance_smoothed_score(lambda x: smoothed.logdensity(x, 0.0), 1000, "tweedie")  # noqa: B023
        y = jnp.full(d, 1.0)
        est, ess, _ = jax.jit(jax.vmap(lambda k: source.score(k, y, 1.0)))(jax.random.split(jax.random.PRNGKey(0), 100))  # noqa: B023
        exact = np.asarray(smoothed.score(y, 1.0))
        out[d] = (float(np.mean(ess)), math.sqrt(np.mean(np.sum((np.asarray(est) - exact) ** 2, 1)) / np.sum(exact**2)))
    assert out[2][0] > out[8][0] > out[32][0]
    assert out[2][1] < out[8][1] < out[32][1]


@pytest.mark.heavy
def test_importance_sampling_sampler_end_to_end_d2():
    """Only the log-density: E[x̂_m] = E[X] (C3) holds with the importance-sampling score in d = 2.

    Components of variance 0.5 at ±1.5 (weights 0.3 / 0.7). With narrow components (variance 0.1
    at ±2) the first measurement's estimates rest on one proposal (relative ESS 1/N at N = 64) and
    the weight of the lighter mode comes out biased: the failure mode ``info.score_ess`` exposes.
    """
    target = models.gaussian_mixture([0.3, 0.7], [[-1.5, 0.0], [1.5, 0.0]], [0.5, 0.5])
    sigma = target.hints["logconcave_chain"]["sigma"]
    m = 4
    alg = psample.logconcave_chain(
        target.logdensity_fn, sigma=sigma, num_measurements=m, steps_per_measurement=[60] + [10] * (m - 1),
        num_score_samples=128,
    )  # fmt: skip
    num_chains = 300
    positions = target.initial_positions(jax.random.PRNGKey(0), num_chains)
    states, (_, info) = run_steps(alg, positions, jax.random.PRNGKey(1), m)
    assert_within("E[xhat_m], IS score", *mean_and_se(np.asarray(states.position)), target.exact["mean"])
    assert np.all(np.asarray(info.num_density_evals[-1]) == 128 * 11)
    assert 0 < float(np.min(info.score_ess)) <= 1


# ----------------------------------------------------------------------------- errors and API


def _score(y, s):
    return -y / (1 + s**2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sigma": 0.0}, InvalidTuningError, "sigma"),
        ({"sigma": -1.0}, InvalidTuningError, "sigma"),
        ({"num_measurements": 0}, InvalidTuningError, "num_measurements"),
        ({"step_size": 2.0}, InvalidTuningError, "smoothness"),
        ({"step_size": 0.0}, InvalidTuningError, "step_size"),
        ({"friction": 0.0}, InvalidTuningError, "friction"),
        ({"inner": "hmc"}, InvalidTuningError, "inner"),
        ({"steps_per_measurement": [10, 10]}, InvalidTuningError, "steps_per_measurement"),
        ({"steps_per_measurement": 0}, InvalidTuningError, "steps_per_measurement"),
        ({"inner": "mala"}, InvalidTuningError, "smoothed_logdensity"),
        ({"score_estimator": "tweedie"}, InvalidTuningError, "score_estimator"),
        ({"smoothed_score": None}, ModelError, "logdensity_fn"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, error, match):
    args = {"sigma": 1.0, "num_measurements": 4, "smoothed_score": _score, **kwargs}
    with pytest.raises(error, match=match):
        psample.logconcave_chain(**args)


def test_bad_importance_sampling_arguments():
    with pytest.raises(InvalidTuningError, match="num_score_samples"):
        psample.logconcave_chain(lambda x: -jnp.sum(x**2), sigma=1.0, num_measurements=2, num_score_samples=1)
    with pytest.raises(InvalidTuningError, match="score_estimator"):
        psample.logconcave_chain(lambda x: -jnp.sum(x**2), sigma=1.0, num_measurements=2, score_estimator="x")


def test_non_finite_score_at_the_initial_point_is_rejected():
    def bad_score(y, s):
        return jnp.where(y > 5.0, jnp.nan, -y)

    alg = psample.logconcave_chain(sigma=1.0, num_measurements=2, smoothed_score=bad_score)
    with pytest.raises(InitialPointError, match="smoothed score"):
        alg.init(jnp.full(2, 10.0))
    with pytest.raises(InitialPointError, match=r"chain\(s\) \[1\]"):
        psample.sample(alg, jnp.asarray([[0.0, 0.0], [10.0, 10.0]]), jax.random.PRNGKey(0), 2, progress=False)
    # Importance sampling with no mass anywhere near the start: every weight is zero -> NaN score.
    ld = lambda x: jnp.where(jnp.all(jnp.abs(x) < 1.0), 0.0, -jnp.inf)  # noqa: E731
    with pytest.raises(InitialPointError):
        psample.logconcave_chain(ld, sigma=0.1, num_measurements=2).init(jnp.full(2, 50.0))


@pytest.fixture(scope="module")
def final_jumps():
    """The one-call run and, from the same key, the trajectory it thins (every 5th draw)."""
    smoothed = models.smoothed_gaussian(np.zeros(3), np.ones(3))
    kwargs = dict(sigma=1.0, num_measurements=5, steps_per_measurement=10, smoothed_score=smoothed.score)
    positions = jnp.zeros((4, 3))
    samples = psample.logconcave_chain_samples(positions, jax.random.PRNGKey(0), num_draws=6, progress=False, **kwargs)
    trace = psample.sample(psample.logconcave_chain(**kwargs), positions, jax.random.PRNGKey(0), 30, progress=False)
    return kwargs, positions, samples, trace


@pytest.mark.heavy
def test_logconcave_chain_samples_returns_the_final_jumps_as_a_trace(final_jumps):
    _, _, samples, trace = final_jumps
    assert isinstance(samples, psample.Trace)
    assert samples.positions.shape == (4, 6, 3)
    assert np.all(samples.info.measurement == 5)
    # The same draws as every 5th draw of the trajectory.
    np.testing.assert_allclose(samples.positions, trace.positions[:, 4::5], rtol=1e-12)
    tree = samples.to_datatree()
    assert tree.posterior["x"].shape == (4, 6, 3)
    assert np.all(tree.sample_stats["measurement"].values == 5)
    import arviz as az

    assert np.all(np.isfinite(az.ess(tree)["x"].values))


def test_logconcave_chain_samples_old_keywords_warn_and_keep_their_results(final_jumps, monkeypatch):
    kwargs, positions, samples, _ = final_jumps
    key = jax.random.PRNGKey(0)
    assert list(inspect.signature(psample.logconcave_chain_samples).parameters)[:3] == [
        "initial_positions", "rng_key", "logdensity_fn"]  # fmt: skip
    # The old keywords change only what reaches the runner and what comes back: the runner is
    # stood in for by one that records its arguments and returns the run above (no compilation).
    calls = []

    def runner(algorithm, initial_positions, rng_key, num_draws, **options):
        calls.append((num_draws, options))
        return samples

    monkeypatch.setattr(lc_samples, "sample", runner)
    assert psample.logconcave_chain_samples(positions, key, num_draws=6, progress=False, **kwargs) is samples
    # return_trace=True: the Trace, as always now.
    with pytest.warns(DeprecationWarning) as record:
        old = psample.logconcave_chain_samples(positions, key, num_samples=6, return_trace=True, progress=False,
                                               **kwargs)  # fmt: skip
    messages = [str(w.message) for w in record if w.category is DeprecationWarning]
    assert any(re.search(r"num_samples=.*num_draws=", m) for m in messages)
    assert any("return_trace" in m for m in messages)
    assert old is samples
    assert calls[1][0] == calls[0][0] == 6 and calls[1][1].keys() == calls[0][1].keys()
    assert calls[0][1]["thin"] == 5
    # return_trace=False: the DataTree, as it did.
    with pytest.warns(DeprecationWarning, match="return_trace"):
        tree = psample.logconcave_chain_samples(positions, key, num_draws=6, return_trace=False, progress=False,
                                                **kwargs)  # fmt: skip
    assert not isinstance(tree, psample.Trace)
    np.testing.assert_array_equal(tree.posterior["x"].values, samples.positions)
    with pytest.raises(TypeError, match=r"both num_samples= \(deprecated\) and num_draws="):
        psample.logconcave_chain_samples(positions, key, num_draws=2, num_samples=6, progress=False, **kwargs)


def test_pytree_positions():
    smoothed = models.smoothed_gaussian(np.zeros(3), np.ones(3))

    def score(y, s):
        flat = jnp.concatenate([y["a"], y["b"]])
        g = smoothed.score(flat, s)
        return {"a": g[:1], "b": g[1:]}

    alg = psample.logconcave_chain(sigma=1.0, num_measurements=3, steps_per_measurement=5, smoothed_score=score)
    positions = {"a": jnp.zeros((2, 1)), "b": jnp.ones((2, 2))}
    trace = psample.sample(alg, positions, jax.random.PRNGKey(0), 3, progress=False)
    assert trace.positions["a"].shape == (2, 3, 1) and trace.positions["b"].shape == (2, 3, 2)
    assert np.all(np.isfinite(trace.positions["b"]))


@pytest.mark.slow
def test_moment_identities_on_the_two_mode_mixture_d32():
    """C3 in d = 32: E[ȳ_m] = E[X], Var(ȳ_m · θ) = Var(X · θ) + σ²/m along the mode axis, E[x̂] = E[X]."""
    target = models.two_mode_mixture(d=32)
    sigma, m, num_chains = target.hints["logconcave_chain"]["sigma"], 16, 4000
    alg = psample.logconcave_chain(
        sigma=sigma, num_measurements=m, inner="mala", step_size=0.5,
        steps_per_measurement=[400] + [100] * (m - 1),
        smoothed_logdensity=target.exact["smoothed_logdensity"],
    )  # fmt: skip
    positions = target.initial_positions(jax.random.PRNGKey(0), num_chains)
    states, _ = run_steps(alg, positions, jax.random.PRNGKey(1), m)
    ybar, xhat = np.asarray(states.mean), np.asarray(states.position)
    theta = target.exact["mode_axis"]
    mean_x, cov_x = target.exact["mean"], target.exact["cov"]
    assert_within("E[ybar_m]", *mean_and_se(ybar), mean_x)
    assert_within("E[xhat_m]", *mean_and_se(xhat), mean_x)
    proj = ybar @ theta
    var_exact = theta @ cov_x @ theta + sigma**2 / m
    assert_within("Var[ybar_m . theta]", *mean_and_se((proj - mean_x @ theta) ** 2), var_exact)


@pytest.mark.heavy
def test_cli_runs_logconcave_chain_where_it_applies(capsys):
    from psample.cli import main

    assert main(["samplers"]) == 0
    assert "logconcave_chain" in capsys.readouterr().out
    assert main(["run", "--sampler", "logconcave_chain", "--model", "two_mode_mixture", "--chains", "2",
                 "--draws", "20", "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "2 chains x 20 draws" in out and "x[31]" in out
    assert main(["run", "--sampler", "logconcave_chain", "--model", "gaussian", "--no-progress"]) == 2
    assert "sigma" in capsys.readouterr().err


# ----------------------------------------------------------------------------- issue #23: numbers users can trust


def _issue_mixture(d):
    """The issue's mixture: weights 0.7 / 0.3, means ±4 on the first axis, variances 1 and 0.25."""
    means = np.zeros((2, d))
    means[0, 0], means[1, 0] = 4.0, -4.0
    return models.gaussian_mixture([0.7, 0.3], means, [1.0, 0.25])


@pytest.mark.heavy
@pytest.mark.parametrize("estimator", ["identity", "mixed"])
def test_importance_sampling_jumps_stay_inside_the_targets_mass(estimator):
    """Degenerate weights (relative ESS ~ 1/N) once threw 4-6 % of the jumps to |x| ~ 1e9 and made
    every ``"identity"`` jump NaN (float32): the denoiser ``y + s² ĝ`` is now clipped into the box
    of the proposals it rests on, so every jump stays within a few σ of the modes."""
    target = _issue_mixture(4)
    sigma = target.hints["logconcave_chain"]["sigma"]
    m, num_chains = 4, 64
    alg = psample.logconcave_chain(
        target.logdensity_fn, sigma=sigma, num_measurements=m, steps_per_measurement=[40] + [10] * (m - 1),
        num_score_samples=32, score_estimator=estimator,
    )  # fmt: skip
    positions = jnp.asarray(target.initial_positions(jax.random.PRNGKey(0), num_chains), jnp.float32)
    step = jax.jit(jax.vmap(alg.step))
    states = jax.vmap(alg.init)(positions)
    for i in range(3 * m):
        states, info = step(jax.random.split(jax.random.PRNGKey(i), num_chains), states)
        x, ybar = np.asarray(states.position), np.asarray(states.mean)
        k = int(info.measurement[0])
        assert np.all(np.isfinite(x)) and np.all(np.asarray(info.num_nonfinite) == 0)
        # The jump stays among the proposals N(ȳ_k, σ²/k I) it rests on (the largest of 32 x 4
        # standard normals is below 5 with probability 1 - 8e-5), never s² times a gradient away.
        assert np.max(np.abs(x - ybar)) <= 5 * sigma / math.sqrt(k), (i, np.max(np.abs(x - ybar)))
        # With 32 proposals in d = 4 (relative ESS ~ 1/32, the warning's regime) the walk itself
        # strays up to ~6σ from the mass, but no farther.
        assert np.max(np.abs(x)) < 4.0 + 8 * sigma, np.max(np.abs(x))


@pytest.mark.heavy
def test_importance_sampling_drops_and_counts_non_finite_log_densities():
    """NaN / +inf log-densities are dropped from the weights and counted; -inf is zero density."""

    def logdensity(x):
        value = -0.5 * jnp.sum(x**2)
        value = jnp.where(x[0] > 1.5, jnp.nan, value)
        value = jnp.where(x[1] > 2.0, jnp.inf, value)
        return jnp.where(x[1] < -2.5, -jnp.inf, value)

    source = lc.importance_smoothed_score(logdensity, 512, "tweedie")
    y = jnp.zeros(2)
    score, ess, nf = source.score(jax.random.PRNGKey(0), y, 1.0)
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (512, 2)))
    # Proposals y + 1·ε: NaN where ε_0 > 1.5, +inf where ε_1 > 2 (counted once each); not -inf.
    expected = int(np.sum((eps[:, 0] > 1.5) | (eps[:, 1] > 2.0)))
    assert int(nf) == expected > 0
    assert np.all(np.isfinite(np.asarray(score))) and 0 < float(ess) <= 1
    # In the sampler: every draw finite, the count in info.
    alg = psample.logconcave_chain(logdensity, sigma=1.0, num_measurements=2, steps_per_measurement=5,
                                   num_score_samples=64, score_estimator="mixed")  # fmt: skip
    states, (traj, info) = run_steps(alg, jnp.zeros((8, 2)), jax.random.PRNGKey(2), 4)
    assert np.all(np.isfinite(np.asarray(traj)))
    assert int(np.sum(info.num_nonfinite)) > 0


def _partly_nan_score(y, s):
    """The score of N(0, I) smoothed at s, NaN for y_0 > 1 (part of the space the walk visits)."""
    return jnp.where(y[0] > 1.0, jnp.nan, -y / (1.0 + s**2))


def test_nan_score_on_part_of_the_space_is_counted_and_never_poisons_the_state():
    """Once every draw turned NaN without a word: now the walk refuses to move onto a NaN score,
    the jump falls back to the running mean, ``info.num_nonfinite`` counts them and both runners
    warn with the count."""
    kwargs = dict(sigma=1.0, num_measurements=4, steps_per_measurement=10, smoothed_score=_partly_nan_score)
    positions = jnp.zeros((16, 2))
    with pytest.warns(psample.errors.NumericalWarning):
        trace = psample.sample(psample.logconcave_chain(**kwargs), positions, jax.random.PRNGKey(0), 8, progress=False)
    assert np.all(np.isfinite(trace.positions))
    assert int(np.sum(trace.info.num_nonfinite)) > 0
    assert np.all(np.isfinite(np.asarray(trace.final_state.logdensity_grad)))
    # Only every m-th step is recorded there; the one-call run counts all of them.
    with pytest.warns(psample.errors.NumericalWarning, match=r"smoothed_score returned non-finite values \d+ times"):
        samples = psample.logconcave_chain_samples(positions, jax.random.PRNGKey(0), num_draws=2, progress=False,
                                                   **kwargs)  # fmt: skip
    assert np.all(np.isfinite(samples.positions))
    assert int(np.sum(samples.observables["num_nonfinite"])) > 0


@pytest.mark.parametrize("bad_shape", [(), (1,)])
def test_smoothed_score_of_the_wrong_shape_is_refused_before_any_work(bad_shape):
    """A ``()`` or ``(1,)`` score was broadcast against a ``(d,)`` position (within-mode variance
    7,395 instead of 0.009)."""

    def score(y, s):
        return jnp.reshape(-jnp.sum(y) / (1.0 + s**2), bad_shape)

    alg = psample.logconcave_chain(sigma=1.0, num_measurements=2, smoothed_score=score)
    with pytest.raises(psample.errors.ShapeError, match=re.escape(f"smoothed_score returned shape {bad_shape}")) as exc:
        alg.init(jnp.zeros(3))
    assert "(3,)" in str(exc.value)
    with pytest.raises(psample.errors.ShapeError, match="smoothed_score"):
        psample.sample(alg, jnp.zeros((2, 3)), jax.random.PRNGKey(0), 2, progress=False)


def test_smoothed_logdensity_must_be_scalar():
    alg = psample.logconcave_chain(sigma=1.0, num_measurements=2, smoothed_logdensity=lambda y, s: -0.5 * y**2)
    with pytest.raises(psample.errors.ShapeError, match=r"smoothed_logdensity returned shape \(3,\)"):
        alg.init(jnp.zeros(3))


@pytest.mark.heavy
@pytest.mark.parametrize("d", [4, pytest.param(8, marks=pytest.mark.slow)])
def test_importance_sampling_warns_where_it_cannot_weigh_the_modes(d):
    """On the issue's mixture the first measurement's weights rest on 1-2 effective proposals out
    of 256 (the heavier mode's weight comes out well above 0.70 in d = 4); the one-call run
    says so, naming score_ess and num_score_samples, before the draws are used."""
    target = _issue_mixture(d)
    hints = target.hints["logconcave_chain"]
    positions = target.initial_positions(jax.random.PRNGKey(0), 4)
    with pytest.warns(psample.errors.NumericalWarning, match=r"effective proposals \(mean score_ess .* num_score_samples=256\)"):
        trace = psample.logconcave_chain_samples(
            positions, jax.random.PRNGKey(1), target.logdensity_fn, progress=False,
            sigma=hints["sigma"], num_measurements=2, steps_per_measurement=[50, 5],
        )  # fmt: skip
    assert float(np.mean(trace.observables["first_score_ess"])) * 256 < lc_samples.MIN_EFFECTIVE_SCORE_SAMPLES


@pytest.mark.heavy
def test_the_chain_runner_warns_where_the_importance_score_cannot_weigh_the_modes():
    """The same regime through psample.sample (the sampler's own end-of-run check, read from the
    chains' final states): the warning names score_ess and num_score_samples."""
    target = _issue_mixture(4)
    hints = target.hints["logconcave_chain"]
    alg = psample.logconcave_chain(target.logdensity_fn, sigma=hints["sigma"], num_measurements=2,
                                   steps_per_measurement=[50, 5])  # fmt: skip
    positions = target.initial_positions(jax.random.PRNGKey(0), 4)
    with pytest.warns(psample.errors.NumericalWarning, match=r"effective proposals \(mean score_ess .* num_score_samples=256\)"):
        trace = psample.sample(alg, positions, jax.random.PRNGKey(1), 60, progress=False, compute_convergence_checks=False)
    assert float(np.mean(trace.final_state.first_score_ess)) * 256 < lc_samples.MIN_EFFECTIVE_SCORE_SAMPLES


@pytest.mark.slow
def test_importance_sampling_mode_weights_right_where_no_warning():
    """The issue's mixture in d = 2 with 512 proposals (about 16 effective ones on the first
    measurement): P(x̂_0 > 0) = 0.7 within Z standard errors of the mode indicator over 400
    independent chains, one sample each (i.i.d., so SE = sqrt(p(1-p)/400) = 0.023); no warning."""
    target = _issue_mixture(2)
    hints = target.hints["logconcave_chain"]
    positions = target.initial_positions(jax.random.PRNGKey(0), 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", psample.errors.NumericalWarning)
        tree = psample.logconcave_chain_samples(
            positions, jax.random.PRNGKey(1), target.logdensity_fn, progress=False, num_score_samples=512, **hints
        ).to_datatree()
    ones = (tree.posterior["x"].values[:, 0, 0] > 0).astype(float)
    assert_within("P(mode 0), IS score", *mean_and_se(ones), 0.7)
