"""Tempered SMC: exact evidence, weighted moments, unbiasedness in Z, adaptive resampling, bad input.

Tolerances: every estimate is compared with its exact value within 4 Monte Carlo standard
errors computed from the spread of independent replicates (``sd / sqrt(R)``), and the standard
error itself is capped so that a broken, noisy sampler cannot pass by being noisy.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm
from scipy import stats

import psample
import psample.models
from psample.errors import DtypeError, InvalidTuningError, ModelError, NumericalWarning, UnreliableErrorWarning

from psample.smc import mutations
from psample.smc import tempered as tempered_module

D, N_OBS, PRIOR_SD = 2, 20, 2.0
Y = np.random.default_rng(0).normal(1.0, 1.0, size=(N_OBS, D))
EXACT_LOG_Z = float(
    sum(
        stats.multivariate_normal(np.zeros(N_OBS), np.eye(N_OBS) + PRIOR_SD**2).logpdf(Y[:, j])
        for j in range(D)
    )
)
POST_PRECISION = N_OBS + 1 / PRIOR_SD**2
POST_MEAN = Y.sum(0) / POST_PRECISION


def logprior(x):
    return jnp.sum(norm.logpdf(x, 0.0, PRIOR_SD))


def loglik(x):
    return jnp.sum(norm.logpdf(Y, x, 1.0))


def prior_sampler(key, num):
    return PRIOR_SD * jax.random.normal(key, (num, D))


def smc(**kw):
    return psample.smc.tempered_smc(logprior, loglik, initial_sampler=prior_sampler, **kw)


def run(alg, num_particles=200, num_replicates=16, seed=0, **kw):
    kw.setdefault("progress", False)
    return psample.run_particles(alg, jax.random.PRNGKey(seed), num_particles, num_replicates=num_replicates, **kw)


#: One algorithm object shared by the tests below: the runner keeps its compiled functions.
RWM2 = smc(mcmc="rwm", num_mcmc_steps=2)


@pytest.fixture(scope="module")
def rwm2_single_run():
    """One default-resampling (multinomial) run of 200 particles, shared by the tests that read it."""
    return run(RWM2, num_particles=200, num_replicates=1)


def assert_close(estimate, se, exact, se_max):
    assert se < se_max, f"standard error {se} above its ceiling {se_max}"
    assert abs(estimate - exact) <= 4 * se, f"{estimate} vs exact {exact} (4 se = {4 * se})"


@pytest.mark.heavy
@pytest.mark.parametrize(
    "mcmc, metric",
    [("hmc", "dense"), ("polar_slice", "dense"), ("hmc", "diagonal"), pytest.param("rwm", "dense", marks=pytest.mark.slow)],
)
def test_conjugate_gaussian_evidence_and_moments(mcmc, metric):
    result = run(smc(mcmc=mcmc, num_mcmc_steps=5, mcmc_parameters={"metric": metric}))
    assert result.log_Z.shape == (16,) and result.log_Z_se_method == "replicates"
    assert_close(result.log_Z_mean, result.log_Z_se, EXACT_LOG_Z, 0.08)
    # Weighted moments of the final (posterior) populations, errors from the replicates.
    mean, se = result.weighted_mean()
    for j in range(D):
        assert_close(mean[j], se[j], POST_MEAN[j], 0.01)
    second, se2 = result.weighted_mean(lambda x: x**2)
    exact_second = 1 / POST_PRECISION + POST_MEAN**2
    for j in range(D):
        assert_close(second[j], se2[j], exact_second[j], 0.03)
    # The adaptive schedule reached the posterior and the info follows the contract.
    np.testing.assert_array_equal(result.final_state.temperature, 1.0)
    steps = result.valid.shape[1]
    assert result.ess.shape == (16, steps) and result.info.is_resampled.dtype == bool
    assert np.all(result.num_steps >= 2)


@pytest.mark.heavy
def test_linear_regression_evidence_from_a_numpyro_target():
    target = psample.models.linear_regression()
    result = run(psample.smc.tempered_smc(target, mcmc="polar_slice", num_mcmc_steps=5), num_particles=300, num_replicates=8)
    assert_close(result.log_Z_mean, result.log_Z_se, target.exact["log_Z"], 0.1)
    mean, se = result.weighted_mean(lambda z: z["beta"])
    for j in range(3):
        assert_close(mean[j], se[j], target.exact["mean"][j], 0.02)
    tree = result.to_datatree()
    assert tree["posterior"]["beta"].dims == ("chain", "draw", "beta_dim_0")


def test_log_Z_is_unbiased_in_Z():
    """Fixed schedule: E[Z_hat] = Z exactly; mean of exp(log Z_hat - log Z) over 200 runs."""
    schedule = [0.0, 0.01, 0.05, 0.2, 0.5, 1.0]
    result = run(smc(mcmc="rwm", num_mcmc_steps=5, schedule=schedule), num_particles=50, num_replicates=200)
    ratio = np.exp(result.log_Z - EXACT_LOG_Z)
    # The ratio is heavy-tailed only when the populations degenerate: check they do not.
    assert np.nanmin(result.ess) / 50 > 0.1
    assert_close(ratio.mean(), ratio.std(ddof=1) / np.sqrt(ratio.size), 1.0, 0.05)


@pytest.mark.heavy
def test_adaptive_resampling_increment_matches_resampling_every_step():
    """The log-Z increment with non-uniform incoming weights is log sum W g, not log mean g."""
    schedule = np.linspace(0.0, 1.0, 9) ** 3
    every = run(smc(mcmc="rwm", num_mcmc_steps=5, schedule=schedule, resample_ess=1.0), num_replicates=32)
    adaptive = run(smc(mcmc="rwm", num_mcmc_steps=5, schedule=schedule, resample_ess=0.5), num_replicates=32, seed=1)
    assert np.all(every.info.is_resampled)
    skipped = ~adaptive.info.is_resampled
    assert skipped.mean() > 0.2  # the adaptive run really carried non-uniform weights
    for result in (every, adaptive):
        assert_close(result.log_Z_mean, result.log_Z_se, EXACT_LOG_Z, 0.05)
    diff = adaptive.log_Z_mean - every.log_Z_mean
    assert abs(diff) <= 4 * np.hypot(adaptive.log_Z_se, every.log_Z_se)


def test_reweight_increment_with_unequal_weights():
    from psample.smc.base import reweight

    log_w = jnp.log(jnp.array([0.7, 0.2, 0.1]))
    log_g = jnp.array([0.0, 1.0, -2.0])
    out = reweight(log_w, log_g)
    exact = np.log(0.7 + 0.2 * np.e + 0.1 * np.exp(-2.0))
    np.testing.assert_allclose(out.log_Z_increment, exact, rtol=1e-12)
    np.testing.assert_allclose(np.exp(out.log_weights), np.array([0.7, 0.2 * np.e, 0.1 * np.exp(-2)]) / np.exp(exact))
    assert out.ess <= 3


def test_fixed_schedule_takes_its_steps_and_reaches_one():
    result = run(smc(mcmc="rwm", num_mcmc_steps=2, schedule=[0.0, 0.3, 1.0]), num_replicates=2)
    assert result.valid.shape == (2, 2) and np.all(result.valid)
    np.testing.assert_allclose(result.info.temperature, [[0.3, 1.0], [0.3, 1.0]])


@pytest.mark.heavy
def test_single_replicate_uses_the_lee_whiteley_estimator(rwm2_single_run):
    result = rwm2_single_run  # resampling="multinomial", the default
    assert result.resampling == "multinomial"
    assert result.log_Z_se_method == "lee-whiteley"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableErrorWarning)  # calibrated: no warning
        assert 0 < result.log_Z_se < 1
        mean, se = result.weighted_mean()
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    systematic = run(smc(mcmc="rwm", num_mcmc_steps=2, resampling="systematic"), num_particles=200, num_replicates=1)
    with pytest.warns(UnreliableErrorWarning, match="valid for multinomial.*'systematic'"):
        assert 0 < systematic.log_Z_se < 1
    with pytest.warns(UnreliableErrorWarning, match="weighted_mean"):
        systematic.weighted_mean()


def _single_run_calibration(resampling):
    """Mean single-run error estimates against the spread of 400 replicates (100 particles)."""
    result = run(smc(mcmc="hmc", num_mcmc_steps=2, resampling=resampling), num_particles=100, num_replicates=400, seed=1)
    assert result.resampling == resampling
    # E[V] = Var(Z_hat / Z) for multinomial resampling; Z_hat / Z is estimated with the exact Z.
    relative_variance = np.mean(np.expm1(result.log_Z - EXACT_LOG_Z) ** 2)
    v = np.expm1(result.log_Z_se_single_run**2)
    log_z_ratio = np.mean(v) / relative_variance
    # Chan and Lai's weighted-mean error per replicate against the spread of the means.
    values = np.asarray(result.particles)[..., 0]
    weights = np.exp(result.log_weights)
    means = np.sum(weights * values, axis=1)
    se = np.sqrt(result._eve_sums(weights * (values - means[:, None])))
    mean_ratio = np.mean(se**2) / np.var(means, ddof=1)
    return log_z_ratio, mean_ratio


@pytest.mark.slow
def test_single_run_errors_are_calibrated_for_multinomial_resampling():
    """Tolerance: with 400 replicates the relative variance of Z_hat/Z (log Z sd 0.3) and the
    variance of the means are each known to about +-10% (sd of a sample second moment with
    kurtosis <= 4: sqrt(3/400) ~ 0.09), so [0.7, 1.4] is a 3-sigma band around 1."""
    log_z_ratio, mean_ratio = _single_run_calibration("multinomial")
    assert 0.7 < log_z_ratio < 1.4, log_z_ratio
    assert 0.7 < mean_ratio < 1.4, mean_ratio


@pytest.mark.slow
def test_single_run_log_Z_error_is_too_small_with_systematic_resampling():
    """The documented (and warned) under-estimate: measured 0.40 resampling every step and
    0.67-0.71 resampling at half the levels; 0.85 is well below 1, so a fix that makes it
    calibrated fails this test and the warning must then go."""
    log_z_ratio, _ = _single_run_calibration("systematic")
    assert log_z_ratio < 0.85, log_z_ratio


@pytest.mark.parametrize("value", [0, 1, -3])
def test_too_few_particles_raise(value):
    with pytest.raises(InvalidTuningError, match="num_particles"):
        run(smc(), num_particles=value)


@pytest.mark.parametrize("value", [0.0, -0.1, 1.5, float("nan")])
def test_target_ess_outside_unit_interval_raises(value):
    with pytest.raises(InvalidTuningError, match="target_ess"):
        smc(target_ess=value)


def test_adaptive_schedule_with_target_ess_one_raises():
    with pytest.raises(InvalidTuningError, match="target_ess"):
        smc(target_ess=1.0)
    smc(target_ess=1.0, schedule=[0.0, 1.0])  # fine with a fixed schedule


@pytest.mark.parametrize("schedule", [[0.0, 0.5, 0.4, 1.0], [0.1, 1.0], [0.0, 0.5], [0.0, 0.5, 0.5, 1.0], [1.0], [[0, 1]]])
def test_bad_schedule_raises(schedule):
    with pytest.raises(InvalidTuningError, match="schedule"):
        smc(schedule=schedule)


def test_non_finite_likelihood_on_prior_draws_is_reported():
    def bad_loglik(x):
        return jnp.where(x[0] > 0, jnp.nan, loglik(x))  # NaN on half the prior draws

    alg = psample.smc.tempered_smc(logprior, bad_loglik, initial_sampler=prior_sampler)
    with pytest.raises(ModelError, match=r"loglikelihood_fn is NaN or \+inf at 5\d\.\d%"):
        run(alg, num_replicates=1)
    # -inf is a legitimate zero likelihood: no error however often.
    zero = lambda x: jnp.where(x[0] > 0, -jnp.inf, loglik(x))
    alg = psample.smc.tempered_smc(logprior, zero, initial_sampler=prior_sampler, mcmc="rwm", num_mcmc_steps=2,
                               schedule=[0.0, 0.5, 1.0])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        result = run(alg, num_particles=64, num_replicates=2)
    assert np.all(result.info.num_nonfinite == 0)
    assert np.all(result.particles[..., 0] <= 0)


def _nan_on_five_percent(x):
    # NaN where the first coordinate is beyond the prior's 95% quantile: 5% of the prior draws.
    return jnp.where(x[0] > 1.645 * PRIOR_SD, jnp.nan, loglik(x))


@pytest.mark.heavy
@pytest.mark.parametrize("mcmc", ["rwm", "hmc", "polar_slice"])
def test_nan_log_likelihood_is_counted_and_warned(mcmc):
    """NaN counts as zero likelihood, but never in silence: info.num_nonfinite counts it (the
    initial draws' at the first step) and the runner warns with the total."""
    alg = psample.smc.tempered_smc(logprior, _nan_on_five_percent, initial_sampler=prior_sampler, mcmc=mcmc,
                               num_mcmc_steps=2, schedule=[0.0, 0.5, 1.0])  # fmt: skip
    with pytest.warns(NumericalWarning, match=r"loglikelihood_fn .*non-finite value .* at \d+ evaluation"):
        result = run(alg, num_particles=200, num_replicates=2)
    counts = result.info.num_nonfinite
    assert counts.shape == (2, 2) and counts.dtype == np.int32
    assert np.all(counts[:, 0] >= 1)  # about 5% of the 200 prior draws
    assert np.all(np.isfinite(result.log_Z))
    tree = result.to_datatree()
    np.testing.assert_array_equal(tree["particle_steps"]["num_nonfinite"].values, counts)


def test_nan_in_the_moves_is_counted():
    """A NaN met only by the moves (the prior draws all fall where the function is finite)."""
    nan_far = lambda x: jnp.where(jnp.abs(x[0]) > 1.2, jnp.nan, loglik(x))
    sampler = lambda key, n: 0.1 * jax.random.normal(key, (n, D))
    alg = psample.smc.tempered_smc(logprior, nan_far, initial_sampler=sampler, mcmc="rwm", num_mcmc_steps=3,
                               schedule=[0.0, 0.5, 1.0], mcmc_parameters={"scale": 20.0})  # fmt: skip
    with pytest.warns(NumericalWarning, match="non-finite"):
        result = run(alg, num_particles=64, num_replicates=1)
    assert result.info.num_nonfinite.sum() > 0


def test_complex_log_likelihood_is_refused():
    alg = psample.smc.tempered_smc(logprior, lambda x: loglik(x) + 0j, initial_sampler=prior_sampler)
    with pytest.raises(DtypeError, match="loglikelihood_fn .*complex"):
        run(alg, num_replicates=1)
    alg = psample.smc.tempered_smc(lambda x: logprior(x).astype(jnp.complex128), loglik, initial_sampler=prior_sampler)
    with pytest.raises(DtypeError, match="logprior_fn .*complex"):
        run(alg, num_replicates=1)


@pytest.mark.heavy
def test_stopping_at_max_steps_is_not_silent(rwm2_single_run):
    """20 observations need several adaptive levels: two steps stop short of temperature 1."""
    alg = smc(mcmc="rwm", num_mcmc_steps=2, max_steps=2)
    with pytest.warns(NumericalWarning, match=r"temperature 1 in 2 of 2 .*temperatures reached: \[0\.\d+.*max_steps=2"):
        result = run(alg, num_particles=64, num_replicates=2)
    assert not result.complete.any() and np.all(result.final_state.temperature < 1)
    assert "incomplete in 2 replicate(s)" in repr(result)
    assert not result.to_datatree()["particle_steps"]["complete"].values.any()
    done = rwm2_single_run
    assert done.complete.all() and "incomplete" not in repr(done)


def test_bad_mcmc_and_options_raise():
    with pytest.raises(InvalidTuningError, match="mcmc"):
        smc(mcmc="nuts")
    with pytest.raises(InvalidTuningError, match="step_size"):
        smc(mcmc="hmc", mcmc_parameters={"step_size": -1.0})
    with pytest.raises(InvalidTuningError, match="metric"):
        smc(mcmc="hmc", mcmc_parameters={"metric": "full"})
    with pytest.raises(InvalidTuningError, match="unknown mcmc_parameters"):
        smc(mcmc="rwm", mcmc_parameters={"w": 1.0})
    with pytest.raises(InvalidTuningError, match="resampling"):
        smc(resampling="bogus")


def test_mutation_kernels_live_in_their_own_module():
    """The kernels moved to psample.smc.mutations; tempered keeps MUTATIONS importable (the CLI's
    ``--mcmc`` choices read it)."""
    from psample.smc.tempered import MUTATIONS

    assert MUTATIONS is mutations.MUTATIONS and sorted(MUTATIONS) == ["hmc", "polar_slice", "rwm"]
    assert set(mutations.DEFAULT_NUM_MCMC_STEPS) == set(MUTATIONS)
    for mcmc in MUTATIONS:
        mutation = mutations.build_mutation(mcmc, None)
        assert isinstance(mutation, mutations.Mutation) and mutation.metric in mutations.METRICS
    assert mutations.build_mutation("hmc", {}).metric == "diagonal"
    assert mutations.build_mutation("rwm", {"metric": "diagonal"}).metric == "diagonal"


def test_target_without_prior_split_is_refused():
    target = psample.from_logdensity(lambda x: -0.5 * jnp.sum(x**2), jnp.zeros(2))
    with pytest.raises(ModelError, match="does not separate prior and likelihood"):
        psample.smc.tempered_smc(target)


def test_polar_slice_needs_two_dimensions():
    alg = psample.smc.tempered_smc(
        lambda x: norm.logpdf(x[0]), lambda x: norm.logpdf(1.0, x[0], 1.0),
        initial_sampler=lambda k, n: jax.random.normal(k, (n, 1)), mcmc="polar_slice",
    )  # fmt: skip
    with pytest.raises(InvalidTuningError, match="at least 2 entries"):
        run(alg, num_replicates=1)


def test_target_split_adds_up():
    target = psample.models.eight_schools()
    z = jax.tree.map(lambda x: x[0], target.prior_sample_fn(jax.random.PRNGKey(3), 2))
    np.testing.assert_allclose(
        target.logprior_fn(z) + target.loglikelihood_fn(z), target.logdensity_fn(z), rtol=1e-12
    )
    draws = target.prior_sample_fn(jax.random.PRNGKey(0), 4000)
    # tau ~ HalfCauchy(5) in the unconstrained (log) space: median log 5.
    assert abs(np.median(draws["tau"]) - np.log(5.0)) < 0.1
    assert abs(np.std(draws["mu"]) - 5.0) < 0.3


@pytest.mark.slow
def test_eight_schools_evidence_by_quadrature():
    exact = psample.models.eight_schools_log_evidence()
    target = psample.models.eight_schools()
    for mcmc in ("hmc", "polar_slice"):
        result = run(psample.smc.tempered_smc(target, mcmc=mcmc, num_mcmc_steps=10), num_particles=1000, num_replicates=16)
        assert_close(result.log_Z_mean, result.log_Z_se, exact, 0.02)


@pytest.mark.slow
def test_single_run_log_Z_se_is_honest_under_the_defaults():
    """Eight schools, psample.smc.tempered's and run_particles' defaults: each replicate's own
    single-run log_Z_se (what one default run reports) against the spread of log_Z over the 64
    independent replicates. With 64 replicates the sample sd is known to about 9% (1/sqrt(126)),
    so the factor-1.5 band is more than 3.5 of its standard errors wide on either side. Measured:
    0.90 with multinomial resampling (the default now), 0.23 with systematic (the old default)."""
    exact = psample.models.eight_schools_log_evidence()
    result = run(psample.smc.tempered_smc(psample.models.get("eight_schools")), num_particles=500, num_replicates=64,
                 seed=1)  # fmt: skip
    spread = np.std(result.log_Z, ddof=1)
    reported = np.sqrt(np.mean(result.log_Z_se_single_run**2))
    assert 1 / 1.5 < reported / spread < 1.5, (reported, spread)
    assert abs(result.log_Z_mean - exact) < 4 * spread / np.sqrt(64)
    one = run(psample.smc.tempered_smc(psample.models.get("eight_schools")), num_particles=500, num_replicates=1, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnreliableErrorWarning)  # valid for the default: no warning
        assert 1 / 1.5 < one.log_Z_se / spread < 1.5


@pytest.mark.slow
@pytest.mark.parametrize("mcmc", ["hmc", "polar_slice"])
def test_log_Z_is_unbiased_in_Z_with_gradient_and_slice_moves(mcmc):
    schedule = [0.0, 0.01, 0.05, 0.2, 0.5, 1.0]
    result = run(smc(mcmc=mcmc, num_mcmc_steps=5, schedule=schedule), num_particles=100, num_replicates=400)
    ratio = np.exp(result.log_Z - EXACT_LOG_Z)
    assert_close(ratio.mean(), ratio.std(ddof=1) / np.sqrt(ratio.size), 1.0, 0.03)


@pytest.mark.slow
@pytest.mark.parametrize("mcmc", ["hmc", "polar_slice"])
def test_mutation_tuned_on_the_population_keeps_the_level_invariant(mcmc):
    """Start from exact draws of pi_lambda, take a step that stays at lambda (no reweighting):
    the moved particles must still follow pi_lambda. A kernel tuned on a population holding the
    particle it moves fails this (HMC inflated the variance by 3% at N = 100: 10 standard errors
    here); cross-fitted tuning passes. Standard errors: the N * R moved draws are independent
    given the tuning, so the sample variance has relative error sqrt(2 / (N R))."""
    from blackjax.smc import resampling

    lam, num, reps = 0.1, 100, 2000
    precision = lam * N_OBS + 1 / PRIOR_SD**2
    mean, var = lam * Y.sum(0) / precision, 1 / precision
    mutation = mutations.build_mutation(mcmc, {})
    kernel = tempered_module.build_kernel(logprior, loglik, mutation, resampling.systematic, 5)

    def one(key):
        draw_key, step_key = jax.random.split(key)
        x = mean + np.sqrt(var) * jax.random.normal(draw_key, (num, D))
        state = tempered_module.init(draw_key, num, lambda k, n: x, loglik, mutation.initial_scale(D))
        state = state._replace(temperature=jnp.asarray(lam))
        return kernel(step_key, state, jnp.asarray(lam), 1.0)[0].particles

    moved = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), reps))).reshape(-1, D)
    se_var = np.sqrt(2 / moved.shape[0])
    np.testing.assert_array_less(np.abs(moved.var(0) / var - 1), 4 * se_var)
    np.testing.assert_array_less(np.abs(moved.mean(0) - mean) / np.sqrt(var / moved.shape[0]), 4)
