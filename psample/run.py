"""The runner: many chains of any ``SamplingAlgorithm``, in jitted chunks, interrupt-safe.

Chains are ``jax.vmap``-ed over the leading axis of the initial positions (and placed over
several devices with a ``NamedSharding`` when more than one is used); steps run in one
jitted ``lax.scan`` per chunk of draws. The only Python loop is over chunks: it moves each
chunk to the host, updates the progress bar and appends the chunk to the checkpoint.

Randomness is a function of the step index alone (``fold_in(rng_key, step)``, then one key
per chain), so the same key gives the same draws whatever the chunk size, and a resumed run
continues bit for bit.
"""

from __future__ import annotations

import collections
import functools
import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psample.errors import InitialPointError, InvalidTuningError, ShapeError, check_positive_int
from psample.trace import Trace, concatenate_draws

__all__ = ["sample", "resume", "RunPlan"]

#: Host memory one chunk of recorded draws may take, in bytes.
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: At least this many chunks when someone watches (a progress bar on a terminal) or a checkpoint
#: is written, so the bar moves, Ctrl-C is answered and a crash loses little. Unwatched runs
#: take chunks as large as memory allows: each chunk costs a host copy and a dispatch.
MIN_NUM_CHUNKS = 10


@dataclass(frozen=True)
class RunPlan:
    """Static description of a run: what the checkpoint stores to resume it."""

    num_chains: int
    num_warmup: int
    thin: int
    num_draws: int
    chunk_size: int

    def step_index(self, draw: int) -> int:
        """Global index of the first sampler step of kept draw ``draw``."""
        return self.num_warmup + draw * self.thin


def _state_position(state):
    """The position recorded per draw: ``state.position`` (the BlackJAX convention)."""
    if hasattr(state, "position"):
        return state.position
    return state[0]


def _state_logdensity(state):
    return getattr(state, "logdensity", None)


def _validate_positions(initial_positions) -> int:
    leaves = jax.tree.leaves(initial_positions)
    if not leaves:
        raise ShapeError("initial_positions is empty: pass a pytree of arrays with a leading chain axis")
    shapes = [np.shape(leaf) for leaf in leaves]
    if any(len(s) == 0 for s in shapes):
        raise ShapeError(
            f"initial_positions has a scalar leaf (shapes {shapes}): every leaf needs a leading "
            "chain axis, e.g. x0[None] for one chain or target.initial_positions(key, num_chains)"
        )
    num_chains = {s[0] for s in shapes}
    if len(num_chains) != 1:
        raise ShapeError(
            f"initial_positions leaves disagree on the number of chains (leading axis): shapes {shapes}"
        )
    (num_chains,) = num_chains
    if num_chains < 1:
        raise ShapeError("initial_positions has a chain axis of length 0: at least one chain is needed")
    return num_chains


def _check_target_shapes(initial_positions, target) -> None:
    expected = jax.eval_shape(lambda k: target.initial_positions(k, 1), jax.random.PRNGKey(0))
    got = jax.tree.map(lambda x: np.shape(x)[1:], initial_positions)
    want = jax.tree.map(lambda x: x.shape[1:], expected)
    if jax.tree.structure(got) != jax.tree.structure(want) or jax.tree.leaves(got) != jax.tree.leaves(want):
        raise ShapeError(
            f"initial_positions do not match target {target.name!r}: per-chain shapes {got}, "
            f"expected {want} (with a leading chain axis)"
        )


def _check_initial_states(states) -> None:
    logdensity = _state_logdensity(states)
    if logdensity is not None:
        values = np.asarray(logdensity)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise InitialPointError(
                f"the log-density is not finite at the initial point of chain(s) {bad.tolist()} "
                f"(values {values[bad].tolist()}); start those chains inside the support"
            )
    grad = getattr(states, "logdensity_grad", None)
    if grad is not None:
        flat = np.stack([np.asarray(g).reshape(g.shape[0], -1).sum(-1) for g in jax.tree.leaves(grad)], -1)
        bad = np.flatnonzero(~np.all(np.isfinite(flat), axis=-1))
        if bad.size:
            raise InitialPointError(
                f"the gradient of the log-density is not finite at the initial point of chain(s) {bad.tolist()}"
            )


