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
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("chains",))
        on_two = psample.sample(alg, x0, jax.random.PRNGKey(7), 30, progress=False, mesh=mesh)
        assert len(on_two.final_state.position.sharding.device_set) == 2
        np.testing.assert_allclose(on_two.positions, single.positions, rtol=0, atol=1e-12)
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


# ----------------------------------------------------------------------------- nothing drawn is lost (issue 9)


def test_a_log_density_that_raises_mid_run_keeps_the_draws_made_before(rmh, x0):
    """A host callback raising in the 5th chunk: RunError carries the first 4 chunks' draws."""
    from psample.errors import RunError

    calls, limit = [], []

    def checked(value):
        calls.append(1)
        if limit and len(calls) > limit[0]:
            raise FloatingPointError("the model's solver diverged")
        return value

    def logdensity(x):
        value = -0.5 * jnp.sum(x**2)
        return jax.pure_callback(checked, jax.ShapeDtypeStruct((), value.dtype), value, vmap_method="sequential")

    alg = blackjax.additive_step_random_walk.normal_random_walk(logdensity, 0.8 * jnp.ones(3))
    reference = run(rmh, x0, 40)
    jax.vmap(alg.init)(x0)  # the evaluations a run makes before its first step
    limit.append(len(calls) + 160)  # 4 chains x 10 draws x 1 evaluation per chunk: fails in chunk 5
    calls.clear()
    with pytest.raises(RunError, match="after 40 completed draws.*solver diverged") as caught:
        run(alg, x0, 100, chunk_size=10)
    partial = caught.value.trace
    assert partial.num_draws == 40 and isinstance(caught.value.__cause__, Exception)
    np.testing.assert_allclose(partial.positions, reference.positions, rtol=0, atol=1e-12)


def test_dropping_the_algorithm_frees_what_it_closes_over(x0):
    """The compiled-function cache lives on the algorithm, not in a global LRU cache."""
    import gc
    import weakref

    data = np.linspace(1.0, 2.0, 3)  # stands for a data set or a network's arrays
    alive = weakref.ref(data)

    def logdensity(x, data=data):
        return -0.5 * jnp.sum((x / data) ** 2)

    alg = blackjax.additive_step_random_walk.normal_random_walk(logdensity, 0.8 * jnp.ones(3))
    run(alg, x0, 10)
    del alg, logdensity, data
    gc.collect()
    assert alive() is None


def test_a_run_too_large_for_memory_is_refused_with_its_size(rmh):
    with pytest.raises(InvalidTuningError, match=r"100000 chains x 1000000 draws .* = \d.* TB"):
        psample.sample(rmh, jnp.ones((100_000, 3)), jax.random.PRNGKey(0), 1_000_000, progress=False)


def test_resume_restores_the_sharding_over_4_devices(tmp_path):
    script = textwrap.dedent(
        f"""
        import jax, jax.numpy as jnp, numpy as np, blackjax, psample
        jax.config.update("jax_enable_x64", True)
        assert jax.local_device_count() == 4
        alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.8)
        x0 = jax.random.normal(jax.random.PRNGKey(42), (8, 3))
        path = {str(tmp_path / "run.zarr")!r}
        full = psample.sample(alg, x0, jax.random.PRNGKey(7), 40, progress=False)
        first = psample.sample(alg, x0, jax.random.PRNGKey(7), 20, progress=False, checkpoint=path)
        assert len(first.final_state.position.sharding.device_set) == 4
        resumed = psample.resume(path, alg, 20, progress=False)
        assert len(resumed.final_state.position.sharding.device_set) == 4, resumed.final_state.position.sharding
        np.testing.assert_array_equal(resumed.positions, full.positions)
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_real_ctrl_c_without_a_terminal_or_checkpoint_returns_the_draws(rmh, x0, monkeypatch):
    """progress=True with stderr not a TTY (as under pytest), no checkpoint: nothing is lost.

    A real SIGINT is sent 0.2 s after the first chunk completed (the bar's first update).
    """
    import signal
    import threading

    import psample.driver

    timers = []

    class Bar:
        def __init__(self, *args):
            pass

        def update(self, _):
            if not timers:
                timers.append(threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)))
                timers[0].start()

        def close(self):
            pass

    reference = run(rmh, x0, 3000)
    monkeypatch.setattr(psample.driver, "_progress_bar", Bar)
    trace = psample.sample(rmh, x0, jax.random.PRNGKey(7), 10**7, chunk_size=1000, progress=True)
    timers[0].join()
    assert trace.interrupted and trace.num_draws % 1000 == 0 and 1000 <= trace.num_draws < 10**7
    n = min(trace.num_draws, 3000)
    np.testing.assert_array_equal(trace.positions[:, :n], reference.positions[:, :n])
