"""The particle runner: shapes, chunking, until-done, Ctrl-C, ArviZ, resampling, plots."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import psample
import psample.runtime.particles
from psample.errors import InvalidTuningError

Y = np.array([0.5, 1.5, 1.0])


def logprior(x):
    return jnp.sum(norm.logpdf(x, 0.0, 1.0))


def loglik(x):
    return jnp.sum(norm.logpdf(Y, x[0] + x[1], 1.0))


def sampler(key, num):
    return jax.random.normal(key, (num, 2))


ADAPTIVE = psample.smc.tempered_smc(logprior, loglik, initial_sampler=sampler, mcmc="rwm", num_mcmc_steps=2)
FIXED = psample.smc.tempered_smc(
    logprior, loglik, initial_sampler=sampler, mcmc="rwm", num_mcmc_steps=2, schedule=np.linspace(0, 1, 6)
)


@pytest.fixture(scope="module")
def fixed_result():
    return run(FIXED)


@pytest.fixture(scope="module")
def adaptive_in_one_chunk():
    """The adaptive (until done) run in one chunk far longer than the run."""
    return run(ADAPTIVE, chunk_length=50)


def run(alg, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("num_replicates", 3)
    return psample.run_particles(alg, jax.random.PRNGKey(0), 64, **kw)


def test_shapes_and_observables():
    result = run(FIXED, observables={"mean0": lambda s: jnp.sum(jnp.exp(s.log_weights) * s.particles[:, 0])})
    assert result.particles.shape == (3, 64, 2)
    assert result.log_weights.shape == (3, 64) and result.log_Z.shape == (3,)
    np.testing.assert_allclose(np.exp(result.log_weights).sum(1), 1.0, rtol=1e-12)
    assert result.ess.shape == (3, 5) and result.observables["mean0"].shape == (3, 5)
    # The last observable is the weighted mean of the final populations.
    final = np.sum(np.exp(result.log_weights) * result.particles[..., 0], axis=1)
    np.testing.assert_allclose(result.observables["mean0"][:, -1], final, rtol=1e-10)
    # log_Z is the sum of the recorded increments.
    np.testing.assert_allclose(result.info.log_Z_increment.sum(1), result.log_Z, rtol=1e-10)
    assert not np.allclose(result.log_Z[0], result.log_Z[1])  # independent replicates
    assert "ParticleResult(replicates=3, particles=64" in repr(result)


@pytest.mark.heavy
@pytest.mark.parametrize("alg", [FIXED, ADAPTIVE], ids=["fixed", "adaptive"])
def test_result_does_not_depend_on_chunking(alg, fixed_result, adaptive_in_one_chunk):
    reference = fixed_result if alg is FIXED else adaptive_in_one_chunk
    chunked = run(alg, chunk_length=1)
    np.testing.assert_array_equal(chunked.log_Z, reference.log_Z)
    np.testing.assert_array_equal(chunked.particles, reference.particles)
    np.testing.assert_array_equal(chunked.valid, reference.valid)


def test_until_done_drops_steps_after_done(adaptive_in_one_chunk):
    result = adaptive_in_one_chunk
    steps = result.valid.shape[1]
    assert steps == result.num_steps.max() < 50
    assert np.all(result.valid.any(axis=0))
    np.testing.assert_array_equal(result.final_state.temperature, 1.0)
    # Replicates that finished earlier have masked (NaN) entries afterwards.
    for r in range(3):
        n = result.num_steps[r]
        assert np.all(np.isnan(result.ess[r, n:])) and np.all(np.isfinite(result.ess[r, :n]))


def test_ctrl_c_returns_what_is_done_and_says_so(monkeypatch):
    original = psample.runtime.particles._build_chunk_runner

    def interrupting(*args):
        run_chunk = original(*args)
        def wrapped(carry, indices):
            # Ctrl-C while the third step runs (shape evaluations pass tracers: skip them).
            if not isinstance(indices, jax.core.Tracer) and int(indices[0]) == 2:
                raise KeyboardInterrupt
            return run_chunk(carry, indices)

        return wrapped

    monkeypatch.setattr(psample.runtime.particles, "_build_chunk_runner", interrupting)
    with pytest.warns(RuntimeWarning, match=r"interrupted after [12] steps"):
        result = run(FIXED, chunk_length=1)
    assert result.interrupted and "interrupted" in repr(result)
    # The chunks completed before Ctrl-C (the one in flight may be abandoned) are all kept.
    done = result.valid.shape[1]
    assert done in (1, 2) and np.all(result.valid)
    np.testing.assert_allclose(result.final_state.temperature, np.linspace(0, 1, 6)[done])
    np.testing.assert_allclose(result.info.log_Z_increment.sum(1), result.log_Z, rtol=1e-10)


def test_ctrl_c_at_the_bar_keeps_every_completed_step(ctrl_c_after):
    ctrl_c_after(2)  # Ctrl-C handled by the driver after the second chunk is on the host
    with pytest.warns(RuntimeWarning, match="interrupted after 2 steps"):
        result = run(FIXED, chunk_length=1)
    assert result.interrupted and result.valid.shape == (3, 2)
    np.testing.assert_allclose(result.final_state.temperature, 0.4)
    np.testing.assert_allclose(result.info.log_Z_increment.sum(1), result.log_Z, rtol=1e-10)


def test_ctrl_c_before_any_step_raises(monkeypatch):
    def interrupting(*args):
        def wrapped(carry, indices):
            raise KeyboardInterrupt

        return wrapped

    monkeypatch.setattr(psample.runtime.particles, "_build_chunk_runner", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(FIXED)


def test_datatree_follows_pymc_smc_layout(fixed_result):
    """PyMC's sample_smc layout: posterior = each replicate at equal weights (chain = replicate),
    sample_stats.log_marginal_likelihood per replicate, the weighted population on its own."""
    import arviz as az

    result = fixed_result
    tree = result.to_datatree()
    assert tree["posterior"]["x"].dims == ("chain", "draw", "x_dim_0")
    assert tree["posterior"]["x"].shape == (3, 64, 2)
    stats = tree["sample_stats"]["log_marginal_likelihood"]
    assert stats.dims == ("chain",)
    np.testing.assert_array_equal(stats.values, result.log_Z)
    assert tree["particles"]["log_weight"].dims == ("chain", "particle")
    np.testing.assert_array_equal(tree["particles"]["x"].values, result.particles)
    steps = tree["particle_steps"]
    assert steps["ess"].dims == ("chain", "step") and steps["log_Z"].dims == ("chain",)
    assert {"log_Z_increment", "is_resampled", "temperature", "valid", "complete", "num_nonfinite"} <= set(steps.data_vars)
    # The draws are the replicate's particles at equal weights: every draw is a particle, and
    # their mean is the weighted mean up to systematic resampling's error (< 2 spread / N).
    draws = tree["posterior"]["x"].values
    weighted = np.sum(np.exp(result.log_weights)[..., None] * result.particles, axis=1)
    assert not np.allclose(np.exp(result.log_weights), 1 / 64)  # really weighted
    for r in range(3):
        assert np.all(np.any(np.all(draws[r][:, None] == result.particles[r][None], -1), -1))
    assert np.all(np.abs(draws.mean(1) - weighted) <= 2 * np.ptp(result.particles, axis=1) / 64)
    # Reproducible from the run's key; another key gives other draws.
    np.testing.assert_array_equal(result.to_datatree()["posterior"]["x"].values, draws)
    other = result.to_datatree(rng_key=jax.random.PRNGKey(1))["posterior"]["x"].values
    assert not np.array_equal(other, draws)
    assert az.summary(tree, kind="stats").shape[0] == 2


def test_equal_weight_draws_keep_an_equally_weighted_population():
    result = run(ADAPTIVE)  # resamples every level: the final weights are equal
    np.testing.assert_allclose(np.exp(result.log_weights), 1 / 64, rtol=1e-10)
    draws = result.equal_weight_draws()
    for r in range(3):  # a permutation of the particles, nothing duplicated or dropped
        np.testing.assert_array_equal(np.sort(draws[r], axis=0), np.sort(result.particles[r], axis=0))


def test_resample_draws_equal_weight_particles(fixed_result):
    result = fixed_result
    draws = result.resample(jax.random.PRNGKey(1), 1000)
    assert draws.shape == (3, 1000, 2)
    # Every draw is one of the replicate's particles.
    for r in range(3):
        assert np.all(np.any(np.all(draws[r][:, None] == result.particles[r][None], -1), -1))
    # Systematic resampling: the mean of the draws is the weighted mean up to 1/num.
    weighted = np.sum(np.exp(result.log_weights)[..., None] * result.particles, axis=1)
    spread = np.ptp(result.particles, axis=1)
    assert np.all(np.abs(draws.mean(1) - weighted) <= spread / 1000 * 2)


def test_plot_writes_a_file(tmp_path, fixed_result):
    result = fixed_result
    path = tmp_path / "smc.png"
    result.plot(path)
    assert path.stat().st_size > 1000


def test_bad_runner_input():
    with pytest.raises(InvalidTuningError, match="num_particles"):
        psample.run_particles(FIXED, jax.random.PRNGKey(0), 1)
    with pytest.raises(InvalidTuningError, match="num_replicates"):
        psample.run_particles(FIXED, jax.random.PRNGKey(0), 10, num_replicates=0)
    with pytest.raises(TypeError, match="ParticleAlgorithm"):
        psample.run_particles(psample.polar_slice(logprior), jax.random.PRNGKey(0), 10)
    with pytest.raises(TypeError, match="observable"):
        psample.run_particles(FIXED, jax.random.PRNGKey(0), 10, observables={"a": 3})


@pytest.mark.heavy  # the 4-device subprocess (tests/runtime/four_devices.py), as its other readers
def test_replicates_are_placed_over_devices_with_the_same_result(four_devices):
    """4 emulated CPU devices: replicates sharded over them give the one-device result."""
    four_devices.assert_passed("replicates")


def _beta_bernoulli_model(y):
    import numpyro
    import numpyro.distributions as dist

    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    numpyro.deterministic("odds", p / (1 - p))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Bernoulli(p), obs=y)


@pytest.mark.heavy
def test_weighted_mean_is_on_the_constrained_scale_by_default():
    """As NumPyro's get_samples(): a Beta site's mean in (0, 1), a 3-simplex with 3 entries,
    deterministic sites; unconstrained=True gives the sampler's space (logit, 2 entries)."""
    y = jnp.array([1.0] * 16 + [0.0] * 4)
    target = psample.from_numpyro(_beta_bernoulli_model, y)
    alg = psample.smc.tempered_smc(target, mcmc="rwm", num_mcmc_steps=5)
    result = run(alg, num_replicates=4)
    mean, se = result.weighted_mean(lambda s: s["p"])
    # Exact posterior Beta(18, 6): mean 3/4 (E[logit p] = 1.12). Tolerance: 4 standard errors
    # (replicates' spread).
    assert 0 < se < 0.03 and abs(mean - 18 / 24) < 4 * se
    sites = result.sites()
    weights = np.exp(result.log_weights)
    np.testing.assert_allclose(mean, np.mean(np.sum(weights * sites["p"], axis=1)), rtol=1e-12)
    simplex, _ = result.weighted_mean(lambda s: s["w"])
    assert simplex.shape == (3,)
    np.testing.assert_allclose(simplex.sum(), 1.0, rtol=1e-10)
    odds, _ = result.weighted_mean(lambda s: s["odds"])
    assert odds > 1
    everything, _ = result.weighted_mean()
    assert set(everything) == {"p", "w", "odds"}
    logit, _ = result.weighted_mean(lambda z: z["p"], unconstrained=True)
    np.testing.assert_allclose(logit, np.mean(np.sum(weights * result.particles["p"], axis=1)), rtol=1e-12)
    assert result.weighted_mean(lambda z: z["w"], unconstrained=True)[0].shape == (2,)
    # The DataTree's posterior is on the same scale.
    tree = result.to_datatree()
    assert tree["posterior"]["w"].shape == (4, 64, 3)
    assert abs(float(tree["posterior"]["p"].mean()) - mean) < 4 * se
