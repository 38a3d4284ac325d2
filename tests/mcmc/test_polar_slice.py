"""Tests of the Gibbsian polar slice sampler (psample/mcmc/polar_slice.py).

Statistical checks: every estimate is compared with its exact value within ``Z`` Monte Carlo standard errors, where the MCSE comes
from the spread of independent chain means (many vmapped chains, burn-in dropped), and ``Z``
is a Bonferroni bound over the comparisons of this file. Each test also checks that the chain
moves (autocorrelation time bounded, positions change) so that a sampler that never leaves
its start cannot pass, and that the log-density evaluation counts are in a sane range.
Seeds are fixed, so the suite is deterministic.

On CPU, XLA compilation (seconds) costs far more than the sampling itself (tenths of a
second), so most default tests share one compiled chain runner over a small parameterised
family of targets (:func:`family_logdensity`) whose parameters are traced arguments.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from psample.errors import InitialPointError, InvalidTuningError, ShapeError
from psample.mcmc import polar_slice, preconditioning

#: Bonferroni bound for about 100 comparisons at a 0.1 % family-wise false-fail rate.
Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 100)))
#: p-value threshold of the Kolmogorov-Smirnov tests (a false fail once in a thousand runs per test).
KS_P_MIN = 1e-3
NUM_CHAINS, NUM_STEPS = 32, 2000


# ----------------------------------------------------------------------------- helpers


def chain_mean_and_mcse(values, burn_in=0.1):
    """Grand mean of ``values (chain, draw)`` and its MCSE from independent chain means."""
    values = np.asarray(values, dtype=np.float64)
    values = values[:, int(burn_in * values.shape[1]) :]
    chain_means = values.mean(axis=1)
    return chain_means.mean(), chain_means.std(ddof=1) / math.sqrt(values.shape[0])


def integrated_autocorr_time(values, burn_in=0.1):
    """IAT of ``values (chain, draw)`` as ``n · Var(chain means) / Var(values)`` (batch means)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[:, int(burn_in * values.shape[1]) :]
    return values.shape[1] * values.mean(axis=1).var(ddof=1) / values.var()


def assert_close(name, values, exact, *, min_power=None):
    """``|mean - exact| <= Z · MCSE``; with ``min_power`` also ``MCSE <= min_power``."""
    mean, mcse = chain_mean_and_mcse(values)
    assert abs(mean - exact) <= Z * mcse, f"{name}: {mean:.5f} vs exact {exact:.5f} (MCSE {mcse:.2e})"
    if min_power is not None:
        assert mcse <= min_power, f"{name}: MCSE {mcse:.3e} too large for the test to have power"


def gaussian_logdensity(x):
    return -0.5 * jnp.sum(x**2)


class Family(NamedTuple):
    """Parameters of the test targets: a shifted, scaled Gaussian or Cauchy, maybe truncated.

    ``z = (x - mean) / scale``; ``log ρ = -|z|²/2`` (Gaussian) or ``-(d+1)/2 log(1 + |z|²)``
    (multivariate Cauchy). Where ``x_0 <= support_lower`` the density is zero: ``log ρ`` is
    ``-inf`` if ``x_1 > 0`` and NaN otherwise, which the sampler must both treat as outside.
    """

    mean: jax.Array
    scale: jax.Array
    cauchy: jax.Array
    support_lower: jax.Array

    @classmethod
    def make(cls, d, mean=0.0, scale=1.0, cauchy=False, support_lower=-np.inf):
        full = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float64), (d,))  # noqa: E731
        return cls(full(mean), full(scale), jnp.asarray(cauchy), jnp.asarray(support_lower, jnp.float64))


def family_logdensity(x, params: Family):
    sq = jnp.sum(((x - params.mean) / params.scale) ** 2)
    inside = jnp.where(params.cauchy, -0.5 * (x.shape[0] + 1) * jnp.log1p(sq), -0.5 * sq)
    outside = jnp.where(x[1] > 0, -jnp.inf, jnp.nan)
    return jnp.where(x[0] > params.support_lower, inside, outside)


@functools.partial(jax.jit, static_argnames="num_steps")
def run_family(params, positions, w, rng_key, num_steps=NUM_STEPS):
    """Chains of ``psample.polar_slice`` on ``family_logdensity(., params)`` (one compile per shape).

    Returns ``(final_states, positions (chain, draw, d), |‖θ‖ - 1| (chain, draw), info)``.
    """
    algorithm = polar_slice.as_top_level_api(lambda x: family_logdensity(x, params), w=w)
    num_chains = positions.shape[0]

    def one_step(states, key):
        states, info = jax.vmap(algorithm.step)(jax.random.split(key, num_chains), states)
        drift = jnp.abs(jnp.linalg.norm(states.direction, axis=-1) - 1.0)
        return states, (states.position, drift, info)

    states = jax.vmap(algorithm.init)(positions)
    final, recorded = jax.lax.scan(one_step, states, jax.random.split(rng_key, num_steps))
    x, drift, info = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), recorded)
    return final, x, drift, info


def start_at(d, value=1.0, num_chains=NUM_CHAINS):
    return jnp.full((num_chains, d), value, dtype=jnp.float64)


# ----------------------------------------------------------------------------- sampling tests


