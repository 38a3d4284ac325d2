"""Tests of the windowed, cross-chain, robust adaptation of polar slice sampling and of the
runner's adaptation protocol (psample/mcmc/polar_slice_adaptation.py, psample/runtime/warmup.py).

Statistical checks compare estimates with exact values within ``Z`` Monte Carlo standard
errors; the MCSE comes from the spread of independent chain means (many chains, burn-in
dropped), and ``Z`` is a Bonferroni bound over this file's comparisons (about 60). The runs
after adaptation use the adapted parameters fixed, so they check that the adaptation never
changes the target: a fixed (center, scale, w) is exact (tests/mcmc/test_polar_slice.py checks
that for every form of scale).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import psample
from psample import models
from psample.runtime import warmup as adaptation
from psample.errors import CheckpointError, InvalidTuningError
from psample.mcmc import preconditioning
from psample.mcmc.polar_slice_adaptation import estimate_parameters as _estimate_parameters
from psample.mcmc.polar_slice_adaptation import polar_slice_adaptation, window_schedule


def estimate_parameters(x, num_rows, previous, structure, **kwargs):
    """``estimate_parameters`` compiled (eagerly, its fixed-point loops dispatch op by op)."""
    return jax.jit(lambda x, p: _estimate_parameters(x, num_rows, p, structure, **kwargs))(x, previous)

Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 60)))


def chain_mean_and_mcse(values):
    values = np.asarray(values, dtype=np.float64)
    means = values.mean(axis=1)
    return means.mean(), means.std(ddof=1) / math.sqrt(values.shape[0])


def assert_close(name, values, exact, *, min_power=None):
    mean, mcse = chain_mean_and_mcse(values)
    assert abs(mean - exact) <= Z * mcse, f"{name}: {mean:.5f} vs exact {exact:.5f} (MCSE {mcse:.2e})"
    if min_power is not None:
        assert mcse <= min_power, f"{name}: MCSE {mcse:.3e} too large for the test to have power"


def whitened_condition_number(parameters, cov):
    """Condition number of the target's covariance in the sampler's coordinates z."""
    d = cov.shape[0]
    matrix = np.stack([np.asarray(preconditioning.apply_scale(parameters["scale"], jnp.eye(d)[i])) for i in range(d)], axis=1)
    inverse = np.linalg.inv(matrix)
    eigenvalues = np.linalg.eigvalsh(inverse @ cov @ inverse.T)
    return eigenvalues[-1] / eigenvalues[0]


# ----------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("num_steps", [1, 19, 20, 100, 1000, 4321])
def test_windows_cover_the_warmup_and_double(num_steps):
    windows = window_schedule(num_steps)
    assert windows[0][0] == 0 and windows[-1][1] == num_steps
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert all(end > start for start, end in windows)
    lengths = [end - start for start, end in windows]
    if num_steps >= 100:
        assert lengths[0] == num_steps // 10
        assert all(b >= 2 * a or i == len(lengths) - 2 for i, (a, b) in enumerate(zip(lengths[1:], lengths[2:])))
        assert len(windows) >= 4


# ----------------------------------------------------------------------------- estimators


def test_gradient_estimate_is_exact_for_a_gaussian_from_unexplored_draws():
    """The geometric mean of draw and gradient covariances recovers a Gaussian's covariance from
    draws that cover only a small, skewed piece of it (a stuck chain's window)."""
    target = models.ill_conditioned_gaussian(20, 1000.0)
    cov = target.exact["cov"]
    rng = np.random.default_rng(1)
    # 160 draws from a 0.1-times-too-narrow, shifted cloud: nothing like the target's spread.
    x = 2.0 + 0.1 * rng.normal(size=(160, 20)) @ np.linalg.cholesky(np.eye(20) + 0.5).T
    previous = {"w": jnp.array(1.0), "center": jnp.zeros(20), "scale": jnp.eye(20)}
    gradient_fn = jax.grad(target.logdensity_fn)
    new = estimate_parameters(jnp.asarray(x).reshape(8, 20, 20), 20, previous, "dense", gradient_fn=gradient_fn)
    assert whitened_condition_number(new, cov) < 1.1
    # The Newton points x + Σ ∇log ρ(x) are all the mean (0), whatever the draws (centred at 2).
    np.testing.assert_allclose(np.asarray(new["center"]), 0.0, atol=1e-8)
    without = estimate_parameters(jnp.asarray(x).reshape(8, 20, 20), 20, previous, "dense")
    assert whitened_condition_number(without, cov) > 100  # draws alone cannot know


def test_w_balances_expansions_and_shrinks():
    """``w (1.5 E + 1) / (S + 1)`` times the ratio of the radii's spreads (1 here: the estimate from
    a Gaussian's gradients is exactly the identity scale and the zero centre in force)."""
    d = 20
    x = jnp.asarray(np.random.default_rng(4).normal(size=(8, 20, d)))
    previous = {"w": jnp.array(2.0), "center": jnp.zeros(d), "scale": jnp.eye(d)}
    gradient_fn = jax.grad(lambda v: -0.5 * jnp.sum(v**2))
    estimate = jax.jit(  # compiled once, the counts traced
        lambda e, s: _estimate_parameters(x, 20, previous, "dense", gradient_fn=gradient_fn, radius_counts=(e, s))
    )
    for (expansions, shrinks), expected in [((3.0, 1.0), 5.5), ((0.0, 3.0), 0.5), ((1.2, 1.8), 2.0)]:
        assert float(estimate(expansions, shrinks)["w"]) == pytest.approx(expected, rel=1e-8)


def test_a_centre_within_noise_is_shrunk_to_the_anchor():
    """Exact Cauchy draws around 0: the coordinate-wise median is off by noise (norm ≈ 0.4 in
    d = 50), which costs the sampler half its efficiency; the centre stays exactly at the
    anchor (the F test does not reject). Around an anchor of 3 the same draws shifted by 3 give
    the same answer."""
    d = 50
    rng = np.random.default_rng(5)
    x = rng.normal(size=(800, d)) / np.abs(rng.normal(size=(800, 1)))
    previous = {"w": jnp.array(1.0), "center": jnp.zeros(d), "scale": jnp.ones(d)}
    raw = np.linalg.norm(np.median(x, axis=0))
    new = estimate_parameters(jnp.asarray(x).reshape(8, 100, d), 100, previous, "diagonal")
    assert raw > 0.25 and np.all(np.asarray(new["center"]) == 0.0)
    anchored = estimate_parameters(
        jnp.asarray(x + 3.0).reshape(8, 100, d), 100, dict(previous, center=jnp.full(d, 3.0)), "diagonal",
        anchor=jnp.full(d, 3.0),
    )
    np.testing.assert_allclose(np.asarray(anchored["center"]) - 3.0, np.asarray(new["center"]), atol=1e-9)


def test_estimates_are_robust_for_cauchy_draws():
    """Exact multivariate Cauchy draws (no mean, no covariance): finite, near-isotropic estimates;
    the gradients are recognised as unreliable and the draws alone give the scale."""
    d, n = 50, 800
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, d)) / np.abs(rng.normal(size=(n, 1))) + 5.0
    target = models.cauchy(d)
    previous = {"w": jnp.array(1.0), "center": jnp.zeros(d), "scale": jnp.eye(d)}
    new = estimate_parameters(
        jnp.asarray(x).reshape(8, 100, d), 100, previous, "dense",
        gradient_fn=jax.grad(lambda v: target.logdensity_fn(v - 5.0)), allow_diagonal=True,
    )
    assert np.all(np.isfinite(np.asarray(new["scale"])))
    assert np.count_nonzero(np.tril(np.asarray(new["scale"]), -1)) == 0  # diagonal chosen
    # Median of a Cauchy coordinate from 800 draws: sd ≈ π/2 / sqrt(800) ≈ 0.056.
    assert np.max(np.abs(np.asarray(new["center"]) - 5.0)) < 0.3
    spread = np.diag(np.asarray(new["scale"]))
    assert spread.max() / spread.min() < 2.0
    assert float(new["w"]) > 0


