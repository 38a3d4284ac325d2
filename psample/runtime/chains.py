"""The chain runner: many chains of any ``SamplingAlgorithm``, in jitted chunks, interrupt-safe.

:func:`sample` runs chains ``jax.vmap``-ed over the leading axis of the initial positions
(sharded over the ``"chains"`` axis of a device mesh when there are several devices:
:mod:`psample.runtime.sharding`); :func:`resume` continues a checkpointed run. The steps of a
chunk run in one jitted ``lax.scan`` (:mod:`psample.runtime.plan`); the loop over chunks is
:func:`psample.runtime.driver.drive`'s: it bounds chunks in memory and, when someone watches, in
time, answers Ctrl-C within moments, and hands every completed chunk to the checkpoint before it
is reported.

Randomness is a function of the step index alone (``fold_in(rng_key, step)``, then one key
per chain), so the same key gives the same draws whatever the chunking, and a resumed run
continues bit for bit.

Several processes (``jax.distributed``): every process runs the same script with the same
arguments; the chains are sharded over the devices of all processes (:mod:`psample.runtime.sharding`),
every chunk's draws are gathered on every process, so the returned :class:`Trace` holds all
of them everywhere, equal to a one-process run with the same key (bit for bit: each chain's
steps depend on its key alone, and each device runs the same program on its chains). Gathering
per chunk (not at the end) keeps device memory to one chunk, as in one process, and gives the
checkpoint, written by process 0, the whole chunk. ``trace.final_state`` stays a
``jax.Array`` spread over the processes (``multihost_utils.process_allgather`` reads it whole).
Only process 0 shows a bar; a Ctrl-C stops every process after the same chunk
(:mod:`psample.runtime.driver`); checkpoints: :mod:`psample.runtime.checkpoint`.

A run with draws ends with its checks: a warning counting the log-density's non-finite values,
the algorithm's own check of its draws (``check_trace``) and the convergence check
(:func:`psample.diagnostics.check_convergence`: rank-normalised R-hat, bulk and tail ESS).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from psample.base import is_stepwise, provides_adaptation
from psample.errors import CheckpointError, InvalidTuningError, NumericalWarning, RunError
from psample.errors import check_positive_int
from psample.runtime import checks, sharding, warmup
from psample.runtime.driver import concatenate, drive
from psample.runtime.plan import RunPlan, chunk_functions, record_bytes
from psample.runtime.trace import NONFINITE_FIELD, Draw, Trace

__all__ = ["sample", "resume", "RunPlan"]

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
    mesh: Mesh | None = None,
    devices=None,
    adapt: bool = True,
    compute_convergence_checks: bool = True,
    log_likelihood: bool = True,
) -> Trace:
    """Run many chains of ``algorithm`` and return their draws.

    Parameters
    ----------
    algorithm
        A ``blackjax.base.SamplingAlgorithm`` (``init(position)``, ``step(key, state)``).
    initial_positions
        Pytree whose leaves have a leading chain axis ``(num_chains, ...)``.
    rng_key
        A JAX PRNG key. The draws depend on it and on nothing else (not on the chunking).
    num_draws
        Number of kept draws per chain (>= 1).
    num_warmup
        Steps taken and discarded before the first kept draw. When ``algorithm`` provides an
        adaptation (:mod:`psample.runtime.warmup`) and ``adapt`` is true, these are its adaptation
        steps; otherwise they are burn-in with the algorithm's own parameters. A BlackJAX
        algorithm (``blackjax.nuts(logdensity_fn, step_size, inverse_mass_matrix)``) has none:
        its burn-in comes with a warning naming :func:`psample.window_adaptation`, which adapts
        it with BlackJAX's window adaptation (``adapt=False`` asks for burn-in, silently).
    thin
        Steps per kept draw (>= 1).
    target
        A :class:`psample.Target`; when given, the DataTree's ``posterior`` holds its
        constrained, named sites and positions are checked against its shapes.
    observables
        ``{name: fn(state) -> array}`` evaluated per chain after each kept draw, inside the scan.
    chunk_size
        Draws per jitted chunk. Default: chunks under 256 MiB of host memory and, when a
        progress bar is shown (``progress=True``) or a checkpoint written, of about a second
        each (measured on a first one-draw chunk), so Ctrl-C answers at once and a kill loses
        seconds of draws.
    progress
        Show a tqdm bar (in a terminal or a notebook; off in pipes and CI) and size chunks in time.
    checkpoint
        Path of a Zarr store, created now (so an unwritable path fails before any work) and
        locked against other processes: every chunk is appended to it, with the state and key
        needed by :func:`psample.resume`. The path must not hold another run.
    mesh
        A ``jax.sharding.Mesh``: chains are sharded along its ``"chains"`` axis (when it has
        one). Default: all local devices, when the chains divide evenly among them.
    devices
        Deprecated alias: the devices of a one-axis ``"chains"`` mesh.
    adapt
        Let an adaptive algorithm tune itself during warm-up (default); ``False`` keeps its
        given parameters and makes the warm-up plain burn-in. The adapted parameters are in
        ``trace.parameters``, the DataTree's attributes and the checkpoint.
    compute_convergence_checks
        At the end of the run (interrupted or not), warn with
        :class:`~psample.errors.ConvergenceWarning` if a posterior component's rank-normalised
        R-hat exceeds 1.01 or its bulk or tail ESS is below 100 per chain (ArviZ's numbers; see
        :func:`psample.diagnostics.check_convergence`, which bounds its cost on long runs).
        ``False`` skips the check (PyMC's name for it).
    log_likelihood
        Put the pointwise log-likelihood in the trace's ``log_likelihood`` group (for
        ``az.loo`` / ``az.compare``) when ``target`` has one (a NumPyro model with observed
        sites; default). It costs one evaluation of the observed sites per draw, jitted and
        vmapped, at the end of the run; ``False`` skips it (ArviZ's and NumPyro's name).

    Returns
    -------
    Trace
        Draws with leading axes ``(chain, draw)``; ``trace.interrupted`` is set if Ctrl-C
        stopped the run (every draw completed before it is kept, and checkpointed). Stopped
        during warm-up, it holds no draws: ``trace.final_state`` is the chains' state after the
        ``trace.num_steps`` warm-up steps done and ``trace.parameters`` the parameters adapted so
        far (the checkpoint holds the adaptation itself, and :func:`resume` continues it).

    Raises
    ------
    RunError
        If the run fails after it started (e.g. the log-density raises in a host callback):
        ``error.trace`` holds the draws completed before the failure.
    KeyboardInterrupt
        On Ctrl-C before the first chunk (of warm-up steps or of draws) was completed.

    Warns
    -----
    NumericalWarning
        If the log-density returned NaN or +inf in recorded steps (``info.num_nonfinite``).
    ConvergenceWarning
        If the chains have not mixed (``compute_convergence_checks``).
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
    num_chains = checks.validate_positions(initial_positions)
    if target is not None:
        checks.check_target_shapes(initial_positions, target)

    if devices is not None:
        warnings.warn("sample(devices=...) is deprecated: pass mesh=jax.sharding.Mesh(devices, ('chains',))",
                      DeprecationWarning, stacklevel=2)
    chain_mesh = sharding.chain_mesh(num_chains, mesh, devices)
    if sharding.is_multiprocess():
        _check_same_everywhere(initial_positions, rng_key)
    positions = sharding.place(initial_positions, chain_mesh)
    states = checks.init_states(algorithm, positions)
    checks.check_initial_states(algorithm, *_on_host(positions, states))
    checks.check_step_keeps_state(algorithm, states)

    adapts = adapt and num_warmup > 0 and provides_adaptation(algorithm)
    if adapt and num_warmup > 0 and not adapts:
        warmup.note_burn_in(algorithm, num_warmup)
    plan = RunPlan(num_chains, num_warmup, thin, num_draws, chunk_size or 0, adapts)
    functions = chunk_functions(algorithm, observables, plan, chain_mesh)
    bytes_per_draw = record_bytes(functions, states, rng_key)
    checks.check_run_size(bytes_per_draw, num_chains, num_draws)
    writer = None
    if checkpoint is not None:
        from psample.runtime.checkpoint import CheckpointWriter

        writer = CheckpointWriter.create(
            checkpoint, plan=plan, states=states, rng_key=rng_key, target=target,
            placement=sharding.placement(chain_mesh), observable_names=list(observables),
        )  # fmt: skip
        try:  # the store's disk is process 0's (several processes: its answer holds for all)
            sharding.on_first_process(lambda: checks.check_run_size(bytes_per_draw, num_chains, num_draws, checkpoint))
        except InvalidTuningError:
            writer.remove()
            raise
    # Warm-up adaptation, when the algorithm offers one (psample.runtime.warmup): its steps are the
    # warm-up, and the draws are made by the tuned algorithm from the adapted states.
    steps_done, parameters = 0, None
    if adapts:
        try:
            warm = _adapt(algorithm, positions, rng_key, plan, progress, writer)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        algorithm, states, parameters, steps_done = warm.algorithm, warm.states, warm.parameters, warm.steps_done
        functions = chunk_functions(algorithm, observables, plan, chain_mesh)
        if warm.interrupted:
            if writer is not None:
                writer.close()
            return _warmup_trace(functions, states, rng_key, plan, target, steps_done, parameters)
    trace = _run(functions, states, rng_key, plan, target, progress, writer, bytes_per_draw, steps_done,
                 parameters=parameters, log_likelihood=log_likelihood)
    return _finish(trace, algorithm, compute_convergence_checks, "Draw more (num_draws), warm up longer (num_warmup) "
                   "or reparametrise the model; compute_convergence_checks=False skips this check")