def test_standard_gaussian_d10_moments():
    d = 10
    _, x, _, info = run_family(Family.make(d), start_at(d), 10.0, jax.random.key(0))
    x = np.asarray(x)
    sq_norm = np.sum(x**2, axis=-1)
    assert_close("E x_0", x[..., 0], 0.0, min_power=0.03)
    assert_close("E x_9", x[..., 9], 0.0, min_power=0.03)
    assert_close("E x_0^2", x[..., 0] ** 2, 1.0, min_power=0.03)
    assert_close("E |x|^2", sq_norm, float(d), min_power=0.06)
    assert_close("E |x|", np.sqrt(sq_norm), float(stats.chi(d).mean()), min_power=0.01)
    # The radius mixes almost i.i.d. and the direction quickly (random great circles).
    assert integrated_autocorr_time(sq_norm) < 3.0
    assert integrated_autocorr_time(x[..., 0]) < 10.0
    # Evaluation counts: one direction proposal (isotropic target: always accepted), one or
    # two stepping-out checks, a few shrinkage draws; a NumPy port of the authors' code
    # gives 5.25 per step on this target.
    num_evals = np.asarray(info.num_evals)
    assert np.all(num_evals >= 2)  # 3 unless the stepping-out budget all goes down (J = m - 1)
    assert 4.0 < num_evals.mean() < 7.0
    assert np.all(np.asarray(info.num_direction_shrinks) == 0)
    assert not np.any(np.asarray(info.hit_max_proposals))


def test_shifted_anisotropic_gaussian_and_unit_direction():
    """Moments of N(1, diag(s²)); ‖θ‖ - 1 < 1e-12 at every one of 64 000 transitions.

    The unit-norm check is the regression test for the upstream bug (the first great-circle
    proposal was not re-normalised). On this target the direction is rejected and shrunk
    often, so every branch of the direction update runs.
    """
    d = 10
    scale = np.linspace(0.5, 3.0, d)
    final, x, drift, info = run_family(Family.make(d, 1.0, scale), start_at(d), 5.0, jax.random.key(1))
    x = np.asarray(x)
    assert float(np.max(drift)) < 1e-12
    for i in (0, 4, 9):
        assert_close(f"E x_{i}", x[..., i], 1.0, min_power=0.06 * scale[i])
        assert_close(f"Var x_{i}", (x[..., i] - 1.0) ** 2, scale[i] ** 2, min_power=0.06 * scale[i] ** 2)
    assert integrated_autocorr_time(x[..., 9]) < 100.0
    assert np.mean(np.asarray(info.num_direction_shrinks)) > 0.3
    assert not np.any(np.asarray(info.hit_max_proposals))
    # The state is consistent: position = radius * direction, logdensity = log ρ(position).
    np.testing.assert_allclose(
        np.asarray(final.position), np.asarray(final.radius[:, None] * final.direction), rtol=1e-14
    )
    logdensity = jax.vmap(lambda x: family_logdensity(x, Family.make(d, 1.0, scale)))(final.position)
    np.testing.assert_allclose(np.asarray(final.logdensity), np.asarray(logdensity), rtol=1e-12)


def test_minus_inf_and_nan_regions_are_never_entered():
    """Gaussian truncated to x_0 > 0 (log ρ = -inf or NaN elsewhere): no NaN, support respected."""
    d = 10
    params = Family.make(d, support_lower=0.0)
    final, x, _, info = run_family(params, start_at(d, 0.5), 4.0, jax.random.key(2))
    x = np.asarray(x)
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(np.asarray(final.logdensity)))
    assert np.all(x[..., 0] > 0)
    assert_close("E x_0 (half-normal)", x[..., 0], math.sqrt(2 / math.pi), min_power=0.02)
    assert_close("E x_0^2", x[..., 0] ** 2, 1.0, min_power=0.03)
    assert_close("E x_1", x[..., 1], 0.0, min_power=0.03)
    assert_close("E x_1^2", x[..., 1] ** 2, 1.0, min_power=0.03)
    assert np.mean(np.asarray(info.num_direction_shrinks)) > 0.3  # rejections did happen
    assert not np.any(np.asarray(info.hit_max_proposals))


@pytest.mark.heavy
def test_multivariate_cauchy_d10_radius_median():
    """‖x‖²/d ~ F(d, 1): P(‖x‖ > median) = 1/2 and P(‖x‖ > median, x_0 > 0) = 1/4."""
    d = 10
    median = math.sqrt(d * stats.f(d, 1).ppf(0.5))
    _, x, _, info = run_family(Family.make(d, cauchy=True), start_at(d), float(d), jax.random.key(3))
    x = np.asarray(x)
    radius = np.linalg.norm(x, axis=-1)
    above = radius > median
    assert_close("P(|x| > median)", above, 0.5, min_power=0.01)
    assert_close("P(|x| > median, x_0 > 0)", above & (x[..., 0] > 0), 0.25, min_power=0.01)
    assert integrated_autocorr_time(np.log(radius)) < 15.0
    assert np.max(radius) > 100 * median  # the heavy tail is explored
    assert 5.0 < np.mean(np.asarray(info.num_evals)) < 12.0
    assert not np.any(np.asarray(info.hit_max_proposals))


def test_two_dimensional_edge_case():
    d = 2
    _, x, drift, info = run_family(Family.make(d), start_at(d, 0.7), 2.0, jax.random.key(4))
    x = np.asarray(x)
    sq_norm = np.sum(x**2, axis=-1)
    assert_close("E x_0", x[..., 0], 0.0, min_power=0.03)
    assert_close("E x_1", x[..., 1], 0.0, min_power=0.03)
    assert_close("E x_0 x_1", x[..., 0] * x[..., 1], 0.0, min_power=0.03)
    assert_close("E |x|^2", sq_norm, 2.0, min_power=0.03)
    assert_close("E |x|", np.sqrt(sq_norm), math.sqrt(math.pi / 2), min_power=0.01)
    # For d = 2 the great circle is the unit circle itself: the angle must mix too.
    angle = np.arctan2(x[..., 1], x[..., 0])
    assert_close("E cos(angle)", np.cos(angle), 0.0, min_power=0.03)
    assert integrated_autocorr_time(x[..., 0]) < 10.0
    assert float(np.max(drift)) < 1e-12
    assert not np.any(np.asarray(info.hit_max_proposals))