def test_degenerate_window_keeps_the_previous_parameters():
    x = jnp.ones((4, 10, 3))  # chains that never moved: zero spread
    previous = {"w": jnp.array(1.5), "center": jnp.zeros(3), "scale": jnp.eye(3)}
    new = estimate_parameters(x, 10, previous, "dense")
    for key in previous:
        np.testing.assert_array_equal(np.asarray(new[key]), np.asarray(previous[key]))


def test_invalid_options_are_rejected():
    with pytest.raises(InvalidTuningError, match="structure"):
        polar_slice_adaptation(lambda x: -jnp.sum(x**2), structure="full")
    with pytest.raises(InvalidTuningError, match="max_draws_per_chain"):
        polar_slice_adaptation(lambda x: -jnp.sum(x**2), max_draws_per_chain=0)
    with pytest.raises(InvalidTuningError, match="num_steps"):
        psample.polar_slice(lambda x: -jnp.sum(x**2)).adaptation.run(jax.random.key(0), jnp.ones((2, 3)), 0)


# ----------------------------------------------------------------------------- adapted sampling

#: A dense, ill-conditioned Gaussian (κ = 100, rotated) centred far from the origin.
D = 10
GAUSSIAN = models.ill_conditioned_gaussian(D, 100.0, seed=3)
SHIFT = np.linspace(-4.0, 6.0, D)


