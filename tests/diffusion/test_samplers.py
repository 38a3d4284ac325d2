"""Diffusion samplers for unnormalised densities: exact weights, log Z, bounds, training loop.

Tolerances: an estimate passes when it is within 4 standard errors of the exact
value, the standard error taken from independent replicates (or from the particles for means
over particles), with a ceiling on the standard error so that a noisy, broken sampler cannot
pass by being vague. The learned samplers' and the corrected reverse diffusion's weights are
exact importance weights, so there is no bias budget (b = 0).
"""

import inspect
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import psample
from psample import models
from psample.diffusion import VE, VP, SamplerResult, TrainedSampler, reverse_diffusion, train_sampler
from psample.diffusion.networks import DriftNetwork
from psample.diffusion.processes import Process
from psample.errors import CheckpointError, InvalidTuningError, ModelError, ShapeError

LOG_2PI = math.log(2 * math.pi)
MEAN = jnp.array([1.0, -1.0])


def shifted_gaussian(x):
    """N(m, I) unnormalised: log Z = log 2π in d = 2."""
    return -0.5 * jnp.sum((x - MEAN) ** 2)


def within(estimate, exact, se, k=4.0):
    return abs(estimate - exact) <= k * se


# --- learned samplers -----------------------------------------------------------------------


def test_untrained_dds_weights_equal_log_z_on_its_reference_gaussian():
    # With f = 0 the DDS chain is the stationary, reversible AR(1) of N(0, s² I),
    # so for γ = exp(-|x|²/(2 s²)) every path's log-weight is log Z = (d/2) log(2π s²).
    # Built directly at its zero-initialised parameters (no training step to compile).
    s, d = 1.5, 3
    process = Process("dds", d, 10, s, 1.0, VP(), DriftNetwork(d))
    params = {"net": process.network.init(jax.random.key(0), jnp.float64), "log_Z": jnp.zeros(())}
    sampler = TrainedSampler(lambda x: -0.5 * jnp.sum(x**2) / s**2, process, params, np.zeros(0), "kl")
    result = sampler.sample(jax.random.key(1), 200, progress=False)
    log_z = 0.5 * d * math.log(2 * math.pi * s**2)
    assert np.var(result.log_w) < 1e-8
    np.testing.assert_allclose(result.log_w, log_z, atol=1e-6)
    np.testing.assert_allclose(result.log_Z, log_z, atol=1e-6)


@pytest.fixture(scope="module")
def trained_dds():
    return train_sampler(shifted_gaussian, 2, jax.random.key(0), method="dds", loss="kl", num_steps=10,
                         batch_size=64, num_iterations=150, optimizer=optax.adam(5e-3), progress=False)  # fmt: skip


@pytest.mark.heavy
def test_trained_dds_log_z_within_4se_and_elbo_below_eubo_above(trained_dds):
    # N(m, I), log Z = log 2π. After brief training, the importance-weighted
    # log Z is within 4 SE (spread of 4 replicates, ceiling 0.05) and ELBO <= log Z <= EUBO.
    sampler = trained_dds
    assert sampler.losses.shape == (150,) and sampler.losses[-1] < sampler.losses[0]
    exact = np.asarray(MEAN) + np.random.default_rng(0).standard_normal((2000, 2))
    result = sampler.sample(jax.random.key(1), 1000, num_replicates=4, exact_samples=exact, progress=False)
    assert isinstance(result, psample.ParticleResult)
    assert result.log_Z_se < 0.05
    assert within(result.log_Z_mean, LOG_2PI, result.log_Z_se)
    assert result.elbo <= LOG_2PI + 4 * result.elbo_se
    assert result.eubo >= LOG_2PI - 4 * result.eubo_se
    assert result.elbo < result.eubo
    assert np.all(result.final_ess > 100)
    tree = result.to_datatree()
    assert tree["particles"]["log_weight"].shape == (4, 1000)


@pytest.mark.heavy
def test_pis_weights_stay_exact_when_training_stops_early():
    # Three iterations of PIS with the log-variance loss: a poor sampler, but its weights are
    # exact importance weights, so log Z is still right within 4 SE (8 replicates).
    sampler = train_sampler(shifted_gaussian, 2, jax.random.key(2), method="pis", loss="log_variance",
                            num_steps=8, batch_size=16, num_iterations=3, init_std=2.0, progress=False)  # fmt: skip
    result = sampler.sample(jax.random.key(3), 500, num_replicates=8, progress=False)
    assert result.log_Z_se < 0.15
    assert within(result.log_Z_mean, LOG_2PI, result.log_Z_se)


