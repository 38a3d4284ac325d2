"""Polar slice sampling in a normalizing flow's base space (psample.mcmc.flow_preconditioning)."""

from __future__ import annotations

import arviz as az  # noqa: F401  (ArviZ's ESS through arviz_stats below)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from arviz_stats.base import array_stats

import psample
from psample.errors import InvalidTuningError
from psample.mcmc.flow_preconditioning import (
    fit_flow,
    flow_forward,
    flow_inverse,
    flow_polar_slice,
    init_flow,
    reverse_kl,
)

D = 4
MEAN = np.array([1.0, -2.0, 0.5, 3.0])
SD = np.array([1.0, 0.5, 2.0, 1.5])


def gaussian(x):
    return -0.5 * jnp.sum(((x - MEAN) / SD) ** 2)


def funnel(x):
    """Neal's funnel in d = 5: v ~ N(0, 3²), z | v ~ N(0, e^v I)."""
    v, z = x[0], x[1:]
    return -0.5 * v**2 / 9.0 - 0.5 * jnp.sum(z**2) * jnp.exp(-v) - 0.5 * z.shape[0] * v


def random_flow(key, d, num_layers=3, hidden=8, size=0.4):
    """A fixed flow far from the identity: random last layers, shift and log-scales."""
    flow = init_flow(key, d, num_layers=num_layers, hidden=hidden)
    keys = iter(jax.random.split(jax.random.fold_in(key, 1), 2 * num_layers + 2))
    for layer in flow["layers"]:
        layer["w3"] = size * jax.random.normal(next(keys), layer["w3"].shape)
        layer["b3"] = size * jax.random.normal(next(keys), layer["b3"].shape)
    flow["shift"] = jax.random.normal(next(keys), (d,))
    flow["log_scale"] = 0.3 * jax.random.normal(next(keys), (d,))
    return flow


def test_flow_inverse_and_log_jacobian_are_exact():
    flow = random_flow(jax.random.key(0), D)
    u = jax.random.normal(jax.random.key(1), (D,))
    x, logdet = flow_forward(flow, u)
    np.testing.assert_allclose(flow_inverse(flow, x), u, rtol=1e-10, atol=1e-12)
    jacobian = jax.jacfwd(lambda v: flow_forward(flow, v)[0])(u)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(np.asarray(jacobian))[1], rtol=1e-10)


def test_polar_slice_through_a_fixed_flow_keeps_the_target():
    """A fixed, far-from-identity flow: the x draws' means and variances match the Gaussian's
    within 5 Monte Carlo standard errors (ESS from ArviZ), fixed seeds."""
    algorithm = flow_polar_slice(gaussian, flow=random_flow(jax.random.key(2), D))
    positions = jnp.asarray(MEAN) + jax.random.normal(jax.random.key(3), (8, D))
    trace = psample.sample(algorithm, positions, jax.random.key(4), 1500, progress=False, compute_convergence_checks=False)
    draws = np.asarray(trace.positions)  # (chain, draw, d)
    assert draws.shape == (8, 1500, D)
    for values, expected, sd in (
        (draws, MEAN, SD),  # means: sd of x
        ((draws - MEAN) ** 2, SD**2, np.sqrt(2.0) * SD**2),  # variances: sd of (x - m)² is sqrt(2) σ²
    ):
        ess = np.asarray(array_stats.ess(values, chain_axis=0, draw_axis=1, method="mean"))
        z = (values.mean(axis=(0, 1)) - expected) / (sd / np.sqrt(ess))
        assert np.all(np.abs(z) < 5.0), z
    np.testing.assert_allclose(np.asarray(trace.logdensity), jax.vmap(jax.vmap(gaussian))(draws), rtol=1e-9)


def test_fitting_the_flow_reduces_the_reverse_kl_on_a_funnel():
    flow = init_flow(jax.random.key(5), 5, num_layers=2, hidden=16)
    u = jax.random.normal(jax.random.key(6), (2000, 5))
    before = float(reverse_kl(flow, funnel, u))
    fitted, losses = fit_flow(jax.random.key(7), funnel, flow, num_fit_steps=300, batch_size=32)
    after = float(reverse_kl(fitted, funnel, u))
    assert losses.shape == (300,)
    # KL >= 0 up to log Z (here log Z = 2.5 log 2π + log 3 + ... is the same on both sides): the
    # fit must close a large part of the gap to its best value.
    assert after < before - 1.0, (before, after)


@pytest.mark.heavy
def test_adapted_flow_parameters_round_trip_through_a_checkpoint(tmp_path):
    """An end-to-end checkpoint run (``heavy``). The reference run has the checkpointed run's
    chunk size, so all three runs share one compiled warm-up and one compiled chunk (that a draw
    does not depend on the chunk size is tested in tests/runtime/test_chains.py)."""
    algorithm = flow_polar_slice(gaussian, num_layers=1, hidden=4, num_fit_steps=20)
    positions = jax.random.normal(jax.random.key(8), (2, D))
    path = tmp_path / "run.zarr"
    reference = psample.sample(algorithm, positions, jax.random.key(9), 30, num_warmup=20, chunk_size=5, progress=False,
                               compute_convergence_checks=False)
    first = psample.sample(
        algorithm, positions, jax.random.key(9), 10, num_warmup=20, chunk_size=5, checkpoint=path, progress=False,
        compute_convergence_checks=False,
    )
    resumed = psample.resume(path, algorithm, 20, progress=False, compute_convergence_checks=False)
    assert set(first.parameters) == {"w", "center", "scale", "flow"}
    for a, b in zip(jax.tree.leaves(reference.parameters), jax.tree.leaves(resumed.parameters)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(resumed.positions), np.asarray(reference.positions))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_fit_steps": -1}, "num_fit_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"num_layers": 1.5}, "num_layers"),
        ({"hidden": 0}, "hidden"),
        ({"w": -1.0}, "w"),
    ],
)
def test_bad_tuning_values_are_refused_by_name(kwargs, name):
    with pytest.raises(InvalidTuningError, match=name):
        flow_polar_slice(gaussian, **kwargs)
