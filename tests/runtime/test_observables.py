"""The runner's observables: block-averaged time averages of any chain (psample.runtime.observables)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.base import SamplingAlgorithm

from psample.errors import InvalidTuningError
from psample.runtime.observables import block_averaged, time_averages


def test_block_averaged_means_every_step():
    """One wrapped step = block_size chain steps; block means average every one of them."""
    from blackjax.base import SamplingAlgorithm

    class CounterState(NamedTuple):
        position: jax.Array

    # A deterministic "chain" x -> x + 1 mod 5, so the block means are known exactly.
    counter = SamplingAlgorithm(lambda x, rng_key=None: CounterState(jnp.asarray(x)),
                                lambda key, s: (CounterState((s.position + 1) % 5), s.position))
    wrapped = block_averaged(counter, {"first": lambda s: s.position[0],
                                       "pair": lambda s: s.position * 2}, block_size=7)
    step = jax.jit(wrapped.step)
    state = wrapped.init(jnp.array([0, 2]))
    state, info = step(jax.random.PRNGKey(0), state)
    assert float(state.block_means["first"]) == pytest.approx((1 + 2 + 3 + 4 + 0 + 1 + 2) / 7)
    np.testing.assert_array_equal(state.position, [2, 4])
    np.testing.assert_array_equal(info, [1, 3])  # the Info of the block's last step
    state, _ = step(jax.random.PRNGKey(1), state)
    assert float(state.block_means["first"]) == pytest.approx((3 + 4 + 0 + 1 + 2 + 3 + 4) / 7)
    np.testing.assert_allclose(state.block_means["pair"], [2 * 17 / 7, 2 * (0 + 1 + 2 + 3 + 4 + 0 + 1) / 7])
    with pytest.raises(InvalidTuningError, match="block_size"):
        block_averaged(counter, {}, block_size=0)


class CounterState(NamedTuple):
    position: jax.Array


#: A deterministic non-graph chain x -> x + 1 mod 7 (one object: its compiled chunks are shared).
COUNTER = SamplingAlgorithm(lambda x, rng_key=None: CounterState(jnp.asarray(x)),
                            lambda key, s: (CounterState((s.position + 1) % 7), s.position))
COUNTER_STARTS = jnp.array([[0], [3], [5]])


def _check_counter_run(run):
    """num_warmup = 3 steps is one warm-up block of 5, then 2 blocks: each chain's average is over
    steps 6..15 exactly."""
    expected = [np.mean([(x0 + t) % 7 for t in range(6, 16)]) for x0 in (0, 3, 5)]
    np.testing.assert_allclose(run.chain_means["x"], expected)
    assert run.num_steps == 10 and run.trace.observables["x"].shape == (3, 2)
    np.testing.assert_array_equal(run.trace.positions[:, -1, 0], [(x0 + 15) % 7 for x0 in (0, 3, 5)])


def test_time_averages_run_any_sampler_with_num_warmup_as_warm_up():
    run = time_averages(COUNTER, COUNTER_STARTS, jax.random.PRNGKey(0), 10, {"x": lambda s: s.position[0]},
                        num_warmup=3, block_size=5, progress=False)
    _check_counter_run(run)
    run = time_averages(COUNTER, COUNTER_STARTS, jax.random.PRNGKey(0), num_draws=10,
                        observables={"x": lambda s: s.position[0]}, num_warmup=3, block_size=5)
    _check_counter_run(run)  # progress=True by default: shown only where someone watches


def test_time_averages_old_keywords_warn_and_give_the_same_run():
    """burn_in and num_steps (the chain length) work for one release, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match=r"burn_in=.*num_warmup="):
        run = time_averages(COUNTER, COUNTER_STARTS, jax.random.PRNGKey(0), 10, {"x": lambda s: s.position[0]},
                            burn_in=3, block_size=5, progress=False)
    _check_counter_run(run)
    with pytest.warns(DeprecationWarning, match=r"num_steps=.*num_draws=") as caught:
        run = time_averages(COUNTER, COUNTER_STARTS, jax.random.PRNGKey(0), num_steps=10,
                            observables={"x": lambda s: s.position[0]}, burn_in=3, block_size=5, progress=False)
    assert {w.filename for w in caught} == {__file__}  # points at the caller's line
    _check_counter_run(run)
    with pytest.raises(TypeError, match=r"both burn_in= \(deprecated\) and num_warmup="):
        time_averages(COUNTER, COUNTER_STARTS, jax.random.PRNGKey(0), 10, {}, num_warmup=2, burn_in=3)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        time_averages(COUNTER, COUNTER_STARTS, jax.random.PRNGKey(0), 10)
