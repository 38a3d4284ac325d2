"""One transition of Gibbsian polar slice sampling (GPSS): state, ``init`` and kernels.

The method, its references and its contract are described in :mod:`psample.mcmc.polar_slice`,
whose top-level constructor bundles this kernel with its warm-up adaptation (and re-exports
every name here). This module is the transition alone, so that the adaptation
(:mod:`psample.mcmc.polar_slice_adaptation`) can drive it without importing the constructor.
See the :doc:`family page </families/polar_slice>` for the method, tuning and measured limits.

Implementation
--------------
One transition draws a slice level ``ℓ = L(r, θ) + log U`` with
``L(r, θ) = (d - 1) log r + log ϱ(c + r S θ)`` and then, at that level, the direction ``θ | r``
by geodesic shrinkage on a uniformly random great circle through ``θ`` ([1], Alg. 1) and the
radius ``r | θ`` by stepping-out and shrinkage on the ray ([3]) from a window of width ``w``
at a uniform offset. Every evaluation of one transition happens at one site of one
``lax.while_loop`` that walks through the phases direction, step-down, step-up, shrink: the
target is traced once, and under ``vmap`` a chain waits for the slowest chain once per
transition. All arithmetic is in log space (``L(0, ·) = -inf``, strict ``L > ℓ``), and every
direction proposal is re-normalised to unit length (the authors' reference code fixed a
missing normalisation of the first proposal in 2025). With a preconditioner ``S`` is applied
once per transition, to the circle's second axis.

Limits: stepping-out uses Neal's limit ``m = max_proposals`` split at random between the two
ends of the bracket ([3], Fig. 3), which keeps the radius update exact; each shrinkage loop is
capped at ``max_proposals`` evaluations, and a capped loop keeps the old value of its
coordinate and sets ``hit_max_proposals`` (that transition is not exactly invariant). A NaN or
``+inf`` log-density counts as outside every slice and in ``num_nonfinite``.

References
----------
.. [1] Philip Schär, Michael Habeck and Daniel Rudolf, "Gibbsian polar slice
   sampling", Proceedings of the 40th International Conference on Machine
   Learning (ICML), PMLR 202:30204-30223, 2023. arXiv:2302.03945.
.. [2] Gareth O. Roberts and Jeffrey S. Rosenthal, "The polar slice sampler",
   Stochastic Models 18(2), 257-280, 2002.
.. [3] Radford M. Neal, "Slice sampling", The Annals of Statistics 31(3),
   705-767, 2003.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
from blackjax.types import Array, ArrayLikeTree, ArrayTree, PRNGKey

from psample.base import is_nonfinite_logdensity
from psample.errors import DtypeError, InitialPointError, ShapeError, check_positive_int
from psample.mcmc.preconditioning import apply_scale, check_preconditioner, is_concrete, to_z
from psample.rng import log_uniform

__all__ = [
    "PolarSliceState",
    "PolarSliceInfo",
    "init",
    "init_transformed",
    "build_kernel",
    "build_direction_kernel",
    "build_radius_kernel",
]


class PolarSliceState(NamedTuple):
    """State of a Gibbsian polar slice chain.

    position
        Current position, a pytree with the structure the user passed to
        :func:`init`; it equals ``unravel(center + scale · radius · direction)``
        (``unravel(radius * direction)`` without preconditioning).
    logdensity
        ``logdensity_fn(position)``, scalar (``-inf`` where the density is zero, NaN or ``+inf``).
    radius
        ``||z||`` of the preconditioned position ``z = scale⁻¹ (x - center)`` (``x`` flattened;
        ``z = x`` without preconditioning), scalar ``r > 0``.
    direction
        Unit vector ``theta = z / ||z||``, shape ``(d,)``.
        Kept in the state (rather than recomputed from ``position``) so that its
        norm stays 1 to round-off over arbitrarily long runs.
    """

    position: ArrayTree
    logdensity: Array
    radius: Array
    direction: Array


class PolarSliceInfo(NamedTuple):
    """Diagnostics of one Gibbsian polar slice transition (all scalars).

    num_evals
        Log-density evaluations this step: direction proposals plus radius
        stepping-out and shrinkage evaluations. A lower bracket end clipped to
        ``r = 0`` costs none (``L(0) = -inf`` is known), nor does an end whose
        stepping-out budget is spent.
    num_direction_shrinks
        Rejected great-circle proposals (each one shrinks the angle bracket).
    num_radius_expansions
        Stepping-out steps of the radius bracket (both ends together).
    num_radius_shrinks
        Rejected radius proposals (each one shrinks the radius bracket).
    hit_max_proposals
        ``True`` if a shrinkage loop (angle or radius) reached ``max_proposals``
        evaluations; the coordinate it was updating then keeps its old value, which
        lies in the slice.
    num_nonfinite
        Evaluations this step at which ``logdensity_fn`` returned NaN or ``+inf`` (both count
        as outside the slice; ``-inf`` is a zero density and is not counted). A chain whose
        density is non-finite everywhere nearby stops moving; the runner warns when any step
        has one.
    """

    num_evals: Array
    num_direction_shrinks: Array
    num_radius_expansions: Array
    num_radius_shrinks: Array
    hit_max_proposals: Array
    num_nonfinite: Array


def init(position: ArrayLikeTree, logdensity_fn: Callable) -> PolarSliceState:
    """Create the chain state at ``position``.

    Parameters
    ----------
    position
        A pytree of real floating arrays (float32 or wider) with ``d >= 2`` entries in total
        (no chain axis).
    logdensity_fn
        ``position -> scalar`` unnormalised log-density of the target.

    Returns
    -------
    PolarSliceState
        Under ``jit``/``vmap`` the origin cannot raise: there ``radius`` and ``direction`` are
        NaN (the direction ``x/||x||`` is undefined), which ``psample.sample`` reports as an
        :class:`~psample.errors.InitialPointError` naming the chains.

    Raises
    ------
    ShapeError
        If the position has fewer than two entries (polar coordinates need ``d >= 2``), or
        ``logdensity_fn`` does not return a scalar.
    DtypeError
        If a leaf of the position is not a real floating array of at least 32 bits (integer,
        complex, float16 and bfloat16 positions are refused: the slice arithmetic needs the
        precision), or ``logdensity_fn`` returns a complex value (checked on the dtype, so
        also under ``jit``/``vmap``).
    InitialPointError
        If the position is concrete and exactly the origin.
    """
    _check_position_dtypes(position)
    flat, _ = jax.flatten_util.ravel_pytree(position)
    d = flat.shape[0]
    if d < 2:
        raise ShapeError(
            f"polar slice sampling needs a position with d >= 2 entries, got d={d} "
            f"(position shapes {jax.tree.map(jnp.shape, position)})"
        )
    logdensity = _real_logdensity(logdensity_fn(position), flat.dtype)
    if logdensity.shape != ():
        raise ShapeError(
            f"logdensity_fn must return a scalar, got an array of shape {logdensity.shape} "
            "(sum the terms of a vector-valued log-density)"
        )
    radius = jnp.linalg.norm(flat)
    if not isinstance(radius, jax.core.Tracer) and not float(radius) > 0:
        raise InitialPointError(
            f"polar slice sampling cannot start at position={position!r}: its norm is "
            f"{float(radius)!r}, and the direction x/||x|| is undefined at the origin"
        )
    # Under jit the origin cannot raise: NaN marks the undefined polar coordinates, and the
    # runner's check of the initial states names the chains.
    at_origin = ~(radius > 0)
    radius = jnp.where(at_origin, jnp.nan, radius)
    direction = flat / jnp.where(at_origin, jnp.nan, radius)
    return PolarSliceState(position, _sanitize(logdensity), radius, direction)


def _check_position_dtypes(position) -> None:
    """Refuse positions the slice arithmetic cannot handle (static check, works under jit)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(position)[0]:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
            where = jax.tree_util.keystr(path) or "position"
            raise DtypeError(
                f"polar slice sampling needs real float32 or float64 positions, got dtype {dtype} "
                f"at {where}: cast the initial positions, e.g. x.astype(jnp.float32)"
                + (" (float16/bfloat16 give badly wrong variances)" if jnp.issubdtype(dtype, jnp.floating) else "")
            )


