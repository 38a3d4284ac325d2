"""Random draws that samplers need beyond ``jax.random``: uniforms on the open interval.

``jax.random.uniform`` returns values on the grid ``k * eps`` (``eps = 2**-nmant``), so it
returns exactly ``0.0`` with probability ``eps`` (``2**-23`` in float32): ``log(u)`` is then
``-inf`` and a slice level drawn as ``log p(x) + log(u)`` admits every finite point. The draws
here sit on the midpoint grid ``(k + 1/2) * eps``, which is exactly representable, symmetric
under ``u -> 1 - u`` and strictly inside ``(0, 1)``: ``log(u)`` and ``log1p(-u)`` are finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["open_uniform", "log_uniform"]


def open_uniform(rng_key, shape=(), dtype=float):
    """Uniform draws on the open interval ``(0, 1)``.

    Parameters
    ----------
    rng_key
        A JAX PRNG key.
    shape
        Output shape.
    dtype
        A floating dtype.

    Returns
    -------
    Array of ``shape``: ``jax.random.uniform(rng_key, shape, dtype) + eps / 2``, each value in
    ``[eps / 2, 1 - eps / 2]``.
    """
    dtype = jnp.dtype(jax.dtypes.canonicalize_dtype(dtype))
    half_eps = jnp.asarray(jnp.finfo(dtype).eps / 2, dtype=dtype)
    return jax.random.uniform(rng_key, shape, dtype) + half_eps


def log_uniform(rng_key, shape=(), dtype=float):
    """``log(U)`` for ``U`` uniform on ``(0, 1)``: always finite and strictly negative."""
    return jnp.log(open_uniform(rng_key, shape, dtype))