@pytest.mark.heavy
def test_bit_identical_for_fixed_key_and_vmap_equals_single_chain():
    d = 10
    params = Family.make(d, 1.0, np.linspace(0.5, 3.0, d))
    first = run_family(params, start_at(d), 5.0, jax.random.key(1))[1]
    second = run_family(params, start_at(d), 5.0, jax.random.key(1))[1]
    assert np.array_equal(np.asarray(first), np.asarray(second))
    other = run_family(params, start_at(d), 5.0, jax.random.key(2))[1]
    assert not np.array_equal(np.asarray(first), np.asarray(other))

    # Chain 3 of the vmapped run equals the same chain run alone with the same keys, even
    # though under vmap its while loop kept turning (frozen) while other chains finished.
    algorithm = polar_slice.as_top_level_api(lambda x: family_logdensity(x, params), w=5.0)
    num_steps = 300

    def single(state, key):
        state, _ = algorithm.step(jax.random.split(key, NUM_CHAINS)[3], state)
        return state, state.position

    keys = jax.random.split(jax.random.key(1), NUM_STEPS)[:num_steps]
    _, alone = jax.jit(lambda s, k: jax.lax.scan(single, s, k))(algorithm.init(start_at(d)[3]), keys)
    np.testing.assert_allclose(np.asarray(alone), np.asarray(first[3, :num_steps]), rtol=1e-10, atol=1e-12)


def test_pytree_positions_in_float32():
    """A dict position of 3 + 4 float32 entries: structure and dtype kept, moments right."""
    scales = {"a": jnp.array([1.0, 2.0, 0.5], jnp.float32), "b": jnp.full((2, 2), 1.5, jnp.float32)}

    def logdensity(position):
        return sum(-0.5 * jnp.sum((position[k] / scales[k]) ** 2) for k in scales)

    algorithm = polar_slice.as_top_level_api(logdensity, w=np.float32(4.0))
    positions = {"a": jnp.ones((NUM_CHAINS, 3), jnp.float32), "b": jnp.ones((NUM_CHAINS, 2, 2), jnp.float32)}

    def one_step(states, key):
        states, info = jax.vmap(algorithm.step)(jax.random.split(key, NUM_CHAINS), states)
        return states, (states.position, info)

    run = jax.jit(lambda s, k: jax.lax.scan(one_step, s, k))
    final, (x, info) = run(jax.vmap(algorithm.init)(positions), jax.random.split(jax.random.key(5), 1500))
    x = jax.tree.map(lambda a: np.asarray(jnp.swapaxes(a, 0, 1)), x)
    assert x["a"].shape == (NUM_CHAINS, 1500, 3) and x["b"].shape == (NUM_CHAINS, 1500, 2, 2)
    assert x["a"].dtype == np.float32 and x["b"].dtype == np.float32
    assert final.direction.shape == (NUM_CHAINS, 7) and final.direction.dtype == jnp.float32
    assert final.radius.dtype == jnp.float32 and final.logdensity.dtype == jnp.float32
    for i, sd in enumerate([1.0, 2.0, 0.5]):
        assert_close(f"E a_{i}^2", x["a"][..., i] ** 2, sd**2, min_power=0.08 * sd**2)
    assert_close("E b_01^2", x["b"][..., 0, 1] ** 2, 2.25, min_power=0.2)
    assert not np.any(np.asarray(info.hit_max_proposals))


@functools.partial(jax.jit, static_argnames="max_proposals")
def _one_kernel_step(params, position, w, rng_key, max_proposals):
    logdensity = lambda x: family_logdensity(x, params)  # noqa: E731
    state = polar_slice.init(position, logdensity)
    return polar_slice.build_kernel(max_proposals)(rng_key, state, logdensity, w)


def test_traced_w_and_stepping_out_budget():
    """``w`` is a traced kernel argument; stepping-out uses at most ``max_proposals - 1`` steps."""
    params, x0 = Family.make(4), jnp.ones(4)
    key = jax.random.key(6)
    narrow, narrow_info = _one_kernel_step(params, x0, 1e-3, key, max_proposals=1000)
    wide, wide_info = _one_kernel_step(params, x0, 1e3, key, max_proposals=1000)
    budget, budget_info = _one_kernel_step(params, x0, 1e-3, key, max_proposals=3)
    # A tiny window needs hundreds of steps (the slice is about 2 wide); a huge one none,
    # but shrinkage; with max_proposals = 3 the budget of 2 steps is spent.
    assert 100 <= int(narrow_info.num_radius_expansions) <= 999
    assert int(wide_info.num_radius_expansions) == 0 and int(wide_info.num_radius_shrinks) >= 2
    assert int(budget_info.num_radius_expansions) == 2
    for state, info in ((narrow, narrow_info), (wide, wide_info), (budget, budget_info)):
        assert not bool(info.hit_max_proposals)
        # Evaluations: accepted direction and radius, every rejection and expansion, and
        # 0-2 evaluations that stopped a stepping-out end (none where the budget ran out).
        accounted = 2 + info.num_direction_shrinks + info.num_radius_expansions + info.num_radius_shrinks
        assert 0 <= int(info.num_evals - accounted) <= 2
        assert float(state.logdensity) == pytest.approx(float(family_logdensity(state.position, params)))
    assert abs(float(budget.radius) - 2.0) < 3e-3  # moved within the tiny bracket
    assert float(budget.radius) != 2.0


