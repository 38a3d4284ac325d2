"""Noise schedules of affine forward (noising) diffusions: one convention for the whole library.

Time ``t`` runs over ``[0, 1]`` and ``t = 0`` is data. The forward SDE is

    dx = f_t(x) dt + g_t dW,    f_t(x) = k_t x    (``k_t = drift_coef(t)``, ``g_t**2 = g2(t)``),

whose marginal given ``x_0`` is ``N(alpha(t) x_0, sigma(t)**2 I)``. Because the drift is affine,
``div f_t = d * k_t`` is a known scalar, so samplers never need autodiff divergences. For a
general pair ``(alpha_t, sigma_t)``: ``k_t = d/dt log alpha_t`` and
``g_t**2 = 2 sigma_t**2 d/dt log(sigma_t / alpha_t)`` [1].

- :class:`VP`: variance preserving, linear ``beta(t) = beta_min + t (beta_max - beta_min)``
  (Song et al. [1], §3.4 and appendix B): ``log alpha_t = -t beta_min / 2 - t**2 (beta_max -
  beta_min) / 4``, ``sigma_t**2 = 1 - alpha_t**2``, ``k_t = -beta(t) / 2``, ``g_t**2 = beta(t)``.
  Its reference distribution at ``t = 1`` is ``N(0, I)`` (up to ``alpha_1 ≈ 7e-5`` for the
  defaults).
- :class:`VE`: variance exploding, geometric ``sigma_t = sigma_min (sigma_max / sigma_min)**t``,
  ``alpha_t = 1``, ``k_t = 0``, ``g_t**2 = 2 sigma_t**2 log(sigma_max / sigma_min)``. Its
  reference at ``t = 1`` is ``N(0, sigma_max**2 I)`` only when ``sigma_max`` dwarfs the data's
  scale: pick it so.

Schedules are frozen dataclasses of Python floats: hashable, so a sampler closes over them and
jit never retraces; every method takes a scalar or array ``t`` and broadcasts.

References
----------
.. [1] Yang Song, Jascha Sohl-Dickstein, Diederik P. Kingma, Abhishek Kumar, Stefano Ermon and
   Ben Poole, "Score-based generative modeling through stochastic differential equations",
   ICLR 2021. arXiv:2011.13456.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import jax.numpy as jnp
from blackjax.types import Array, ArrayLikeTree

from psample.errors import InvalidTuningError

__all__ = ["Schedule", "VP", "VE", "score_from_denoiser", "score_from_noise"]


class Schedule(abc.ABC):
    """Shared methods of affine noise schedules; subclasses define ``log_alpha``, ``sigma``,
    ``drift_coef``, ``g2`` and ``reference_std``."""

    @abc.abstractmethod
    def log_alpha(self, t: Array) -> Array:
        """``log alpha_t``."""

    @abc.abstractmethod
    def sigma(self, t: Array) -> Array:
        """Noise scale ``sigma_t`` of the forward marginal."""

    @abc.abstractmethod
    def drift_coef(self, t: Array) -> Array:
        """``k_t``: the forward drift is ``f_t(x) = k_t x``."""

    @abc.abstractmethod
    def g2(self, t: Array) -> Array:
        """Squared diffusion coefficient ``g_t**2``."""

    @abc.abstractmethod
    def reference_std(self) -> float:
        """Standard deviation of the reference ``N(0, s**2 I)`` that stands in for ``q_1``."""

    def alpha(self, t: Array) -> Array:
        """Signal scale ``alpha_t``: the forward marginal's mean is ``alpha_t x_0``."""
        return jnp.exp(self.log_alpha(t))

    def diffusion(self, t: Array) -> Array:
        """Diffusion coefficient ``g_t = sqrt(g2(t))``."""
        return jnp.sqrt(self.g2(t))

    def divergence(self, t: Array, dim: int) -> Array:
        """``div f_t = dim * k_t`` for a state of ``dim`` scalar coordinates."""
        return dim * self.drift_coef(t)

    def marginal_sample(self, x0: ArrayLikeTree, t: Array, noise: Array) -> Array:
        """``x_t = alpha_t x_0 + sigma_t noise`` for standard normal ``noise`` (same shape as ``x0``)."""
        return self.alpha(t) * x0 + self.sigma(t) * noise


