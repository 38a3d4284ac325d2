"""The runner: chunking, thinning, warm-up, observables, validation, interrupts, devices."""

import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample
from psample.errors import InitialPointError, InvalidTuningError, ShapeError


def gaussian_logdensity(x):
    return -0.5 * jnp.sum(x**2)


@pytest.fixture(scope="module")
def rmh():
    return blackjax.additive_step_random_walk.normal_random_walk(gaussian_logdensity, 0.8 * jnp.ones(3))


@pytest.fixture(scope="module")
def x0():
    return jax.random.normal(jax.random.PRNGKey(42), (4, 3))


def run(alg, x0, n, **kw):
    kw.setdefault("progress", False)
    return psample.sample(alg, x0, jax.random.PRNGKey(7), n, **kw)


def test_shapes_and_fields(rmh, x0):
    trace = run(rmh, x0, 50, observables={"r2": lambda s: jnp.sum(s.position**2)})
    assert trace.positions.shape == (4, 50, 3)
    assert trace.info.is_accepted.shape == (4, 50)
    assert trace.logdensity.shape == (4, 50)
    assert trace.observables["r2"].shape == (4, 50)
    assert trace.final_state.position.shape == (4, 3)
    np.testing.assert_array_equal(trace.final_state.position, trace.positions[:, -1])
    np.testing.assert_allclose(trace.observables["r2"], np.sum(trace.positions**2, -1), rtol=1e-12)
    np.testing.assert_allclose(trace.logdensity, -0.5 * np.sum(trace.positions**2, -1), rtol=1e-12)
    assert not trace.interrupted and trace.num_steps == 50
    # The chains are different chains, not copies.
    assert not np.allclose(trace.positions[0], trace.positions[1])


@pytest.mark.parametrize("chunk_size", [1, 7, 50])
def test_same_key_same_draws_whatever_chunk_size(rmh, x0, chunk_size):
    reference = run(rmh, x0, 50)
    trace = run(rmh, x0, 50, chunk_size=chunk_size)
    np.testing.assert_array_equal(trace.positions, reference.positions)


def test_thin_and_warmup_select_the_same_steps(rmh, x0):
    every_step = run(rmh, x0, 30)
    thinned = run(rmh, x0, 10, thin=3)
    np.testing.assert_array_equal(thinned.positions, every_step.positions[:, 2::3])
    warmed = run(rmh, x0, 25, num_warmup=5)
    np.testing.assert_array_equal(warmed.positions, every_step.positions[:, 5:])
    assert warmed.num_steps == 30 and thinned.num_steps == 30


def test_samples_the_target(rmh):
    """Runner + BlackJAX RMH on N(0, I): means within 4 MCSE (ArviZ), variance near 1."""
    import arviz as az

    x0 = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    trace = run(rmh, x0, 2000, num_warmup=200)
    summary = psample.diagnostics.summary(trace, round_to="none")
    assert np.all(np.abs(summary["mean"]) < 4 * summary["mcse_mean"])
    assert np.all(np.abs(summary["sd"] - 1) < 4 * summary["mcse_sd"])
    assert np.all(summary["ess_bulk"] > 500)
    assert np.all(az.rhat(trace.positions) < 1.02)


def test_datatree_groups(rmh, x0):
    trace = run(rmh, x0, 20, observables={"r2": lambda s: jnp.sum(s.position**2)})
    tree = trace.to_datatree()
    assert set(tree.children) == {"posterior", "sample_stats", "observables"}
    assert tree["posterior"]["x"].dims == ("chain", "draw", "x_dim_0")
    assert {"lp", "is_accepted", "acceptance_rate"} <= set(tree["sample_stats"].data_vars)
    summary = psample.diagnostics.summary(trace, group="observables")
    assert list(summary.index) == ["r2"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_draws": 0}, "num_draws"),
        ({"num_draws": 10, "thin": 0}, "thin"),
        ({"num_draws": 10, "num_warmup": -1}, "num_warmup"),
        ({"num_draws": 10, "chunk_size": 0}, "chunk_size"),
        ({"num_draws": 2.5}, "num_draws"),
    ],
)
def test_invalid_run_lengths(rmh, x0, kwargs, match):
    with pytest.raises(InvalidTuningError, match=match):
        psample.sample(rmh, x0, jax.random.PRNGKey(0), **kwargs)