def shifted_logdensity(x):
    return GAUSSIAN.logdensity_fn(x - SHIFT)


# One algorithm object per configuration, shared by the tests: the runner caches what it
# compiled per algorithm, so the tests that run the same configuration compile it once.
#: Adapts during warm-up (the default configuration).
ADAPTIVE = psample.polar_slice(shifted_logdensity)
#: Fixed ``w = 3``, run with ``adapt=False`` (plain burn-in).
FIXED_W = psample.polar_slice(shifted_logdensity, w=3.0)


@pytest.fixture(scope="module")
def adapted_gaussian_trace():
    positions = SHIFT + 2.0 * jax.random.normal(jax.random.key(1), (16, D))
    return psample.sample(ADAPTIVE, positions, jax.random.key(2), 1000, num_warmup=500, progress=False)


@pytest.mark.heavy
def test_adapted_polar_slice_on_a_correlated_shifted_gaussian(adapted_gaussian_trace):
    trace = adapted_gaussian_trace
    cov = GAUSSIAN.exact["cov"]
    parameters = trace.parameters
    assert set(parameters) == {"w", "center", "scale"}
    assert np.shape(parameters["scale"]) == (D, D)  # correlated: dense
    assert whitened_condition_number(parameters, cov) < 2.0  # was 100 without preconditioning
    np.testing.assert_allclose(np.asarray(parameters["center"]), SHIFT, atol=0.5)
    x = np.asarray(trace.positions)
    for i in (0, 4, 9):
        sd = math.sqrt(cov[i, i])
        assert_close(f"E x_{i}", x[..., i], SHIFT[i], min_power=0.05 * sd)
        assert_close(f"Var x_{i}", (x[..., i] - SHIFT[i]) ** 2, cov[i, i], min_power=0.1 * cov[i, i])
    assert_close("Cov x_0 x_1", (x[..., 0] - SHIFT[0]) * (x[..., 1] - SHIFT[1]), cov[0, 1], min_power=0.05)
    # In z the target is nearly isotropic: the chain mixes in a few steps.
    u = GAUSSIAN.exact["eigenvectors"][:, 0]
    projected = (x - SHIFT) @ u
    iat = projected.shape[1] * projected.mean(axis=1).var(ddof=1) / projected.var()
    assert iat < 10.0
    assert not np.any(np.asarray(trace.info.hit_max_proposals))


def test_adapted_parameters_land_in_the_datatree(adapted_gaussian_trace):
    tree = adapted_gaussian_trace.to_datatree()
    assert tree.attrs["adapted.w"] == pytest.approx(float(adapted_gaussian_trace.parameters["w"]))
    np.testing.assert_allclose(np.asarray(tree.attrs["adapted.scale"]), np.asarray(adapted_gaussian_trace.parameters["scale"]))
    assert len(tree.attrs["adapted.center"]) == D


