"""The chunk driver (psample/driver.py): chunk lengths, Ctrl-C, failures, open-ended runs.

The chunk function here is a counter whose steps can be slowed down by a host callback. Ctrl-C
is pressed deterministically, never on a timer: a real SIGINT sent from inside the run at a
chosen chunk (``os.kill`` of the own process runs the handler before it returns), and the
readiness of the chunk in flight is decided by the test (``psample.runtime.driver._is_ready``).
"""

import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample.runtime.driver
from psample.runtime.driver import concatenate, drive
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
    result = run(counter(), 1000, bytes_per_step=psample.runtime.driver.DEFAULT_CHUNK_BYTES // 300)
    assert [len(r["index"]) for r in result.records] == [250] * 4  # 4 even chunks under the 300-step cap


def test_watched_chunks_are_sized_in_time(monkeypatch):
    """A one-step probe, then chunks of about the target time (10 ms steps, 0.2 s target)."""
    monkeypatch.setattr(psample.runtime.driver, "TARGET_CHUNK_SECONDS", 0.2)
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


def _press_ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)  # the handler has run when this returns


def test_real_ctrl_c_keeps_exactly_the_completed_chunks():
    """SIGINT while the 3rd chunk completes: every chunk on the host is kept, in order."""
    done_chunks = []

    def on_chunk(carry, records, num_done):
        done_chunks.append(num_done)
        if len(done_chunks) == 3:
            _press_ctrl_c()

    result = run(counter(), 200, chunk_length=10, on_chunk=on_chunk)
    assert result.interrupted
    # The chunk already dispatched behind the 3rd may have finished too, and is then kept.
    assert result.num_done == done_chunks[-1] == 10 * len(result.records) and 30 <= result.num_done <= 40
    assert int(result.carry) == result.num_done
    np.testing.assert_array_equal(concatenate(result.records)["index"], np.arange(result.num_done))


def _chunks_that_never_finish_after(monkeypatch, completed: list, after: int):
    """Patch the driver's readiness test: once ``after`` chunks completed, the chunk in flight
    never finishes, and the first look at it presses Ctrl-C. Returns the looks after the press
    (a driver that waited for the chunk would look again and again; after 1,000 looks the
    chunk is let through so that such a driver fails the test instead of hanging)."""
    looks = []

    def is_ready(tree):
        if len(completed) < after:
            jax.block_until_ready(tree)
            return True
        looks.append(1)
        if len(looks) == 1:
            _press_ctrl_c()
        if len(looks) > 1000:
            jax.block_until_ready(tree)
            return True
        return False

    monkeypatch.setattr(psample.runtime.driver, "_is_ready", is_ready)
    return looks


def test_real_ctrl_c_is_answered_without_waiting_for_the_chunk_in_flight(monkeypatch):
    completed = []
    looks = _chunks_that_never_finish_after(monkeypatch, completed, after=2)
    result = run(counter(), 100, chunk_length=5, on_chunk=lambda c, r, n: completed.append(n))
    assert result.interrupted and result.num_done == 10 and completed == [5, 10]
    assert len(looks) <= 2, len(looks)  # the press, and the last look for finished chunks


def test_ctrl_c_before_the_first_chunk_raises(monkeypatch):
    _chunks_that_never_finish_after(monkeypatch, [], after=0)
    with pytest.raises(KeyboardInterrupt, match="before the first chunk"):
        run(counter(), 100, chunk_length=100)


def test_interactive_runs_size_chunks_in_time_without_a_bar(monkeypatch):
    """Inside interactive() (the command line, --no-progress included) a run nobody watches
    still starts with the one-step probe and continues in chunks of about the target time,
    so a Ctrl-C keeps what was done instead of dropping one chunk as long as the whole run."""
    monkeypatch.setattr(psample.runtime.driver, "TARGET_CHUNK_SECONDS", 0.2)
    with psample.runtime.driver.interactive():
        result = run(counter(step_seconds=0.01), 80)
    lengths = [len(r["index"]) for r in result.records]
    assert lengths[0] == 1 and sum(lengths) == 80 and len(lengths) > 2, lengths
    untimed = run(counter(step_seconds=0.01), 80)  # outside: one chunk, as memory allows
    assert [len(r["index"]) for r in untimed.records] == [80]


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
