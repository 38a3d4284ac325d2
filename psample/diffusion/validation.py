"""Checks the diffusion samplers run on their arguments before any long work."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import InvalidTuningError, ModelError, ShapeError, check_positive_int

__all__ = ["check_logdensity", "check_reference_finite", "check_time"]

#: Reference draws at which a log-density's finiteness is checked.
NUM_CHECK_DRAWS = 256


def check_logdensity(logdensity_fn, dim) -> int:
    """``dim`` as an int, after checking that ``logdensity_fn`` maps ``(dim,)`` to a scalar."""
    if not callable(logdensity_fn):
        raise ModelError(f"logdensity_fn must be a function (dim,) -> scalar, got {logdensity_fn!r}")
    dim = check_positive_int("dim", dim, error=ShapeError)
    try:
        out = jax.eval_shape(logdensity_fn, jax.ShapeDtypeStruct((dim,), jnp.zeros(()).dtype))
    except Exception as exc:  # the function cannot take a (dim,) vector
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise ShapeError(f"logdensity_fn fails on a vector of shape ({dim},) (dim={dim}): "
                         f"{type(exc).__name__}: {lines[-1] if lines else ''}") from None  # fmt: skip
    if not hasattr(out, "shape") or out.shape != ():
        raise ShapeError(f"logdensity_fn must return a scalar for x of shape ({dim},) (dim={dim}), "
                         f"got shape {getattr(out, 'shape', out)}")  # fmt: skip
    return dim


def check_reference_finite(logdensity_fn, dim: int, std: float, rng_key, *, max_fraction: float,
                           gradient: bool = False) -> float:  # fmt: skip
    """Evaluate ``logdensity_fn`` (and its gradient) at draws of ``N(0, std² I)``, the reference
    process's law at the target end; raise :class:`ModelError` giving the fraction of draws where
    it is not finite when that fraction exceeds ``max_fraction``. Returns the fraction."""
    if not 0.0 <= float(max_fraction) < 1.0:
        raise InvalidTuningError(f"max_nonfinite_fraction must be in [0, 1), got {max_fraction!r}")
    x = std * jax.random.normal(jax.random.fold_in(rng_key, 7), (NUM_CHECK_DRAWS, dim), jnp.zeros(()).dtype)

    def values(xi):
        if gradient:
            value, grad = jax.value_and_grad(logdensity_fn)(xi)
            return value, jnp.all(jnp.isfinite(grad))
        return logdensity_fn(xi), jnp.asarray(True)

    value, grad_ok = jax.jit(jax.vmap(values))(x)
    bad = ~(np.isfinite(np.asarray(value)) & np.asarray(grad_ok))
    fraction = float(bad.mean())
    if fraction > max_fraction:
        what = "log-density or its gradient" if gradient else "log-density"
        raise ModelError(
            f"the {what} is not finite at {fraction:.1%} of {NUM_CHECK_DRAWS} draws of the reference "
            f"process N(0, {std:.4g}^2 I) (allowed: max_nonfinite_fraction={max_fraction!r}); e.g. "
            f"log-density {np.asarray(value)[bad][:3].tolist()}: check the target's support and scale"
        )
    return fraction


def check_time(name: str, value) -> float:
    """A time in the open interval ``(0, 1)``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidTuningError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise InvalidTuningError(f"{name} must lie in (0, 1) (t = 0 is data, t = 1 the reference), got {value!r}")
    return value