def test_max_proposals_cap_keeps_the_old_direction():
    """A narrow target far from the origin: with 3 proposals geodesic shrinkage fails, the old
    direction (in the slice) is kept and flagged; with the default cap it succeeds."""
    d = 4
    params = Family.make(d, mean=10.0, scale=0.01)
    x0 = jnp.full(d, 10.0, dtype=jnp.float64).at[0].add(0.005)
    capped, capped_info = _one_kernel_step(params, x0, 0.05, jax.random.key(7), max_proposals=3)
    assert bool(capped_info.hit_max_proposals)
    assert int(capped_info.num_direction_shrinks) == 3
    old_direction = x0 / jnp.linalg.norm(x0)
    np.testing.assert_allclose(np.asarray(capped.direction), np.asarray(old_direction), rtol=1e-14)
    assert np.isfinite(float(capped.logdensity))
    assert float(capped.logdensity) == pytest.approx(float(family_logdensity(capped.position, params)))

    free, free_info = _one_kernel_step(params, x0, 0.05, jax.random.key(7), max_proposals=1000)
    assert not bool(free_info.hit_max_proposals)
    assert int(free_info.num_direction_shrinks) > 3
    assert not np.allclose(np.asarray(free.direction), np.asarray(old_direction), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- invariance tests

#: A shifted, anisotropic Gaussian in d = 5, so that L(r, θ) depends on both r and θ.
INVARIANCE_MEAN = np.array([1.0, -0.5, 0.0, 0.5, 2.0])
INVARIANCE_SD = np.array([1.0, 2.0, 0.5, 1.0, 1.5])
INVARIANCE_NUM_CHAINS = 10_000


def invariance_logdensity(x):
    return -0.5 * jnp.sum(((x - INVARIANCE_MEAN) / INVARIANCE_SD) ** 2)


@pytest.fixture(scope="module")
def one_step_from_exact_draws():
    """Start 10⁴ chains at exact target draws and take one step of each kernel (one compile)."""
    w = 3.0
    start_key, step_key, reference_key = jax.random.split(jax.random.key(11), 3)

    def exact(key):
        return INVARIANCE_MEAN + INVARIANCE_SD * jax.random.normal(key, (INVARIANCE_NUM_CHAINS, 5))

    start = exact(start_key)
    kernels = {
        "full": lambda k, s: polar_slice.build_kernel()(k, s, invariance_logdensity, w),
        "direction": lambda k, s: polar_slice.build_direction_kernel()(k, s, invariance_logdensity),
        "radius": lambda k, s: polar_slice.build_radius_kernel()(k, s, invariance_logdensity, w),
    }

    @jax.jit
    def step_all(start, keys):
        states = jax.vmap(lambda x: polar_slice.init(x, invariance_logdensity))(start)
        return {name: jax.vmap(kernel)(keys, states) for name, kernel in kernels.items()}

    moved = step_all(start, jax.random.split(step_key, INVARIANCE_NUM_CHAINS))
    return np.asarray(start), np.asarray(exact(reference_key)), moved


@pytest.mark.parametrize("which", ["full", "direction", "radius"])
def test_one_step_invariance_from_exact_draws(which, one_step_from_exact_draws):
    """Started exactly at target draws, one transition must leave the law unchanged."""
    start, reference, moved = one_step_from_exact_draws
    new_states, info = moved[which]
    x = np.asarray(new_states.position)

    # The chains really moved (an identity kernel would pass the checks below).
    jump = np.linalg.norm(x - start, axis=-1)
    assert np.mean(jump > 1e-8) > 0.99
    assert np.mean(jump**2) > 0.5
    assert not np.any(np.asarray(info.hit_max_proposals))
    if which == "direction":
        np.testing.assert_allclose(np.linalg.norm(x, axis=-1), np.linalg.norm(start, axis=-1), rtol=1e-12)
    if which == "radius":
        start_direction = start / np.linalg.norm(start, axis=-1)[:, None]
        np.testing.assert_allclose(np.asarray(new_states.direction), start_direction, rtol=1e-12)

    n = INVARIANCE_NUM_CHAINS
    for i in (0, 1, 4):
        p = stats.kstest(x[:, i], stats.norm(INVARIANCE_MEAN[i], INVARIANCE_SD[i]).cdf).pvalue
        assert p > KS_P_MIN, f"KS x_{i}: p = {p:.2e}"
        for label, h, exact in (
            ("mean", x[:, i], INVARIANCE_MEAN[i]),
            ("var", (x[:, i] - INVARIANCE_MEAN[i]) ** 2, INVARIANCE_SD[i] ** 2),
        ):
            tolerance = Z * h.std(ddof=1) / math.sqrt(n)
            assert abs(h.mean() - exact) <= tolerance, f"{label} x_{i}: {h.mean():.4f} vs {exact:.4f}"
    norm = np.linalg.norm(x, axis=-1)
    p = stats.ks_2samp(norm, np.linalg.norm(reference, axis=-1)).pvalue
    assert p > KS_P_MIN, f"KS ||x||: p = {p:.2e}"
    exact_sq_norm = float(np.sum(INVARIANCE_MEAN**2 + INVARIANCE_SD**2))
    assert abs((norm**2).mean() - exact_sq_norm) <= Z * (norm**2).std(ddof=1) / math.sqrt(n)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("w", [0.0, -1.0, float("nan"), float("inf"), "wide"])
def test_invalid_w_is_rejected_at_construction(w):
    with pytest.raises(InvalidTuningError, match="w"):
        polar_slice.as_top_level_api(gaussian_logdensity, w=w)


@pytest.mark.parametrize("max_proposals", [0, -3, 2.5, True])
def test_invalid_max_proposals_is_rejected(max_proposals):
    with pytest.raises(InvalidTuningError, match="max_proposals"):
        polar_slice.as_top_level_api(gaussian_logdensity, w=1.0, max_proposals=max_proposals)
    builders = (polar_slice.build_kernel, polar_slice.build_direction_kernel, polar_slice.build_radius_kernel)
    for build in builders:
        with pytest.raises(InvalidTuningError, match="max_proposals"):
            build(max_proposals)


def test_one_dimensional_position_is_a_shape_error():
    algorithm = polar_slice.as_top_level_api(gaussian_logdensity, w=1.0)
    with pytest.raises(ShapeError, match="d=1"):
        algorithm.init(jnp.ones(1))
    with pytest.raises(ShapeError, match="d=1"):
        algorithm.init({"only": jnp.array(2.0)})


def test_origin_is_an_initial_point_error():
    algorithm = polar_slice.as_top_level_api(gaussian_logdensity, w=1.0)
    with pytest.raises(InitialPointError, match="origin"):
        algorithm.init(jnp.zeros(3))


# ----------------------------------------------------------------------------- slow: paper targets


def _run_target(target, w, num_chains, num_steps, key, observables=None):
    """Run the sampler on a ``psample.Target`` with the library's runner."""
    import psample

    algorithm = polar_slice.as_top_level_api(target.logdensity_fn, w=w)
    init_key, run_key = jax.random.split(key)
    return psample.sample(
        algorithm,
        target.initial_positions(init_key, num_chains),
        run_key,
        num_steps,
        target=target,
        observables=observables,
        progress=False,
    )


def _radius_observables():
    return {"log_radius": lambda s: jnp.log(s.radius), "x0": lambda s: s.radius * s.direction[0]}


@pytest.mark.slow
def test_cauchy_d100_radius_quantiles_and_iat():
    import arviz as az

    from psample import models

    target = models.cauchy(100)
    trace = _run_target(target, 100.0, 32, 20_000, jax.random.key(20), _radius_observables())
    log_radius = np.asarray(trace.observables["log_radius"])
    radius, x0 = np.exp(log_radius), np.asarray(trace.observables["x0"])
    for p in (0.1, 0.5, 0.9):
        assert_close(f"P(|x| <= q{p})", radius <= target.exact[f"q{p:g}[|x|]"], p, min_power=0.01)
    b = target.exact["median[|x|]"]
    assert b == pytest.approx(14.7721, abs=1e-4)
    assert_close("P(|x| > b, x_0 > 0)", (radius > b) & (x0 > 0), 0.25, min_power=0.01)
    assert_close("E log|x|", log_radius, target.exact["E[log|x|]"], min_power=0.02)
    kept = log_radius[:, log_radius.shape[1] // 10 :]
    iat = kept.size / float(az.ess(kept, method="mean"))
    assert iat < 20.0, f"IAT(log|x|) = {iat:.1f}; the paper reports 8.6"
    assert np.mean(np.asarray(trace.info.num_evals)) < 12.0
    assert not np.any(np.asarray(trace.info.hit_max_proposals))


@pytest.mark.slow
def test_hyperplane_disk_d200_moments():
    """Precision 2(I + 11ᵀ): Cov = ½(I - 11ᵀ/(d+1)), a Gaussian on the hyperplane-disk target."""
    from psample import models

    d = 200
    target = models.hyperplane_disk(d)
    observables = {
        "x0": lambda s: s.position[0],
        "x0x1": lambda s: s.position[0] * s.position[1],
        "sq_norm": lambda s: jnp.sum(s.position**2),
        "sum": lambda s: jnp.sum(s.position),
    }
    trace = _run_target(target, 20.0, 32, 3000, jax.random.key(21), observables)
    obs = {k: np.asarray(v) for k, v in trace.observables.items()}
    var_x0 = 0.5 * (1 - 1 / (d + 1))
    assert var_x0 == pytest.approx(0.497512, abs=1e-6)
    assert_close("E x_0", obs["x0"], 0.0, min_power=0.01)
    assert_close("Var x_0", obs["x0"] ** 2, var_x0, min_power=0.02)
    assert_close("Cov(x_0, x_1)", obs["x0x1"], -0.5 / (d + 1), min_power=0.01)
    assert_close("E |x|^2", obs["sq_norm"], 0.5 * (d - d / (d + 1)), min_power=0.2)
    assert_close("Var(sum x)", obs["sum"] ** 2, 0.5 * d / (d + 1), min_power=0.01)
    assert integrated_autocorr_time(np.sqrt(obs["sq_norm"])) < 5.0


@pytest.mark.slow
def test_funnel_d10_extreme_quantiles():
    """x_0 ~ N(0, 9): indicator MCSE at q0.001 = -9.2707 and q0.999 = +9.2707."""
    from psample import models

    target = models.neal_funnel(10)
    trace = _run_target(target, 5.0, 64, 25_000, jax.random.key(22), {"x0": lambda s: s.position[0]})
    x0 = np.asarray(trace.observables["x0"])
    q_low, q_high = target.exact["q0.001[x_0]"], target.exact["q0.999[x_0]"]
    assert q_high == pytest.approx(9.2707, abs=1e-4)
    assert_close("P(x_0 <= q0.001)", x0 <= q_low, 0.001, min_power=4e-4)
    assert_close("P(x_0 <= q0.999)", x0 <= q_high, 0.999, min_power=4e-4)
    assert_close("E x_0", x0, 0.0, min_power=0.15)
    assert_close("E x_0^2", x0**2, 9.0, min_power=0.6)
    assert np.min(x0) < q_low and np.max(x0) > q_high  # both ends of the funnel are reached


@pytest.mark.slow
def test_eight_schools_noncentered_matches_numpyro_nuts_and_quadrature():
    from numpyro.infer import MCMC, NUTS

    from psample import models

    target = models.eight_schools(centered=False)
    trace = _run_target(target, 5.0, 32, 5000, jax.random.key(23))
    draws = target.postprocess(trace.positions)

    mcmc = MCMC(
        NUTS(models.eight_schools_model),
        num_warmup=1000,
        num_samples=4000,
        num_chains=8,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(24), centered=False)
    reference = mcmc.get_samples(group_by_chain=True)
    for site in ("mu", "tau", "theta"):
        ours, ref = np.asarray(draws[site]), np.asarray(reference[site])
        ours, ref = ours.reshape(ours.shape[:2] + (-1,)), ref.reshape(ref.shape[:2] + (-1,))
        for j in range(ours.shape[-1]):
            for label, f in (("mean", lambda v: v), ("second moment", lambda v: v**2)):
                m1, s1 = chain_mean_and_mcse(f(ours[..., j]))
                m2, s2 = chain_mean_and_mcse(f(ref[..., j]))
                message = f"{site}[{j}] {label}: {m1:.3f} vs NUTS {m2:.3f}"
                assert abs(m1 - m2) <= Z * math.hypot(s1, s2), message
    exact = target.exact
    assert_close("E mu", draws["mu"], exact["E[mu]"], min_power=0.3)
    assert_close("E log tau", np.log(np.asarray(draws["tau"])), exact["E[log tau]"], min_power=0.05)
    assert_close("E theta_0", np.asarray(draws["theta"])[..., 0], exact["E[theta_0]"], min_power=0.4)
    assert_close("P(tau <= median)", np.asarray(draws["tau"]) <= exact["median[tau]"], 0.5, min_power=0.02)


# ----------------------------------------------------------------------------- silent failures (issue 8)


def test_zero_level_uniform_does_not_open_the_slice():
    """A step whose slice-level uniform is exactly 0.0 (key injected) stays in the bulk.

    With ``log(0) = -inf`` as the level every finite point is in the slice: stepping-out runs
    to its limit and the radius jumps to hundreds (standard Gaussian, d = 10).
    """
    from tests.test_rng import ZERO_LEVEL_SEED

    algorithm = polar_slice.as_top_level_api(gaussian_logdensity, w=1.0)
    state = algorithm.init(jnp.full(10, 1.0, jnp.float32))
    new_state, info = algorithm.step(jax.random.PRNGKey(ZERO_LEVEL_SEED), state)
    assert new_state.position.dtype == jnp.float32
    # The largest slice level drop is -log(2^-24) = 16.6 nats: L >= L0 - 16.6 bounds the radius.
    assert float(new_state.radius) < 10.0
    assert int(info.num_radius_expansions) < 50


def test_origin_in_a_run_names_the_chains():
    import psample

    algorithm = polar_slice.as_top_level_api(gaussian_logdensity, w=1.0)
    x0 = jnp.ones((5, 3)).at[1].set(0.0).at[3].set(0.0)
    with pytest.raises(InitialPointError, match=r"chain\(s\) \[1, 3\].*origin"):
        psample.sample(algorithm, x0, jax.random.PRNGKey(0), 5, progress=False)


def test_nan_log_density_mid_run_is_counted_and_warned():
    import warnings

    import psample
    from psample.errors import NumericalWarning

    def nan_outside_ball(x):  # NaN (not -inf) outside radius 1.5: a model that overflows
        return jnp.where(jnp.sum(x**2) < 2.25, -0.5 * jnp.sum(x**2), jnp.nan)

    algorithm = polar_slice.as_top_level_api(nan_outside_ball, w=1.0)
    x0 = 0.3 * jnp.ones((4, 3))
    with pytest.warns(NumericalWarning, match=r"NaN or \+inf \d+ time\(s\), in \d+ recorded step\(s\) of 4 chain"):
        trace = psample.sample(algorithm, x0, jax.random.PRNGKey(0), 200, progress=False)
    counts = trace.sample_stats["num_nonfinite"].values
    assert counts.shape == (4, 200) and counts.sum() > 0
    np.testing.assert_array_equal(trace.nonfinite_steps, (counts > 0).sum(axis=1))
    assert "num_nonfinite" in trace.to_datatree()["sample_stats"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        clean = psample.sample(polar_slice.as_top_level_api(gaussian_logdensity), x0, jax.random.PRNGKey(0), 50,
                               progress=False)
    assert clean.nonfinite_steps.sum() == 0


def test_plus_inf_log_density_mid_run_is_counted_warned_and_never_entered():
    """Issue #23 point 8: a log-density that returns +inf beyond x_0 = 1 (a model that overflows).

    Before, a proposal there was accepted (+inf is above every level), the next level was
    +inf + log U = +inf and every chain froze for good, with no count and no warning. Now +inf
    is outside every slice, like NaN: counted in num_nonfinite, warned about, never entered,
    and the chains keep moving (they sample the Gaussian restricted to x_0 <= 1).
    """
    import warnings

    import psample
    from psample.errors import NumericalWarning

    def plus_inf_beyond_one(x):
        return jnp.where(x[0] < 1.0, -0.5 * jnp.sum(x**2), jnp.inf)

    algorithm = polar_slice.as_top_level_api(plus_inf_beyond_one, w=1.0)
    x0 = 0.3 * jnp.ones((4, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = psample.sample(algorithm, x0, jax.random.PRNGKey(0), 400, progress=False)
    assert any(issubclass(w.category, NumericalWarning) and "recorded step" in str(w.message) for w in caught)
    counts = trace.sample_stats["num_nonfinite"].values
    assert counts.shape == (4, 400) and np.all((counts > 0).sum(axis=1) > 10)  # every chain met +inf
    x, lp = np.asarray(trace.positions), np.asarray(trace.logdensity)
    assert np.all(np.isfinite(lp)) and np.all(x[..., 0] < 1.0)
    # Moving: most steps of every chain change the position (a frozen chain changes none).
    moved = np.mean(np.any(np.diff(x, axis=1) != 0, axis=-1), axis=1)
    assert np.all(moved > 0.9), moved
    # P(x_0 > 1) = 0.16 under N(0, 1): chains that visit the boundary region, and stay out.
    assert np.all(np.max(x[..., 0], axis=1) > 0.5)


@pytest.mark.parametrize("value, dtype", [(1j, "complex64"), (1j, "complex128")])
def test_complex_log_density_is_a_dtype_error_naming_it(value, dtype):
    """Issue #23 point 9: a complex log-density was cast to real with only NumPy's ComplexWarning
    (the imaginary part dropped); now init refuses it on its dtype, also under jit and vmap."""
    from psample.errors import DtypeError

    def complex_logdensity(x):
        return (-0.5 * jnp.sum(x**2) + value * x[0]).astype(dtype)

    algorithm = polar_slice.as_top_level_api(complex_logdensity)
    match = rf"logdensity_fn returns a complex value \(dtype {dtype}\)"
    with pytest.raises(DtypeError, match=match):
        algorithm.init(jnp.ones(3))
    with pytest.raises(DtypeError, match=match):
        jax.jit(jax.vmap(algorithm.init))(jnp.ones((2, 3)))


@pytest.mark.parametrize(
    "position, match",
    [
        (jnp.ones(3, jnp.float16), "float16"),
        (jnp.ones(3, jnp.bfloat16), "bfloat16"),
        (jnp.ones(3, jnp.int32), "int32"),
        (jnp.ones(3, jnp.complex64), "complex64"),
        ({"a": jnp.ones(2), "b": jnp.ones(2, jnp.float16)}, r"\['b'\]"),
    ],
)
def test_low_precision_integer_and_complex_positions_are_refused(position, match):
    from psample.errors import DtypeError

    algorithm = polar_slice.as_top_level_api(lambda x: -0.5 * sum(jnp.sum(v**2) for v in jax.tree.leaves(x)))
    with pytest.raises(DtypeError, match=match):
        algorithm.init(position)


def test_vector_valued_log_density_is_a_shape_error():
    algorithm = polar_slice.as_top_level_api(lambda x: -0.5 * x**2)
    with pytest.raises(ShapeError, match=r"scalar.*\(3,\)"):
        algorithm.init(jnp.ones(3))


def test_positions_without_a_chain_axis_say_so():
    import psample

    algorithm = polar_slice.as_top_level_api(gaussian_logdensity)
    with pytest.raises(ShapeError, match=r"chain axis.*\[None\]"):
        psample.sample(algorithm, jnp.ones(3), jax.random.PRNGKey(0), 5, progress=False)


# ----------------------------------------------------------------------------- affine preconditioning

#: A correlated Gaussian in d = 5, centred far from the origin: x = m + C ξ, ξ ~ N(0, I).
AFFINE_MEAN = np.array([3.0, -2.0, 1.0, 4.0, -3.0])
AFFINE_FACTOR = np.linalg.cholesky(
    np.array(
        [
            [1.0, 0.8, 0.3, 0.0, 0.1],
            [0.8, 1.5, 0.4, 0.2, 0.0],
            [0.3, 0.4, 0.5, 0.1, 0.05],
            [0.0, 0.2, 0.1, 2.0, 0.6],
            [0.1, 0.0, 0.05, 0.6, 0.8],
        ]
    )
)
AFFINE_PRECISION = np.linalg.inv(AFFINE_FACTOR @ AFFINE_FACTOR.T)


def affine_logdensity(x):
    r = x - AFFINE_MEAN
    return -0.5 * r @ (AFFINE_PRECISION @ r)


def _low_rank_scale():
    """A valid LowRankScale that is far from the target's own factor (exactness must not depend on it)."""
    basis, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 2)))
    return polar_slice.LowRankScale(jnp.array([0.7, 1.3, 0.5, 1.6, 0.9]), jnp.asarray(basis), jnp.array([1.5, -0.4]))


AFFINE_PRECONDITIONERS = {
    # a wrong centre and a wrong scale too: every fixed (center, scale) must be exact
    "vector": (jnp.array([2.0, -1.0, 0.0, 3.0, -2.0]), jnp.array([0.5, 2.0, 1.0, 0.7, 1.2])),
    "triangular": (jnp.asarray(AFFINE_MEAN), jnp.asarray(AFFINE_FACTOR)),
    "low_rank": (jnp.asarray(AFFINE_MEAN + 0.5), _low_rank_scale()),
}


@pytest.fixture(scope="module")
def one_step_affine():
    """10⁴ chains started at exact draws of the correlated Gaussian, one preconditioned step each."""
    start_key, step_key = jax.random.split(jax.random.key(12))
    start = AFFINE_MEAN + jax.random.normal(start_key, (INVARIANCE_NUM_CHAINS, 5)) @ AFFINE_FACTOR.T
    keys = jax.random.split(step_key, INVARIANCE_NUM_CHAINS)
    out = {}
    for name, (center, scale) in AFFINE_PRECONDITIONERS.items():
        algorithm = polar_slice.as_top_level_api(affine_logdensity, w=2.0, center=center, scale=scale)
        states = jax.vmap(algorithm.init)(start)
        out[name] = jax.jit(jax.vmap(algorithm.step))(keys, states)
    return np.asarray(start), out


@pytest.mark.heavy
@pytest.mark.parametrize("which", list(AFFINE_PRECONDITIONERS))
def test_affine_preconditioned_step_is_exact(which, one_step_affine):
    """For any fixed (center, scale) of each form, one step from exact draws keeps the law."""
    start, out = one_step_affine
    states, info = out[which]
    x = np.asarray(states.position)
    assert np.mean(np.linalg.norm(x - start, axis=-1) > 1e-8) > 0.99
    assert not np.any(np.asarray(info.hit_max_proposals))
    # State consistency: position = center + scale · radius · direction, logdensity = log ρ(x).
    center, scale = AFFINE_PRECONDITIONERS[which]
    z = np.asarray(states.radius)[:, None] * np.asarray(states.direction)
    x_from_z = np.asarray(jax.vmap(lambda v: preconditioning.to_x(v, center, scale))(jnp.asarray(z)))
    np.testing.assert_allclose(x_from_z, x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(states.logdensity), np.asarray(jax.vmap(affine_logdensity)(x)), rtol=1e-10)
    n = x.shape[0]
    sd = np.sqrt(np.diag(AFFINE_FACTOR @ AFFINE_FACTOR.T))
    for i in range(5):
        p = stats.kstest(x[:, i], stats.norm(AFFINE_MEAN[i], sd[i]).cdf).pvalue
        assert p > KS_P_MIN, f"KS x_{i}: p = {p:.2e}"
        assert abs(x[:, i].mean() - AFFINE_MEAN[i]) <= Z * x[:, i].std(ddof=1) / math.sqrt(n)
    # Whitened squared norm ~ χ²_5: tests the joint law, not only the marginals.
    xi = np.linalg.solve(AFFINE_FACTOR, (x - AFFINE_MEAN).T).T
    p = stats.kstest(np.sum(xi**2, axis=1), stats.chi2(5).cdf).pvalue
    assert p > KS_P_MIN, f"KS whitened |x|^2: p = {p:.2e}"


def test_preconditioned_chain_mixes_fast_and_keeps_position_in_x():
    """With the target's own (center, factor) the chain is the isotropic sampler in z: fast, exact."""
    algorithm = polar_slice.as_top_level_api(
        affine_logdensity, w=3.0, center=jnp.asarray(AFFINE_MEAN), scale=jnp.asarray(AFFINE_FACTOR)
    )

    def one_step(states, key):
        states, info = jax.vmap(algorithm.step)(jax.random.split(key, NUM_CHAINS), states)
        return states, states.position

    start = jnp.asarray(AFFINE_MEAN) + jnp.ones((NUM_CHAINS, 5))
    _, x = jax.jit(lambda s, k: jax.lax.scan(one_step, s, k))(jax.vmap(algorithm.init)(start), jax.random.split(jax.random.key(13), 1000))
    x = np.swapaxes(np.asarray(x), 0, 1)
    for i in (0, 3):
        assert_close(f"E x_{i}", x[..., i], AFFINE_MEAN[i], min_power=0.05)
    assert integrated_autocorr_time(x[..., 1]) < 5.0


@pytest.mark.parametrize(
    "center, scale, error, match",
    [
        (jnp.zeros(4), None, ShapeError, "center must have shape"),
        (jnp.array([0.0, np.nan, 0.0, 0.0, 0.0]), None, InvalidTuningError, "center must be finite"),
        (None, jnp.array([1.0, -1.0, 1.0, 1.0, 1.0]), InvalidTuningError, "vector scale"),
        (None, jnp.ones((5, 5)), InvalidTuningError, "lower triangular"),
        (None, jnp.ones((3, 3)), ShapeError, "scale must be a vector"),
        (None, polar_slice.LowRankScale(jnp.ones(5), jnp.ones((5, 1)), jnp.zeros(1)), InvalidTuningError, "orthonormal"),
        (None, polar_slice.LowRankScale(jnp.ones(5), jnp.eye(5, 1), jnp.array([-1.0])), InvalidTuningError, "> -1"),
    ],
)
def test_bad_preconditioner_is_rejected_at_init(center, scale, error, match):
    algorithm = polar_slice.as_top_level_api(affine_logdensity, w=1.0, center=center, scale=scale)
    with pytest.raises(error, match=match):
        algorithm.init(jnp.ones(5))


def test_start_at_the_center_is_an_initial_point_error():
    algorithm = polar_slice.as_top_level_api(affine_logdensity, center=jnp.asarray(AFFINE_MEAN), scale=jnp.ones(5))
    with pytest.raises(InitialPointError, match="center"):
        algorithm.init(jnp.asarray(AFFINE_MEAN))


# ----------------------------------------------------------------------------- module layout


def test_names_stay_importable_from_polar_slice():
    """The transition and the preconditioner live in their own modules; every name the sampler's
    module exported before is still there, as the same object (no warning: re-exports)."""
    import psample
    from psample.mcmc import polar_slice_adaptation, polar_slice_kernel

    for name in ("LowRankScale", "reparametrize", "check_preconditioner"):
        assert getattr(polar_slice, name) is getattr(preconditioning, name)
    for name in ("PolarSliceState", "PolarSliceInfo", "init", "init_transformed", "build_kernel",
                 "build_direction_kernel", "build_radius_kernel"):
        assert getattr(polar_slice, name) is getattr(polar_slice_kernel, name)
    assert set(polar_slice.__all__) >= {"as_top_level_api", "LowRankScale", "init", "build_kernel", "init_transformed"}
    assert psample.polar_slice is polar_slice.as_top_level_api
    assert callable(polar_slice_adaptation.polar_slice_adaptation)


@pytest.mark.parametrize("which", list(AFFINE_PRECONDITIONERS))
def test_preconditioner_round_trip_and_polar_coordinates(which):
    """``to_z`` inverts ``to_x`` for every form of scale; ``reparametrize`` recomputes only the polar
    coordinates of the state's position."""
    center, scale = AFFINE_PRECONDITIONERS[which]
    x = jnp.asarray(AFFINE_MEAN) + jnp.array([0.3, -1.2, 0.7, 2.0, -0.4])
    z = preconditioning.to_z(x, center, scale)
    np.testing.assert_allclose(np.asarray(preconditioning.to_x(z, center, scale)), np.asarray(x), rtol=1e-12)
    state = polar_slice.init(x, affine_logdensity)
    moved = preconditioning.reparametrize(state, center, scale)
    radius, direction = preconditioning.polar_coordinates(z)
    assert float(moved.radius) == float(radius) and float(moved.logdensity) == float(state.logdensity)
    np.testing.assert_array_equal(np.asarray(moved.direction), np.asarray(direction))
    np.testing.assert_array_equal(np.asarray(moved.position), np.asarray(x))
    assert abs(float(jnp.linalg.norm(moved.direction)) - 1.0) < 1e-12
