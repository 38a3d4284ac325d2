"""Blocked Gibbsian polar slice sampling: a Gibbs scan of polar slice moves over blocks, each with its own preconditioner.

Method. The coordinates of the flattened position are covered by blocks ``B_1, ..., B_m``
(e.g. a hierarchical model's hyperparameters and its latent variables; blocks may overlap: a
block of a scale hyperparameter and all the local scales it multiplies can move along their
ridge, while small blocks move each group's own coordinates).
One transition updates the blocks in turn (a deterministic scan): block ``B_k`` is moved by one
Gibbsian polar slice transition (Schär, Habeck and Rudolf [1]; :mod:`psample.mcmc.polar_slice`)
on its conditional density ``x_{B_k} ↦ ϱ(x)`` with the other blocks held fixed, in the
coordinates ``x_{B_k} = c_k + S_k z`` of the block's own centre ``c_k``, scale ``S_k`` and radius
window ``w_k``. Each block update leaves the conditional law of its block invariant (it is an
exact polar slice transition for that conditional, whose unnormalised density is the joint's),
so the scan leaves the target invariant (Gibbs sampling with exact conditional kernels; Tierney
[2]). A block sees only its own geometry: a hyperparameter block is no longer slowed by the
polar moves of hundreds of latents whose local scale it sets, and the latents are centred and
scaled for themselves.

Contract. :func:`as_top_level_api` (``psample.blocked_polar_slice``) returns a
:class:`psample.base.ChainAlgorithm`: ``init(position) -> BlockedPolarSliceState`` and
``step(rng_key, state) -> (BlockedPolarSliceState, BlockedPolarSliceInfo)``, pure, jittable and
vmappable; ``adaptation`` estimates each block's ``(w, center, scale)`` during warm-up with the
estimators of :func:`psample.mcmc.polar_slice_adaptation.estimate_parameters` (windowed,
cross-chain; a block's gradients are the columns of the joint's gradient, i.e. the gradient of
its conditional); ``with_parameters`` takes their result. After warm-up the parameters are fixed.

Limits.

- Every block needs at least two coordinates (polar coordinates); put a scalar hyperparameter
  in a block with others.
- A transition costs the sum of the blocks' evaluations, each a full evaluation of the joint
  log-density (no conditional structure is exploited): blocking pays where it makes the blocks'
  moves much longer, not where the evaluations could be shared.
- Gibbs sweeps mix slowly where blocks are strongly dependent a posteriori (a hyperparameter
  pinned by the latents it scales, the centred funnel): choose blocks (and a parameterisation,
  :func:`psample.noncentered`) with weak dependence between them.

References
----------
.. [1] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice sampling", ICML 2023,
   PMLR 202:30204-30223. arXiv:2302.03945.
.. [2] Luke Tierney, "Markov chains for exploring posterior distributions", The Annals of
   Statistics 22(4), 1701-1728, 1994 (cycles of invariant kernels).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
from blackjax.types import Array, ArrayTree, PRNGKey

from psample.base import ChainAlgorithm
from psample.errors import InvalidTuningError, ShapeError, check_positive, check_positive_int
from psample.mcmc.polar_slice_adaptation import (
    record_window_draw,
    DENSE_MAX_DIM,
    STRUCTURES,
    _convert_scale,
    _schedule_arrays,
    estimate_parameters,
    stepwise_run,
)
from psample.mcmc.polar_slice_kernel import PolarSliceState, _check_position_dtypes, _real_logdensity, _sanitize, build_kernel
from psample.mcmc.preconditioning import LowRankScale, check_preconditioner, is_concrete, polar_coordinates, to_z

__all__ = [
    "BlockedPolarSliceState",
    "BlockedPolarSliceInfo",
    "BlockedPolarSliceAdaptationState",
    "block_indices",
    "build_kernel_blocked",
    "blocked_polar_slice_adaptation",
    "as_top_level_api",
]


class BlockedPolarSliceState(NamedTuple):
    """State of a blocked polar slice chain.

    position
        The current position (the user's pytree).
    logdensity
        ``logdensity_fn(position)``, scalar (``-inf`` where the density is zero, NaN or ``+inf``).
    """

    position: ArrayTree
    logdensity: Array


class BlockedPolarSliceInfo(NamedTuple):
    """Diagnostics of one sweep over the blocks.

    num_evals
        Log-density evaluations of the sweep (all blocks), scalar.
    num_evals_per_block
        ``(m,)``: the evaluations of each block's update.
    num_radius_expansions, num_radius_shrinks
        ``(m,)``: radius stepping-out steps and rejected radius proposals per block.
    hit_max_proposals
        ``True`` if some block's shrinkage loop reached ``max_proposals`` (that coordinate kept
        its value, in the slice; the transition is then not exactly invariant).
    num_nonfinite
        Evaluations of the sweep at which the log-density was NaN or ``+inf``, scalar.
    """

    num_evals: Array
    num_evals_per_block: Array
    num_radius_expansions: Array
    num_radius_shrinks: Array
    hit_max_proposals: Array
    num_nonfinite: Array


def block_indices(position, blocks) -> tuple[np.ndarray, ...]:
    """The flat indices of each block, checked: covering, at least two coordinates each.

    Parameters
    ----------
    position
        One chain's position (a pytree; no chain axis), for the flat layout
        (``jax.flatten_util.ravel_pytree``).
    blocks
        A sequence of blocks; a block is a sequence of integer indices into the flattened
        position, or, when ``position`` is a dict (NumPyro sites), of its keys (a site's every
        coordinate), or a mix.

    Returns
    -------
    tuple of numpy.ndarray
        One sorted int array per block.

    Raises
    ------
    ShapeError
        If a block is empty or has one coordinate or names one twice, an index is out of range or
        a coordinate is in no block. Blocks may overlap: a coordinate in two blocks is updated
        twice per sweep (each update is exact).
    KeyError
        If a site name is not a key of ``position``.
    """
    leaves, treedef = jax.tree_util.tree_flatten(position)
    sizes = [int(np.prod(np.shape(leaf))) for leaf in leaves]
    offsets = np.cumsum([0] + sizes)
    d = int(offsets[-1])
    # each leaf holds its own flat indices (ravel_pytree's order: the leaves' order)
    layout = treedef.unflatten([np.arange(o, o + n) for o, n in zip(offsets[:-1], sizes)])
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence) or len(blocks) == 0:
        raise ShapeError(f"blocks must be a non-empty sequence of blocks (sequences of indices or site names), got {blocks!r}")
    result, seen = [], np.zeros(d, bool)
    for k, block in enumerate(blocks):
        if isinstance(block, (str, int, np.integer)):
            block = [block]
        indices = []
        for item in block:
            if isinstance(item, str):
                if not isinstance(position, dict) or item not in position:
                    keys = sorted(position) if isinstance(position, dict) else "none (the position is not a dict)"
                    raise KeyError(f"block {k}: site {item!r} is not a key of the position (keys: {keys})")
                indices.extend(np.concatenate([np.ravel(v) for v in jax.tree.leaves(layout[item])]).astype(int).tolist())
            else:
                indices.append(int(item))
        indices = np.asarray(sorted(indices), dtype=int)
        if indices.size < 2:
            raise ShapeError(
                f"block {k} has {indices.size} coordinate(s): polar slice sampling needs at least two per block "
                "(merge a scalar hyperparameter into another block)"
            )
        if indices.min() < 0 or indices.max() >= d:
            raise ShapeError(f"block {k} has indices outside the flattened position's range(0, {d}): {indices.tolist()}")
        if len(np.unique(indices)) != indices.size:
            raise ShapeError(f"block {k} names a coordinate twice: {indices.tolist()}")
        seen[indices] = True
        result.append(indices)
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise ShapeError(f"every coordinate must be in a block; not covered: {missing.tolist()[:20]} (of d = {d})")
    return tuple(result)


def _conditional(logdensity_fn, unravel, flat, idx):
    """``y ↦ logdensity_fn(x with x[idx] = y)``: the block's unnormalised conditional density."""
    return lambda y: logdensity_fn(unravel(flat.at[idx].set(y)))