def _check_time_free(name: str, value: float, *, positive: bool) -> float:
    value = float(value)
    if not math.isfinite(value) or (value <= 0.0 if positive else value < 0.0):
        bound = "> 0" if positive else ">= 0"
        raise InvalidTuningError(f"{name} must be finite and {bound}; got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True)
class VP(Schedule):
    """Variance-preserving schedule with linear ``beta(t)``.

    Parameters
    ----------
    beta_min, beta_max
        ``beta(0)`` and ``beta(1)``; ``0 <= beta_min < beta_max``. The defaults (0.1, 20) are
        Song et al.'s and the Feynman–Kac correctors' notebooks'.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self):
        beta_min = _check_time_free("beta_min", self.beta_min, positive=False)
        beta_max = _check_time_free("beta_max", self.beta_max, positive=True)
        if beta_max <= beta_min:
            raise InvalidTuningError(f"beta_max must exceed beta_min; got beta_min={beta_min!r}, "
                                     f"beta_max={beta_max!r}.")
        object.__setattr__(self, "beta_min", beta_min)
        object.__setattr__(self, "beta_max", beta_max)

    def beta(self, t: Array) -> Array:
        """``beta(t) = beta_min + t (beta_max - beta_min)``."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Array) -> Array:
        """``log alpha_t = -t beta_min / 2 - t**2 (beta_max - beta_min) / 4``."""
        t = jnp.asarray(t)
        return -0.5 * t * self.beta_min - 0.25 * t**2 * (self.beta_max - self.beta_min)

    def sigma(self, t: Array) -> Array:
        """``sigma_t = sqrt(1 - alpha_t**2)``, computed as ``sqrt(-expm1(2 log alpha_t))`` so it
        stays accurate near ``t = 0``."""
        return jnp.sqrt(-jnp.expm1(2.0 * self.log_alpha(t)))

    def drift_coef(self, t: Array) -> Array:
        """``k_t = -beta(t) / 2``."""
        return -0.5 * self.beta(t)

    def g2(self, t: Array) -> Array:
        """``g_t**2 = beta(t)``."""
        return self.beta(t)

    def reference_std(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class VE(Schedule):
    """Variance-exploding schedule with geometric ``sigma_t``.

    Parameters
    ----------
    sigma_min, sigma_max
        ``sigma(0)`` and ``sigma(1)``; ``0 < sigma_min < sigma_max``. ``sigma_max`` must dwarf the
        data's scale for ``N(0, sigma_max**2 I)`` to stand in for ``q_1``.
    """

    sigma_min: float
    sigma_max: float

    def __post_init__(self):
        sigma_min = _check_time_free("sigma_min", self.sigma_min, positive=True)
        sigma_max = _check_time_free("sigma_max", self.sigma_max, positive=True)
        if sigma_max <= sigma_min:
            raise InvalidTuningError(f"sigma_max must exceed sigma_min; got sigma_min={sigma_min!r}, "
                                     f"sigma_max={sigma_max!r}.")
        object.__setattr__(self, "sigma_min", sigma_min)
        object.__setattr__(self, "sigma_max", sigma_max)

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def log_alpha(self, t: Array) -> Array:
        """``log alpha_t = 0``."""
        return jnp.zeros_like(jnp.asarray(t, dtype=float))

    def sigma(self, t: Array) -> Array:
        """``sigma_t = sigma_min (sigma_max / sigma_min)**t``."""
        return self.sigma_min * jnp.exp(jnp.asarray(t) * self._log_ratio)

    def drift_coef(self, t: Array) -> Array:
        """``k_t = 0``."""
        return jnp.zeros_like(jnp.asarray(t, dtype=float))

    def g2(self, t: Array) -> Array:
        """``g_t**2 = 2 sigma_t**2 log(sigma_max / sigma_min)``."""
        return 2.0 * self.sigma(t) ** 2 * self._log_ratio

    def reference_std(self) -> float:
        return self.sigma_max


def score_from_denoiser(schedule: Schedule, t: Array, x: Array, denoised: Array) -> Array:
    """Score ``(alpha_t D(t, x) - x) / sigma_t**2`` from a denoiser's ``D(t, x) ≈ E[x_0 | x_t = x]``
    (Tweedie's formula)."""
    return (schedule.alpha(t) * denoised - x) / schedule.sigma(t) ** 2


def score_from_noise(schedule: Schedule, t: Array, noise_prediction: Array) -> Array:
    """Score ``-eps_hat / sigma_t`` from a noise-prediction network's ``eps_hat(t, x)``."""
    return -noise_prediction / schedule.sigma(t)