def _real_logdensity(value, dtype) -> Array:
    """``value`` as a ``dtype`` array; a complex log-density is refused, not cast.

    Casting would drop the imaginary part with nothing but NumPy's ``ComplexWarning``; the
    dtype is static, so this raises at trace time, before any step runs.
    """
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
        raise DtypeError(
            f"logdensity_fn returns a complex value (dtype {value.dtype}): a log-density must be real. "
            "Find where it turns complex (e.g. jnp.log or a power of a complex or negative input) or "
            "return jnp.real(...) if the imaginary part is round-off"
        )
    return value.astype(dtype)


def init_transformed(position: ArrayLikeTree, logdensity_fn: Callable, center=None, scale=None) -> PolarSliceState:
    """Create the chain state at ``position`` for the sampler preconditioned by ``(center, scale)``.

    The state's ``radius`` and ``direction`` are those of ``z = scale⁻¹ (x - center)``; its
    ``position`` and ``logdensity`` those of ``x``. With ``center = scale = None`` this is
    :func:`init`.

    Raises
    ------
    ShapeError, InvalidTuningError
        As :func:`psample.mcmc.preconditioning.check_preconditioner`, and as :func:`init`.
    InitialPointError
        If ``position`` is concrete and equals ``center`` (``z = 0``).
    """
    flat, _ = jax.flatten_util.ravel_pytree(position)
    if center is None and scale is None:
        return init(position, logdensity_fn)
    check_preconditioner(center, scale, flat.shape[0])
    z = to_z(flat, center, scale)
    if is_concrete(z) and flat.shape[0] >= 2 and not float(jnp.linalg.norm(z)) > 0:
        raise InitialPointError(
            f"polar slice sampling cannot start at position={position!r}: it equals center, the "
            "origin of the preconditioned coordinates, where the direction is undefined"
        )
    state = init(z, lambda _: logdensity_fn(position))
    return state._replace(position=position)