def build_kernel_blocked(max_proposals: int = 1000) -> Callable:
    """Build the blocked kernel: one polar slice transition per block, in block order.

    Returns
    -------
    kernel
        ``kernel(rng_key, state, logdensity_fn, indices, parameters) ->
        (BlockedPolarSliceState, BlockedPolarSliceInfo)`` with ``indices`` from
        :func:`block_indices` (static) and ``parameters`` a tuple of one
        ``{"w", "center", "scale"}`` per block (``center`` ``(d_k,)``, ``scale`` of any form of
        :func:`psample.polar_slice`, both in the block's coordinates; may be traced).
    """
    kernel = build_kernel(max_proposals)

    def blocked(rng_key: PRNGKey, state: BlockedPolarSliceState, logdensity_fn: Callable, indices, parameters):
        flat, unravel = jax.flatten_util.ravel_pytree(state.position)
        logdensity = state.logdensity
        keys = jax.random.split(rng_key, len(indices))
        infos = []
        for k, idx in enumerate(indices):  # static: the blocks, not the steps
            p = parameters[k]
            y = flat[idx]
            radius, direction = polar_coordinates(to_z(y, p["center"], p["scale"]))
            sub = PolarSliceState(y, logdensity, radius, direction)
            sub, info = kernel(keys[k], sub, _conditional(logdensity_fn, unravel, flat, idx), p["w"], p["center"], p["scale"])
            flat = flat.at[idx].set(sub.position)
            logdensity = sub.logdensity
            infos.append(info)
        stack = lambda name: jnp.stack([getattr(i, name) for i in infos])  # noqa: E731
        evals = stack("num_evals")
        info = BlockedPolarSliceInfo(
            num_evals=jnp.sum(evals),
            num_evals_per_block=evals,
            num_radius_expansions=stack("num_radius_expansions"),
            num_radius_shrinks=stack("num_radius_shrinks"),
            hit_max_proposals=jnp.any(stack("hit_max_proposals")),
            num_nonfinite=jnp.sum(stack("num_nonfinite")),
        )
        return BlockedPolarSliceState(unravel(flat), logdensity), info

    return blocked


