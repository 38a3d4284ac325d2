"""The chunk driver: the one Python loop every long run goes through.

A run is a jitted "run one chunk" function applied again and again to a carry (chains'
states, a particle population, network parameters). The driver knows nothing of what the
carry is. It owns what every run needs around that function:

* **the progress bar** (:mod:`psample.runtime.progress`): shown in terminals and notebooks, off
  in pipes and CI; "compiling" until the first chunk returns, then a rate and a time left that
  count from there; its last line stays. A run that only knows how far along it is (a
  temperature from 0 to 1) passes ``position`` and gets a fraction bar.
* **chunk lengths** bounded in host memory (``bytes_per_step``) and, when someone watches (a
  progress bar, an ``on_chunk`` consumer such as a checkpoint, or a person at a command line:
  :func:`interactive`), in time: the first chunk is
  one step, timed without its compilation, and the next ones are sized to take about
  :data:`TARGET_CHUNK_SECONDS` (measured again once at full speed). Ctrl-C is then answered and a
  kill loses at most a few seconds of work.
* **double buffering**: chunk ``i + 1`` is dispatched before chunk ``i`` is copied to the host,
  so the device never waits for Python, the disk or the bar.
* **Ctrl-C**: while the driver runs, SIGINT only sets a flag (a second Ctrl-C stops at once).
  The driver polls the chunk in flight, so it answers within milliseconds; every chunk that
  completed is kept and handed to ``on_chunk`` before the driver returns, so what a caller
  reports as drawn is also what its checkpoint holds. A chunk still computing is abandoned.
* **several processes** (``jax.distributed``; every process runs the same script): records
  spread over the processes are gathered at every chunk (:func:`psample.runtime.sharding.to_host`),
  so each process holds them whole, and only process 0 shows a bar. The processes must agree on
  every chunk (each is a computation over all of them), so the loop answers a Ctrl-C at a chunk
  boundary: after each chunk they share their Ctrl-C flags (:func:`psample.runtime.sharding.any_process`,
  a few bytes) and all stop when any was pressed, keeping the same chunks; timed chunk lengths
  follow process 0's clock. A second Ctrl-C stops that process at once, and the others then wait
  in their next collective until ``jax.distributed`` notices the process gone.
* **failures**: an exception raised while a chunk runs (a log-density's host callback, say) is
  re-raised as :class:`psample.errors.RunError` carrying the :class:`DriveResult` of the chunks
  that completed.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import math
import signal
import threading
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import PsampleError, RunError
from psample.runtime import sharding
from psample.runtime.progress import progress_bar, shows_progress

__all__ = ["drive", "DriveResult", "concatenate", "interactive", "is_watched", "TARGET_CHUNK_SECONDS", "DEFAULT_CHUNK_BYTES"]

#: Wall time a watched chunk should take (device work, and separately its host work: the copy
#: and ``on_chunk``, which a Ctrl-C waits for).
TARGET_CHUNK_SECONDS = 1.0
#: Host memory one chunk of records may take, in bytes.
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: How often the driver looks at the chunk in flight (and at the Ctrl-C flag), in seconds.
_POLL_SECONDS = 0.002


#: Set inside :func:`interactive`: every run sizes its chunks in time, bar or not.
_INTERACTIVE = contextvars.ContextVar("psample_interactive", default=False)


@contextlib.contextmanager
def interactive():
    """Size every run's chunks in time inside this block, even without a bar or a checkpoint.

    A command line is watched even with ``--no-progress``: a Ctrl-C must keep the work done and
    let the process exit at once. Untimed chunks are as long as memory allows (a whole warm-up,
    say), so a Ctrl-C would drop them and the process would wait for the abandoned one to finish
    before it could exit. The ``psample`` command runs inside this block.
    """
    token = _INTERACTIVE.set(True)
    try:
        yield
    finally:
        _INTERACTIVE.reset(token)


class DriveResult(NamedTuple):
    """What :func:`drive` did.

    carry
        The carry after the last completed chunk (device arrays).
    records
        Host (NumPy) pytrees, one per completed chunk, in order; ``None`` entries when the
        chunk function records nothing.
    num_done
        Steps completed, counted from ``start``.
    interrupted
        ``True`` if Ctrl-C stopped the loop; everything completed before it is kept.
    """

    carry: Any
    records: list
    num_done: int
    interrupted: bool


def concatenate(records: list, axis: int = 0):
    """Concatenate the chunks' host records along the step axis."""
    if len(records) == 1:
        return records[0]
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *records)