def _on_host(*trees):
    """``trees`` readable on this process: gathered when spread over several processes."""
    return sharding.to_host(trees) if sharding.is_multiprocess() else trees


def _check_same_everywhere(initial_positions, rng_key) -> None:
    """Several processes: each must pass the same key and initial positions (one run, not several)."""
    from jax.experimental import multihost_utils

    from psample.runtime.checkpoint import _key_to_host

    for name, value in (("rng_key", _key_to_host(rng_key)[0]), ("initial_positions", initial_positions)):
        try:
            multihost_utils.assert_equal(jax.tree.map(np.asarray, value))
        except AssertionError:
            raise InvalidTuningError(
                f"the processes of this jax.distributed run passed different {name}: every process must "
                "run the same script with the same arguments (the chains are spread over them)"
            ) from None


def _adapt(algorithm, positions, rng_key, plan: RunPlan, progress, writer, carry=None, steps_done=0):
    """The warm-up adaptation on the chunk driver (:func:`psample.runtime.warmup.warmup`); a checkpoint
    saves the adaptation's carry after every chunk, and the adapted parameters at the end."""
    warm = warmup.warmup(
        algorithm, positions, rng_key, plan.num_warmup, progress=progress,
        chunk_length=plan.chunk_size * plan.thin or None, on_chunk=None if writer is None else writer.save_adaptation,
        carry=carry, steps_done=steps_done,
    )  # fmt: skip
    if writer is not None and not warm.interrupted:
        writer.save_adapted(warm.states, warm.parameters, warm.steps_done)
    return warm