def _sanitize(logdensity: Array) -> Array:
    """NaN and ``+inf`` log-densities count as outside every slice (``-inf``).

    ``+inf`` cannot be inside a slice either: a chain that accepted it would hold the level
    ``+inf + log U = +inf`` from then on, above every point, and never move again.
    """
    return jnp.where(is_nonfinite_logdensity(logdensity), -jnp.inf, logdensity)


def _polar_logdensity(logdensity_fn: Callable, unravel_fn: Callable, d: int, center=None) -> Callable:
    """``(r, S theta) -> (L(r, theta), log rho(c + r S theta), nonfinite)`` with ``L(r <= 0) = -inf``.

    The direction is passed already mapped by the scale (``S theta``, see
    :func:`_gibbs_polar_update`), so an evaluation costs ``O(d)`` beyond the target's own.
    ``nonfinite`` flags a NaN or ``+inf`` log-density (not evaluated at ``r <= 0``, where
    ``L = -inf``); both count as outside the slice.
    """

    def polar(r, scaled_theta):
        x = r * scaled_theta if center is None else center + r * scaled_theta
        raw = _real_logdensity(logdensity_fn(unravel_fn(x)), scaled_theta.dtype)
        logrho = _sanitize(raw)
        safe_r = jnp.where(r > 0, r, 1.0)
        value = jnp.where(r > 0, (d - 1) * jnp.log(safe_r) + logrho, -jnp.inf)
        return _sanitize(value), logrho, (r > 0) & is_nonfinite_logdensity(raw)

    return polar


def _slice_level(rng_key: PRNGKey, state: PolarSliceState, d: int) -> Array:
    """``ell = L(r, theta) + log U`` (log space, no exp of the density)."""
    # U on the open interval (0, 1): jax.random.uniform returns exactly 0 once in 2**23
    # float32 draws, which would make the level -inf and the slice everything.
    log_u = log_uniform(rng_key, dtype=state.direction.dtype)
    current = (d - 1) * jnp.log(state.radius) + state.logdensity
    return current + log_u


# Phases of one transition. All log-density evaluations happen at one site inside one
# ``lax.while_loop`` whose carry says which phase the chain is in: the target is compiled
# once, and under ``vmap`` a chain that needs few evaluations in one phase does not wait
# for the slowest chain at every phase boundary (only once, at the end).
_DIRECTION, _STEP_DOWN, _STEP_UP, _SHRINK, _DONE = range(5)


class _LoopCarry(NamedTuple):
    key: PRNGKey
    phase: Array  # one of the phases above
    phase_evals: Array  # evaluations in the current phase (the shrinkage cap)
    theta: Array  # accepted direction (the old one until the direction phase accepts)
    scaled_theta: Array  # S theta (theta without a scale)
    radius: Array  # accepted radius (the old one until radius shrinkage accepts)
    logrho: Array  # log rho(radius * theta)
    angle_lo: Array  # angle bracket of geodesic shrinkage, contains 0
    angle_hi: Array
    lower: Array  # radius bracket, contains the old radius
    upper: Array
    steps_down_left: Array  # stepping-out budget of each end (Neal's J and K)
    steps_up_left: Array
    num_evals: Array
    num_direction_shrinks: Array
    num_radius_expansions: Array
    num_radius_shrinks: Array
    hit_max_proposals: Array
    num_nonfinite: Array


