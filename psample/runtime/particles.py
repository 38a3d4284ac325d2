"""The particle runner: many independent weighted populations of any particle algorithm.

A particle algorithm (:class:`psample.smc.ParticleAlgorithm`) moves one weighted population;
:func:`run_particles` runs ``num_replicates`` independent populations of it, vmapped (and
placed over the devices when they divide the replicates evenly; one population may also be
split over the ``"particles"`` axis of a mesh, ``mesh=``), through the chunk
driver (:mod:`psample.runtime.driver`): one jitted ``lax.scan`` per chunk of steps, the progress bar,
Ctrl-C between chunks. Each step records the algorithm's info (ESS, log-Z increment, resampled
or not, ...) and the observables, never the population history: memory is that of one
population per replicate plus a few numbers per step.

Randomness depends on the step index alone (``fold_in(rng_key, step)``, then one key per
replicate), so the result does not depend on the chunking.

The result is a :class:`~psample.runtime.particle_result.ParticleResult`. Non-finite values of
the user's function (``info.num_nonfinite``) end the run with a warning, or an error when a
population has no finite weight left.

References
----------
.. [1] Anthony Lee and Nick Whiteley, "Variance estimation in the particle filter",
   Biometrika 105(3), 609-625, 2018. arXiv:1509.00394.
.. [2] Hock Peng Chan and Tze Leung Lai, "A general theory of particle filters in hidden
   Markov models and some applications", Annals of Statistics 41(6), 2877-2904, 2013.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from psample.runtime import compiled, driver, sharding
from psample.errors import (
    InvalidTuningError,
    NonFiniteError,
    NumericalWarning,
    check_positive_int,
)
from psample.base import ParticleAlgorithm
from psample.runtime.particle_result import ParticleResult

__all__ = ["run_particles", "ParticleResult", "ParticleAlgorithm"]

#: Steps per chunk of an unwatched "until done" run (watched runs are sized by time).
UNTIL_DONE_CHUNK_LENGTH = 8
_REQUIRED_STATE = ("particles", "log_weights", "log_Z")
_REQUIRED_INFO = ("ess", "log_Z_increment", "is_resampled")
#: The optional info field counting the user function's non-finite values per step.
NONFINITE_FIELD = "num_nonfinite"
#: Folded into ``rng_key`` for the key of the equal-weight posterior draws of
#: :meth:`ParticleResult.to_datatree` (independent of the run's own keys, which stay as they were).
_DRAWS_KEY_DATA = 0x0D4A


def _batched_init(algorithm, num_particles: int, mesh=None, keys=None):
    def build():
        init = jax.vmap(lambda key: algorithm.init(key, num_particles))
        if mesh is None:
            return jax.jit(init)
        # Drawn where they live: a population larger than one device's memory is never whole.
        shapes = jax.eval_shape(init, keys)
        return jax.jit(init, out_shardings=sharding.population_shardings(shapes, mesh, num_particles))

    return compiled.cached(algorithm, ("init", num_particles, mesh), build)


def _build_chunk_runner(algorithm, observables: tuple, num_replicates: int, mesh=None, num_particles=None):
    """``run_chunk((states, key), indices) -> ((states, key), (info, observables, valid))``.

    Records have the step axis first. Cached per (algorithm, observables, replicates, mesh).
    """
    build = lambda: _compile_chunk_runner(algorithm, observables, num_replicates, mesh, num_particles)
    return compiled.cached(algorithm, ("chunks", observables, num_replicates, mesh, num_particles), build)


def _compile_chunk_runner(algorithm, observables: tuple, num_replicates: int, mesh=None, num_particles=None):
    """With a ``mesh``, every step's states keep the placement of
    :func:`psample.runtime.sharding.population_shardings` (replicates on ``"chains"``, particles
    on ``"particles"``): XLA partitions the step around it, so per-particle work runs where the
    particles live and reductions, resampling's cumulative weights and the ancestor gather over
    the particle axis become collectives (global, exact). The records (a few numbers per
    replicate and step) come back whole on every device, hence readable on every process."""
    if mesh is None:
        place = lambda states: states
    else:
        place = lambda states: lax.with_sharding_constraint(
            states, sharding.population_shardings(states, mesh, num_particles)
        )
    step = jax.vmap(algorithm.step)
    is_done = None if algorithm.is_done is None else jax.vmap(algorithm.is_done)

    def one_step(carry, index):
        states, key = carry
        keys = jax.random.split(jax.random.fold_in(key, index), num_replicates)
        if is_done is None:
            new, info = step(keys, states)
            valid = jnp.ones((num_replicates,), bool)
        else:
            done = is_done(states)

            def advance(s):
                moved, info = step(keys, s)
                # Finished replicates keep their state: a step after "done" is a no-op.
                keep = lambda old, new: jnp.where(done.reshape(done.shape + (1,) * (new.ndim - 1)), old, new)
                return jax.tree.map(keep, s, moved), info

            info_shape = jax.eval_shape(lambda s: step(keys, s)[1], states)

            def skip(s):
                return s, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), info_shape)

            # Outside the vmap: once every replicate is done, steps cost nothing.
            new, info = lax.cond(jnp.all(done), skip, advance, states)
            valid = jnp.logical_not(done)
        new = place(new)
        obs = {name: jax.vmap(fn)(new) for name, fn in observables}
        return (new, key), (info, obs, valid)

    def run_chunk(carry, indices):
        if mesh is None:
            return lax.scan(one_step, carry, indices)
        # Traced under the mesh: the algorithm's resampling (psample.smc.base.resample_if) sees
        # the "particles" axis and computes its indices on the whole population's weights.
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            carry, records = lax.scan(one_step, (place(carry[0]), carry[1]), indices)
        return carry, lax.with_sharding_constraint(records, NamedSharding(mesh, PartitionSpec()))

    return jax.jit(run_chunk)


def _all_done(algorithm):
    build = lambda: jax.jit(lambda states: jnp.all(jax.vmap(algorithm.is_done)(states)))
    return compiled.cached(algorithm, ("all_done",), build)


def _bytes_per_step(algorithm, observables: tuple, num_replicates: int, carry, mesh=None, num_particles=None) -> int:
    """Host bytes one step records; checks the info contract. Cached: tracing the chunk
    function to learn its output shapes costs as much as a small run."""

    def build():
        run_chunk = _build_chunk_runner(algorithm, observables, num_replicates, mesh, num_particles)
        one = jax.eval_shape(run_chunk, carry, jnp.arange(1, dtype=jnp.int32))[1]
        missing = [f for f in _REQUIRED_INFO if not hasattr(one[0], f)]
        if missing:
            raise TypeError(f"a particle algorithm's info needs fields {list(_REQUIRED_INFO)}; it lacks {missing}")
        return sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(one))

    shapes = (jax.tree.structure(carry), tuple((x.shape, x.dtype) for x in jax.tree.leaves(carry)))
    return compiled.cached(algorithm, ("record_bytes", observables, num_replicates, mesh, shapes), build)


def _check_state(states) -> None:
    missing = [f for f in _REQUIRED_STATE if not hasattr(states, f)]
    if missing:
        raise TypeError(
            f"a particle algorithm's state needs fields {list(_REQUIRED_STATE)}; "
            f"{type(states).__name__} lacks {missing}"
        )


def _mask_invalid(info, valid):
    """NaN (floats) / 0 (integers) / False (bools) where a replicate's step did not happen."""

    def mask(x):
        v = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
        if np.issubdtype(x.dtype, np.floating):
            return np.where(v, x, np.nan)
        return np.where(v, x, np.zeros((), x.dtype))

    return jax.tree.map(mask, info)