@pytest.mark.heavy
def test_adapt_false_is_plain_burn_in():
    """Without adaptation the warm-up steps are the algorithm's own steps, keyed by step index."""
    positions = SHIFT + jax.random.normal(jax.random.key(1), (4, D))
    algorithm = FIXED_W
    off = psample.sample(algorithm, positions, jax.random.key(2), 5, num_warmup=3, progress=False, adapt=False)
    assert off.parameters is None and "adapted.w" not in off.to_datatree().attrs
    states = jax.vmap(algorithm.init)(positions)
    step = jax.jit(jax.vmap(algorithm.step))
    for index in range(4):
        keys = jax.random.split(jax.random.fold_in(jax.random.key(2), index), 4)
        states, _ = step(keys, states)
    np.testing.assert_allclose(np.asarray(states.position), np.asarray(off.positions[:, 0]), rtol=1e-10, atol=1e-12)


@pytest.mark.heavy
def test_warmup_draws_do_not_share_keys_with_the_draws():
    """The draws after an adapted warm-up are those of ``with_parameters(parameters)`` run from the
    adapted states with the run's step keys (adaptation keys are derived differently)."""
    positions = SHIFT + jax.random.normal(jax.random.key(1), (4, D))
    algorithm = psample.polar_slice(shifted_logdensity, structure="dense")
    key = jax.random.key(5)
    trace = psample.sample(algorithm, positions, key, 20, num_warmup=40, progress=False)
    (states, parameters), info = algorithm.adaptation.run(adaptation.adaptation_key(key), positions, 40)
    assert np.asarray(info.info.num_evals).shape == (40, 4)
    tuned = algorithm.with_parameters(parameters)
    step = jax.jit(jax.vmap(tuned.step))
    for draw in range(3):
        keys = jax.random.split(jax.random.fold_in(key, 40 + draw), 4)
        states, _ = step(keys, states)
        # Same keys, same states; only XLA's fusion inside the runner's scan differs (round-off).
        np.testing.assert_allclose(np.asarray(states.position), np.asarray(trace.positions[:, draw]), rtol=1e-10, atol=1e-12)


@pytest.mark.heavy
def test_checkpointed_adapted_run_resumes_bit_for_bit(tmp_path):
    positions = SHIFT + jax.random.normal(jax.random.key(1), (4, D))
    algorithm = ADAPTIVE
    # One chunk size for both runs: the runner compiles its chunk once for the two.
    whole = psample.sample(algorithm, positions, jax.random.key(3), 60, num_warmup=40, progress=False, chunk_size=10)
    path = tmp_path / "run.zarr"
    first = psample.sample(algorithm, positions, jax.random.key(3), 30, num_warmup=40, progress=False,
                           checkpoint=path, chunk_size=10)
    resumed = psample.resume(path, algorithm, num_draws=30, progress=False)
    np.testing.assert_array_equal(np.asarray(resumed.positions), np.asarray(whole.positions))
    for name in ("w", "center", "scale"):
        np.testing.assert_array_equal(np.asarray(resumed.parameters[name]), np.asarray(first.parameters[name]))
    import xarray as xr

    stored = xr.open_datatree(path, engine="zarr")
    assert stored.attrs["adapted.w"] == pytest.approx(float(first.parameters["w"]))
    # An algorithm that cannot take the parameters cannot resume an adapted run.
    import blackjax

    with pytest.raises(CheckpointError, match="with_parameters"):
        psample.resume(path, blackjax.slice_sampling(shifted_logdensity), num_draws=10, progress=False)


