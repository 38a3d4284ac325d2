"""Gibbsian polar slice sampling (GPSS).

Polar slice sampling (Roberts and Rosenthal [2]) factors a target density on
:math:`\\mathbb{R}^d` as :math:`\\varrho(x) = \\|x\\|^{-(d-1)} \\cdot
\\|x\\|^{d-1}\\varrho(x)` and draws the slice variable with respect to the second
factor only. In polar coordinates :math:`x = r\\theta` the first factor is the
Lebesgue measure :math:`\\mathrm{d}r\\,\\mathrm{d}\\sigma(\\theta)`, so one
transition must draw :math:`(r, \\theta)` uniformly on the slice

.. math::

    \\{(r, \\theta) : L(r, \\theta) > \\ell\\}, \\qquad
    L(r, \\theta) = (d-1)\\log r + \\log\\varrho(r\\theta),

with :math:`\\ell = L(r_{\\text{old}}, \\theta_{\\text{old}}) + \\log U`. The
Gibbsian polar slice sampler of Schär, Habeck and Rudolf [1] replaces this joint
draw, which is rarely tractable, by two Gibbs updates that share the level
:math:`\\ell`:

1. the direction :math:`\\theta \\mid r`, by shrinkage on a great circle of the
   unit sphere through the current direction (geodesic shrinkage, the sphere
   analogue of elliptical slice sampling);
2. the radius :math:`r \\mid \\theta`, by stepping-out and shrinkage
   (Neal [3]) on the ray :math:`\\{s\\theta : s > 0\\}`, with initial window
   ``w``.

The resulting chain mixes in the radius almost independently of the dimension for
rotationally (near-)invariant targets, and copes with heavy tails and funnels
where random-walk, hit-and-run and elliptical slice samplers get stuck.

Everything is computed in log space, :math:`L(0, \\cdot) = -\\infty`, a NaN or
:math:`+\\infty` log-density counts as outside the slice (and in ``num_nonfinite``: an
accepted :math:`+\\infty` would make every later level :math:`+\\infty` and freeze the chain),
the comparison is strict
(:math:`L > \\ell`), and every direction proposal is re-normalised to unit length
(the authors' code fixed a missing normalisation of the first proposal in 2025).

Stepping-out uses Neal's limit ``m = max_proposals`` split at random between the two
ends of the radius bracket ([3], Fig. 3), which keeps the radius update exact however
far the slice reaches (radii of heavy-tailed targets can exceed ``w`` ten thousand
times); with the default ``m = 1000`` it differs from the paper's unlimited
stepping-out only in such extreme cases. Each shrinkage loop (angle, radius) is capped
at ``max_proposals`` evaluations; a capped loop keeps the old value of its coordinate,
which lies in the slice, and sets ``hit_max_proposals``. That cap is only a guard
against pathological densities (shrinkage converges geometrically): a transition that
hits it is not exactly invariant, so rerun with a better ``w`` if it ever triggers.

**Affine preconditioning.** The sampler is neither translation- nor affine-invariant: it is
centred at the origin and isotropic. With a ``center`` ``c`` and a ``scale`` ``S`` it runs on
``z`` with ``x = c + S z``, whose density ``ϱ(c + S z)`` differs from the target's by the
constant ``|det S|``: every transition is exact for any fixed ``(c, S)``. ``S`` is a vector (a
diagonal scale), a lower-triangular matrix (a dense one) or a :class:`LowRankScale`
``diag(D) (I + U diag(a) Uᵀ)``. Positions and draws stay in ``x``; the state's ``radius`` and
``direction`` are those of ``z``. Every point a transition evaluates is ``c + r S θ'`` with ``θ'``
on one great circle, so ``S`` is applied once per transition (to the circle's second axis),
and each evaluation costs ``O(d)`` more than the target's own. ``psample.mcmc.polar_slice_adaptation`` estimates
``(c, S, w)`` during warm-up.

All evaluations of one transition happen at one site of one ``lax.while_loop`` that
walks through the phases direction, step-down, step-up, shrink: the target is traced
once, and under ``vmap`` a chain never waits for the slowest chain at each phase
boundary, only once per transition.

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
import jax.scipy.linalg
import numpy as np
from blackjax.base import build_sampling_algorithm
from blackjax.types import Array, ArrayLikeTree, ArrayTree, PRNGKey

from psample.base import AdaptiveSamplingAlgorithm
from psample.errors import (
    DtypeError,
    InitialPointError,
    InvalidTuningError,
    ShapeError,
    check_positive,
    check_positive_int,
)
from psample.rng import log_uniform

__all__ = [
    "PolarSliceState",
    "PolarSliceInfo",
    "LowRankScale",
    "init",
    "init_transformed",
    "reparametrize",
    "build_kernel",
    "build_direction_kernel",
    "build_radius_kernel",
    "as_top_level_api",
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


class LowRankScale(NamedTuple):
    """A low-rank-plus-diagonal scale ``S = diag(diagonal) (I + basis diag(factors) basisᵀ)``.

    ``S Sᵀ = diag(D) (I + U diag((1 + a)² - 1) Uᵀ) diag(D)``: a diagonal scale, stretched by
    ``1 + a_j`` along ``k`` orthonormal directions ``u_j`` of the standardised space. Applying
    ``S`` and its inverse costs ``O(d k)``:
    ``S⁻¹ y = (I - U diag(a / (1 + a)) Uᵀ) (y / D)``.

    diagonal
        ``D``, shape ``(d,)``, entries ``> 0``.
    basis
        ``U``, shape ``(d, k)``, orthonormal columns.
    factors
        ``a``, shape ``(k,)``, entries ``> -1``.
    """

    diagonal: Array
    basis: Array
    factors: Array


def _apply_scale(scale, z: Array) -> Array:
    """``S z`` for the three forms of ``scale`` (``None`` is the identity)."""
    if scale is None:
        return z
    if isinstance(scale, LowRankScale):
        return scale.diagonal * (z + scale.basis @ (scale.factors * (scale.basis.T @ z)))
    scale = jnp.asarray(scale)
    if scale.ndim == 1:
        return scale * z
    return jnp.tril(scale) @ z


def _solve_scale(scale, y: Array) -> Array:
    """``S⁻¹ y`` for the three forms of ``scale`` (``None`` is the identity)."""
    if scale is None:
        return y
    if isinstance(scale, LowRankScale):
        y = y / scale.diagonal
        shrink = scale.factors / (1.0 + scale.factors)
        return y - scale.basis @ (shrink * (scale.basis.T @ y))
    scale = jnp.asarray(scale)
    if scale.ndim == 1:
        return y / scale
    return jax.scipy.linalg.solve_triangular(jnp.tril(scale), y, lower=True)


def _to_x(z: Array, center, scale) -> Array:
    x = _apply_scale(scale, z)
    return x if center is None else x + center


def _to_z(x: Array, center, scale) -> Array:
    return _solve_scale(scale, x if center is None else x - center)


def _is_concrete(*trees) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def check_preconditioner(center, scale, d: int) -> None:
    """Validate a concrete ``center``/``scale`` for positions with ``d`` entries.

    Raises
    ------
    ShapeError
        If a shape does not fit ``d``.
    InvalidTuningError
        If a value is not finite, a scale entry is not ``> 0`` where it must be, a matrix
        scale is not lower triangular with a positive diagonal, or a low-rank basis is not
        orthonormal.
    """
    if not _is_concrete(center, scale):
        return
    if center is not None:
        c = np.asarray(center)
        if c.shape != (d,):
            raise ShapeError(f"center must have shape ({d},) like the flattened position, got shape {c.shape}")
        if not np.all(np.isfinite(c)):
            raise InvalidTuningError(f"center must be finite, got {c!r}")
    if scale is None:
        return
    if isinstance(scale, LowRankScale):
        diagonal, basis, factors = (np.asarray(v) for v in scale)
        if diagonal.shape != (d,) or basis.ndim != 2 or basis.shape[0] != d or factors.shape != basis.shape[1:]:
            raise ShapeError(
                f"LowRankScale needs diagonal ({d},), basis ({d}, k) and factors (k,), got shapes "
                f"{diagonal.shape}, {basis.shape}, {factors.shape}"
            )
        if not (np.all(np.isfinite(diagonal)) and np.all(diagonal > 0)):
            raise InvalidTuningError(f"scale.diagonal must be finite and > 0, got {diagonal!r}")
        if not (np.all(np.isfinite(factors)) and np.all(factors > -1)):
            raise InvalidTuningError(f"scale.factors must be finite and > -1, got {factors!r}")
        gram = basis.T @ basis
        if not np.allclose(gram, np.eye(gram.shape[0]), atol=1e-6):
            raise InvalidTuningError("scale.basis must have orthonormal columns (basisᵀ basis = I)")
        return
    s = np.asarray(scale)
    if s.shape == (d,):
        if not (np.all(np.isfinite(s)) and np.all(s > 0)):
            raise InvalidTuningError(f"a vector scale must be finite and > 0, got {s!r}")
        return
    if s.shape != (d, d):
        raise ShapeError(
            f"scale must be a vector ({d},), a lower-triangular matrix ({d}, {d}) or a LowRankScale, "
            f"got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)) or np.any(np.triu(s, 1) != 0):
        raise InvalidTuningError("a matrix scale must be finite and lower triangular (a Cholesky factor)")
    if not np.all(np.diag(s) > 0):
        raise InvalidTuningError(f"a matrix scale needs a positive diagonal, got {np.diag(s)!r}")


def _polar_coordinates(z: Array) -> tuple[Array, Array]:
    """``(||z||, z / ||z||)``, with the direction ``e_1`` at the origin (never reached in practice)."""
    radius = jnp.linalg.norm(z)
    unit = jnp.zeros_like(z).at[0].set(1.0)
    return radius, jnp.where(radius > 0, z / jnp.where(radius > 0, radius, 1.0), unit)


def init_transformed(position: ArrayLikeTree, logdensity_fn: Callable, center=None, scale=None) -> PolarSliceState:
    """Create the chain state at ``position`` for the sampler preconditioned by ``(center, scale)``.

    The state's ``radius`` and ``direction`` are those of ``z = scale⁻¹ (x - center)``; its
    ``position`` and ``logdensity`` those of ``x``. With ``center = scale = None`` this is
    :func:`init`.

    Raises
    ------
    ShapeError, InvalidTuningError
        As :func:`check_preconditioner`, and as :func:`init`.
    InitialPointError
        If ``position`` is concrete and equals ``center`` (``z = 0``).
    """
    flat, _ = jax.flatten_util.ravel_pytree(position)
    if center is None and scale is None:
        return init(position, logdensity_fn)
    check_preconditioner(center, scale, flat.shape[0])
    z = _to_z(flat, center, scale)
    if _is_concrete(z) and flat.shape[0] >= 2 and not float(jnp.linalg.norm(z)) > 0:
        raise InitialPointError(
            f"polar slice sampling cannot start at position={position!r}: it equals center, the "
            "origin of the preconditioned coordinates, where the direction is undefined"
        )
    state = init(z, lambda _: logdensity_fn(position))
    return state._replace(position=position)


def reparametrize(state: PolarSliceState, center=None, scale=None) -> PolarSliceState:
    """The same point under a new preconditioner: ``radius``/``direction`` recomputed, no evaluation.

    ``logdensity`` is that of ``x`` and does not change. Used by the adaptation each time it
    changes ``(center, scale)``.
    """
    flat, _ = jax.flatten_util.ravel_pytree(state.position)
    radius, direction = _polar_coordinates(_to_z(flat, center, scale))
    return state._replace(radius=radius, direction=direction)


def _is_nonfinite(logdensity: Array) -> Array:
    """NaN or ``+inf``: a log-density no slice can hold (``-inf`` is a legitimate zero density)."""
    return jnp.isnan(logdensity) | (logdensity == jnp.inf)


def _sanitize(logdensity: Array) -> Array:
    """NaN and ``+inf`` log-densities count as outside every slice (``-inf``).

    ``+inf`` cannot be inside a slice either: a chain that accepted it would hold the level
    ``+inf + log U = +inf`` from then on, above every point, and never move again.
    """
    return jnp.where(_is_nonfinite(logdensity), -jnp.inf, logdensity)


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
        return _sanitize(value), logrho, (r > 0) & _is_nonfinite(raw)

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
    scaled_perpendicular = _apply_scale(scale, perpendicular)

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


def _check_w(w):
    """Validate ``w`` when it is a concrete number; traced values pass through."""
    if isinstance(w, jax.core.Tracer):
        return w
    return check_positive("w", w)


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
        :class:`LowRankScale`) the preconditioner ``x = center + scale z`` the state was made
        with (:func:`init_transformed`, :func:`reparametrize`). All may be traced values.
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


def as_top_level_api(
    logdensity_fn: Callable,
    *,
    w: float = 1.0,
    center=None,
    scale=None,
    max_proposals: int = 1000,
    structure: str = "auto",
) -> AdaptiveSamplingAlgorithm:
    """Gibbsian polar slice sampler (Schär, Habeck and Rudolf, 2023), optionally preconditioned.

    Examples
    --------
    .. code::

        gpss = psample.polar_slice(logdensity_fn, w=5.0)
        state = gpss.init(position)
        new_state, info = gpss.step(rng_key, state)

        # or let psample.sample adapt center, scale and w during warm-up:
        trace = psample.sample(gpss, positions, rng_key, 1000, num_warmup=1000)

    Chains are run by ``jax.vmap`` over ``init`` and ``step`` (``psample.sample``
    does this).

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar`` unnormalised log-density; ``position`` is any pytree
        with ``d >= 2`` floating entries in total. Returning ``-inf`` marks points outside
        the support; NaN and ``+inf`` are treated the same way but counted
        (``PolarSliceInfo.num_nonfinite``), and the runner warns about them.
    w
        Initial width of the radius bracket (> 0), in the units of ``z`` (of ``x`` without
        ``scale``). The paper uses values of the order of the typical radius scale (e.g.
        ``w = d`` for a ``d``-dimensional Cauchy); too small costs stepping-out evaluations,
        too large costs shrinkage evaluations, both only logarithmically.
    center
        ``(d,)`` array (the flattened position's layout), the origin of the sampler's polar
        coordinates; default 0.
    scale
        The preconditioner ``S`` of ``x = center + S z``: a vector ``(d,)`` (diagonal), a
        lower-triangular matrix ``(d, d)`` or a :class:`LowRankScale`; default the identity.
        Every transition is exact for any fixed ``center`` and ``scale``.
    max_proposals
        Integer >= 1: the stepping-out limit of the radius bracket (split at random
        between its ends, which keeps the update exact) and the cap on the evaluations
        of each shrinkage loop (see ``hit_max_proposals``).
    structure
        Form of the scale the warm-up adaptation estimates: ``"auto"`` (dense for
        ``d <= 512`` and low-rank above, each replaced by a diagonal scale when the data show
        no correlation worth the cost), ``"dense"``, ``"low_rank"`` or ``"diagonal"``.

    Returns
    -------
    psample.base.ChainAlgorithm
        ``init(position) -> PolarSliceState``,
        ``step(rng_key, state) -> (PolarSliceState, PolarSliceInfo)``,
        ``adaptation`` (a windowed, cross-chain, robust estimate of ``center``, ``scale`` and
        ``w``: :func:`psample.mcmc.polar_slice_adaptation.polar_slice_adaptation`) and
        ``with_parameters({"w", "center", "scale"})``.

    Raises
    ------
    InvalidTuningError
        If ``w`` is not a finite number > 0, ``max_proposals`` is not an integer >= 1, or a
        concrete ``scale`` is not of one of the three forms.
    """
    from psample.mcmc.polar_slice_adaptation import polar_slice_adaptation

    w = _check_w(w)
    kernel = build_kernel(max_proposals)
    algorithm = build_sampling_algorithm(
        kernel, init_transformed, logdensity_fn, init_args=(center, scale), kernel_args=(w, center, scale)
    )
    adaptation = polar_slice_adaptation(
        logdensity_fn, w=w, center=center, scale=scale, max_proposals=max_proposals, structure=structure
    )

    def with_parameters(parameters) -> AdaptiveSamplingAlgorithm:
        return as_top_level_api(
            logdensity_fn,
            w=parameters["w"],
            center=parameters["center"],
            scale=parameters["scale"],
            max_proposals=max_proposals,
            structure=structure,
        )

    return AdaptiveSamplingAlgorithm(algorithm.init, algorithm.step, adaptation, with_parameters)