def run_particles(
    algorithm: ParticleAlgorithm,
    rng_key,
    num_particles: int,
    *,
    num_replicates: int = 1,
    observables: dict[str, Callable] | None = None,
    progress: bool = True,
    chunk_length: int | None = None,
    mesh: Mesh | None = None,
) -> "ParticleResult":
    """Run ``num_replicates`` independent populations of a particle algorithm.

    Parameters
    ----------
    algorithm
        A :class:`psample.smc.ParticleAlgorithm` (e.g. :func:`psample.smc.tempered_smc`).
    rng_key
        A JAX PRNG key; the result depends on it alone (not on the chunking).
    num_particles
        Particles per population, ``>= 2``.
    num_replicates
        Independent populations (vmapped; placed over the local devices when their number
        divides ``num_replicates``). Several replicates give the Monte Carlo error of every
        estimate from their spread.
    observables
        ``{name: fn(state) -> array}`` evaluated on each replicate's population after every
        step, inside the scan (e.g. a weighted mean of the particles).
    progress
        Show a progress bar where someone watches (a terminal or a notebook; off in pipes and
        CI): the steps out of ``num_steps`` for a fixed schedule; for an until-done algorithm with
        a ``temperature`` in its state (tempered SMC), the temperature reached from 0 to 1.
    chunk_length
        Steps per jitted chunk; default: the driver's choice (bounded by memory and, with a
        bar, by time). Under ``jax.distributed`` (several processes) every process must run the
        same chunks: the default is then :data:`UNTIL_DONE_CHUNK_LENGTH` steps.
    mesh
        A ``jax.sharding.Mesh`` with a ``"particles"`` axis (one population split over its
        devices; ``num_particles`` must divide evenly) and/or a ``"chains"`` axis (replicates
        over its devices). Reweighting, ESS, log-Z, the tempering bisection and resampling stay
        global and exact: the result is that of one device, up to the order of floating-point
        sums over the particle axis (see :mod:`psample.runtime.sharding`). Default: replicates
        over all devices of all processes under ``jax.distributed`` (when they divide evenly),
        else over the local devices when they divide evenly. A mesh may span processes; every
        process then runs the same call and gets the whole result.

    Returns
    -------
    ParticleResult
        ``interrupted`` is set (and a warning issued) if Ctrl-C stopped the run between chunks;
        the populations and estimates are then those of the last completed step. ``complete``
        says which replicates reached the algorithm's target; when some did not (e.g. tempered
        SMC stopped by its ``max_steps`` below temperature 1) a ``NumericalWarning`` says so.

    Warns
    -----
    psample.errors.NumericalWarning
        The user's function returned non-finite values (the algorithm's ``info.num_nonfinite``,
        summed over the run; they count as zero density), or a population stopped before its
        target.

    Raises
    ------
    InvalidTuningError
        ``num_particles < 2``, ``num_replicates < 1``, a bad ``chunk_length``, a ``mesh`` with
        an axis other than ``"chains"`` and ``"particles"`` of size > 1.
    psample.errors.ShapeError
        ``num_replicates`` or ``num_particles`` not divisible by the mesh's axis.
    psample.errors.NonFiniteError
        A replicate ended with no finite weight (or a non-finite ``log_Z``): no estimate can
        stand. ``error.result`` holds the :class:`ParticleResult`.
    psample.errors.RunError
        A failure while running (``.result`` holds what completed).
    """
    num_particles = check_positive_int("num_particles", num_particles, minimum=2)
    num_replicates = check_positive_int("num_replicates", num_replicates)
    if chunk_length is not None:
        chunk_length = check_positive_int("chunk_length", chunk_length)
    if not (hasattr(algorithm, "init") and hasattr(algorithm, "step") and hasattr(algorithm, "is_done")):
        raise TypeError(
            f"algorithm must be a psample.smc.ParticleAlgorithm (init, step, num_steps, is_done), "
            f"got {type(algorithm).__name__}"
        )
    if (algorithm.num_steps is None) == (algorithm.is_done is None):
        raise InvalidTuningError(
            "a particle algorithm needs exactly one of num_steps (a fixed schedule) and is_done "
            f"(until done); got num_steps={algorithm.num_steps!r}, is_done={algorithm.is_done!r}"
        )
    observables = dict(observables or {})
    for name, fn in observables.items():
        if not callable(fn):
            raise TypeError(f"observable {name!r} must be a function of the state, got {type(fn).__name__}")

    mesh = sharding.population_mesh(num_replicates, num_particles, mesh)
    multiprocess = jax.process_count() > 1
    if multiprocess:
        # Every process runs the same chunks (their collectives must pair up); the bar shows on
        # process 0 alone (psample.runtime.progress).
        if chunk_length is None:
            chunk_length = UNTIL_DONE_CHUNK_LENGTH

    init_key, run_key = jax.random.split(rng_key)
    keys = jax.random.split(init_key, num_replicates)
    if mesh is not None:
        # Replicates on "chains" (like chains: over all devices when they divide evenly).
        chains = sharding.CHAIN_AXIS if sharding.CHAIN_AXIS in mesh.axis_names else None
        keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec(chains)))
        run_key = jax.device_put(run_key, NamedSharding(mesh, PartitionSpec()))
    states = _batched_init(algorithm, num_particles, mesh, keys)(keys)
    _check_state(states)
    if algorithm.check_initial is not None:
        algorithm.check_initial(sharding.to_host(states))

    observables = tuple(observables.items())
    run_chunk = _build_chunk_runner(algorithm, observables, num_replicates, mesh, num_particles)
    carry = (states, run_key)
    bytes_per_step = _bytes_per_step(algorithm, observables, num_replicates, carry, mesh, num_particles)

    until = None
    if algorithm.is_done is not None:
        if chunk_length is None and not driver.is_watched(progress):
            # Unwatched open-ended runs (no bar shown: progress=False, a pipe, CI): the driver
            # would size chunks by memory alone (millions of steps); a few steps per chunk stop
            # soon after the last replicate is done.
            chunk_length = UNTIL_DONE_CHUNK_LENGTH
        done_fn = _all_done(algorithm)
        until = lambda c: bool(done_fn(c[0]))

    bar = _bar(algorithm, states)
    result = driver.drive(
        run_chunk, carry, 0, algorithm.num_steps, chunk_length=chunk_length,
        bytes_per_step=bytes_per_step, until=until, progress=progress, unit="step", **bar,
    )  # fmt: skip
    info, obs, valid = driver.concatenate(result.records, axis=0)
    # Until-done runs end with steps where every replicate was already done: drop them.
    any_valid = np.flatnonzero(np.any(valid, axis=1))
    last = int(any_valid[-1]) + 1 if any_valid.size else 0
    to_replicate_major = lambda x: np.swapaxes(np.asarray(x)[:last], 0, 1)
    info = jax.tree.map(to_replicate_major, info)
    obs = {k: to_replicate_major(v) for k, v in obs.items()}
    valid = to_replicate_major(valid)
    final = sharding.to_host(result.carry[0])
    if result.interrupted:
        warnings.warn(
            f"interrupted after {result.num_done} steps: the populations and log_Z are those of "
            "the last completed step (an intermediate distribution, not the target)",
            RuntimeWarning,
            stacklevel=2,
        )
    raw_log_weights = np.asarray(final.log_weights)
    log_weights = raw_log_weights - np.asarray(logsumexp(raw_log_weights, axis=1, keepdims=True))
    if algorithm.check_final is not None:
        complete, incomplete_message = algorithm.check_final(final)
        complete = np.asarray(complete, dtype=bool).reshape(num_replicates)
    else:
        complete, incomplete_message = np.full(num_replicates, not result.interrupted), None
    out = ParticleResult(
        particles=final.particles,
        log_weights=log_weights,
        log_Z=np.asarray(final.log_Z),
        info=_mask_invalid(info, valid),
        observables={k: _mask_invalid(v, valid) for k, v in obs.items()},
        valid=valid,
        final_state=final,
        interrupted=bool(result.interrupted),
        postprocess_fn=algorithm.postprocess_fn,
        resampling=algorithm.resampling,
        complete=complete,
        draws_key=jax.random.fold_in(rng_key, _DRAWS_KEY_DATA),
    )
    _check_nonfinite(out, raw_log_weights, algorithm.nonfinite_source)
    if not result.interrupted and not complete.all() and incomplete_message:
        warnings.warn(incomplete_message, NumericalWarning, stacklevel=2)
    return out