def init(position, logdensity_fn: Callable) -> BlockedPolarSliceState:
    """The chain state at ``position`` (one evaluation of the log-density).

    Raises
    ------
    DtypeError
        If a leaf is not a real float32/float64 array or the log-density is complex.
    ShapeError
        If ``logdensity_fn`` does not return a scalar.
    """
    _check_position_dtypes(position)
    flat, _ = jax.flatten_util.ravel_pytree(position)
    value = _real_logdensity(logdensity_fn(position), flat.dtype)
    if value.shape != ():
        raise ShapeError(f"logdensity_fn must return a scalar, got an array of shape {value.shape}")
    return BlockedPolarSliceState(position, _sanitize(value))


def _default_parameters(indices, dtype, w, structure):
    out = []
    for idx in indices:
        d = idx.size
        form = ("dense" if d <= DENSE_MAX_DIM else "low_rank") if structure == "auto" else structure
        out.append({"w": jnp.asarray(w, dtype), "center": jnp.zeros(d, dtype),
                    "scale": _convert_scale(None, form, d, min(16, d), dtype)})
    return tuple(out)


def _check_parameters(parameters, indices):
    if len(parameters) != len(indices):
        raise ShapeError(f"parameters: one dict per block expected ({len(indices)} blocks), got {len(parameters)}")
    for k, (p, idx) in enumerate(zip(parameters, indices)):
        if set(p) != {"w", "center", "scale"}:
            raise InvalidTuningError(f"parameters[{k}] must have the keys 'w', 'center', 'scale', got {sorted(p)}")
        check_preconditioner(p["center"], p["scale"], idx.size)
        if is_concrete(p["w"]):
            check_positive(f"parameters[{k}]['w']", float(p["w"]))


class BlockedPolarSliceAdaptationState(NamedTuple):
    """Carry of the blocked adaptation (all chains together).

    states
        The chains' :class:`BlockedPolarSliceState` (leading chain axis ``C``).
    parameters
        Tuple of one ``{"w", "center", "scale"}`` per block.
    buffer
        ``(C, K, d)`` thinned flat positions of the current window.
    step
        Steps done, int32 scalar.
    counts
        ``(m, 2)``: radius expansions and shrinks per block, summed over the window.
    """

    states: ArrayTree
    parameters: tuple
    buffer: Array
    step: Array
    counts: Array