def test_positions_without_chain_axis_or_mismatched(rmh):
    with pytest.raises(ShapeError, match="leading chain axis"):
        psample.sample(rmh, jnp.array(1.0), jax.random.PRNGKey(0), 10)
    with pytest.raises(ShapeError, match="disagree on the number of chains"):
        psample.sample(
            blackjax.additive_step_random_walk.normal_random_walk(lambda p: -p["a"] ** 2 - p["b"] ** 2, 1.0),
            {"a": jnp.zeros(3), "b": jnp.zeros(4)},
            jax.random.PRNGKey(0),
            10,
        )


def test_positions_checked_against_target(rmh):
    target = psample.from_logdensity(gaussian_logdensity, jnp.zeros(3))
    with pytest.raises(ShapeError, match="do not match target"):
        psample.sample(rmh, jnp.zeros((4, 5)), jax.random.PRNGKey(0), 10, target=target)


def test_non_finite_initial_point_names_the_chain():
    def logdensity(x):
        return jnp.where(x[0] > 0, -jnp.sum(x**2), -jnp.inf)

    alg = blackjax.additive_step_random_walk.normal_random_walk(logdensity, 1.0)
    x0 = jnp.ones((5, 2)).at[3, 0].set(-1.0)
    with pytest.raises(InitialPointError, match=r"chain\(s\) \[3\]"):
        psample.sample(alg, x0, jax.random.PRNGKey(0), 10)


def test_nan_gradient_at_initial_point_is_caught():
    alg = blackjax.mala(lambda x: -jnp.sum(jnp.sqrt(x) ** 2), 0.1)
    x0 = jnp.zeros((2, 2))  # sqrt'(0) = inf: finite density, non-finite gradient
    with pytest.raises(InitialPointError, match="gradient"):
        psample.sample(alg, x0, jax.random.PRNGKey(0), 10)


def test_interrupt_returns_draws_so_far(rmh, x0, ctrl_c_after):
    reference = run(rmh, x0, 40)
    ctrl_c_after(2)
    trace = run(rmh, x0, 40, chunk_size=10)
    assert trace.interrupted and trace.num_draws == 20
    np.testing.assert_array_equal(trace.positions, reference.positions[:, :20])


def test_observable_must_be_callable(rmh, x0):
    with pytest.raises(TypeError, match="observable 'bad'"):
        run(rmh, x0, 5, observables={"bad": 3})


def test_chains_sharded_over_devices_match_one_device():
    """With 4 (emulated) CPU devices the chain axis is sharded and the draws are unchanged."""
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, blackjax, psample
        jax.config.update("jax_enable_x64", True)
        assert jax.local_device_count() == 4
        alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.8)
        x0 = jax.random.normal(jax.random.PRNGKey(42), (8, 3))
        sharded = psample.sample(alg, x0, jax.random.PRNGKey(7), 30, progress=False)
        assert len(sharded.final_state.position.sharding.device_set) == 4
        single = psample.sample(alg, x0, jax.random.PRNGKey(7), 30, progress=False,
                                devices=jax.local_devices()[:1])
        np.testing.assert_allclose(sharded.positions, single.positions, rtol=0, atol=1e-12)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_positions_whose_dtype_a_step_changes_are_refused_before_running(rmh):
    from psample.errors import DtypeError

    with pytest.raises(DtypeError, match=r"int32.*need floating positions"):
        psample.sample(rmh, jnp.ones((4, 3), jnp.int32), jax.random.PRNGKey(0), 5, progress=False)


def test_a_step_that_changes_the_state_dtype_is_named():
    from blackjax.base import SamplingAlgorithm

    from psample.errors import DtypeError

    class State(NamedTuple):
        position: jax.Array

    drifting = SamplingAlgorithm(lambda x: State(x), lambda key, s: (State(s.position + 0.5), None))
    with pytest.raises(DtypeError, match=r"position from int32\[4, 2\] to float"):
        psample.sample(drifting, jnp.ones((4, 2), jnp.int32), jax.random.PRNGKey(0), 5, progress=False)