def _bar(algorithm, states) -> dict:
    """The driver's bar arguments: a step count out of ``num_steps`` for a fixed schedule; for an
    until-done algorithm, a fraction bar of its ``temperature`` (the slowest replicate's, 0 to 1)
    when its state has one, else a count of the steps taken. The postfix: the mean ESS of the
    last step (and the steps taken, on a fraction bar)."""
    taken = _StepsTaken()
    fraction = algorithm.is_done is not None and hasattr(states, "temperature")

    last_ess = ["nan"]

    def postfix(records):
        ess, valid = np.asarray(records[0].ess), np.asarray(records[2])
        moved = np.flatnonzero(np.any(valid, axis=1))
        if moved.size:  # the ESS of the chunk's last step that moved (not a no-op after done)
            row = ess[moved[-1]][valid[moved[-1]] & np.isfinite(ess[moved[-1]])]
            last_ess[0] = f"{float(row.mean()):.0f}" if row.size else "nan"
        shown = {"steps": taken(records)} if fraction else {}
        shown["ess"] = last_ess[0]
        return shown

    if fraction:
        def temperature(carry, records):
            return float(np.clip(np.min(jax.device_get(carry[0].temperature)), 0.0, 1.0))

        return {"desc": "temperature", "postfix": postfix, "position": temperature, "total": 1.0}
    if algorithm.is_done is not None:  # no fraction known: the steps taken (not the no-ops after)
        return {"desc": "particles", "postfix": postfix, "position": lambda carry, records: taken(records)}
    return {"desc": "particles", "postfix": postfix}