def blocked_polar_slice_adaptation(
    logdensity_fn: Callable,
    blocks,
    *,
    w: float = 1.0,
    max_proposals: int = 1000,
    structure: str = "auto",
    max_draws_per_chain: int = 100,
    use_gradients: bool = True,
):
    """Windowed, cross-chain adaptation of each block's ``(w, center, scale)``.

    The windows of :func:`psample.mcmc.polar_slice_adaptation.window_schedule`; at each
    window's end every block's parameters are re-estimated by
    :func:`~psample.mcmc.polar_slice_adaptation.estimate_parameters` from that block's
    coordinates of the window's thinned draws (pooled over the chains), with the joint's
    gradient at those draws restricted to the block (the gradient of the block's conditional).

    Returns
    -------
    PolarSliceAdaptation
        ``run(rng_key, positions, num_steps) -> ((states, parameters), info)`` (positions with
        a leading chain axis) and ``init``/``step``/``final``; ``parameters`` is the tuple
        :func:`as_top_level_api`'s ``with_parameters`` takes. ``info`` is the per-step
        :class:`BlockedPolarSliceInfo` (leaves with a chain axis).
    """
    from psample.mcmc.polar_slice_adaptation import PolarSliceAdaptation

    if structure not in STRUCTURES:
        raise InvalidTuningError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    max_draws_per_chain = check_positive_int("max_draws_per_chain", max_draws_per_chain)
    kernel = build_kernel_blocked(max_proposals)

    def forms(indices):
        return tuple(("dense" if i.size <= DENSE_MAX_DIM else "low_rank") if structure == "auto" else structure
                     for i in indices)

    def init_(positions, num_steps: int) -> BlockedPolarSliceAdaptationState:
        check_positive_int("num_steps", num_steps)
        one = jax.tree.map(lambda a: a[0], positions)
        indices = block_indices(one, blocks)
        flat = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(positions)
        num_chains, d = flat.shape
        parameters = _default_parameters(indices, flat.dtype, w, structure)
        states = jax.vmap(lambda p: init(p, logdensity_fn))(positions)
        rows = min(max_draws_per_chain, num_steps)
        buffer = jnp.zeros((num_chains, rows, d), flat.dtype)
        counts = jnp.zeros((len(indices), 2), flat.dtype)
        return BlockedPolarSliceAdaptationState(states, parameters, buffer, jnp.asarray(0, jnp.int32), counts)

    def step(rng_key, carry: BlockedPolarSliceAdaptationState, num_steps: int):
        states, parameters, buffer, t, counts = carry
        num_chains, rows, d = buffer.shape
        one = jax.tree.map(lambda a: a[0], states.position)
        indices = block_indices(one, blocks)
        block_forms = forms(indices)
        starts, ends, strides, kept = _schedule_arrays(num_steps, rows)
        keys = jax.random.split(rng_key, num_chains)
        states, info = jax.vmap(lambda k, s: kernel(k, s, logdensity_fn, indices, parameters))(keys, states)
        buffer, window, start, end = record_window_draw(buffer, states.position, t, (starts, ends, strides))
        window_end = t + 1 == end
        counts = counts + jnp.stack([jnp.sum(info.num_radius_expansions, 0), jnp.sum(info.num_radius_shrinks, 0)], 1)
        _, unravel = jax.flatten_util.ravel_pytree(one)

        def re_estimate(parameters):
            gradients = None
            if use_gradients:
                grad = jax.grad(lambda f: jnp.asarray(logdensity_fn(unravel(f)), f.dtype))
                gradients = jax.vmap(jax.vmap(grad))(buffer)
            new = []
            for k, idx in enumerate(indices):
                new.append(estimate_parameters(
                    buffer[:, :, idx], jnp.asarray(kept)[window], parameters[k], block_forms[k],
                    rank=min(16, idx.size), allow_diagonal=structure == "auto",
                    radius_counts=tuple(counts[k] / ((end - start) * num_chains)),
                    gradients=None if gradients is None else gradients[:, :, idx],
                ))  # fmt: skip
            return tuple(new)

        parameters = jax.lax.cond(window_end, re_estimate, lambda p: p, parameters)
        counts = jnp.where(window_end, 0.0, counts)
        return BlockedPolarSliceAdaptationState(states, parameters, buffer, t + 1, counts), info

    def final(carry):
        states, parameters = carry.states, carry.parameters
        if structure != "auto" or not is_concrete(parameters):
            return states, parameters
        out = []
        for p in parameters:  # a diagonal matrix chosen by the last window: the vector form, O(d_k)
            scale = p["scale"]
            if not isinstance(scale, LowRankScale) and np.ndim(scale) == 2 and not np.any(np.tril(np.asarray(scale), -1)):
                p = dict(p, scale=jnp.asarray(np.diag(np.asarray(scale)).copy()))
            out.append(p)
        return states, tuple(out)

    return PolarSliceAdaptation(stepwise_run(init_, step, final), init_, step, final)


