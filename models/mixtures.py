"""Gaussian mixtures with exact smoothed densities and scores (walk-jump / log-concave chains).

For a target ``p`` and isotropic Gaussian noise of scale ``s`` the smoothed density is
``p_s(y) = ∫ p(x) N(y; x, s² I) dx``. For a Gaussian mixture ``p = Σ_k w_k N(μ_k, Σ_k)`` it is
again a mixture, ``p_s = Σ_k w_k N(μ_k, Σ_k + s² I)``, so its log-density and its score

.. math::

    \\nabla \\log p_s(y) = \\sum_k r_k(y) (\\Sigma_k + s^2 I)^{-1} (\\mu_k - y),
    \\qquad r_k(y) \\propto w_k N(y; \\mu_k, \\Sigma_k + s^2 I),

are known in closed form for every ``s >= 0`` (``s = 0`` is the target itself). Samplers that
need ``∇ log p_s`` (the chain of log-concave Markov chains, :mod:`psample.mcmc.logconcave_chain`)
are then testable without a trained denoiser; Saremi, Park and Bach [1] run most of their
experiments on such analytic scores. A single Gaussian is the one-component case.

Covariances are given as ``(K,)`` (isotropic, ``c_k I``), ``(K, d)`` (diagonal) or ``(K, d, d)``
(full). Full covariances are eigendecomposed once when the target is built, so every evaluation
at a new ``s`` costs ``O(K d²)`` and no matrix factorisation.

Factories return a :class:`psample.Target` over a flat ``x`` of shape ``(d,)``. Besides the
moments, ``Target.exact`` holds two callables: ``"smoothed_logdensity"`` ``(y, s) -> scalar``
(normalised) and ``"smoothed_score"`` ``(y, s) -> (d,)`` (closed form, not autodiff), both
jittable in ``y`` and ``s``.

References
----------
.. [1] Saeed Saremi, Ji Won Park and Francis Bach, "Chain of Log-Concave Markov Chains",
   International Conference on Learning Representations (ICLR), 2024. arXiv:2305.19473.
.. [2] Louis Grenioux, Maxence Noble, Marylou Gabrié and Alain Oliviero Durmus, "Stochastic
   Localization via Iterative Posterior Sampling", ICML 2024 (the two-mode 2:1 benchmark).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import ModelError
from psample.targets import Target

from ._common import check_dimension, check_model_positive, flat_target

__all__ = [
    "SmoothedDensity",
    "smoothed_gaussian_mixture",
    "smoothed_gaussian",
    "gaussian_mixture",
    "two_mode_mixture",
]


class SmoothedDensity(NamedTuple):
    """The smoothed densities ``p_s`` of a target, for every noise scale ``s >= 0``.

    logdensity
        ``(y, s) -> log p_s(y)``, normalised; ``y`` of shape ``(d,)``, ``s`` a scalar.
    score
        ``(y, s) -> ∇_y log p_s(y)``, shape ``(d,)``, in closed form.
    """

    logdensity: Callable
    score: Callable


def _check_mixture(weights, means, covs):
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
        raise ModelError(f"means must have shape (K, d) with K, d >= 1, got shape {means.shape}")
    num_components, d = means.shape
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (num_components,):
        raise ModelError(f"weights must have shape ({num_components},) like means' first axis, got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ModelError(f"weights must be finite and > 0, got {weights.tolist()}")
    weights = weights / weights.sum()
    covs = np.asarray(covs, dtype=np.float64)
    if covs.shape == (num_components,):
        eigvals = np.repeat(covs[:, None], d, axis=1)
        eigvecs = None
    elif covs.shape == (num_components, d):
        eigvals, eigvecs = covs.copy(), None
    elif covs.shape == (num_components, d, d):
        if not np.allclose(covs, np.swapaxes(covs, 1, 2)):
            raise ModelError("covs must be symmetric matrices")
        eigvals, eigvecs = np.linalg.eigh(covs)
    else:
        raise ModelError(
            f"covs must have shape ({num_components},), ({num_components}, {d}) or "
            f"({num_components}, {d}, {d}), got {covs.shape}"
        )
    if not np.all(np.isfinite(eigvals)) or np.any(eigvals <= 0):
        raise ModelError(f"covs must be positive definite, got eigenvalues down to {eigvals.min()!r}")
    return weights, means, eigvals, eigvecs


def smoothed_gaussian_mixture(weights, means, covs) -> SmoothedDensity:
    """Exact ``log p_s`` and ``∇ log p_s`` of the mixture ``Σ_k w_k N(μ_k, Σ_k)``.

    Parameters
    ----------
    weights
        ``(K,)`` positive mixture weights (normalised here).
    means
        ``(K, d)`` component means.
    covs
        ``(K,)`` isotropic variances, ``(K, d)`` diagonal variances or ``(K, d, d)`` covariances
        (positive definite).

    Returns
    -------
    SmoothedDensity
        ``logdensity(y, s)`` and ``score(y, s)``; ``s = 0`` gives the mixture itself.

    Raises
    ------
    ModelError
        If the shapes disagree, a weight is not positive or a covariance not positive definite.
    """
    weights, means, eigvals, eigvecs = _check_mixture(weights, means, covs)
    d = means.shape[1]
    log_w = jnp.asarray(np.log(weights))
    mu = jnp.asarray(means)
    lam = jnp.asarray(eigvals)
    q = None if eigvecs is None else jnp.asarray(eigvecs)

    def _parts(y, s):
        # Per component: the whitened residual z = Q^T (y - mu), variances lam + s^2.
        diff = y[None, :] - mu.astype(y.dtype)
        z = diff if q is None else jnp.einsum("kji,kj->ki", q.astype(y.dtype), diff)
        var = lam.astype(y.dtype) + jnp.asarray(s, y.dtype) ** 2
        log_comp = -0.5 * (jnp.sum(z**2 / var, axis=1) + jnp.sum(jnp.log(var), axis=1) + d * math.log(2 * math.pi))
        return z, var, log_w.astype(y.dtype) + log_comp

    def logdensity(y, s):
        return jax.scipy.special.logsumexp(_parts(y, s)[2])

    def score(y, s):
        z, var, log_joint = _parts(y, s)
        resp = jax.nn.softmax(log_joint)
        # (Σ_k + s² I)^{-1} (μ_k - y) = -Q (z / var)
        whitened = -z / var
        comp = whitened if q is None else jnp.einsum("kij,kj->ki", q.astype(y.dtype), whitened)
        return resp @ comp

    return SmoothedDensity(logdensity, score)


def smoothed_gaussian(mean, cov) -> SmoothedDensity:
    """Exact ``log p_s`` and ``∇ log p_s = (Σ + s² I)^{-1}(μ - y)`` of ``N(μ, Σ)``.

    ``cov`` is a scalar (``c I``), a ``(d,)`` diagonal or a ``(d, d)`` matrix.
    """
    mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
    cov = np.asarray(cov, dtype=np.float64)
    return smoothed_gaussian_mixture(np.ones(1), mean[None], cov[None])


def _mixture_moments(weights, means, eigvals, eigvecs):
    d = means.shape[1]
    if eigvecs is None:
        covs = np.stack([np.diag(v) for v in eigvals])
    else:
        covs = np.einsum("kij,kj,klj->kil", eigvecs, eigvals, eigvecs)
    mean = weights @ means
    centred = means - mean
    cov = np.einsum("k,kij->ij", weights, covs) + np.einsum("k,ki,kj->ij", weights, centred, centred)
    return mean, 0.5 * (cov + cov.T), covs.reshape(-1, d, d)


def gaussian_mixture(weights, means, covs, *, name: str | None = None, sigma: float | None = None) -> Target:
    """The mixture ``Σ_k w_k N(μ_k, Σ_k)`` as a target, with its exact smoothed densities.

    Parameters
    ----------
    weights, means, covs
        As in :func:`smoothed_gaussian_mixture`.
    name
        Target name (default ``gaussian_mixture(K=..., d=...)``).
    sigma
        Noise scale suggested to :func:`psample.logconcave_chain` in ``hints``; default
        ``sqrt(R² + max variance)`` with ``R`` the largest distance of a component mean from the
        mixture mean: the smoothed density ``p_σ`` is then log-concave, since
        ``Cov(X | y) ≼ σ² I`` for every ``y`` (Saremi, Park and Bach [1], Theorem 1).

    Returns
    -------
    Target
        Over ``x`` of shape ``(d,)``; chains start at ``N(mean, 4 max_var I)`` around the mixture
        mean. ``exact`` holds ``weights`` ``(K,)``, ``means`` ``(K, d)``, ``covs`` ``(K, d, d)``,
        ``mean`` ``(d,)``, ``cov`` ``(d, d)``, ``var`` ``(d,)``, ``E[x_0]``, ``Var[x_0]``,
        ``E[|x|^2]``, and the callables ``smoothed_logdensity`` and ``smoothed_score``
        (``(y, s)``). ``hints["polar_slice_w"]`` is ten times the largest standard deviation;
        ``hints["logconcave_chain"]`` is a dict of ``sigma`` and
        ``num_measurements`` (``ceil(4 d σ² / spread)`` rounded to a power of 2, at most 1024:
        the jump's bias ``E|X - ȳ_m|² = d σ²/m`` a quarter of the mixture's total variance).
    """
    weights, means, eigvals, eigvecs = _check_mixture(weights, means, covs)
    num_components, d = means.shape
    smoothed = smoothed_gaussian_mixture(weights, means, eigvals if eigvecs is None else covs)
    mean, cov, full_covs = _mixture_moments(weights, means, eigvals, eigvecs)
    max_var = float(eigvals.max())
    radius = float(np.max(np.linalg.norm(means - mean, axis=1)))
    if sigma is None:
        sigma = math.sqrt(radius**2 + max_var)
    sigma = check_model_positive("sigma", sigma)
    spread = float(np.trace(cov))
    num_measurements = int(min(1024, 2 ** math.ceil(math.log2(max(1.0, 4 * d * sigma**2 / spread)))))
    exact = {
        "weights": weights,
        "means": means,
        "covs": full_covs,
        "mean": mean,
        "cov": cov,
        "var": np.diag(cov).copy(),
        "E[x_0]": float(mean[0]),
        "Var[x_0]": float(cov[0, 0]),
        "E[|x|^2]": float(np.trace(cov) + mean @ mean),
        "smoothed_logdensity": smoothed.logdensity,
        "smoothed_score": smoothed.score,
    }

    def logdensity_fn(x):
        return smoothed.logdensity(x, 0.0)

    target = flat_target(
        logdensity_fn,
        d,
        init_scale=2.0 * math.sqrt(max_var),
        name=name or f"gaussian_mixture(K={num_components}, d={d})",
        exact=exact,
        hints={
            "logconcave_chain": {"sigma": sigma, "num_measurements": num_measurements},
            # Polar slice window: ten standard deviations of the widest direction (as for Gaussians).
            "polar_slice_w": 10.0 * math.sqrt(float(np.linalg.eigvalsh(cov).max())),
        },
    )
    # Start around the mixture mean, not the origin.
    init_fn = target.init_fn
    offset = jnp.asarray(mean)
    return dataclasses.replace(target, init_fn=lambda key, n: init_fn(key, n) + offset)


def two_mode_mixture(d: int = 32, separation: float = 1.0, variance: float = 0.05, weight: float = 2 / 3) -> Target:
    """Two Gaussians at ``±separation · 1`` with covariance ``variance · I`` and weights ``w : 1-w``.

    The benchmark of [1] and [2] (weights 2:1, ``variance = 0.05``): the modes are
    ``2 separation √d`` apart, about ``2 √(d / variance)`` standard deviations (51 at
    ``d = 32``), so a Langevin chain started in one mode never visits the other.

    Returns
    -------
    Target
        As :func:`gaussian_mixture`, plus ``exact["mode_axis"]`` (the unit vector ``θ = 1/√d``
        from the second mode to the first), ``exact["P(mode 0)"] = weight`` (the probability that
        a draw is nearer ``+separation · 1``, up to ``Φ(-separation √d / √variance)``, below
        ``1e-100`` at the defaults) and ``exact["modes"]`` ``(2, d)``. ``hints`` as in
        :func:`gaussian_mixture`, with ``σ = sqrt(d separation² + variance)``.
    """
    d = check_dimension(d)
    separation = check_model_positive("separation", separation)
    variance = check_model_positive("variance", variance)
    weight = float(weight)
    if not 0.0 < weight < 1.0:
        raise ModelError(f"weight must lie in (0, 1), got {weight!r}")
    modes = separation * np.stack([np.ones(d), -np.ones(d)])
    # R = distance of each mode from the midpoint (the log-concavity radius of the two-point
    # part), not from the weighted mean: Cov(Z | y) ≼ d separation² I for a two-point Z.
    sigma = math.sqrt(d * separation**2 + variance)
    target = gaussian_mixture(
        np.array([weight, 1.0 - weight]),
        modes,
        np.full(2, variance),
        name=f"two_mode_mixture(d={d}, separation={separation:g}, variance={variance:g}, weight={weight:.4g})",
        sigma=sigma,
    )
    target.exact.update({"mode_axis": np.ones(d) / math.sqrt(d), "P(mode 0)": weight, "modes": modes})
    return target
