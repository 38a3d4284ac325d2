"""The run plan of the chain runner and the jitted chunk functions that carry it out.

:class:`RunPlan` is the static description of a :func:`psample.sample` run (chains, warm-up
steps, thinning, kept draws, chunk size, adaptation or burn-in); the checkpoint stores it to
resume the run. :func:`chunk_functions` builds, once per algorithm and plan shape (cached in
:mod:`psample.runtime.compiled`), the two functions the chunk driver
(:func:`psample.runtime.driver.drive`) calls again and again, in its form ``(carry, indices) ->
(carry, records)`` with carry ``(states, rng_key)``:

- ``draws`` takes kept-draw indices and records one :class:`~psample.runtime.trace.Draw` per
  kept draw (position, info, log-density, observables), leaves ``(chain, draw, ...)``;
- ``warmup`` takes step indices and records nothing (burn-in).

Randomness contract: the key of sampler step ``t`` is ``fold_in(rng_key, t)`` split into one key
per chain, and kept draw ``d`` is made by steps ``num_warmup + d * thin`` to
``num_warmup + (d + 1) * thin - 1``. The draws are thus a function of the key and the step
index alone: the same whatever the chunking, and a resumed run continues bit for bit.

Chains are ``jax.vmap``-ed; on a mesh with axes besides ``"chains"`` (a sampler that
``shard_map``-s its own work over another axis) the vmap names the ``"chains"`` axis
(``spmd_axis_name``). An algorithm whose functions close over arrays spread over several
processes (:class:`psample.base.HoistedArguments`) gets them as arguments of the jitted
functions, never as constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh

from psample.runtime import checks, compiled
from psample.runtime.sharding import CHAIN_AXIS
from psample.runtime.trace import Draw

__all__ = ["RunPlan", "ChunkFunctions", "chunk_functions", "record_bytes"]


@dataclass(frozen=True)
class RunPlan:
    """Static description of a run: what the checkpoint stores to resume it.

    ``chunk_size`` is the user's choice of draws per chunk, ``0`` for automatic. ``adapt``: the
    warm-up is the algorithm's adaptation (:mod:`psample.runtime.warmup`), not burn-in.
    """

    num_chains: int
    num_warmup: int
    thin: int
    num_draws: int
    chunk_size: int
    adapt: bool = False

    def step_index(self, draw: int) -> int:
        """Global index of the first sampler step of kept draw ``draw``."""
        return self.num_warmup + draw * self.thin


class ChunkFunctions(NamedTuple):
    """Jitted chunk functions in the driver's form ``(carry, indices) -> (carry, records)``.

    The carry is ``(states, rng_key)``. ``draws`` takes draw indices and records a
    :class:`~psample.runtime.trace.Draw` with leaves ``(chain, draw, ...)``; ``warmup`` takes step
    indices and records nothing.
    """

    draws: Callable
    warmup: Callable


def chunk_functions(algorithm, observables: dict, plan: RunPlan, mesh: Mesh | None = None) -> ChunkFunctions:
    """The jitted chunk functions of ``plan``, cached per algorithm (:mod:`psample.runtime.compiled`).

    Parameters
    ----------
    algorithm
        ``init``/``step`` of one chain (``step(rng_key, state) -> (state, info)``).
    observables : dict
        ``{name: fn(state) -> array}`` of one chain's state, recorded with every kept draw.
    plan : RunPlan
        The compiled functions depend on ``num_chains``, ``num_warmup`` and ``thin``.
    mesh : jax.sharding.Mesh, optional
        The chains' mesh; a mesh with axes besides ``"chains"`` names the vmapped axis.

    Returns
    -------
    ChunkFunctions
        ``draws((states, rng_key), draw_indices)`` with ``draw_indices`` ``(length,)`` int32
        records a :class:`~psample.runtime.trace.Draw` of leaves ``(num_chains, length, ...)``;
        ``warmup((states, rng_key), step_indices)`` records ``None``. ``states`` have leaves
        ``(num_chains, ...)``.
    """
    # Only a mesh with axes besides "chains" (chains x shards) needs the name: a sampler inside
    # shard_maps over that same mesh. A 1-D chains mesh keeps the plain vmap.
    spmd = CHAIN_AXIS if mesh is not None and CHAIN_AXIS in mesh.axis_names and len(mesh.axis_names) > 1 else None
    hoist = checks.hoisted(algorithm)
    key = ("chunks", tuple(observables.items()), plan.num_chains, plan.num_warmup, plan.thin, spmd, hoist is None)
    functions = compiled.cached(
        checks.cache_owner(algorithm), key, lambda: _build_chunk_functions(algorithm, observables, plan, spmd)
    )
    if hoist is None:
        return functions
    # Cached without the arguments: every algorithm of the same owner calls them with its own.
    return ChunkFunctions(checks.WithArguments(functions.draws, hoist), checks.WithArguments(functions.warmup, hoist))


def _build_chunk_functions(algorithm, observables: dict, plan: RunPlan, spmd: str | None = None) -> ChunkFunctions:
    hoist = checks.hoisted(algorithm)
    if hoist is None:
        return ChunkFunctions(*map(jax.jit, _chunk_bodies(algorithm, observables, plan, spmd)))
    # The algorithm's large arrays (e.g. data split over processes) or its adapted parameters
    # are arguments, not constants: ``fn(carry, indices, arguments)``.
    rebind = hoist()[1]

    def draws(carry, indices, arguments):
        return _chunk_bodies(rebind(arguments), observables, plan, spmd)[0](carry, indices)

    def warmup(carry, indices, arguments):
        return _chunk_bodies(rebind(arguments), observables, plan, spmd)[1](carry, indices)

    return ChunkFunctions(jax.jit(draws), jax.jit(warmup))


def _chunk_bodies(algorithm, observables: dict, plan: RunPlan, spmd: str | None = None):
    """The chunk functions' bodies ``(run_draws, run_warmup)``, not jitted."""
    # With a "chains" mesh axis, a sampler that shard_maps its own work over another axis of the
    # same mesh (ADMM: agents on "shards") sees the chain axis sharded on "chains" (2-D meshes).
    step = jax.vmap(algorithm.step, spmd_axis_name=spmd)
    observables = dict(observables)
    num_chains, num_warmup, thin = plan.num_chains, plan.num_warmup, plan.thin

    def take_step(state, step_index, rng_key):
        keys = jax.random.split(jax.random.fold_in(rng_key, step_index), num_chains)
        return step(keys, state)

    def record(state, info) -> Draw:
        obs = {name: jax.vmap(fn)(state) for name, fn in observables.items()}
        return Draw(checks.state_position(state), info, checks.state_logdensity(state), obs)

    def draw_once(rng_key, state, draw_index):
        first = num_warmup + draw_index * thin
        if thin == 1:
            state, info = take_step(state, first, rng_key)
        else:
            state = lax.fori_loop(0, thin - 1, lambda j, s: take_step(s, first + j, rng_key)[0], state)
            state, info = take_step(state, first + thin - 1, rng_key)
        return state, record(state, info)

    def run_draws(carry, draw_indices):
        state, rng_key = carry
        state, records = lax.scan(lambda s, i: draw_once(rng_key, s, i), state, draw_indices)
        # (draw, chain, ...) -> (chain, draw, ...)
        return (state, rng_key), jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), records)

    def run_warmup(carry, step_indices):
        state, rng_key = carry
        state = lax.scan(lambda s, t: (take_step(s, t, rng_key)[0], None), state, step_indices)[0]
        return (state, rng_key), None

    return run_draws, run_warmup


def record_bytes(functions: ChunkFunctions, states, rng_key) -> int:
    """Host bytes one kept draw records (all chains, every leaf of its
    :class:`~psample.runtime.trace.Draw`), from the shapes alone: nothing runs."""
    shapes = jax.eval_shape(functions.draws, (states, rng_key), jnp.arange(1, dtype=jnp.int32))[1]
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(shapes))