def test_trajectory_balance_learns_log_z_scalar():
    sampler = train_sampler(shifted_gaussian, 2, jax.random.key(4), method="dds", loss="trajectory_balance",
                            num_steps=5, batch_size=16, num_iterations=60, optimizer=optax.adam(1e-2),
                            progress=False)  # fmt: skip
    # log Z_φ starts at 0 and climbs (0.01 a step) toward the batch mean of log w (<= log 2π).
    assert 0.3 < float(sampler.params["log_Z"]) < LOG_2PI
    assert sampler.losses[-1] < sampler.losses[0] / 2


@pytest.mark.heavy
def test_checkpoint_resumes_to_the_uninterrupted_run(tmp_path):
    kwargs = dict(method="dds", num_steps=3, batch_size=8, rng_key=jax.random.key(5), progress=False, chunk_length=3)
    straight = train_sampler(shifted_gaussian, 2, num_iterations=6, **kwargs)
    path = tmp_path / "train.npz"
    first = train_sampler(shifted_gaussian, 2, num_iterations=3, checkpoint=path, **kwargs)
    assert first.num_iterations == 3 and path.exists()
    resumed = train_sampler(shifted_gaussian, 2, num_iterations=6, checkpoint=path, **kwargs)
    assert resumed.num_iterations == 6
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-10)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(CheckpointError, match="batch_size"):
        train_sampler(shifted_gaussian, 2, num_iterations=6, checkpoint=path, **dict(kwargs, batch_size=4))


@pytest.mark.heavy
@pytest.mark.ci  # a trained sampler saved and loaded: in CI's `make test-ci`
def test_save_load_roundtrip(tmp_path, trained_dds):
    sampler = trained_dds
    path = tmp_path / "sampler.npz"
    sampler.save(path)
    loaded = TrainedSampler.load(path, shifted_gaussian)
    assert loaded.method == "dds" and loaded.process == sampler.process
    np.testing.assert_array_equal(loaded.losses, sampler.losses)
    for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(sampler.params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelError, match="differs"):
        TrainedSampler.load(path, lambda x: -jnp.sum(x**2))
    # The path alone: the target comes back from the file (jax.export), bit for bit the same
    # draws and weights for the same key, and it saves again.
    alone = TrainedSampler.load(path)
    original = sampler.sample(jax.random.key(5), 1000, num_replicates=4, progress=False)  # compiled by the test above
    again = alone.sample(jax.random.key(5), 1000, num_replicates=4, progress=False)
    np.testing.assert_array_equal(again.log_w, original.log_w)
    np.testing.assert_array_equal(again.particles, original.particles)
    alone.save(tmp_path / "again.npz")
    with np.load(path) as first, np.load(tmp_path / "again.npz") as second:
        np.testing.assert_array_equal(first["logdensity_grad"], second["logdensity_grad"])
    # A file without the exported target (as written when export fails) needs the function.
    with np.load(path) as data:
        kept = {k: data[k] for k in data.files if not k.startswith("logdensity_")}
    np.savez(tmp_path / "bare.npz", **kept)
    with pytest.raises(ModelError, match="logdensity_fn"):
        TrainedSampler.load(tmp_path / "bare.npz")
    assert TrainedSampler.load(tmp_path / "bare.npz", shifted_gaussian).process == sampler.process
    (tmp_path / "junk.npz").write_bytes(b"not a file")
    with pytest.raises(CheckpointError):
        TrainedSampler.load(tmp_path / "junk.npz", shifted_gaussian)


