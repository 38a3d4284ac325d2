"""The drift network of the learned diffusion samplers (plain JAX; parameters train with optax).

The "PIS-grad" architecture of Zhang and Chen [1], also used by DDS [2] and gfn-diffusion [3]:
``f_θ(t, x) = MLP_1([x, e(t)]) + MLP_2(e(t)) ⊙ clip(∇ log γ(x), -c, c)``, with ``e(t)`` a
learned embedding of Fourier features ``sin/cos(π k t)``, GELU activations, and the last layer
of both MLPs initialised to zero. The target-gradient term is clipped (gfn-diffusion clips at
100) so that steep targets cannot blow a step up, and is an input (``stop_gradient``: no second
derivatives of ``γ``). Parameters are a dict of arrays, a pytree optax updates and :mod:`numpy`
saves. See the :doc:`family page </families/diffusion>` for the method and tuning.

Contract
--------
:class:`DriftNetwork` is frozen and hashable; ``init(rng_key, dtype)`` gives the parameters and
``network(params, t, x, grad_log_target)`` the drift ``(d,)`` at one flat ``(d,)`` position
(vmap for batches). Zero-initialised output layers: an untrained network is the reference process.

Limits
------
A dense MLP of fixed ``width`` and ``depth`` on flat vectors: no equivariance, no pytree
positions, and its cost grows with ``d · width``.

References
----------
.. [1] Qinsheng Zhang and Yongxin Chen, "Path integral sampler: a stochastic control approach
   for sampling", ICLR 2022. arXiv:2111.15141.
.. [2] Francisco Vargas, Will Grathwohl and Arnaud Doucet, "Denoising diffusion samplers",
   ICLR 2023. arXiv:2302.13834.
.. [3] Marcin Sendera et al., "Improved off-policy training of diffusion samplers", NeurIPS 2024.
   arXiv:2402.05098.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

__all__ = ["DriftNetwork"]


def _dense(key, fan_in: int, fan_out: int, *, zero: bool = False, dtype=jnp.float32):
    if zero:
        return {"w": jnp.zeros((fan_in, fan_out), dtype), "b": jnp.zeros((fan_out,), dtype)}
    w = jax.random.normal(key, (fan_in, fan_out), dtype) * math.sqrt(1.0 / fan_in)
    return {"w": w, "b": jnp.zeros((fan_out,), dtype)}


def _apply_mlp(layers, h):
    for layer in layers[:-1]:
        h = jax.nn.gelu(h @ layer["w"] + layer["b"])
    return h @ layers[-1]["w"] + layers[-1]["b"]


@dataclasses.dataclass(frozen=True)
class DriftNetwork:
    """``f_θ(t, x, ∇ log γ(x))`` for ``x`` of shape ``(dim,)`` and time feature ``t`` in ``[0, 1]``.

    Parameters
    ----------
    dim
        Dimension of ``x``.
    width
        Hidden width of both MLPs and of the time embedding (64 in DDS and gfn-diffusion).
    depth
        Hidden layers of the main MLP (2).
    harmonics
        Fourier features ``H`` of the time embedding (``2 H`` inputs).
    grad_clip
        ``c``, the clip of the target-gradient input.
    """

    dim: int
    width: int = 64
    depth: int = 2
    harmonics: int = 16
    grad_clip: float = 100.0

    def init(self, rng_key, dtype=jnp.float32) -> dict:
        """Parameters: the last layer of both MLPs is zero, so ``f_θ ≡ 0`` (the reference process)."""
        keys = iter(jax.random.split(rng_key, 3 + self.depth + 2))
        w = self.width
        embed = [_dense(next(keys), 2 * self.harmonics, w, dtype=dtype), _dense(next(keys), w, w, dtype=dtype)]
        main = [_dense(next(keys), self.dim + w, w, dtype=dtype)]
        main += [_dense(next(keys), w, w, dtype=dtype) for _ in range(self.depth - 1)]
        main.append(_dense(next(keys), w, self.dim, zero=True, dtype=dtype))
        gate = [_dense(next(keys), w, w, dtype=dtype), _dense(next(keys), w, self.dim, zero=True, dtype=dtype)]
        return {"embed": embed, "main": main, "gate": gate}

    def embed(self, params, t):
        k = jnp.arange(1, self.harmonics + 1, dtype=params["embed"][0]["w"].dtype)
        angles = math.pi * k * t
        return _apply_mlp(params["embed"], jnp.concatenate([jnp.sin(angles), jnp.cos(angles)]))

    def __call__(self, params, t, x, grad_log_target):
        """Drift ``(dim,)`` at time feature ``t`` (scalar) and state ``x`` ``(dim,)``."""
        dtype = params["embed"][0]["w"].dtype
        x = x.astype(dtype)
        e = jax.nn.gelu(self.embed(params, jnp.asarray(t, dtype)))
        grad = jnp.clip(jax.lax.stop_gradient(grad_log_target).astype(dtype), -self.grad_clip, self.grad_clip)
        grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
        return _apply_mlp(params["main"], jnp.concatenate([x, e])) + _apply_mlp(params["gate"], e) * grad