def as_top_level_api(
    logdensity_fn: Callable,
    blocks,
    *,
    w: float = 1.0,
    parameters=None,
    max_proposals: int = 1000,
    structure: str = "auto",
) -> ChainAlgorithm:
    """Blocked Gibbsian polar slice sampler: one polar slice move per block of coordinates, in turn.

    Examples
    --------
    .. code::

        # a NumPyro model's sites: hyperparameters in one block, the latent series in another
        sampler = psample.blocked_polar_slice(target.logdensity_fn,
                                              [["mu", "log_tau"], ["theta"]])
        trace = psample.sample(sampler, target.initial_positions(key, 8), key, 1000, num_warmup=1000)

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar`` unnormalised log-density (any pytree position).
    blocks
        Blocks covering every coordinate (they may overlap), each of at least two coordinates: sequences
        of flat indices, or of site names for dict positions (:func:`block_indices`).
    w
        Initial radius window of every block (> 0), before adaptation.
    parameters
        Tuple of one ``{"w", "center", "scale"}`` per block (each as for
        :func:`psample.polar_slice`, in the block's coordinates); default ``w`` and the identity
        at the origin. The warm-up ``adaptation`` estimates them.
    max_proposals
        As for :func:`psample.polar_slice` (per block update).
    structure
        The scale form the adaptation estimates per block: ``"auto"``, ``"dense"``,
        ``"low_rank"`` or ``"diagonal"``.

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position) -> BlockedPolarSliceState``,
        ``step(rng_key, state) -> (BlockedPolarSliceState, BlockedPolarSliceInfo)``,
        ``adaptation`` (:func:`blocked_polar_slice_adaptation`) and ``with_parameters``.

    Raises
    ------
    InvalidTuningError, ShapeError
        Bad ``w``, ``max_proposals``, ``structure`` or ``parameters``; bad ``blocks`` are
        refused at ``init`` (their layout needs a position).
    """
    if not isinstance(w, jax.core.Tracer):
        w = check_positive("w", w)
    if structure not in STRUCTURES:
        raise InvalidTuningError(f"structure must be one of {STRUCTURES}, got {structure!r}")
    kernel = build_kernel_blocked(max_proposals)
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
        raise ShapeError(f"blocks must be a sequence of blocks (sequences of indices or site names), got {blocks!r}")

    def resolve(position):
        indices = block_indices(position, blocks)
        if parameters is None:
            dtype = jax.flatten_util.ravel_pytree(position)[0].dtype
            return indices, _default_parameters(indices, dtype, w, "diagonal")
        _check_parameters(parameters, indices)
        return indices, parameters

    def init_fn(position):
        resolve(position)  # check the blocks and parameters before any work
        return init(position, logdensity_fn)

    def step_fn(rng_key, state):
        indices, p = resolve(state.position)
        return kernel(rng_key, state, logdensity_fn, indices, p)

    adaptation = blocked_polar_slice_adaptation(
        logdensity_fn, blocks, w=w, max_proposals=max_proposals, structure=structure
    )

    def with_parameters(new_parameters) -> ChainAlgorithm:
        return as_top_level_api(
            logdensity_fn, blocks, w=w, parameters=tuple(new_parameters), max_proposals=max_proposals, structure=structure
        )

    return ChainAlgorithm(init_fn, step_fn, adaptation, with_parameters)
