"""Noise schedules: the closed forms agree with the forward SDE they claim to solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample
from psample.diffusion import VE, VP
from psample.schedules import score_from_denoiser, score_from_noise
from psample.errors import InvalidTuningError

SCHEDULES = [VP(), VP(beta_min=0.5, beta_max=4.0), VE(sigma_min=1e-3, sigma_max=1.0), VE(0.01, 50.0)]
TIMES = jnp.linspace(0.01, 0.99, 9)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_forward_sde_moments(schedule):
    """d alpha/dt = k alpha and d sigma^2/dt = 2 k sigma^2 + g^2: the marginal N(alpha x0, sigma^2)
    solves dx = k x dt + g dW (the moment ODEs of an affine SDE)."""
    dalpha = jax.vmap(jax.grad(schedule.alpha))(TIMES)
    dvar = jax.vmap(jax.grad(lambda t: schedule.sigma(t) ** 2))(TIMES)
    k, g2 = schedule.drift_coef(TIMES), schedule.g2(TIMES)
    np.testing.assert_allclose(dalpha, k * schedule.alpha(TIMES), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dvar, 2 * k * schedule.sigma(TIMES) ** 2 + g2, rtol=1e-10)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_general_pair_identities(schedule):
    """k_t = d/dt log alpha_t and g_t^2 = 2 sigma_t^2 d/dt log(sigma_t / alpha_t)."""
    dlog_alpha = jax.vmap(jax.grad(schedule.log_alpha))(TIMES)
    dlog_ratio = jax.vmap(jax.grad(lambda t: jnp.log(schedule.sigma(t)) - schedule.log_alpha(t)))(TIMES)
    np.testing.assert_allclose(schedule.drift_coef(TIMES), dlog_alpha, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(schedule.g2(TIMES), 2 * schedule.sigma(TIMES) ** 2 * dlog_ratio, rtol=1e-10)
    np.testing.assert_allclose(schedule.divergence(TIMES, 3), 3 * schedule.drift_coef(TIMES))


def test_vp_endpoints_and_accuracy_near_zero():
    vp = VP()
    assert float(vp.alpha(0.0)) == 1.0 and float(vp.sigma(0.0)) == 0.0
    # sigma_t^2 ~ beta_min t for small t: the expm1 form keeps its relative accuracy.
    np.testing.assert_allclose(float(vp.sigma(1e-12)) ** 2, 0.1e-12, rtol=1e-6)
    np.testing.assert_allclose(float(vp.alpha(1.0)), np.exp(-0.05 - 19.9 / 4), rtol=1e-12)
    assert vp.reference_std() == 1.0


def test_ve_endpoints():
    ve = VE(sigma_min=0.01, sigma_max=10.0)
    np.testing.assert_allclose([float(ve.sigma(0.0)), float(ve.sigma(1.0))], [0.01, 10.0], rtol=1e-12)
    assert float(ve.alpha(0.7)) == 1.0 and ve.reference_std() == 10.0


def test_score_conversions_on_gaussian_data():
    """For x0 ~ N(m, s^2): E[x0|x_t] and the noise posterior mean give the exact score of q_t."""
    vp, m, s, t = VP(), 1.5, 0.7, 0.3
    a, sig = vp.alpha(t), vp.sigma(t)
    x = jnp.linspace(-3, 3, 7)
    var_t = a**2 * s**2 + sig**2
    exact = -(x - a * m) / var_t
    denoised = m + a * s**2 / var_t * (x - a * m)
    np.testing.assert_allclose(score_from_denoiser(vp, t, x, denoised), exact, rtol=1e-12)
    eps_hat = (x - a * denoised) / sig
    np.testing.assert_allclose(score_from_noise(vp, t, eps_hat), exact, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: VP(beta_min=-0.1), lambda: VP(beta_min=2.0, beta_max=1.0),
                                  lambda: VE(0.0, 1.0), lambda: VE(1.0, 1.0), lambda: VE(1e-3, float("inf"))])
def test_bad_schedules_are_refused(make):
    with pytest.raises(InvalidTuningError, match="beta|sigma"):
        make()


def test_schedules_are_hashable_and_jittable():
    vp = VP()
    assert hash(vp) == hash(VP(0.1, 20.0))
    out = jax.jit(lambda t: vp.g2(t) * vp.sigma(t))(0.5)
    assert np.isfinite(float(out))
    assert psample.diffusion.VP is VP