@pytest.mark.slow
def test_eight_schools_adapted_reaches_rhat_and_matches_quadrature():
    """Eight schools (non-centred): 4 chains x 2,000 draws after 1,000 adaptation steps."""
    import arviz as az

    target = models.eight_schools()
    init_key, run_key = jax.random.split(jax.random.key(0))
    trace = psample.sample(
        psample.polar_slice(target.logdensity_fn), target.initial_positions(init_key, 4), run_key, 2000,
        num_warmup=1000, target=target, progress=False,
    )
    summary = az.summary(trace.to_datatree(), kind="all", round_to="none")
    assert summary["r_hat"].max() < 1.01
    for site in ("mu", "tau"):
        row = summary.loc[site]
        assert abs(row["mean"] - target.exact[f"E[{site}]"]) <= Z * row["mcse_mean"]


@pytest.mark.heavy
def test_ctrl_c_during_adaptation_returns_it_and_resume_continues_bit_for_bit(tmp_path, ctrl_c_after):
    """The adaptation runs on the chunk driver: Ctrl-C after two chunks returns a trace with no
    draws, the state and the parameters after 20 of 40 steps; the checkpoint holds the
    adaptation's carry, and resume finishes it and draws exactly what an uninterrupted run draws."""
    positions = SHIFT + jax.random.normal(jax.random.key(1), (4, D))
    algorithm = ADAPTIVE
    whole = psample.sample(algorithm, positions, jax.random.key(3), 20, num_warmup=40, progress=False)
    path = tmp_path / "run.zarr"
    ctrl_c_after(2)
    stopped = psample.sample(
        algorithm, positions, jax.random.key(3), 20, num_warmup=40, progress=False, checkpoint=path, chunk_size=10
    )
    assert stopped.interrupted and stopped.num_draws == 0 and stopped.num_steps == 20
    assert set(stopped.parameters) == {"w", "center", "scale"}
    assert np.asarray(stopped.final_state.position).shape == (4, D)
    carry = algorithm.adaptation.init(positions, 40)
    run_chunk = adaptation._chunk_function(algorithm, 40)
    carry = run_chunk((carry, adaptation.adaptation_key(jax.random.key(3))), jnp.arange(20, dtype=jnp.int32))[0][0]
    np.testing.assert_array_equal(np.asarray(stopped.parameters["scale"]), np.asarray(carry.parameters["scale"]))
    resumed = psample.resume(path, algorithm, progress=False)
    assert not resumed.interrupted and resumed.num_draws == 20
    np.testing.assert_array_equal(np.asarray(resumed.positions), np.asarray(whole.positions))
    for name in ("w", "center", "scale"):
        np.testing.assert_array_equal(np.asarray(resumed.parameters[name]), np.asarray(whole.parameters[name]))


@pytest.mark.heavy
def test_resume_during_warmup_with_a_one_call_adaptation_says_nothing_of_it_was_kept(tmp_path, ctrl_c_after):
    """A run stopped during warm-up cannot be continued by an algorithm whose adaptation has a
    ``run`` only (e.g. ``psample.partially_noncentered_polar_slice``): resume says so."""
    from typing import Callable, NamedTuple

    from psample.errors import CheckpointError

    class RunOnly(NamedTuple):
        run: Callable

    positions = SHIFT + jax.random.normal(jax.random.key(1), (4, D))
    path = tmp_path / "run.zarr"
    ctrl_c_after(1)
    stopped = psample.sample(ADAPTIVE, positions, jax.random.key(3), 20, num_warmup=40, progress=False,
                             checkpoint=path, chunk_size=10)  # fmt: skip
    assert stopped.interrupted and stopped.num_draws == 0
    one_call = ADAPTIVE._replace(adaptation=RunOnly(ADAPTIVE.adaptation.run))
    with pytest.raises(CheckpointError, match="adapts in one call .* no part of it was kept: start the run again"):
        psample.resume(path, one_call, progress=False)


def test_ctrl_c_during_burn_in_returns_the_state_so_far(ctrl_c_after):
    positions = SHIFT + jax.random.normal(jax.random.key(1), (4, D))
    algorithm = FIXED_W
    ctrl_c_after(1)
    stopped = psample.sample(
        algorithm, positions, jax.random.key(2), 5, num_warmup=30, chunk_size=10, progress=False, adapt=False
    )
    assert stopped.interrupted and stopped.num_draws == 0 and stopped.num_steps == 10 and stopped.parameters is None
    assert not np.array_equal(np.asarray(stopped.final_state.position), np.asarray(positions))