def _warmup_trace(functions, states, rng_key, plan: RunPlan, target, steps_done: int, parameters) -> Trace:
    """The trace of a run stopped during warm-up: no draws, the state and parameters so far."""
    shapes = jax.eval_shape(functions.draws, (states, rng_key), jnp.arange(0, dtype=jnp.int32))[1]
    records = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), shapes)
    return Trace.from_draws(
        records, final_state=states, target=target, interrupted=True, num_steps=steps_done,
        num_warmup=plan.num_warmup, thin=plan.thin, parameters=parameters,
    )  # fmt: skip


@dataclass
class _Drawn:
    """Draws a resumed run already holds (from its checkpoint)."""

    records: Draw
    num_draws: int


def _run(
    functions, states, rng_key, plan, target, progress, writer, bytes_per_draw, steps_done=0, drawn=None,
    parameters=None, log_likelihood=True,
) -> Trace:
    """Run the rest of ``plan`` from ``states``, taken after ``steps_done`` sampler steps, with
    ``drawn`` the draws made before and ``parameters`` the adapted ones; close ``writer`` at the end."""
    try:
        carry = (states, rng_key)
        if steps_done < plan.num_warmup:
            warm = _warm_up(functions, carry, steps_done, plan, progress, writer)
            if warm.interrupted:
                return _warmup_trace(
                    functions, warm.carry[0], rng_key, plan, target, steps_done + warm.num_done, parameters
                )
            carry = warm.carry
        draws_done = drawn.num_draws if drawn is not None else 0
        on_chunk = None
        if writer is not None:
            def on_chunk(chunk_carry, records, num_done):
                writer.append(records, chunk_carry[0], draws_done + num_done)

        chunks = [] if drawn is None else [drawn.records]
        try:
            result = drive(
                functions.draws,
                carry,
                draws_done,
                plan.num_draws,
                chunk_length=plan.chunk_size or None,
                bytes_per_step=bytes_per_draw,
                progress=progress,
                desc="sampling",
                unit="draw",
                on_chunk=on_chunk,
            )
        except RunError as error:
            partial = error.result
            if not partial.records and drawn is None:
                raise
            trace = _trace(
                chunks + partial.records, partial.carry[0], plan, draws_done + partial.num_done, target, False, parameters,
                log_likelihood,
            )
            raise RunError(str(error), result=partial, trace=trace) from error.__cause__
        except KeyboardInterrupt:
            if drawn is None:
                raise
            result = None
        if result is None:  # Ctrl-C before the first new chunk of a resumed run: the old draws
            return _trace(chunks, carry[0], plan, draws_done, target, True, parameters, log_likelihood)
        trace = _trace(
            chunks + result.records, result.carry[0], plan, draws_done + result.num_done, target,
            result.interrupted, parameters, log_likelihood,
        )  # fmt: skip
    finally:
        if writer is not None:
            writer.close()
    return trace