def _skip_empty_phases(phase, lower, steps_down_left, steps_up_left):
    """Leave a stepping-out phase that needs no evaluation (end at 0 or no budget left)."""
    phase = jnp.where((phase == _STEP_DOWN) & ((lower <= 0) | (steps_down_left == 0)), _STEP_UP, phase)
    return jnp.where((phase == _STEP_UP) & (steps_up_left == 0), _SHRINK, phase)


def _gibbs_polar_update(
    rng_key, state, level, polar, w, max_proposals, first_phase, last_phase, center=None, scale=None
):
    """Direction and/or radius update of one transition at slice level ``level``.

    The direction update (phase ``_DIRECTION``) is geodesic shrinkage on a random great
    circle through ``theta`` at the old radius. The radius update (``_STEP_DOWN``,
    ``_STEP_UP``, ``_SHRINK``) is Neal's stepping-out and shrinkage on the ray
    ``{s theta : s > 0}``. Stepping-out uses Neal's (2003, Fig. 3) limit
    ``m = max_proposals`` split at random between the two ends (``J = floor(m V)`` steps
    down, ``m - 1 - J`` up): this keeps the update exact however far the slice reaches
    (radii of heavy-tailed targets can be 1e4 times ``w``), and with the default ``m``
    it only differs from the paper's unlimited stepping-out in such extreme cases. Points
    ``s <= 0`` are outside every slice, so the lower end is clipped at 0 and stops there.
    Shrinkage (angle or radius) is capped at ``max_proposals`` evaluations, after which
    the old value is kept and ``hit_max_proposals`` is set.

    ``first_phase``/``last_phase`` (static) select the full transition or one sub-update.

    With a ``scale`` ``S``, the points evaluated are ``c + r S theta``. Every candidate
    direction is a combination ``(cos a theta0 + sin a y) / n`` of two vectors fixed for the
    transition, so ``S theta0 = (x - c) / r`` (read off the state) and ``S y`` (one product) are
    formed once and each evaluation combines them in ``O(d)``: a dense scale costs one mat-vec
    per transition, not one per evaluation.

    Returns
    -------
    _LoopCarry
        The final carry: ``theta``, ``radius``, ``logrho`` and the counters.
    """
    dtype = state.direction.dtype
    theta0, radius0 = state.direction, state.radius
    w = jnp.asarray(w, dtype=dtype)
    two_pi = jnp.asarray(2.0 * jnp.pi, dtype=dtype)
    normal_key, offset_key, split_key, loop_key = jax.random.split(rng_key, 4)

    # A uniform point of the great subsphere orthogonal to theta0: the great circle
    # {cos(a) theta0 + sin(a) perpendicular} is uniform among those through theta0.
    z = jax.random.normal(normal_key, theta0.shape, dtype=dtype)
    z = z - jnp.dot(z, theta0) * theta0
    perpendicular = z / jnp.linalg.norm(z)
    if scale is None:
        scaled_theta0 = theta0
    else:  # the state's x = c + r S theta gives S theta for free: one mat-vec per transition, S y
        flat, _ = jax.flatten_util.ravel_pytree(state.position)
        scaled_theta0 = (flat.astype(dtype) - (0.0 if center is None else center)) / radius0
    scaled_perpendicular = apply_scale(scale, perpendicular)

    # Initial radius bracket of width w at a uniform offset, and the stepping-out budget.
    u = jax.random.uniform(offset_key, dtype=dtype)
    lower = jnp.maximum(radius0 - u * w, 0.0)
    upper = radius0 + (1.0 - u) * w
    steps_down = jnp.floor(max_proposals * jax.random.uniform(split_key, dtype=dtype)).astype(jnp.int32)
    steps_down = jnp.minimum(steps_down, max_proposals - 1)
    steps_up = (max_proposals - 1) - steps_down

    zero, false = jnp.asarray(0, jnp.int32), jnp.asarray(False)
    phase = _skip_empty_phases(jnp.asarray(first_phase, jnp.int32), lower, steps_down, steps_up)
    carry = _LoopCarry(
        loop_key, phase, zero, theta0, scaled_theta0, radius0, state.logdensity, -two_pi, two_pi,
        lower, upper, steps_down, steps_up, zero, zero, zero, zero, false, zero,
    )  # fmt: skip

    def cond(c):
        return c.phase <= last_phase

    def body(c):
        key, draw_key = jax.random.split(c.key)
        v = jax.random.uniform(draw_key, dtype=dtype)
        in_direction, in_down = c.phase == _DIRECTION, c.phase == _STEP_DOWN
        in_up, in_shrink = c.phase == _STEP_UP, c.phase == _SHRINK

        # Candidate angle: uniform on [0, 2 pi) first, then in the shrunk bracket.
        first = c.phase_evals == 0
        omega = jnp.where(first, two_pi * v, c.angle_lo + (c.angle_hi - c.angle_lo) * v)
        angle_lo = jnp.where(first, omega - two_pi, c.angle_lo)
        angle_hi = jnp.where(first, omega, c.angle_hi)
        cos, sin = jnp.cos(omega), jnp.sin(omega)
        theta_candidate = cos * theta0 + sin * perpendicular
        # Re-normalise every proposal, or ||theta|| drifts over long runs.
        norm = jnp.linalg.norm(theta_candidate)
        theta_candidate = theta_candidate / norm
        scaled_candidate = (cos * scaled_theta0 + sin * scaled_perpendicular) / norm
        # Candidate radius: a bracket end while stepping out, uniform in it while shrinking.
        s = jnp.where(in_down, c.lower, jnp.where(in_up, c.upper, c.lower + (c.upper - c.lower) * v))

        value, logrho, nonfinite = polar(
            jnp.where(in_direction, radius0, s), jnp.where(in_direction, scaled_candidate, c.scaled_theta)
        )
        inside = value > level
        phase_evals = c.phase_evals + 1
        capped = jnp.logical_not(inside) & (phase_evals >= max_proposals)
        rejected = jnp.logical_not(inside)

        # Direction: accept, or shrink the angle bracket toward 0 (the current direction).
        take_direction = in_direction & inside
        theta = jnp.where(take_direction, theta_candidate, c.theta)
        scaled_theta = jnp.where(take_direction, scaled_candidate, c.scaled_theta)
        angle_lo = jnp.where(omega < 0, omega, angle_lo)
        angle_hi = jnp.where(omega < 0, angle_hi, omega)
        # Stepping-out: move the end outward while it is in the slice.
        lower = jnp.where(in_down & inside, jnp.maximum(c.lower - w, 0.0), c.lower)
        upper = jnp.where(in_up & inside, c.upper + w, c.upper)
        # Radius shrinkage: accept, or shrink the bracket toward the old radius.
        take_radius = in_shrink & inside
        radius = jnp.where(take_radius, s, c.radius)
        lower = jnp.where(in_shrink & rejected & (s < radius0), s, lower)
        upper = jnp.where(in_shrink & rejected & (s >= radius0), s, upper)

        steps_down_left = c.steps_down_left - (in_down & inside)
        steps_up_left = c.steps_up_left - (in_up & inside)
        phase = c.phase
        phase = jnp.where(in_direction & (inside | capped), _STEP_DOWN, phase)
        phase = jnp.where(in_down & rejected, _STEP_UP, phase)
        phase = jnp.where(in_up & rejected, _SHRINK, phase)
        phase = jnp.where(in_shrink & (inside | capped), _DONE, phase)
        phase = _skip_empty_phases(phase, lower, steps_down_left, steps_up_left)

        return _LoopCarry(
            key=key,
            phase=phase,
            phase_evals=jnp.where(phase == c.phase, phase_evals, 0),
            theta=theta,
            scaled_theta=scaled_theta,
            radius=radius,
            logrho=jnp.where(take_direction | take_radius, logrho, c.logrho),
            angle_lo=angle_lo,
            angle_hi=angle_hi,
            lower=lower,
            upper=upper,
            steps_down_left=steps_down_left,
            steps_up_left=steps_up_left,
            num_evals=c.num_evals + 1,
            num_direction_shrinks=c.num_direction_shrinks + (in_direction & rejected),
            num_radius_expansions=c.num_radius_expansions + ((in_down | in_up) & inside),
            num_radius_shrinks=c.num_radius_shrinks + (in_shrink & rejected),
            hit_max_proposals=c.hit_max_proposals | ((in_direction | in_shrink) & capped),
            num_nonfinite=c.num_nonfinite + nonfinite,
        )

    return jax.lax.while_loop(cond, body, carry)