def test_train_sampler_errors():
    key = jax.random.key(0)
    with pytest.raises(ShapeError, match="dim=3"):
        train_sampler(lambda x: -0.5 * jnp.sum((x - MEAN) ** 2), 3, num_iterations=1, rng_key=key)
    with pytest.raises(InvalidTuningError, match="num_steps"):
        train_sampler(shifted_gaussian, 2, num_steps=0, rng_key=key)
    with pytest.raises(InvalidTuningError, match="method"):
        train_sampler(shifted_gaussian, 2, method="dis", rng_key=key)
    with pytest.raises(InvalidTuningError, match="loss"):
        train_sampler(shifted_gaussian, 2, method="pis", loss="subtb", rng_key=key)
    with pytest.raises(InvalidTuningError, match="exploration.*loss='kl'"):
        train_sampler(shifted_gaussian, 2, loss="kl", exploration=0.1, rng_key=key)
    with pytest.raises(InvalidTuningError, match="exploration"):
        train_sampler(shifted_gaussian, 2, loss="log_variance", exploration=-1.0, rng_key=key)
    draws = np.zeros((10, 2))
    with pytest.raises(InvalidTuningError, match="target_samples.*loss='kl'"):
        train_sampler(shifted_gaussian, 2, loss="kl", target_samples=draws, rng_key=key)
    with pytest.raises(ShapeError, match=r"target_samples.*\(10, 3\)"):
        train_sampler(shifted_gaussian, 2, loss="log_variance", target_samples=np.zeros((10, 3)), rng_key=key)
    with pytest.raises(InvalidTuningError, match="target_samples must be finite.*1 rows"):
        train_sampler(shifted_gaussian, 2, loss="log_variance", target_samples=np.where(np.arange(20).reshape(10, 2) == 3,
                      np.nan, 0.0), rng_key=key)  # fmt: skip
    with pytest.raises(InvalidTuningError, match="num_backward.*needs target_samples"):
        train_sampler(shifted_gaussian, 2, loss="log_variance", num_backward=8, rng_key=key)
    with pytest.raises(InvalidTuningError, match="num_backward"):
        train_sampler(shifted_gaussian, 2, loss="log_variance", target_samples=draws, num_backward=0, rng_key=key)
    with pytest.raises(ModelError, match=r"not finite at \d+\.\d% "):
        train_sampler(lambda x: jnp.where(x[0] > 0, 0.0, -jnp.inf), 2, rng_key=key)


# --- reverse diffusion --------------------------------------------------------------------


@pytest.mark.heavy
@pytest.mark.parametrize("schedule", [VP(), pytest.param(VE(0.01, 10.0), marks=pytest.mark.slow)], ids=["VP", "VE"])
def test_reverse_diffusion_log_z_on_a_gaussian(schedule):
    # The SMC correction makes Z-hat unbiased: log Z within 4 SE over 16 replicates (ceiling 0.08).
    algorithm = reverse_diffusion(shifted_gaussian, dim=2, schedule=schedule, num_steps=30, num_score_samples=8)
    result = psample.run_particles(algorithm, jax.random.key(8), 200, num_replicates=16, progress=False)
    assert result.log_Z_se < 0.08
    assert within(result.log_Z_mean, LOG_2PI, result.log_Z_se)
    assert np.all(result.info.time[:, -1] == pytest.approx(1e-3))


@pytest.mark.heavy
def test_reverse_diffusion_with_exact_score_recovers_gmm_moments():
    # The exact noised score of a two-mode GMM drives the moves; the weighted
    # mean of x_0 and the weight of the right mode are within 4 SE (8 replicates) of the
    # mixture's (0.7 * 2 - 0.3 * 2 = 0.8 and 0.7).
    schedule = VP()
    target = models.gaussian_mixture(np.array([0.3, 0.7]), np.array([[-2.0, 0.0], [2.0, 0.0]]), np.full(2, 0.25))
    smoothed = target.exact["smoothed_score"]

    def score_fn(t, x):  # q_t(x) = α^-d p_{σ/α}(x / α)
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        return smoothed(x / alpha, sigma / alpha) / alpha

    algorithm = reverse_diffusion(target, schedule=schedule, num_steps=40, num_score_samples=16, score_fn=score_fn,
                                  data_std=2.0)  # fmt: skip
    result = psample.run_particles(algorithm, jax.random.key(9), 500, num_replicates=8, progress=False)
    (mean, right), (mean_se, right_se) = result.weighted_mean(lambda x: jnp.array([x[0], (x[0] > 0) * 1.0]))
    assert mean_se < 0.15 and right_se < 0.04
    assert within(mean, 0.8, mean_se)
    assert within(right, 0.7, right_se)
    assert within(result.log_Z_mean, 0.0, result.log_Z_se)