def _finish(trace: Trace, algorithm, convergence_checks: bool, advice: str) -> Trace:
    """The end of a run with draws: the non-finite count's warning, the algorithm's own check of
    its draws (``algorithm.check_trace(trace)`` where the sampler offers one, e.g. ADMM's mean-offset
    check) and the convergence check.

    A Ctrl-C during the check (a second one, after the run was interrupted) skips it with a
    word instead of losing the trace.
    """
    if trace.num_draws == 0:  # stopped during warm-up: nothing to check
        return trace
    _warn_nonfinite_steps(trace)
    check_trace = getattr(algorithm, "check_trace", None)
    if check_trace is not None and not trace.interrupted:
        check_trace(trace)
    if convergence_checks:
        from psample.diagnostics import check_convergence
        from psample.errors import ConvergenceWarning

        try:
            check_convergence(trace, advice=advice, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn(
                "convergence not checked: interrupted during the check (the draws are all returned)",
                ConvergenceWarning, stacklevel=3,
            )  # fmt: skip
    return trace


def _warm_up(functions, carry, steps_done, plan, progress, writer):
    """Burn-in through the driver; a checkpoint saves the state after every chunk.

    Returns the driver's :class:`~psample.runtime.driver.DriveResult` (``interrupted`` on Ctrl-C)."""
    on_chunk = None
    if writer is not None:
        def on_chunk(chunk_carry, _records, num_done):
            writer.save_warmup(chunk_carry[0], steps_done + num_done)

    chunk_steps = plan.chunk_size * plan.thin or None
    return drive(
        functions.warmup, carry, steps_done, plan.num_warmup, chunk_length=chunk_steps,
        progress=progress, desc="warm-up", unit="step", on_chunk=on_chunk,
    )  # fmt: skip


def _trace(chunks: list, final_state, plan: RunPlan, draws_done: int, target, interrupted: bool, parameters,
           log_likelihood: bool = True) -> Trace:
    return Trace.from_draws(
        concatenate(chunks, axis=1),
        final_state=final_state,
        target=target,
        interrupted=interrupted,
        num_steps=plan.step_index(draws_done),
        num_warmup=plan.num_warmup,
        thin=plan.thin,
        parameters=parameters,
        log_likelihood=log_likelihood,
    )


def _warn_nonfinite_steps(trace: Trace) -> None:
    """Warn when the log-density returned NaN or +inf during the run (those chains may have frozen)."""
    counts = trace.nonfinite_steps
    if counts is None or not counts.any():
        return
    chains = np.flatnonzero(counts).tolist()
    evaluations = int(np.asarray(getattr(trace.info, NONFINITE_FIELD)).sum())
    warnings.warn(
        f"the log-density returned NaN or +inf {evaluations} time(s), in {int(counts.sum())} recorded "
        f"step(s) of {len(chains)} chain(s) {chains if len(chains) <= 20 else chains[:20] + ['...']}; "
        "such a value is rejected like zero density, so those chains may have stopped moving. "
        f"sample_stats.{NONFINITE_FIELD} has the counts per draw: check the model for overflow or "
        "invalid parameter values.",
        NumericalWarning,
        stacklevel=4,
    )


def _check_topology(saved, checkpoint) -> None:
    """A checkpoint resumes in the topology it was written in (processes, devices per process)."""
    recorded = saved.topology or {"processes": 1, "devices_per_process": None}
    now = sharding.topology()
    same = recorded["processes"] == now["processes"] and (
        now["processes"] == 1 or recorded.get("devices_per_process") == now["devices_per_process"]
    )
    if not same:
        raise CheckpointError(
            f"the run in {str(checkpoint)!r} was written by {sharding.describe_topology(recorded)} and this "
            f"resume runs on {sharding.describe_topology(now)}: resume it in the topology it was written in"
        )


def resume(
    checkpoint,
    algorithm,
    num_draws: int | None = None,
    *,
    target=None,
    observables: dict[str, Callable] | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
    compute_convergence_checks: bool = True,
    log_likelihood: bool = True,
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
        As in :func:`sample` (default: the run's own chunk size).
    mesh
        Where to shard the chains; default: the devices the run was sharded over.
    compute_convergence_checks, log_likelihood
        As in :func:`sample`, over the whole run.

    Returns
    -------
    Trace
        The whole run so far: the checkpointed draws followed by the new ones.
    """
    from psample.runtime.checkpoint import CheckpointWriter

    writer = CheckpointWriter.reopen(checkpoint)
    try:
        saved = writer.load_everywhere()
        _check_topology(saved, checkpoint)
        algorithm = warmup.restore(algorithm, saved.parameters)
        plan = saved.plan
        remaining = plan.num_draws - saved.draws_done
        if num_draws is not None:
            remaining = check_positive_int("num_draws", num_draws)
        if saved.has_target and target is None:
            raise CheckpointError(
                f"the run in {str(checkpoint)!r} was made with a target: pass target= to resume it"
            )
        if target is not None:
            if saved.target_name is not None and saved.target_name != target.name:
                raise CheckpointError(
                    f"the run in {str(checkpoint)!r} was made with target {saved.target_name!r}, "
                    f"resume got target {target.name!r}: pass the run's own target"
                )
        observables = dict(observables or {})
        saved_names = set(saved.observable_names)
        if set(observables) != saved_names:
            raise CheckpointError(
                f"the run in {str(checkpoint)!r} recorded observables {sorted(saved_names)}, "
                f"resume got {sorted(observables)}: pass the same observables"
            )
        # A run stopped during its warm-up adaptation continues it: from the saved carry, or from
        # the initial positions when no chunk of it had completed.
        adapting = getattr(plan, "adapt", False) and saved.parameters is None and saved.steps_done < plan.num_warmup
        if adapting and provides_adaptation(algorithm) and not is_stepwise(algorithm.adaptation):
            raise CheckpointError(
                f"the run in {str(checkpoint)!r} was stopped during its warm-up adaptation, and this algorithm "
                "adapts in one call (its adaptation has no step-wise init/step/final), so no part of it was "
                "kept: start the run again"
            )
        if adapting and not provides_adaptation(algorithm):
            raise CheckpointError(
                f"the run in {str(checkpoint)!r} was stopped during its warm-up adaptation, and this algorithm "
                "has no step-wise adaptation to continue it: resume with the sampler the run was started with"
            )
        # A warm-up stopped during adaptation saved the adaptation's carry: the chains' states
        # (and so their positions) are what its final() makes of it.
        carry = saved.states if saved.adapting else None
        saved_states = algorithm.adaptation.final(carry)[0] if saved.adapting else saved.states
        if target is not None:
            checks.check_target_shapes(
                checks.state_position(saved_states), target,
                f"the positions saved in {str(checkpoint)!r}", CheckpointError,
            )  # fmt: skip
        expected = jax.eval_shape(jax.vmap(algorithm.init), checks.state_position(saved_states))
        if jax.tree.structure(expected) != jax.tree.structure(saved_states):
            raise CheckpointError(
                f"the state saved in {str(checkpoint)!r} does not match this algorithm's state; "
                "resume with the sampler the run was started with"
            )
        if remaining <= 0:
            raise InvalidTuningError(
                f"the run in {str(checkpoint)!r} already holds all {plan.num_draws} draws; pass num_draws= to draw more"
            )
        chain_mesh = sharding.chain_mesh(plan.num_chains, mesh, None) if mesh is not None else sharding.mesh_from_placement(saved.placement)
        states = sharding.place(saved_states, chain_mesh)
        checks.check_step_keeps_state(algorithm, states)
        total = saved.draws_done + remaining
        plan = replace(plan, num_draws=total, chunk_size=chunk_size or plan.chunk_size)
        writer.extend(plan, sharding.placement(chain_mesh))
        writer.target = target
        functions = chunk_functions(algorithm, observables, plan, chain_mesh)
        bytes_per_draw = record_bytes(functions, states, saved.rng_key)
        sharding.on_first_process(lambda: checks.check_run_size(bytes_per_draw, plan.num_chains, total, checkpoint))
        steps_done, parameters = saved.steps_done, saved.parameters
        if adapting:
            if carry is not None:  # the chains' leaves are sharded inside the jitted chunks
                carry = sharding.place_replicated(carry, chain_mesh)
            warm = _adapt(
                algorithm, checks.state_position(states), saved.rng_key, plan, progress, writer, carry, steps_done
            )
            algorithm, states, parameters, steps_done = warm.algorithm, warm.states, warm.parameters, warm.steps_done
            functions = chunk_functions(algorithm, observables, plan, chain_mesh)
            if warm.interrupted:
                writer.close()
                return _warmup_trace(functions, states, saved.rng_key, plan, target, steps_done, parameters)
    except BaseException:
        writer.close()
        raise
    drawn = _Drawn(saved.records, saved.draws_done) if saved.draws_done else None
    trace = _run(
        functions, states, saved.rng_key, plan, target, progress, writer, bytes_per_draw, steps_done, drawn,
        parameters=parameters, log_likelihood=log_likelihood,
    )
    return _finish(trace, algorithm, compute_convergence_checks, "Draw more (num_draws), or reparametrise the model; "
                   "compute_convergence_checks=False skips this check")
