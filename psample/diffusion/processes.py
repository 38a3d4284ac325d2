"""Reference processes of the learned samplers and their exact path-space importance weights.

A learned sampler moves ``x_0 -> x_1 -> ... -> x_K`` (``n = 0`` the reference side, ``n = K``
the target side) by Gaussian kernels ``F_n(x_{n+1} | x_n)`` whose mean holds the network's
drift ``f_θ``. Against a fixed backward (noising) process ``B_n(x_n | x_{n+1})`` the
extended-space importance weight

.. math::

    \\log w = \\log \\gamma(x_K) + \\sum_n \\log B_n(x_n | x_{n+1}) - \\log p_0(x_0)
              - \\sum_n \\log F_n(x_{n+1} | x_n)

satisfies ``E[w] = Z`` exactly, for every ``K`` and every network (``log_pb - log_pf`` in
gfn-diffusion [3]): ``E[log w]`` is the ELBO ``<= log Z``, and along *backward* paths started
at exact target draws its mean is the EUBO ``>= log Z``. ``"dds"`` (Vargas, Grathwohl, Doucet
[1]) takes the variance-preserving OU process with stationary law ``N(0, s² I)``, discretised
exactly on a :class:`VP` schedule's grid (with ``f_θ = 0`` every weight of the target
``N(0, s² I)`` is ``log Z``); ``"pis"`` (Zhang and Chen [2]) Brownian motion from ``x_0 = 0``
with diffusion ``s`` over ``[0, T]`` and the Brownian-bridge backward kernel.

See the :doc:`family page </families/diffusion>` for the kernels, tuning and measured limits.

Contract
--------
:class:`Process` is a frozen, hashable description (method, dimension, ``K``, ``s``, horizon,
schedule, network) with pure functions of the network parameters: the forward and backward
kernels, a sampled path and its ``log w``, a backward path from a target draw. Positions are
flat ``(d,)`` vectors; ``log w`` is ``-inf`` where the target is zero and NaN never silently
(non-finite target values are counted by the callers).

Limits
------
Both references are Gaussian and isotropic: a target far wider than ``s`` (DDS) or than
``s² T`` (PIS) needs ``init_std`` / ``horizon`` raised, or its outer mass is seldom reached.

References
----------
.. [1] Francisco Vargas, Will Grathwohl and Arnaud Doucet, "Denoising diffusion samplers",
   ICLR 2023. arXiv:2302.13834.
.. [2] Qinsheng Zhang and Yongxin Chen, "Path integral sampler: a stochastic control approach
   for sampling", ICLR 2022. arXiv:2111.15141.
.. [3] Marcin Sendera et al., "Improved off-policy training of diffusion samplers", NeurIPS 2024.
   arXiv:2402.05098.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from psample.base import is_nonfinite_logdensity
from psample.diffusion.networks import DriftNetwork
from psample.schedules import VP

__all__ = ["Process", "METHODS", "gaussian_logpdf", "nonfinite_value", "nonfinite_evaluation"]

METHODS = ("dds", "pis")


def _as_float(n):
    # A traced int32 step index divided by an int gives float32 even with x64 on.
    return jnp.asarray(n, jnp.zeros(()).dtype)


def nonfinite_value(log_density):
    """Whether a log-density value is NaN or ``+inf`` (``-inf``, zero density, is legitimate)."""
    return is_nonfinite_logdensity(log_density)


def nonfinite_evaluation(log_density, grad):
    """Whether one evaluation ``(value, gradient)`` of a log-density counts as non-finite: the
    value is NaN or ``+inf``, or it is finite and some gradient entry is not (at ``-inf``, zero
    density, a gradient means nothing and is not counted)."""
    bad_grad = jnp.isfinite(log_density) & ~jnp.all(jnp.isfinite(grad))
    return nonfinite_value(log_density) | bad_grad


def gaussian_logpdf(x, mean, var):
    """``log N(x; mean, var I)`` for ``x`` ``(d,)`` and a scalar variance."""
    d = x.shape[-1]
    return -0.5 * (jnp.sum((x - mean) ** 2, axis=-1) / var + d * jnp.log(2 * math.pi * var))


@dataclasses.dataclass(frozen=True)
class Process:
    """One learned sampler's reference process and network (hashable: jit closes over it).

    method
        ``"dds"`` or ``"pis"``.
    dim, num_steps
        ``d`` and ``K``.
    init_std
        ``s``: DDS's stationary standard deviation, PIS's diffusion coefficient.
    horizon
        PIS's ``T`` (unused by DDS).
    schedule
        DDS's :class:`VP` schedule (its time grid ``t_n = 1 - n/K``).
    network
        The :class:`DriftNetwork`.
    """

    method: str
    dim: int
    num_steps: int
    init_std: float
    horizon: float
    schedule: VP
    network: DriftNetwork

    # --- the kernels ---------------------------------------------------------------------------

    def _dds_a(self, n):
        n = _as_float(n)
        k = self.num_steps
        t_now, t_next = 1.0 - n / k, 1.0 - (n + 1) / k
        return jnp.exp(self.schedule.log_alpha(t_now) - self.schedule.log_alpha(t_next))

    def time_feature(self, n):
        """The network's time input in ``[0, 1]`` at step ``n`` (``n / K``)."""
        return _as_float(n) / self.num_steps

    def forward(self, n, x, drift):
        """Mean and (scalar) variance of ``F_n(· | x)`` given the drift ``f_θ``."""
        s2 = self.init_std**2
        if self.method == "dds":
            a = self._dds_a(n)
            return a * x + 2.0 * s2 * (1.0 - a) * drift, s2 * (1.0 - a**2)
        h = self.horizon / self.num_steps
        return x + h * drift, s2 * h

    def backward(self, n, x_next):
        """Mean and variance of ``B_n(· | x_{n+1})`` (PIS's ``B_0``: mean 0, variance 0)."""
        s2 = self.init_std**2
        if self.method == "dds":
            a = self._dds_a(n)
            return a * x_next, s2 * (1.0 - a**2)
        h = self.horizon / self.num_steps
        ratio = _as_float(n) / (_as_float(n) + 1.0)  # t_n / t_{n+1}
        return ratio * x_next, s2 * h * ratio

    def log_backward(self, n, x, x_next):
        """``log B_n(x | x_{n+1})``; 0 for PIS's point mass ``B_0``."""
        mean, var = self.backward(n, x_next)
        if self.method == "pis":
            safe = jnp.where(n == 0, 1.0, var)
            return jnp.where(n == 0, 0.0, gaussian_logpdf(x, mean, safe))
        return gaussian_logpdf(x, mean, var)

    def sample_initial(self, rng_key, num: int, dtype):
        if self.method == "dds":
            return self.init_std * jax.random.normal(rng_key, (num, self.dim), dtype)
        return jnp.zeros((num, self.dim), dtype)

    def log_initial(self, x0):
        """``log p_0(x_0)`` (0 for PIS's fixed start)."""
        if self.method == "dds":
            return gaussian_logpdf(x0, 0.0, self.init_std**2)
        return jnp.zeros(x0.shape[:-1], x0.dtype)

    def terminal_reference(self):
        """Standard deviation of the reference process's law at ``n = K`` (target side)."""
        if self.method == "dds":
            return self.init_std
        return self.init_std * math.sqrt(self.horizon)

    # --- paths ---------------------------------------------------------------------------------

    def drift(self, params, n, x, logdensity_fn: Callable):
        """The drift ``f_θ`` ``(d,)`` at step ``n`` and state ``x`` ``(d,)``."""
        return self.drift_and_check(params, n, x, logdensity_fn)[0]

    def drift_and_check(self, params, n, x, logdensity_fn: Callable):
        """The drift and, as int32 0 or 1, whether the target's evaluation at ``x`` was
        non-finite (:func:`nonfinite_evaluation`; the network zeroes such a gradient input)."""
        value, grad = jax.value_and_grad(logdensity_fn)(x)
        bad = nonfinite_evaluation(value, grad).astype(jnp.int32)
        return self.network(params, self.time_feature(n), x, grad), bad

    def rollout(self, params, rng_key, x0, logdensity_fn, exploration=0.0):
        """Simulate one forward path from ``x_0``.

        Returns ``(x_K, log_w, path, num_nonfinite)``: the end point, the exact log-weight, the
        path ``(K + 1, d)`` and the number of the path's target evaluations (``K`` with
        gradient, one value at ``x_K``) that were non-finite. Gradients (for the KL loss) flow through the reparameterised steps.
        ``exploration > 0`` adds that standard deviation (in quadrature) to every step's noise:
        an off-policy path for the off-policy losses, whose ``log_w`` is then not the weight
        of the path (recompute it with :meth:`path_log_weight`).
        """

        def one(carry, n):
            x, acc, bad = carry
            drift, bad_here = self.drift_and_check(params, n, x, logdensity_fn)
            mean, var = self.forward(n, x, drift)
            eps = jax.random.normal(jax.random.fold_in(rng_key, n), x.shape, x.dtype)
            x_next = mean + jnp.sqrt(var + exploration**2) * eps
            # log F_n at the reparameterised point: -|eps|^2/2 - d/2 log(2 pi var).
            log_f = -0.5 * (jnp.sum(eps**2) + x.shape[0] * jnp.log(2 * math.pi * var))
            acc = acc + self.log_backward(n, x, x_next) - log_f
            return (x_next, acc, bad + bad_here), x_next

        steps = jnp.arange(self.num_steps)
        start = (x0, jnp.zeros((), x0.dtype), jnp.zeros((), jnp.int32))
        (x_k, acc, bad), path = jax.lax.scan(one, start, steps)
        log_target = logdensity_fn(x_k)
        log_w = log_target + acc - self.log_initial(x0)
        bad = bad + nonfinite_value(log_target).astype(jnp.int32)
        return x_k, log_w, jnp.concatenate([x0[None], path]), bad

    def path_log_weight(self, params, path, logdensity_fn, *, count: bool = False):
        """Exact ``log w`` of a given path ``(K + 1, d)`` (differentiable in ``params`` only
        through ``log F``: the off-policy losses and the EUBO). With ``count=True``, the pair
        ``(log_w, num_nonfinite)``: also the number of the ``K + 1`` target evaluations that
        were non-finite (as in :meth:`rollout`)."""
        steps = jnp.arange(self.num_steps)
        x, x_next = path[:-1], path[1:]

        def terms(n, a, b):
            drift, bad = self.drift_and_check(params, n, a, logdensity_fn)
            mean, var = self.forward(n, a, drift)
            return self.log_backward(n, a, b) - gaussian_logpdf(b, mean, var), bad

        acc, bad = jax.vmap(terms)(steps, x, x_next)
        log_target = logdensity_fn(path[-1])
        log_w = log_target + jnp.sum(acc) - self.log_initial(path[0])
        if count:
            return log_w, jnp.sum(bad) + nonfinite_value(log_target).astype(jnp.int32)
        return log_w

    def backward_path(self, rng_key, x_k):
        """A path ``(K + 1, d)`` of the backward process started at ``x_K`` (for the EUBO)."""

        def one(x_next, n):
            mean, var = self.backward(n, x_next)
            eps = jax.random.normal(jax.random.fold_in(rng_key, n), x_next.shape, x_next.dtype)
            x = mean + jnp.sqrt(var) * eps
            return x, x

        _, xs = jax.lax.scan(one, x_k, jnp.arange(self.num_steps)[::-1])
        return jnp.concatenate([xs[::-1], x_k[None]])
