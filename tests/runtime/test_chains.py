"""The runner: chunking, thinning, warm-up, observables, validation, interrupts, devices."""

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


#: One observables dict for every run that records one: the compiled chunks are shared.
R2 = {"r2": lambda s: jnp.sum(s.position**2)}


@pytest.fixture(scope="module")
def long_run(rmh, x0):
    """4 chains x 4,000 draws of ``rmh`` with key 7, and the warnings its run raised.

    Every shorter run with the same key and no warm-up or thinning is a prefix of it (draws
    depend on the step index alone), so tests compare against slices of this one run.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = run(rmh, x0, 4000)
    return trace, caught


@pytest.fixture(scope="module")
def reference(long_run):
    """The draws ``(chain, draw, 3)`` of :func:`long_run`."""
    return long_run[0].positions


@pytest.fixture(scope="module")
def with_r2(rmh, x0):
    return run(rmh, x0, 50, observables=R2)


def test_shapes_and_fields(with_r2, reference):
    trace = with_r2
    assert trace.positions.shape == (4, 50, 3)
    assert trace.info.is_accepted.shape == (4, 50)
    assert trace.logdensity.shape == (4, 50)
    assert trace.observables["r2"].shape == (4, 50)
    assert trace.final_state.position.shape == (4, 3)
    np.testing.assert_array_equal(trace.final_state.position, trace.positions[:, -1])
    np.testing.assert_allclose(trace.observables["r2"], np.sum(trace.positions**2, -1), rtol=1e-12)
    np.testing.assert_allclose(trace.logdensity, -0.5 * np.sum(trace.positions**2, -1), rtol=1e-12)
    assert not trace.interrupted and trace.num_steps == 50
    # The chains are different chains, not copies; observables change nothing.
    assert not np.allclose(trace.positions[0], trace.positions[1])
    np.testing.assert_array_equal(trace.positions, reference[:, :50])


@pytest.mark.parametrize("chunk_size", [1, 7, 50])
def test_same_key_same_draws_whatever_chunk_size(rmh, x0, reference, chunk_size):
    trace = run(rmh, x0, 50, chunk_size=chunk_size)
    np.testing.assert_array_equal(trace.positions, reference[:, :50])


def test_thin_and_warmup_select_the_same_steps(rmh, x0, reference):
    every_step = reference[:, :30]
    thinned = run(rmh, x0, 10, thin=3)
    np.testing.assert_array_equal(thinned.positions, every_step[:, 2::3])
    warmed = run(rmh, x0, 25, num_warmup=5)
    np.testing.assert_array_equal(warmed.positions, every_step[:, 5:])
    assert warmed.num_steps == 30 and thinned.num_steps == 30


@pytest.mark.slow
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


def test_datatree_groups(with_r2):
    trace = with_r2
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


def test_interrupt_returns_draws_so_far(rmh, x0, reference, ctrl_c_after):
    ctrl_c_after(2)
    trace = run(rmh, x0, 40, chunk_size=10)
    assert trace.interrupted and trace.num_draws == 20
    np.testing.assert_array_equal(trace.positions, reference[:, :20])


def test_observable_must_be_callable(rmh, x0):
    with pytest.raises(TypeError, match="observable 'bad'"):
        run(rmh, x0, 5, observables={"bad": 3})


@pytest.mark.heavy
def test_chains_sharded_over_devices_match_one_device(four_devices):
    """With 4 (emulated) CPU devices the chain axis is sharded and the draws are unchanged."""
    four_devices.assert_passed("sharded")


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


def test_a_log_density_that_raises_mid_run_keeps_the_draws_made_before(rmh, x0, reference):
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
    jax.vmap(alg.init)(x0)  # the evaluations a run makes before its first step
    limit.append(len(calls) + 160)  # 4 chains x 10 draws x 1 evaluation per chunk: fails in chunk 5
    calls.clear()
    with pytest.raises(RunError, match="after 40 completed draws.*solver diverged") as caught:
        run(alg, x0, 100, chunk_size=10)
    partial = caught.value.trace
    assert partial.num_draws == 40 and isinstance(caught.value.__cause__, Exception)
    np.testing.assert_allclose(partial.positions, reference[:, :40], rtol=0, atol=1e-12)


def test_a_dropped_algorithm_is_freed_once_it_leaves_the_bounded_cache(x0, monkeypatch):
    """The runtime keeps the compiled functions of the MAX_ALGORITHMS most recently run
    algorithms (psample.runtime.compiled), never more: once an algorithm the user dropped is
    pushed out by others, what its functions close over is freed."""
    import collections
    import gc
    import weakref

    from psample.runtime import compiled

    # Work on a copy of the cache, so the other tests' compiled algorithms stay cached.
    monkeypatch.setattr(compiled, "_by_owner", collections.OrderedDict(compiled._by_owner))
    data = np.linspace(1.0, 2.0, 3)  # stands for a data set or a network's arrays
    alive = weakref.ref(data)

    def logdensity(x, data=data):
        return -0.5 * jnp.sum((x / data) ** 2)

    alg = blackjax.additive_step_random_walk.normal_random_walk(logdensity, 0.8 * jnp.ones(3))
    run(alg, x0, 10)
    del alg, logdensity, data
    gc.collect()
    assert alive() is not None  # still cached: it may run again
    others = [lambda: None for _ in range(compiled.MAX_ALGORITHMS)]  # algorithms run after it
    for owner in others:
        compiled.cached(owner, "chunks", lambda: None)
    gc.collect()
    assert alive() is None
    assert len(compiled._by_owner) == compiled.MAX_ALGORITHMS


def test_a_run_too_large_for_memory_is_refused_with_its_size(rmh):
    with pytest.raises(InvalidTuningError, match=r"100000 chains x 1000000 draws .* = \d.* TB"):
        psample.sample(rmh, jnp.ones((100_000, 3)), jax.random.PRNGKey(0), 1_000_000, progress=False)


# Not heavy: the fast suite's 4-device subprocess (tests/runtime/four_devices.py) runs this check
# for the fast test_chains_sharded_over_devices_match_one_device anyway.
def test_resume_restores_the_sharding_over_4_devices(four_devices):
    """A checkpointed run resumes on the same 4 devices, bit for bit."""
    four_devices.assert_passed("resume")


def test_real_ctrl_c_without_a_terminal_or_checkpoint_returns_the_draws(rmh, x0, reference, sigint_at_update):
    """progress=True with stderr not a TTY (as under pytest), no checkpoint: nothing is lost.

    A real SIGINT arrives as the first chunk completes (the bar's first update).
    """
    sigint_at_update(1)
    trace = psample.sample(rmh, x0, jax.random.PRNGKey(7), 10**7, chunk_size=1000, progress=True,
                           compute_convergence_checks=False)
    # The chunk dispatched behind the first may have finished too, and is then kept.
    assert trace.interrupted and trace.num_draws in (1000, 2000)
    np.testing.assert_array_equal(trace.positions, reference[:, : trace.num_draws])


# ----------------------------------------------------------------------------- the end of a run (issue 23)


def test_a_run_that_has_not_mixed_warns_once_with_arviz_numbers(x0):
    """Random-walk steps of 0.05 from starts ~3 apart: after 200 draws the chains are nowhere
    near each other (R-hat ~3, ESS ~5); the warning names every component and ArviZ's values."""
    import arviz as az

    from psample.errors import ConvergenceWarning

    sticky = blackjax.additive_step_random_walk.normal_random_walk(gaussian_logdensity, 0.05 * jnp.ones(3))
    with pytest.warns(ConvergenceWarning) as caught:
        trace = run(sticky, 3 * x0, 200)
    assert len([w for w in caught if w.category is ConvergenceWarning]) == 1
    message = str(caught[0].message)
    rhat = np.asarray(az.rhat(trace.positions, chain_axis=0, draw_axis=1))
    for i in range(3):
        assert f"x[{i}] {rhat[i]:.3g}" in message  # ArviZ's own R-hat, as printed
    assert "R-hat > 1.01" in message and "bulk ESS < 400" in message and "num_draws" in message
    assert caught[0].filename == __file__  # points at the caller's line


def test_a_run_that_has_mixed_does_not_warn_and_the_check_can_be_switched_off(rmh, x0, long_run):
    import warnings

    from psample.errors import ConvergenceWarning

    # ESS ~1,500 per component for 4 x 4,000 draws: far above 400
    assert not [w for w in long_run[1] if issubclass(w.category, ConvergenceWarning)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        run(rmh, 3 * x0, 20, compute_convergence_checks=False)


def test_many_short_mixed_chains_do_not_warn():
    """512 chains x 60 independent draws (independence sampler proposing from the target
    itself: every draw exact and independent): ESS about 30,000 in all, R-hat 1 up to noise of
    about 0.002, but only 60 per chain; 100 per chain would warn however well they mix."""
    import warnings

    from psample.errors import ConvergenceWarning

    # BlackJAX's transition energy adds proposal_logdensity_fn(new, prev): log q(prev) makes
    # the ratio p(x') q(x) / (p(x) q(x')) = 1 here, so every proposal is accepted.
    exact = blackjax.irmh(gaussian_logdensity, lambda key: jax.random.normal(key, (3,)),
                          lambda new, prev: gaussian_logdensity(prev.position))  # fmt: skip
    x0 = jax.random.normal(jax.random.PRNGKey(3), (512, 3))  # the target is N(0, I)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        run(exact, x0, 60)


def test_an_interrupted_run_is_checked_and_says_so(rmh, x0, ctrl_c_after):
    from psample.errors import ConvergenceWarning

    ctrl_c_after(2)
    with pytest.warns(ConvergenceWarning, match=r"4 chains x 20 draws \(interrupted\)"):
        trace = run(rmh, x0, 40, chunk_size=10)
    assert trace.interrupted


def test_a_long_run_is_checked_on_every_kth_draw(monkeypatch, x0):
    """The check reads at most CHECK_VALUES values (at least 1,000 draws per chain)."""
    import psample.diagnostics
    from psample.errors import ConvergenceWarning

    trace = psample.Trace(positions=np.cumsum(np.ones((4, 5000, 3)), axis=1) * np.arange(1, 5)[:, None, None],
                          info=None, logdensity=None, observables={}, final_state=None)
    thin, step = psample.diagnostics.thinned(trace, 4 * 3 * 1000)
    assert step == 5 and thin.num_draws == 1000
    np.testing.assert_array_equal(thin.positions[:, -1], trace.positions[:, -1])  # the last draw is kept
    seen = []
    original = psample.diagnostics.thinned
    monkeypatch.setattr(psample.diagnostics, "thinned", lambda t, n: seen.append(n) or original(t, n))
    with pytest.warns(ConvergenceWarning, match="checked on every 5th draw"):
        psample.diagnostics.check_convergence(trace, advice="", max_values=1000)
    assert seen == [4 * 3 * 1000]  # the floor of 1,000 draws per chain


def test_non_finite_log_densities_are_reported_as_nan_or_inf(x0):
    """The warning counts the evaluations that returned NaN or +inf (info.num_nonfinite)."""
    from blackjax.base import SamplingAlgorithm

    from psample.errors import NumericalWarning

    class State(NamedTuple):
        position: jax.Array
        logdensity: jax.Array

    class Info(NamedTuple):
        num_nonfinite: jax.Array

    def step(key, state):  # a random walk whose every other step met two +inf evaluations
        position = state.position + 0.5 * jax.random.normal(key, state.position.shape)
        odd = (jax.random.uniform(key) < 0.5).astype(jnp.int32)
        return State(position, gaussian_logdensity(position)), Info(2 * odd)

    walk = SamplingAlgorithm(lambda x: State(x, gaussian_logdensity(x)), step)
    with pytest.warns(NumericalWarning, match=r"returned NaN or \+inf (\d+) time\(s\)") as caught:
        trace = run(walk, x0, 50, compute_convergence_checks=False)
    count = int(np.asarray(trace.info.num_nonfinite).sum())
    assert count > 0 and f"NaN or +inf {count} time(s), in {count // 2} recorded step(s)" in str(caught[0].message)