# ----------------------------------------------------------------------------- heavy tails (slow)


@pytest.mark.slow
@pytest.mark.parametrize("df", [1.0, 3.0])
def test_robust_adaptation_keeps_heavy_tailed_radius_quantiles(df):
    """Multivariate Cauchy and Student-t (ν = 3) in d = 100: adapted runs keep the exact radius law."""
    import arviz as az

    target = models.student_t(100, df)
    init_key, run_key = jax.random.split(jax.random.key(int(df)))
    trace = psample.sample(
        psample.polar_slice(target.logdensity_fn), target.initial_positions(init_key, 32), run_key, 5000,
        num_warmup=1000, target=target, progress=False,
        observables={"log_radius": lambda s: jnp.log(jnp.linalg.norm(s.position))},
    )
    assert np.ndim(trace.parameters["scale"]) == 1  # no correlation: diagonal, O(d) per evaluation
    log_radius = np.asarray(trace.observables["log_radius"])
    radius = np.exp(log_radius)
    for p in (0.1, 0.5, 0.9):
        assert_close(f"P(|x| <= q{p})", radius <= target.exact[f"q{p:g}[|x|]"], p, min_power=0.01)
    assert_close("E log|x|", log_radius, target.exact["E[log|x|]"], min_power=0.02)
    iat = log_radius.size / float(az.ess(log_radius, method="mean"))
    assert iat < 20.0, f"IAT(log|x|) = {iat:.1f} (unadapted, w = d: 8.6)"
    # The balanced w: about as cheap as the paper's hand-set w = d (5.5 evaluations per step on
    # the Cauchy; the former interquartile-range rule's w ≈ 30 cost 8.0).
    evals = float(np.mean(trace.info.num_evals))
    assert evals < 6.5, f"{evals:.2f} evaluations per step"


@pytest.mark.heavy
def test_plus_inf_and_nan_during_warmup_neither_freeze_nor_pass_silently():
    """Issue #23 point 8: a log-density that is +inf beyond x_0 = 1 and NaN below x_1 = -1.5.

    Before, the first +inf the warm-up accepted froze the chain (every later level was +inf),
    its window's draws collapsed to one point, and nothing said so. Now the warm-up counts the
    steps that met NaN or +inf per chain (``num_nonfinite`` of the carry) and warns once at its
    end; the chains keep moving, the adapted parameters are finite, and no draw enters either
    region.
    """
    import warnings

    from psample.errors import NumericalWarning

    def overflowing(x):
        value = jnp.where(x[0] < 1.0, -0.5 * jnp.sum(x**2), jnp.inf)
        return jnp.where(x[1] > -1.5, value, jnp.nan)

    positions = 0.3 * jnp.ones((4, 3))
    algorithm = psample.polar_slice(overflowing, structure="diagonal")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = psample.sample(algorithm, positions, jax.random.key(0), 200, num_warmup=200, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, NumericalWarning)]
    assert any(m.startswith("during the warm-up adaptation") and "NaN or +inf" in m and "4 chain(s)" in m
               for m in messages), messages
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(trace.parameters))
    x = np.asarray(trace.positions)
    assert np.all(x[..., 0] < 1.0) and np.all(x[..., 1] > -1.5)
    moved = np.mean(np.any(np.diff(x, axis=1) != 0, axis=-1), axis=1)
    assert np.all(moved > 0.9), moved

    carry = algorithm.adaptation.init(positions, 50)
    assert carry.num_nonfinite.shape == (4,) and carry.num_nonfinite.dtype == jnp.int32
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        algorithm.adaptation.final(carry)  # no step met NaN or +inf: no warning
    with pytest.warns(NumericalWarning, match=r"NaN or \+inf in 3 step\(s\) of 2 chain\(s\) \[1, 3\]"):
        algorithm.adaptation.final(carry._replace(num_nonfinite=jnp.array([0, 2, 0, 1], jnp.int32)))