_shows_progress = shows_progress
#: The bar factory (tests replace it with a bar that presses Ctrl-C at a chosen update).
_progress_bar = progress_bar


class _InterruptFlag:
    """Turn SIGINT into a flag for the duration of a ``with`` block (main thread only).

    A second SIGINT while the flag is set raises ``KeyboardInterrupt`` at once, so a user can
    always force a stop. Outside the main thread signals cannot be caught; Ctrl-C then arrives
    as ``KeyboardInterrupt`` wherever Python happens to be, and the driver handles that too.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class _Chunk(NamedTuple):
    carry: Any
    records: Any
    first: int
    length: int


def _is_ready(tree) -> bool:
    return all(leaf.is_ready() for leaf in jax.tree.leaves(tree) if hasattr(leaf, "is_ready"))


class _ChunkPlanner:
    """Chooses chunk lengths: fixed, memory-bound, or memory- and time-bound.

    Timed chunks start from a one-step probe and are then resized (at most
    :data:`_MAX_RESIZES` times, each costing a compilation) from what regular chunks really
    cost: the wall time between two completions (device work and host work overlap under
    double buffering) and the host work alone (the copy and ``on_chunk``, e.g. a checkpoint
    append, which a Ctrl-C has to wait for).
    """

    def __init__(self, chunk_length, bytes_per_step: int, timed: bool):
        self.fixed = chunk_length
        self.cap = max(1, DEFAULT_CHUNK_BYTES // bytes_per_step) if bytes_per_step > 0 else None
        self.timed = timed and chunk_length is None
        self.length = None  # the current regular length, once known
        self.resizes = 0
        self.completions = []  # completion times of chunks of the current length

    def next_length(self, remaining: int | None) -> int:
        if self.fixed is not None:
            length = self.fixed
        elif self.timed and self.length is None:
            length = 1  # the probe
        elif self.length is not None:
            length = self.length
        else:  # untimed: as large as memory allows, in even chunks
            cap = self.cap if self.cap is not None else remaining
            if cap is None:
                raise ValueError("an open-ended run (stop=None) needs chunk_length or bytes_per_step")
            length = cap if remaining is None else _even(remaining, cap)
            self.length = length
        return length if remaining is None else max(1, min(length, remaining))

    def observe_probe(self, seconds: float, remaining: int | None) -> None:
        self.length = self._clamp(TARGET_CHUNK_SECONDS / max(seconds, 1e-6), remaining)

    def observe_completion(self, length: int, now: float, host_seconds: float, remaining: int | None) -> None:
        if not self.timed or length != self.length or self.resizes >= _MAX_RESIZES:
            return
        self.completions.append(now)
        per_step = host_seconds / length
        if len(self.completions) >= 2:  # the first one's interval includes its compilation
            per_step = max(per_step, (self.completions[-1] - self.completions[-2]) / length)
        wanted = TARGET_CHUNK_SECONDS / max(per_step, 1e-9)
        too_long = wanted < self.length / 1.5
        too_short = len(self.completions) >= 2 and wanted > 2 * self.length and (self.cap is None or self.length < self.cap)
        if too_long or too_short:
            self.length = self._clamp(wanted, remaining)
            self.resizes += 1
            self.completions = []

    def _clamp(self, length: float, remaining: int | None) -> int:
        length = max(1, int(length))
        if self.cap is not None:
            length = min(length, self.cap)
        return length if not remaining else _even(remaining, length)


#: Timed chunks are resized at most this many times (each new length compiles once).
_MAX_RESIZES = 3


def _even(remaining: int, cap: int) -> int:
    """The length that splits ``remaining`` into the fewest chunks of at most ``cap``, evenly."""
    return math.ceil(remaining / math.ceil(remaining / max(1, cap)))


def _timed_call(run_chunk, carry, indices):
    """Call ``run_chunk`` once and return ``(outputs, seconds)``, compilation excluded when possible."""
    if hasattr(run_chunk, "lower"):
        run_chunk = run_chunk.lower(carry, indices).compile()
    start = time.perf_counter()
    outputs = run_chunk(carry, indices)
    jax.block_until_ready(outputs)
    return outputs, time.perf_counter() - start


def is_watched(progress: bool, on_chunk=None) -> bool:
    """Whether a run's chunks are sized in time (someone watches: a bar, a checkpoint, Ctrl-C).

    Unwatched runs get chunks sized by memory alone. Under several processes the answer is the
    same everywhere (any process watching), since chunk lengths must agree.
    """
    watched = _shows_progress(progress) or on_chunk is not None or _INTERACTIVE.get()
    if sharding.is_multiprocess():
        watched = sharding.any_process(watched)[0]
    return bool(watched)


def drive(
    run_chunk: Callable,
    carry,
    start: int,
    stop: int | None,
    *,
    chunk_length: int | None = None,
    bytes_per_step: int = 0,
    until: Callable | None = None,
    progress: bool = True,
    desc: str = "sampling",
    unit: str = "step",
    on_chunk: Callable | None = None,
    postfix: Callable | None = None,
    position: Callable | None = None,
    total: float | None = None,
) -> DriveResult:
    """Apply ``run_chunk`` chunk after chunk from step ``start`` to ``stop``.

    Parameters
    ----------
    run_chunk
        ``run_chunk(carry, indices) -> (carry, records)``, normally ``jax.jit``-ed. ``indices``
        is ``jnp.arange(first, first + length, dtype=int32)``, the global indices of the
        chunk's steps (so results can depend on the index, never on the chunking); ``records``
        (may be ``None``) is what the chunk recorded, its leaves with a step axis (see
        :func:`concatenate`).
    carry
        The initial carry (a pytree of device arrays).
    start, stop
        Global step indices; ``stop=None`` runs until ``until(carry)`` is true.
    chunk_length
        Steps per chunk. Default: bounded by :data:`DEFAULT_CHUNK_BYTES` of records
        (``bytes_per_step`` bytes a step) and, when a bar is shown, ``on_chunk`` is given or
        inside :func:`interactive`, by time (about :data:`TARGET_CHUNK_SECONDS` a chunk).
    bytes_per_step
        Host bytes one step records (all of ``records``' leaves).
    until
        ``until(carry) -> bool``, checked on the host after every chunk; the loop stops when it
        is true (chunks dispatched after that are dropped). With ``stop=None``, ``run_chunk``
        must leave the carry unchanged after it is done.
    progress, desc, unit
        A progress bar (:mod:`psample.runtime.progress`: shown in a terminal or a notebook, off
        in pipes) with this description and unit.
    on_chunk
        ``on_chunk(carry, records, num_done)`` after each chunk is on the host (a checkpoint
        append); Ctrl-C never interrupts it.
    postfix
        ``postfix(records) -> dict`` shown on the bar after each chunk (e.g. a loss).
    position, total
        ``position(carry, records) -> number``: how far the run has come after a chunk, shown
        instead of the steps run; with ``total`` (e.g. ``1.0``) a fraction bar (the temperature
        reached, say), without it a count with no end (the steps that did something, say).
        Default: the steps run, out of ``stop - start``.

    Returns
    -------
    DriveResult

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C before the first chunk completed (nothing to return).
    RunError
        If a chunk fails while it runs; ``error.result`` holds the chunks completed before.
    """
    if stop is None and until is None:
        raise ValueError("drive needs stop or until")
    watched = is_watched(progress, on_chunk)
    multiprocess = sharding.is_multiprocess()
    clock_start = time.perf_counter()
    planner = _ChunkPlanner(chunk_length, bytes_per_step, timed=watched)
    if position is None:
        bar = _progress_bar(None if stop is None else stop - start, progress, desc, unit)
    else:
        bar = _progress_bar(total, progress, desc, unit, fraction=total is not None)
    shown = 0  # the bar's position, with ``position``
    leave_out = getattr(bar, "leave_out", lambda seconds: None)
    compiled_lengths: set = set()
    records_out: list = []
    done, launched, launched_carry = start, start, carry
    in_flight: collections.deque = collections.deque()
    interrupted = finished = False
    agreed_stop = False  # several processes: a Ctrl-C flag shared at the last chunk boundary

    def remaining_from(step):
        return None if stop is None else stop - step

    def result():
        return DriveResult(carry, records_out, done - start, interrupted)

    def stop_requested() -> bool:
        return agreed_stop if multiprocess else flag.requested

    def complete(chunk: _Chunk) -> None:
        nonlocal carry, done, finished, shown, agreed_stop
        host_start = time.perf_counter()
        records = sharding.to_host(chunk.records)
        carry, done = chunk.carry, chunk.first + chunk.length
        records_out.append(records)
        if on_chunk is not None:
            on_chunk(carry, records, done - start)
        now = time.perf_counter()
        host_seconds = now - host_start
        if multiprocess:  # every process stops after the same chunk, sized by process 0's clock
            agreed_stop, (elapsed, host_seconds) = sharding.any_process(
                flag.requested, (now - clock_start, host_seconds)
            )
            now = clock_start + elapsed
        planner.observe_completion(chunk.length, now, host_seconds, remaining_from(done))
        if postfix is not None and records is not None:
            bar.set_postfix(postfix(records), refresh=False)
        if position is None:
            bar.update(chunk.length)
        else:
            reached = position(carry, records)
            bar.update(reached - shown)
            shown = reached
        if until is not None and bool(until(carry)):
            finished = True

    def drain_ready() -> None:
        """Keep every in-flight chunk that already finished, in order; abandon the rest."""
        try:
            while in_flight and _is_ready((in_flight[0].carry, in_flight[0].records)):
                chunk = in_flight.popleft()
                complete(chunk)
        except Exception:  # a chunk that failed: what completed before it is kept
            pass

    with _InterruptFlag() as flag:
        try:
            while not finished and (stop is None or done < stop):
                # Dispatch up to two chunks (the probe alone: its timing must be clean).
                while len(in_flight) < 2 and (stop is None or launched < stop) and not stop_requested():
                    length = planner.next_length(remaining_from(launched))
                    began = time.perf_counter()
                    indices = jnp.arange(launched, launched + length, dtype=jnp.int32)
                    probe = planner.timed and planner.length is None
                    if probe:
                        (launched_carry, records), seconds = _timed_call(run_chunk, launched_carry, indices)
                        if multiprocess:
                            seconds = sharding.any_process(False, (seconds,))[1][0]
                        planner.observe_probe(seconds / length, remaining_from(launched + length))
                    else:
                        launched_carry, records = run_chunk(launched_carry, indices)
                        if length not in compiled_lengths:  # compiled as it was dispatched: not in the bar's rate
                            leave_out(time.perf_counter() - began)
                            compiled_lengths.add(length)
                    in_flight.append(_Chunk(launched_carry, records, launched, length))
                    launched += length
                    if probe:
                        break
                if stop_requested() or not in_flight:
                    break
                chunk = in_flight[0]
                while not _is_ready((chunk.carry, chunk.records)) and not (flag.requested and not multiprocess):
                    time.sleep(_POLL_SECONDS)
                if stop_requested():
                    break
                in_flight.popleft()
                complete(chunk)
        except KeyboardInterrupt:  # a second Ctrl-C (or one outside the main thread): stop now
            interrupted = True
            in_flight.clear()
        except PsampleError:
            bar.close()
            raise
        except Exception as exc:
            if not multiprocess:  # keeping more chunks would need the other processes to agree
                drain_ready()
            bar.close()
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise RunError(
                f"the run failed after {done - start} completed {unit}s ({type(exc).__name__}: "
                f"{lines[-1].strip() if lines else ''}); what completed is kept (error.result)",
                result=result(),
            ) from exc
        if stop_requested():
            interrupted = True
            if not multiprocess:
                drain_ready()
    bar.close()
    if interrupted and done == start:
        raise KeyboardInterrupt("interrupted before the first chunk completed: nothing to return")
    return result()
