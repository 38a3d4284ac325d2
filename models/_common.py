"""Helpers shared by the model modules: argument checks and flat-vector targets."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from scipy import special

from psample.errors import ModelError, check_positive, check_positive_int
from psample.targets import Target, from_logdensity

__all__ = [
    "QUANTILE_LEVELS",
    "quantile_entries",
    "check_dimension",
    "check_model_positive",
    "flat_target",
    "log_chi2_moments",
]


#: Probability levels at which exact quantiles are listed in ``Target.exact``.
QUANTILE_LEVELS = (0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999)


def quantile_entries(label: str, ppf) -> dict:
    """``{"q{p}[label]": ppf(p)}`` for every ``p`` in :data:`QUANTILE_LEVELS` (e.g. ``"q0.001[x_0]"``)."""
    return {f"q{p:g}[{label}]": float(ppf(p)) for p in QUANTILE_LEVELS}


def check_dimension(d, *, minimum: int = 1) -> int:
    """Return ``int(d)`` if it is an integer ``>= minimum``, else raise :class:`ModelError`."""
    return check_positive_int("d", d, minimum=minimum, error=ModelError)


def check_model_positive(name: str, value) -> float:
    """Return ``float(value)`` if finite and ``> 0``, else raise :class:`ModelError` naming ``name``."""
    return check_positive(name, value, error=ModelError)


def flat_target(logdensity_fn, d: int, *, init_scale: float, name: str, exact: dict, hints: dict) -> Target:
    """A :class:`Target` on a flat vector of shape ``(d,)`` whose chains start at ``N(0, init_scale² I)``.

    Draws post-process to ``{"x": (chain, draw, d)}``.
    """
    target = from_logdensity(logdensity_fn, jnp.zeros(d), scale=init_scale, name=name)
    return dataclasses.replace(target, exact=exact, hints=hints)


def log_chi2_moments(k: float) -> tuple[float, float]:
    """Mean and variance of ``log Q`` for ``Q ~ χ²_k``: ``ψ(k/2) + log 2`` and ``ψ'(k/2)``."""
    half = 0.5 * k
    return float(special.digamma(half) + np.log(2.0)), float(special.polygamma(1, half))