def _transition(rng_key, state, logdensity_fn, w, max_proposals, first_phase, last_phase, center=None, scale=None):
    """Draw the slice level, run the selected updates, and build the new state and info."""
    _, unravel_fn = jax.flatten_util.ravel_pytree(state.position)
    d = state.direction.shape[0]
    polar = _polar_logdensity(logdensity_fn, unravel_fn, d, center)
    level_key, update_key = jax.random.split(rng_key)
    # One slice level for both Gibbs updates (Schär et al. 2023, Alg. 1).
    level = _slice_level(level_key, state, d)
    out = _gibbs_polar_update(update_key, state, level, polar, w, max_proposals, first_phase, last_phase, center, scale)
    x = out.radius * out.scaled_theta
    new_state = PolarSliceState(unravel_fn(x if center is None else center + x), out.logrho, out.radius, out.theta)
    info = PolarSliceInfo(
        num_evals=out.num_evals,
        num_direction_shrinks=out.num_direction_shrinks,
        num_radius_expansions=out.num_radius_expansions,
        num_radius_shrinks=out.num_radius_shrinks,
        hit_max_proposals=out.hit_max_proposals,
        num_nonfinite=out.num_nonfinite,
    )
    return new_state, info


def _check_max_proposals(max_proposals) -> int:
    return check_positive_int("max_proposals", max_proposals)


