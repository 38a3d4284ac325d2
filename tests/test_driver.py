"""The chunk driver (psample/driver.py): chunk lengths, Ctrl-C, failures, open-ended runs.

The chunk function here is a counter whose steps can be slowed down by a host callback, so
the tests control how long a chunk takes and can press a real Ctrl-C (SIGINT) mid-chunk.
"""

import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample.driver
from psample.driver import concatenate, drive
from psample.errors import RunError


def counter(step_seconds: float = 0.0, fail_at: int | None = None):
    """A jitted chunk function: carry + 1 per step, recording each step's index (and carry)."""

    def slow_identity(x, index):
        if step_seconds:
            time.sleep(step_seconds)
        if fail_at is not None and int(index) == fail_at:
            raise ValueError(f"boom at step {fail_at}")
        return x

    def one(carry, index):
        carry = jax.pure_callback(slow_identity, jax.ShapeDtypeStruct((), carry.dtype), carry, index)
        carry = carry + 1
        return carry, {"index": index, "carry": carry}

    @jax.jit
    def run_chunk(carry, indices):
        return jax.lax.scan(one, carry, indices)

    return run_chunk


def run(run_chunk, stop, **kw):
    kw.setdefault("progress", False)
    return drive(run_chunk, jnp.asarray(0, jnp.int32), 0, stop, **kw)


@pytest.mark.parametrize("chunk_length", [None, 1, 7, 50])
def test_records_do_not_depend_on_chunking(chunk_length):
    result = run(counter(), 50, chunk_length=chunk_length)
    records = concatenate(result.records)
    np.testing.assert_array_equal(records["index"], np.arange(50))
    np.testing.assert_array_equal(records["carry"], np.arange(1, 51))
    assert int(result.carry) == 50 and result.num_done == 50 and not result.interrupted
    if chunk_length:
        assert [len(r["index"]) for r in result.records] == [chunk_length] * (50 // chunk_length) + (
            [50 % chunk_length] if 50 % chunk_length else []
        )


def test_unwatched_chunks_are_memory_bound_and_even():
    result = run(counter(), 1000, bytes_per_step=psample.driver.DEFAULT_CHUNK_BYTES // 300)
    assert [len(r["index"]) for r in result.records] == [250] * 4  # 4 even chunks under the 300-step cap


def test_watched_chunks_are_sized_in_time(monkeypatch):
    """A one-step probe, then chunks of about the target time (10 ms steps, 0.2 s target)."""
    monkeypatch.setattr(psample.driver, "TARGET_CHUNK_SECONDS", 0.2)
    lengths = []
    result = run(counter(step_seconds=0.01), 80, on_chunk=lambda c, r, n: lengths.append(len(r["index"])))
    assert lengths[0] == 1  # the probe
    # ~20 steps of 10 ms; a loaded host (parallel test workers) stretches the steps, never shrinks them
    assert all(2 <= n <= 20 for n in lengths[1:-1]), lengths
    assert sum(lengths) == 80 and int(result.carry) == 80


def test_on_chunk_sees_every_completed_chunk_in_order():
    seen = []
    run(counter(), 30, chunk_length=8, on_chunk=lambda carry, records, done: seen.append((int(carry), done)))
    assert seen == [(8, 8), (16, 16), (24, 24), (30, 30)]


def _press_ctrl_c_after(seconds: float):
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_real_ctrl_c_keeps_exactly_the_completed_chunks():
    done_chunks = []
    timer = _press_ctrl_c_after(1.3)
    result = run(counter(step_seconds=0.05), 200, chunk_length=10, on_chunk=lambda c, r, n: done_chunks.append(n))
    timer.join()
    assert result.interrupted
    assert result.num_done == done_chunks[-1] == 10 * len(result.records)
    assert int(result.carry) == result.num_done
    np.testing.assert_array_equal(concatenate(result.records)["index"], np.arange(result.num_done))


def test_real_ctrl_c_is_answered_without_waiting_for_the_chunk_in_flight():
    """Compute-bound chunks of about a second (no host callback: those run synchronously on CPU)."""

    @jax.jit
    def run_chunk(carry, indices):
        def one(x, i):
            x = jax.lax.fori_loop(0, 1000, lambda _, y: jnp.sin(y) @ y * 1e-3, x)
            return x, i

        return jax.lax.scan(one, carry, indices)

    pressed, timers = [], []

    def press_soon(*_):  # 0.3 s into the next chunk, once
        if not timers:
            timers.append(threading.Timer(0.3, lambda: (pressed.append(time.perf_counter()), os.kill(os.getpid(), signal.SIGINT))))
            timers[0].start()

    result = drive(run_chunk, jnp.ones((200, 200)), 0, 100, chunk_length=5, progress=False, on_chunk=press_soon)
    answered = time.perf_counter() - pressed[0]
    timers[0].join()
    assert result.interrupted and 0 < result.num_done < 100
    assert answered < 0.3, answered  # a chunk takes ~1 s; the driver polls every 2 ms


def test_ctrl_c_before_the_first_chunk_raises():
    timer = _press_ctrl_c_after(0.3)
    with pytest.raises(KeyboardInterrupt, match="before the first chunk"):
        run(counter(step_seconds=0.05), 100, chunk_length=100)
    timer.join()


def test_failure_at_run_time_keeps_what_completed():
    with pytest.raises(RunError, match="after 20 completed") as caught:
        run(counter(fail_at=25), 100, chunk_length=10)
    partial = caught.value.result
    assert partial.num_done == 20 and int(partial.carry) == 20
    np.testing.assert_array_equal(concatenate(partial.records)["index"], np.arange(20))
    assert "boom at step 25" in str(caught.value.__cause__)


def test_open_ended_runs_stop_when_done():
    """stop=None: the loop runs until until(carry); later steps are no-ops by contract."""

    @jax.jit
    def run_chunk(carry, indices):
        def one(c, i):
            c = jnp.where(c < 23, c + 1, c)
            return c, c

        return jax.lax.scan(one, carry, indices)

    result = drive(run_chunk, jnp.asarray(0), 0, None, chunk_length=5, until=lambda c: int(c) >= 23, progress=False)
    assert int(result.carry) == 23
    assert result.num_done == 25  # five chunks of five