@pytest.mark.slow
def test_reverse_diffusion_langevin_estimator():
    algorithm = reverse_diffusion(shifted_gaussian, dim=2, schedule=VP(), num_steps=6, num_score_samples=4,
                                  score_estimator="langevin", num_langevin_steps=1)  # fmt: skip
    result = psample.run_particles(algorithm, jax.random.key(10), 100, num_replicates=8, progress=False)
    assert result.log_Z_se < 0.15
    assert within(result.log_Z_mean, LOG_2PI, result.log_Z_se)


def test_reverse_diffusion_plain_mode():
    plain = reverse_diffusion(shifted_gaussian, dim=2, schedule=VP(), num_steps=6, num_score_samples=4,
                              correction=False)  # fmt: skip
    result = psample.run_particles(plain, jax.random.key(11), 300, progress=False)
    assert np.isnan(result.log_Z[0]) and not result.info.is_resampled.any()
    # Uncorrected, the draws still land near N(m, I): a loose sanity check (mean within 0.3).
    np.testing.assert_allclose(np.asarray(result.particles[0]).mean(0), MEAN, atol=0.3)


def test_reverse_diffusion_errors():
    kwargs = dict(schedule=VP(), num_steps=10, num_score_samples=4)
    with pytest.raises(ShapeError, match=r"dim, the length of the vector x .* \(got dim=None\)"):
        reverse_diffusion(shifted_gaussian, **kwargs)
    # A psample Target (a registry model) carries its dimension; a conflicting dim= is refused.
    with pytest.raises(ShapeError, match="dim=3 does not match target 'gmm25'"):
        reverse_diffusion(models.get("gmm25"), dim=3, **kwargs)
    with pytest.raises(ShapeError, match="dim=3"):
        reverse_diffusion(lambda x: -0.5 * jnp.sum((x - MEAN) ** 2), dim=3, **kwargs)
    for t_min in (0.0, 1.0, -0.1):
        with pytest.raises(InvalidTuningError, match="t_min"):
            reverse_diffusion(shifted_gaussian, dim=2, t_min=t_min, **kwargs)
    with pytest.raises(InvalidTuningError, match="num_steps"):
        reverse_diffusion(shifted_gaussian, dim=2, **dict(kwargs, num_steps=0))
    with pytest.raises(InvalidTuningError, match="score_estimator"):
        reverse_diffusion(shifted_gaussian, dim=2, score_estimator="exact", **kwargs)
    with pytest.raises(ModelError, match=r"not finite at 100\.0%"):
        reverse_diffusion(lambda x: jnp.nan * jnp.sum(x), dim=2, **kwargs)


