"""Affine preconditioning of a polar-coordinate sampler: ``x = center + scale · z``.

A sampler that works in polar coordinates around the origin (Gibbsian polar slice sampling,
:mod:`psample.mcmc.polar_slice`) is neither translation- nor affine-invariant. Run on ``z``
with ``x = c + S z`` it samples the density ``ϱ(c + S z)``, which differs from the target's
pushed forward to ``z`` by the constant factor ``|det S|``: a transition that is exact in ``z``
is exact for the target in ``x`` for any fixed ``(c, S)``. This module holds that affine map,
its validation and the polar coordinates ``(‖z‖, z / ‖z‖)`` of a point; the sampler and its
warm-up adaptation (:mod:`psample.mcmc.polar_slice_adaptation`, which estimates ``(c, S)``)
both use it.

Forms of ``S`` (``scale``)
--------------------------
- ``None``: the identity.
- a vector ``(d,)`` with entries ``> 0``: a diagonal scale, ``O(d)`` per product.
- a lower-triangular matrix ``(d, d)`` with a positive diagonal (a Cholesky factor): a dense
  scale, ``O(d²)`` per product and a triangular solve for ``S⁻¹``.
- a :class:`LowRankScale` ``diag(D) (I + U diag(a) Uᵀ)``: ``O(d k)`` per product and per solve.

``center`` is ``None`` (the origin) or a ``(d,)`` array in the layout of the flattened position
(``jax.flatten_util.ravel_pytree``).

Contract: every function here is pure and jittable; :func:`check_preconditioner` validates only
concrete values (traced ones pass), so it can run inside ``init`` under ``jit``/``vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import jax.scipy.linalg
import numpy as np
from blackjax.types import Array

from psample.errors import InvalidTuningError, ShapeError

__all__ = [
    "LowRankScale",
    "apply_scale",
    "solve_scale",
    "to_x",
    "to_z",
    "is_concrete",
    "check_preconditioner",
    "polar_coordinates",
    "reparametrize",
]


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


def apply_scale(scale, z: Array) -> Array:
    """``S z``, shape ``(d,)``, for every form of ``scale`` (``None`` is the identity)."""
    if scale is None:
        return z
    if isinstance(scale, LowRankScale):
        return scale.diagonal * (z + scale.basis @ (scale.factors * (scale.basis.T @ z)))
    scale = jnp.asarray(scale)
    if scale.ndim == 1:
        return scale * z
    return jnp.tril(scale) @ z


def solve_scale(scale, y: Array) -> Array:
    """``S⁻¹ y``, shape ``(d,)``, for every form of ``scale`` (``None`` is the identity)."""
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


def to_x(z: Array, center, scale) -> Array:
    """``x = center + S z`` for a flat ``z`` of shape ``(d,)``."""
    x = apply_scale(scale, z)
    return x if center is None else x + center


def to_z(x: Array, center, scale) -> Array:
    """``z = S⁻¹ (x - center)`` for a flat ``x`` of shape ``(d,)``."""
    return solve_scale(scale, x if center is None else x - center)


def is_concrete(*trees) -> bool:
    """Whether no leaf of ``trees`` is a tracer (values can be checked on the host)."""
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
    if not is_concrete(center, scale):
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


def polar_coordinates(z: Array) -> tuple[Array, Array]:
    """``(‖z‖, z / ‖z‖)`` of a flat ``z`` ``(d,)``: a scalar and a ``(d,)`` unit vector.

    At the origin the direction is ``e_1`` (never reached by a chain: no slice holds ``r = 0``).
    """
    radius = jnp.linalg.norm(z)
    unit = jnp.zeros_like(z).at[0].set(1.0)
    return radius, jnp.where(radius > 0, z / jnp.where(radius > 0, radius, 1.0), unit)


def reparametrize(state, center=None, scale=None):
    """The same point under a new preconditioner: ``radius``/``direction`` recomputed, no evaluation.

    Parameters
    ----------
    state
        A state with fields ``position`` (a pytree, the point ``x``), ``radius`` and
        ``direction`` (its polar coordinates in ``z``), e.g. a
        :class:`~psample.mcmc.polar_slice.PolarSliceState`.
    center, scale
        The new preconditioner.

    Returns
    -------
    state
        The same type, with ``radius`` (scalar) and ``direction`` ``(d,)`` of
        ``z = S⁻¹ (x - center)``; every other field (``position``, ``logdensity``) unchanged.
        The adaptation calls it each time it changes ``(center, scale)``.
    """
    flat, _ = jax.flatten_util.ravel_pytree(state.position)
    radius, direction = polar_coordinates(to_z(flat, center, scale))
    return state._replace(radius=radius, direction=direction)