def build_kernel(max_proposals: int = 1000) -> Callable:
    """Build the Gibbsian polar slice kernel (direction update, then radius update).

    Parameters
    ----------
    max_proposals
        Static integer >= 1: the stepping-out limit ``m`` of the radius bracket (split at
        random between its two ends), and the cap on the evaluations of each shrinkage
        loop (angle and radius).

    Returns
    -------
    kernel
        ``kernel(rng_key, state, logdensity_fn, w, center=None, scale=None) ->
        (PolarSliceState, PolarSliceInfo)``; ``w`` (> 0) is the initial radius window,
        ``center`` ``(d,)`` and ``scale`` (vector, lower-triangular matrix or
        :class:`~psample.mcmc.preconditioning.LowRankScale`) the preconditioner
        ``x = center + scale z`` the state was made with (:func:`init_transformed`,
        :func:`psample.mcmc.preconditioning.reparametrize`). All may be traced values.
    """
    max_proposals = _check_max_proposals(max_proposals)

    def kernel(
        rng_key: PRNGKey, state: PolarSliceState, logdensity_fn: Callable, w: float, center=None, scale=None
    ) -> tuple[PolarSliceState, PolarSliceInfo]:
        return _transition(rng_key, state, logdensity_fn, w, max_proposals, _DIRECTION, _SHRINK, center, scale)

    return kernel


def build_direction_kernel(max_proposals: int = 1000) -> Callable:
    """Build the direction-only transition: a fresh slice level, then geodesic shrinkage.

    It keeps the radius fixed and leaves the target invariant on its own (it is the
    ``theta | r`` Gibbs update); exposed for testing and for composing schemes.

    Returns
    -------
    kernel
        ``kernel(rng_key, state, logdensity_fn) -> (PolarSliceState, PolarSliceInfo)``.
    """
    max_proposals = _check_max_proposals(max_proposals)

    def kernel(rng_key, state, logdensity_fn):
        return _transition(rng_key, state, logdensity_fn, 1.0, max_proposals, _DIRECTION, _DIRECTION)

    return kernel


def build_radius_kernel(max_proposals: int = 1000) -> Callable:
    """Build the radius-only transition: a fresh slice level, then stepping-out and shrinkage.

    It keeps the direction fixed and leaves the target invariant on its own (it is the
    ``r | theta`` Gibbs update); exposed for testing and for composing schemes.

    Returns
    -------
    kernel
        ``kernel(rng_key, state, logdensity_fn, w) -> (PolarSliceState, PolarSliceInfo)``.
    """
    max_proposals = _check_max_proposals(max_proposals)

    def kernel(rng_key, state, logdensity_fn, w):
        return _transition(rng_key, state, logdensity_fn, w, max_proposals, _STEP_DOWN, _SHRINK)

    return kernel