# --- long runs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_dds_covers_all_25_modes_and_log_z():
    # Every mode of the 25-mode mixture (true weight 4%) gets >= 1% of 5000
    # importance-resampled draws; log Z = 0 within 4 SE (4 replicates).
    target = models.gmm25()
    sampler = train_sampler(target.logdensity_fn, 2, method="dds", num_steps=20, batch_size=64, num_iterations=400,
                            init_std=7.0, rng_key=jax.random.key(0), progress=False)  # fmt: skip
    result = sampler.sample(jax.random.key(1), 5000, num_replicates=4)
    assert result.log_Z_se < 0.1
    assert within(result.log_Z_mean, 0.0, result.log_Z_se)
    draws = result.resample(jax.random.key(2))[0]
    nearest = np.argmin(((draws[:, None, :] - target.exact["means"][None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=25)
    assert counts.min() >= 0.01 * len(draws)


@pytest.mark.slow
def test_dds_many_well_pair_log_z_between_elbo_and_eubo():
    # On one pair of the many-well (d = 2; d = 32 is 16 independent copies, so
    # its log Z = 164.6957 is 16 times this one's; the d = 32 runs are in benchmarks/diffusion.py,
    # a briefly trained d = 32 sampler has too few effective particles for a 4-SE test).
    # Importance-weighted log Z within 4 SE (8 replicates, SE ceiling 0.05), ELBO <= log Z <= EUBO,
    # and the weighted share of the right well is within 4 SE of the exact 0.8443.
    target = models.many_well(2)
    sampler = train_sampler(target.logdensity_fn, 2, method="dds", num_steps=20, batch_size=64, num_iterations=300,
                            init_std=1.5, rng_key=jax.random.key(0), progress=False)  # fmt: skip
    exact = target.exact["sample"](jax.random.key(1), 2000)
    result = sampler.sample(jax.random.key(2), 1000, num_replicates=8, exact_samples=exact)
    log_z = target.exact["log_Z"]
    assert log_z * 16 == pytest.approx(164.6957, abs=1e-3)
    assert result.log_Z_se < 0.05
    assert within(result.log_Z_mean, log_z, result.log_Z_se)
    assert result.elbo <= log_z + 4 * result.elbo_se
    assert result.eubo >= log_z - 4 * result.eubo_se
    share, se = result.weighted_mean(lambda x: (x[0] > 0) * 1.0)
    assert within(share, target.exact["P(x_0>0)"], se)


@pytest.mark.slow
def test_backward_paths_from_rough_target_draws_recover_a_dropped_mode():
    # One many-well pair, DDS with the log-variance loss on its own paths: the light well (exact
    # share 0.1557) is dropped (measured: right-well share 0.999, importance-weighted log Z off
    # by -0.16 = log 0.8443, what a sampler that never visits the light well must give). With
    # backward paths from rough draws (half in each well: the wrong proportions) the sampler
    # covers both wells and its exact weights give log Z and the share within 4 SE (measured:
    # +0.012 ± 0.010, 0.843 ± 0.005).
    target = models.many_well(2)
    rng = np.random.default_rng(0)
    wells = np.where(rng.random(200) < 0.5, -1.7, 1.7) + 0.2 * rng.standard_normal(200)
    rough = np.stack([wells, rng.standard_normal(200)], axis=1)
    log_z, exact_share = target.exact["log_Z"], target.exact["P(x_0>0)"]
    results = {}
    for label, draws in (("on-policy", None), ("backward", rough)):
        sampler = train_sampler(target.logdensity_fn, 2, method="dds", loss="log_variance", num_steps=20, batch_size=64,
                                num_iterations=300, rng_key=jax.random.key(0), progress=False,
                                target_samples=draws)  # fmt: skip
        results[label] = sampler.sample(jax.random.key(2), 1000, num_replicates=8)
    dropped = results["on-policy"]
    share, _ = dropped.weighted_mean(lambda x: (x[0] > 0) * 1.0)
    assert share > 0.98 and dropped.log_Z_mean < log_z - 0.1
    fixed = results["backward"]
    assert fixed.log_Z_se < 0.03
    assert within(fixed.log_Z_mean, log_z, fixed.log_Z_se)
    share, se = fixed.weighted_mean(lambda x: (x[0] > 0) * 1.0)
    assert se < 0.02 and within(share, exact_share, se)


# --- numbers users can trust: non-finite values, unreliable errors, damaged files ------------


def _untrained(logdensity_fn, d=2, num_steps=5):
    """A DDS sampler at its zero-initialised network (its reference process), no training."""
    process = Process("dds", d, num_steps, 1.0, 1.0, VP(), DriftNetwork(d, width=8, depth=1, harmonics=2))
    params = {"net": process.network.init(jax.random.key(0), jnp.float64), "log_Z": jnp.zeros(())}
    return TrainedSampler(logdensity_fn, process, params, np.arange(3.0), "kl")


def test_sample_warns_when_the_weights_cannot_carry_an_error_bar():
    # The reference N(0, I) against N(3, 0.3² I): a handful of particles carry all the weight.
    # sample() says so (k-hat, ESS) with advice naming only its num_particles and train_sampler's
    # num_iterations, and the printed error bar never advises an argument sample() lacks.
    sampler = _untrained(lambda x: -0.5 * jnp.sum((x - 3.0) ** 2) / 0.09)
    with pytest.warns(psample.errors.UnreliableErrorWarning) as record:
        result = sampler.sample(jax.random.key(1), 500, progress=False)
    (message,) = [str(w.message) for w in record if w.category is psample.errors.UnreliableErrorWarning]
    assert "k-hat" in message and "final ESS" in message and "num_particles=500" in message and "num_iterations" in message
    assert result.unreliable and result.khat > result.khat_threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "unreliable" in repr(result) and np.isfinite(result.log_Z_se)


@pytest.fixture(scope="module")
def moderate_sampler():
    """The reference N(0, I) against N(0.5, 0.8² I): moderate weights (one compiled algorithm,
    shared by the tests that sample it)."""
    return _untrained(lambda x: -0.5 * jnp.sum((x - 0.5) ** 2) / 0.64)


@pytest.mark.heavy
def test_single_run_log_z_se_matches_the_spread_of_seeds(moderate_sampler):
    # N(0, I) reference against N(0.5, 0.8² I): moderate weights, no warning. Each of 200
    # replicates' own (single-run) standard error of log Z is compared with the spread of the
    # 200 log Z: the mean single-run variance is within 4 standard errors of the replicates'
    # variance (its standard error sqrt(2/(R-1)) relative, that of the mean single-run
    # variance from their spread, combined in quadrature).
    sampler = moderate_sampler
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UnreliableErrorWarning, no advice about resampling
        result = sampler.sample(jax.random.key(2), 200, num_replicates=200, progress=False)
        one = sampler.sample(jax.random.key(3), 200, progress=False)
        assert np.isfinite(one.log_Z_se) and one.log_Z_se_method == "lee-whiteley"
    assert not result.unreliable
    r = result.num_replicates
    spread = np.var(result.log_Z, ddof=1)
    single = result.log_Z_se_single_run**2
    se = math.sqrt((spread * math.sqrt(2 / (r - 1))) ** 2 + np.var(single, ddof=1) / r)
    assert abs(single.mean() - spread) <= 4 * se


def test_sample_counts_nan_target_values_and_refuses_when_nothing_is_finite():
    # NaN beyond x_0 = 1.5 is not zero density: counted per step, warned about with the count;
    # log Z is then that of the truncated target, and the warning says so.
    sampler = _untrained(lambda x: jnp.where(x[0] < 1.5, -0.5 * jnp.sum(x**2), jnp.nan))
    with pytest.warns(psample.errors.NumericalWarning, match=r"NaN or \+inf .* at \d+ evaluations") as record:
        result = sampler.sample(jax.random.key(4), 400, progress=False)
    counts = np.asarray(result.info.num_nonfinite)
    final_nan = int(np.sum(~np.isfinite(result.log_w)))
    assert counts.shape == (1, 5) and counts[0, -1] >= final_nan > 0
    assert any(f"{int(counts.sum())} evaluations" in str(w.message) for w in record)
    nowhere = _untrained(lambda x: jnp.nan * jnp.sum(x))
    with pytest.raises(psample.errors.NonFiniteError) as info:
        nowhere.sample(jax.random.key(5), 50, progress=False)
    assert info.value.result is not None


@pytest.mark.heavy
def test_train_sampler_skips_nan_losses_warns_and_refuses():
    # NaN beyond x_0 = 2 (2% of the reference's end points, allowed by max_nonfinite_fraction):
    # batches that meet it are skipped, not trained on (parameters stay finite), and the end of
    # training warns with both counts.
    kwargs = dict(method="dds", loss="log_variance", num_steps=4, batch_size=16, num_iterations=20, width=8, depth=1,
                  rng_key=jax.random.key(6), progress=False)  # fmt: skip
    nan_far = lambda x: jnp.where(x[0] < 2.0, -0.5 * jnp.sum(x**2), jnp.nan)
    with pytest.warns(psample.errors.NumericalWarning, match=r"(\d+) of 20 iterations .* skipped") as record:
        sampler = train_sampler(nan_far, 2, max_nonfinite_fraction=0.1, **kwargs)
    skipped = sampler.history["skipped"]
    assert 0 < skipped.sum() < 20
    assert np.array_equal(skipped, ~np.isfinite(sampler.losses))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(sampler.params))
    assert any(f"at {int(sampler.history['num_nonfinite'].sum())} evaluations" in str(w.message) for w in record)
    # NaN beyond x_0 = 0.5: every batch meets it, no update is possible.
    with pytest.raises(psample.errors.NonFiniteError, match="no iteration had a finite loss") as info:
        train_sampler(lambda x: jnp.where(x[0] < 0.5, -0.5 * jnp.sum(x**2), jnp.nan), 2,
                      max_nonfinite_fraction=0.5, **kwargs)  # fmt: skip
    assert isinstance(info.value.result, TrainedSampler)


def test_train_sampler_zero_density_is_legitimate():
    # -inf (zero density) beyond x_0 = 2: the paths ending there leave the losses, nothing is
    # skipped or warned about, and the parameters stay finite.
    zero_far = lambda x: jnp.where(x[0] < 2.0, -0.5 * jnp.sum(x**2), -jnp.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error", psample.errors.NumericalWarning)
        sampler = train_sampler(zero_far, 2, method="dds", loss="log_variance", num_steps=4, batch_size=16,
                                num_iterations=20, width=8, depth=1, max_nonfinite_fraction=0.1,
                                rng_key=jax.random.key(6), progress=False)  # fmt: skip
    assert not sampler.history["skipped"].any() and sampler.history["num_nonfinite"].sum() == 0
    assert np.all(np.isfinite(sampler.losses))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(sampler.params))


@pytest.mark.heavy
def test_reverse_diffusion_counts_nonfinite_target_values():
    kwargs = dict(dim=2, schedule=VP(), num_steps=4, num_score_samples=4)
    nan_far = lambda x: jnp.where(x[0] < 1.0, shifted_gaussian(x), jnp.nan)
    zero_far = lambda x: jnp.where(x[0] < 1.0, shifted_gaussian(x), -jnp.inf)
    counts = {}
    for name, fn in (("nan", nan_far), ("zero", zero_far)):
        result = psample.run_particles(reverse_diffusion(fn, max_nonfinite_fraction=0.5, **kwargs),
                                       jax.random.key(12), 100, progress=False)  # fmt: skip
        counts[name] = np.asarray(result.info.num_nonfinite)
        assert counts[name].shape == (1, 4)
    assert counts["nan"].sum() > 0 and counts["nan"][0, 0] > 0
    assert counts["zero"].sum() == 0  # -inf is zero density, not counted
    assert result.resampling == "systematic"


def test_load_refuses_damaged_files(tmp_path):
    sampler = _untrained(lambda x: -0.5 * jnp.sum(x**2))
    path = tmp_path / "sampler.npz"
    sampler.save(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for content in (b"", data[: len(data) // 2], data[:-1], b"\x93NUMPY garbage" * 50):
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match="bad.npz"):
            TrainedSampler.load(bad)
    # A flipped bit anywhere: CheckpointError (every member is checked against its CRC-32), or,
    # where the byte is zip bookkeeping no array depends on (a timestamp), the same sampler.
    caught = 0
    for position in range(0, len(data), 97):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        bad.write_bytes(bytes(flipped))
        try:
            loaded = TrainedSampler.load(bad)
        except CheckpointError:
            caught += 1
            continue
        assert loaded.process == sampler.process and np.array_equal(loaded.losses, sampler.losses)
        for a, b in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(sampler.params), strict=True):
            np.testing.assert_array_equal(a, b)
    assert caught > 0.8 * (len(data) // 97)


# --- the vocabulary: rng_key after the objects, num_particles, progress on --------------------


def test_train_sampler_takes_rng_key_third():
    params = list(inspect.signature(train_sampler).parameters.values())
    assert [p.name for p in params[:3]] == ["logdensity_fn", "dim", "rng_key"]
    assert params[2].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD  # rng_key= still works
    assert params[2].default is inspect.Parameter.empty  # required, never a silent default
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:])


def test_sample_counts_num_particles_and_the_old_keyword_warns(moderate_sampler):
    sampler = moderate_sampler  # 200 particles, one replicate: compiled by the test above
    signature = inspect.signature(TrainedSampler.sample)
    assert list(signature.parameters)[1:3] == ["rng_key", "num_particles"]
    assert signature.parameters["progress"].default is True
    new = sampler.sample(jax.random.key(7), num_particles=200, progress=False)
    assert isinstance(new, SamplerResult) and isinstance(new, psample.ParticleResult)
    with pytest.warns(DeprecationWarning, match=r"num=.*num_particles="):
        old = sampler.sample(jax.random.key(7), num=200, progress=False)
    np.testing.assert_array_equal(old.log_w, new.log_w)
    np.testing.assert_array_equal(old.particles, new.particles)
    with pytest.raises(TypeError, match=r"both num= \(deprecated\) and num_particles="):
        sampler.sample(jax.random.key(7), num_particles=200, num=200)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="multiple values for argument 'num_particles'"):
        sampler.sample(jax.random.key(7), 200, num=200)
    with pytest.raises(TypeError, match="num_particles"):
        sampler.sample(jax.random.key(7))
    with pytest.raises(TypeError, match="unexpected keyword argument 'particles'"):
        sampler.sample(jax.random.key(7), particles=64)
    with pytest.raises(InvalidTuningError, match="num_particles"):
        sampler.sample(jax.random.key(7), 1, progress=False)