def _choose_chunk_size(record_shapes, num_draws: int, chunk_bytes: int, watched: bool) -> int:
    bytes_per_draw = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(record_shapes))
    cap = min(num_draws, max(1, chunk_bytes // max(1, bytes_per_draw)))
    if watched:
        cap = min(cap, max(1, math.ceil(num_draws / MIN_NUM_CHUNKS)))
    # Even chunks: the scan compiles once (twice if the last chunk is shorter).
    return math.ceil(num_draws / math.ceil(num_draws / cap))


def _chain_sharding(num_chains: int, devices):
    if devices is None:
        devices = jax.local_devices()
        if len(devices) == 1 or num_chains % len(devices):
            return None
    devices = list(devices)
    if len(devices) == 1:
        return None
    if num_chains % len(devices):
        raise ShapeError(f"{num_chains} chains cannot be split evenly over {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("chains",))
    return NamedSharding(mesh, PartitionSpec("chains"))


@functools.lru_cache(maxsize=32)
def _batched_init(algorithm):
    """``jit(vmap(algorithm.init))``, cached so repeated runs do not recompile it."""
    return jax.jit(jax.vmap(algorithm.init))


def _build_chunk_runner(algorithm, observables: dict, plan: RunPlan):
    """Jitted chunk functions for ``algorithm``; cached so repeated runs do not recompile."""
    return _cached_chunk_runner(
        algorithm, tuple(observables.items()), plan.num_chains, plan.num_warmup, plan.thin
    )


@functools.lru_cache(maxsize=32)
def _cached_chunk_runner(algorithm, observables: tuple, num_chains: int, num_warmup: int, thin: int):
    """``run_draws(state, key, draw_indices)`` and ``run_warmup(state, key, step_indices)``."""
    step = jax.vmap(algorithm.step)
    observables = dict(observables)

    def take_step(state, step_index, rng_key):
        keys = jax.random.split(jax.random.fold_in(rng_key, step_index), num_chains)
        return step(keys, state)

    def record(state, info):
        obs = {name: jax.vmap(fn)(state) for name, fn in observables.items()}
        return _state_position(state), info, _state_logdensity(state), obs

    def draw_once(rng_key, state, draw_index):
        first = num_warmup + draw_index * thin
        if thin == 1:
            state, info = take_step(state, first, rng_key)
        else:
            state = lax.fori_loop(0, thin - 1, lambda j, s: take_step(s, first + j, rng_key)[0], state)
            state, info = take_step(state, first + thin - 1, rng_key)
        return state, record(state, info)

    def run_draws(state, rng_key, draw_indices):
        state, records = lax.scan(lambda s, i: draw_once(rng_key, s, i), state, draw_indices)
        # (draw, chain, ...) -> (chain, draw, ...)
        return state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), records)

    def run_warmup(state, rng_key, step_indices):
        return lax.scan(lambda s, t: (take_step(s, t, rng_key)[0], None), state, step_indices)[0]

    return jax.jit(run_draws), jax.jit(run_warmup)


def _shows_progress(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def _progress_bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="draw", disable=not _shows_progress(enabled), leave=False)


def sample(
    algorithm,
    initial_positions,
    rng_key,
    num_draws: int,
    *,
    num_warmup: int = 0,
    thin: int = 1,
    target=None,
    observables: dict[str, Callable] | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    checkpoint=None,
    devices=None,
    adapt: bool = True,
) -> Trace:
    """Run many chains of ``algorithm`` and return their draws.

    Parameters
    ----------
    algorithm
        A ``blackjax.base.SamplingAlgorithm`` (``init(position)``, ``step(key, state)``).
    initial_positions
        Pytree whose leaves have a leading chain axis ``(num_chains, ...)``.
    rng_key
        A JAX PRNG key. The draws depend on it and on nothing else (not on ``chunk_size``).
    num_draws
        Number of kept draws per chain (>= 1).
    num_warmup
        Steps taken and discarded before the first kept draw. When ``algorithm`` provides an
        adaptation (:mod:`psample.adaptation`) and ``adapt`` is true, these are its
        adaptation steps; otherwise they are burn-in.
    thin
        Steps per kept draw (>= 1).
    target
        A :class:`psample.Target`; when given, the DataTree's ``posterior`` holds its
        constrained, named sites and positions are checked against its shapes.
    observables
        ``{name: fn(state) -> array}`` evaluated per chain after each kept draw, inside the scan.
    chunk_size
        Draws per jitted chunk. The default keeps a chunk under 256 MiB of host memory and, when
        a progress bar is shown or a checkpoint written, makes at least 10 chunks (the bar
        moves, Ctrl-C is answered between chunks, a crash loses at most one chunk).
    progress
        Show a tqdm bar (only on a terminal).
    checkpoint
        Path of a Zarr store: every chunk is appended to it, with the state and key needed by
        :func:`psample.resume`. The path must not hold another run.
    devices
        Devices to split the chains over (default: all local devices when the chains divide
        evenly among them).
    adapt
        Let an adaptive algorithm tune itself during warm-up (default); ``False`` keeps its
        given parameters and makes the warm-up plain burn-in.

    Returns
    -------
    Trace
        Draws with leading axes ``(chain, draw)``; ``trace.interrupted`` is set if Ctrl-C
        stopped the run between chunks.
    """
    num_draws = check_positive_int("num_draws", num_draws)
    num_warmup = check_positive_int("num_warmup", num_warmup, minimum=0)
    thin = check_positive_int("thin", thin)
    if chunk_size is not None:
        chunk_size = check_positive_int("chunk_size", chunk_size)
    observables = dict(observables or {})
    for name, fn in observables.items():
        if not callable(fn):
            raise TypeError(f"observable {name!r} must be a function of the state, got {type(fn).__name__}")
    num_chains = _validate_positions(initial_positions)
    if target is not None:
        _check_target_shapes(initial_positions, target)

    sharding = _chain_sharding(num_chains, devices)
    positions = jax.tree.map(jnp.asarray, initial_positions)
    if sharding is not None:
        positions = jax.device_put(positions, sharding)
    states = _batched_init(algorithm)(positions)
    _check_initial_states(states)

    plan = RunPlan(num_chains, num_warmup, thin, num_draws, chunk_size or 0)
    writer = None
    if checkpoint is not None:
        from psample.checkpoint import CheckpointWriter

        writer = CheckpointWriter.create(checkpoint)
    # --- adaptation (psample/adaptation.py): warm-up steps are the adaptation's when it runs.
    from psample import adaptation

    algorithm, adapted_states, parameters = adaptation.warmup(algorithm, positions, rng_key, num_warmup, adapt=adapt)
    if adapted_states is not None:
        states = adapted_states
    # --- end adaptation
    return _run(algorithm, states, rng_key, plan, target, observables, progress, writer, drawn=None,
                parameters=parameters)


def _run(algorithm, states, rng_key, plan: RunPlan, target, observables, progress, writer, drawn,
         parameters=None) -> Trace:
    """Run the remaining draws of ``plan`` from ``states``; ``drawn`` holds earlier chunks."""
    run_draws, run_warmup = _build_chunk_runner(algorithm, observables, plan)
    if plan.chunk_size == 0:
        # What one draw records, shaped (chain, 1, ...), without running anything.
        shapes = jax.eval_shape(run_draws, states, rng_key, jnp.arange(1))[1]
        plan = RunPlan(
            plan.num_chains, plan.num_warmup, plan.thin, plan.num_draws,
            _choose_chunk_size(
                shapes, plan.num_draws, DEFAULT_CHUNK_BYTES, _shows_progress(progress) or writer is not None
            ),
        )
    chunks = [] if drawn is None else [drawn.records]
    draws_done = 0 if drawn is None else drawn.num_draws
    steps_done = plan.num_warmup if (drawn is not None or parameters is not None) else 0
    interrupted = False
    bar = _progress_bar(plan.num_warmup - steps_done + plan.num_draws - draws_done, progress, "sampling")
    try:
        while steps_done < plan.num_warmup:
            length = min(plan.chunk_size * plan.thin, plan.num_warmup - steps_done)
            states = run_warmup(states, rng_key, jnp.arange(steps_done, steps_done + length))
            jax.block_until_ready(states)
            steps_done += length
            bar.update(length)
        # Double buffering: chunk i+1 is dispatched (asynchronously) before chunk i is copied
        # to the host and written, so the device never waits for Python or the disk.
        in_flight = collections.deque()
        launched_states, launched = states, draws_done
        while draws_done < plan.num_draws:
            if launched < plan.num_draws:
                length = min(plan.chunk_size, plan.num_draws - launched)
                launched_states, records = run_draws(
                    launched_states, rng_key, jnp.arange(launched, launched + length)
                )
                in_flight.append((launched_states, records, length))
                launched += length
            if len(in_flight) == 2 or launched == plan.num_draws:
                new_states, records, length = in_flight.popleft()
                records = jax.device_get(records)
                chunks.append(records)
                states, draws_done = new_states, draws_done + length
                if writer is not None:
                    writer.append(records, states, rng_key, plan, draws_done, target, parameters=parameters)
                bar.update(length)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if not chunks:
        raise KeyboardInterrupt("interrupted before the first draw was completed")
    positions, info, logdensity, obs = concatenate_draws(chunks)
    return Trace(
        positions=positions,
        info=info,
        logdensity=logdensity,
        observables=obs,
        final_state=states,
        target=target,
        interrupted=interrupted,
        num_steps=plan.step_index(draws_done),
        num_warmup=plan.num_warmup,
        thin=plan.thin,
        parameters=parameters,
    )


@dataclass
class _Drawn:
    records: Any
    num_draws: int


def resume(
    checkpoint,
    algorithm,
    num_draws: int | None = None,
    *,
    target=None,
    observables: dict[str, Callable] | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
) -> Trace:
    """Continue a checkpointed run from its saved state and key.

    The draws made here equal those an uninterrupted :func:`sample` call would have made,
    bit for bit, because every step's key depends only on the run's key and the step index.

    Parameters
    ----------
    checkpoint
        Path of the Zarr store written by ``sample(..., checkpoint=path)``.
    algorithm
        The same ``SamplingAlgorithm`` (same sampler and tuning) the run was started with.
    num_draws
        Further draws per chain to make; default: what the original call still had to draw.
    target, observables
        The ones the run was started with (functions cannot be stored in the checkpoint);
        ``target`` is required if the run had one, and the observables must have the same names.
    chunk_size, progress
        As in :func:`sample`.

    Returns
    -------
    Trace
        The whole run so far: the checkpointed draws followed by the new ones.
    """
    from psample import adaptation
    from psample.checkpoint import CheckpointWriter, load_checkpoint
    from psample.errors import CheckpointError

    saved = load_checkpoint(checkpoint)
    algorithm = adaptation.restore(algorithm, saved.parameters)  # the adapted sampler, if it was
    plan = saved.plan
    remaining = plan.num_draws - saved.draws_done
    if num_draws is not None:
        remaining = check_positive_int("num_draws", num_draws)
    if saved.has_target and target is None:
        raise CheckpointError(
            f"the run in {str(checkpoint)!r} was made with a target: pass target= to resume it"
        )
    observables = dict(observables or {})
    saved_names = set(saved.records[3])
    if set(observables) != saved_names:
        raise CheckpointError(
            f"the run in {str(checkpoint)!r} recorded observables {sorted(saved_names)}, "
            f"resume got {sorted(observables)}: pass the same observables"
        )
    expected = jax.eval_shape(jax.vmap(algorithm.init), _state_position(saved.states))
    if jax.tree.structure(expected) != jax.tree.structure(saved.states):
        raise CheckpointError(
            f"the state saved in {str(checkpoint)!r} does not match this algorithm's state; "
            "resume with the sampler the run was started with"
        )
    if remaining <= 0:
        raise InvalidTuningError(
            f"the run in {str(checkpoint)!r} already holds all {plan.num_draws} draws; pass num_draws= to draw more"
        )
    total = saved.draws_done + remaining
    plan = RunPlan(plan.num_chains, plan.num_warmup, plan.thin, total, chunk_size or plan.chunk_size)
    writer = CheckpointWriter.reopen(checkpoint, saved.run_id)
    drawn = _Drawn(saved.records, saved.draws_done)
    return _run(algorithm, saved.states, saved.rng_key, plan, target, observables, progress, writer, drawn,
                parameters=saved.parameters)