class _StepsTaken:
    """Steps in which some replicate moved, summed over the chunks seen (each counted once)."""

    def __init__(self):
        self.steps, self._seen = 0, None

    def __call__(self, records) -> int:
        if records is not self._seen:
            self._seen = records
            self.steps += int(np.any(records[2], axis=1).sum())
        return self.steps


def _check_nonfinite(result: "ParticleResult", raw_log_weights: np.ndarray, source: str | None) -> None:
    """Refuse populations with no finite weight (or a non-finite ``log_Z``); warn with the count
    of the user function's non-finite values (``info.num_nonfinite``) otherwise."""
    source = source or "the algorithm's user function (log-density, log-likelihood or score)"
    counts = getattr(result.info, NONFINITE_FIELD, None)
    counts = None if counts is None else np.asarray(counts).reshape(result.num_replicates, -1)
    total = 0 if counts is None else int(counts.sum())
    # A NaN log_Z with no non-finite value met is an algorithm's "no estimate" (reverse
    # diffusion without correction has none); with them, or +-inf, it is a broken estimate.
    met = np.zeros(result.num_replicates, bool) if counts is None else counts.sum(axis=1) > 0
    log_Z = np.asarray(result.log_Z)
    dead = ~np.isfinite(raw_log_weights).any(axis=1) | np.isinf(log_Z) | (np.isnan(log_Z) & met)
    if dead.any():
        replicates = np.flatnonzero(dead).tolist()
        cause = (
            f"{source} returned {total} non-finite value(s) during the run (NaN or +inf; "
            "result.info.num_nonfinite has them per step)"
            if total
            else "the weights underflowed or overflowed"
        )
        raise NonFiniteError(
            f"{len(replicates)} of {result.num_replicates} replicate(s) {_first(replicates)} ended "
            f"with no finite weight (log_Z {result.log_Z[dead][:3].tolist()}): no estimate can "
            f"stand on them. {cause}. The result is attached as error.result.",
            result=result,
        )
    if total:
        steps = int((counts > 0).sum())
        replicates = np.flatnonzero(counts.sum(axis=1)).tolist()
        warnings.warn(
            f"{source} returned a non-finite value (NaN or +inf, or a non-finite score entry) at "
            f"{total} evaluation(s) in {steps} step(s) of {len(replicates)} of "
            f"{result.num_replicates} replicate(s) {_first(replicates)}. Those values count as "
            "zero density (weight zero, moves into them rejected), so every estimate is for the "
            "target restricted to where the function is finite, and is suspect: check the function "
            "for overflow or invalid parameter values. result.info.num_nonfinite has the counts "
            "per step.",
            NumericalWarning,
            stacklevel=3,
        )


def _first(items: list, limit: int = 10) -> list:
    return items if len(items) <= limit else items[:limit] + ["..."]
