"""Partial non-centring: coordinates in which a hierarchical model's latents and hyperparameters decouple.

Method. In a hierarchical model with latents ``h`` whose prior given the hyperparameters ``v`` is
Gaussian, ``h | v ~ N(m(v), diag(s(v)²))`` (a NumPyro location-scale site), the centred
coordinates ``(v, h)`` form a funnel where the data are weak and the non-centred ones
``h = m(v) + s(v) e`` a ridge where they are strong. Replace the likelihood, as a function of
``h``, by a Gaussian ``exp(-hᵀ H h / 2 + bᵀ h)``; then the conditional posterior of ``h`` given
``v`` is ``N(μ(v), P(v)⁻¹)`` with

.. math::

    P(v) = H + \\operatorname{diag}(s(v)^{-2}), \\qquad
    \\mu(v) = P(v)^{-1}\\,(b + m(v) / s(v)^2),

and the coordinates ``x = (v, e)`` with ``h = μ(v) + L(v)⁻ᵀ e`` (``L Lᵀ = P``) make ``e``
standard normal and independent of ``v`` when the approximation is exact (a Gaussian
likelihood), close to it otherwise: the partially non-centred parameterisation of
Papaspiliopoulos, Roberts and Sköld [1], with weights that follow the hyperparameters. ``H = 0``
gives the non-centred map. :func:`fit_partial_noncentering` fits ``(H, b)`` once, at a given
position: Newton steps to the conditional mode ``ĥ`` of ``h`` at its hyperparameters ``v₀``,
``H = -∇²_h log p(ĥ, v₀) - diag(s(v₀)⁻²)`` (eigenvalues clipped at 0) and
``b = H ĥ + (ĥ - m(v₀)) / s(v₀)²``. The density on ``x`` adds the log-Jacobian
``-Σ log diag L(v)``, so a sampler on it is exact for any fitted ``(H, b)``: the fit only
chooses the coordinates. A diagonal ``H`` (each latent seen by its own data, e.g. one effect
per group) takes an elementwise path; otherwise every evaluation factorises ``P(v)`` (``k³/3``
flops for ``k`` latents).

Contract. :func:`fit_partial_noncentering` returns a :class:`PartialNoncentering` of pure,
jittable, vmappable functions on flat positions (1-d arrays; ``jax.flatten_util.ravel_pytree``
of a NumPyro position), for any sampler: the benchmark of issue #28 runs
:func:`psample.interweaved_polar_slice` on it, with ``centered_logdensity_fn=None`` (the joint
move and a move of the hyperparameters given ``e``: radon) or with ``to_centered`` and
``to_partial`` as the maps and ``centered_move="coordinatewise"`` (the joint move and the
hyperparameters one by one given the centred latents, on
:class:`psample.LatentGaussian`'s ``hyper_conditional_fn``: German credit).

Limits.

- The fit needs the hyperparameters' and latents' flat indices and ``loc_scale(v) -> (m, s)``,
  the latents' prior location and scale (shape ``(k,)`` each) as a function of the
  hyperparameters' *unconstrained* coordinates; :func:`psample.latent_gaussian` reads all three
  from a NumPyro model's ``Normal`` latent sites.
- The fit point matters for efficiency, not for exactness: fit at hyperparameters typical of
  the posterior (e.g. the centre adapted by a short non-centred warm-up), and keep the result
  fixed while sampling (refitting from the chain's own draws during sampling would not be exact).
- Non-Gaussian likelihoods are approximated at one point; the dependence left between ``e`` and
  ``v`` is what the sampler still has to follow.

References
----------
.. [1] Omiros Papaspiliopoulos, Gareth O. Roberts and Martin Sköld, "A general framework for the
   parametrization of hierarchical models", Statistical Science 22(1), 59-73, 2007.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from blackjax.types import Array

from psample.errors import InitialPointError, ShapeError, check_flat_indices

__all__ = ["PartialNoncentering", "fit_partial_noncentering", "partial_noncentering_map"]


class PartialNoncentering(NamedTuple):
    """A fitted partial non-centring (flat positions ``(d,)``).

    logdensity_fn
        ``x -> scalar``: the log-density on the partially non-centred coordinates, Jacobian included.
    to_centered, to_partial
        ``x -> y`` and ``y -> x``, inverse bijections (only the latents' entries change).
    curvature
        The fitted ``H``, ``(k, k)``.
    linear
        The fitted ``b``, ``(k,)``.
    log_det_jacobian_fn
        ``x -> log |det ∂y/∂x|``, scalar (``logdensity_fn(x)`` is the centred log-density at
        ``to_centered(x)`` plus this).
    """

    logdensity_fn: Callable
    to_centered: Callable
    to_partial: Callable
    curvature: Array
    linear: Array
    log_det_jacobian_fn: Callable


def fit_partial_noncentering(
    centered_logdensity_fn: Callable,
    fit_position: Array,
    hyper_indices,
    latent_indices,
    loc_scale: Callable,
    *,
    newton_steps: int = 20,
) -> PartialNoncentering:
    """Fit the partially non-centred coordinates of a centred log-density at one position.

    Examples
    --------
    .. code::

        # radon's county effects ~ Normal(mean, scale), read from the centred NumPyro model
        target = psample.from_numpyro(model, **data)
        latents = psample.latent_gaussian(model, ["county_effect"], **data)
        logdensity = lambda y: target.logdensity_fn(latents.unravel(y))  # on flat positions
        pncp = psample.fit_partial_noncentering(logdensity, y_fit, latents.hyper_indices,
                                                latents.latent_indices, latents.loc_scale)
        hyper = list(latents.hyper_indices)
        sampler = psample.interweaved_polar_slice(pncp.logdensity_fn, None, None, None, hyper)
        trace = psample.sample(sampler, jax.vmap(pncp.to_partial)(y0), key, 1000, num_warmup=300)
        # draws in the model's coordinates: jax.vmap(pncp.to_centered) of the positions

    Parameters
    ----------
    centered_logdensity_fn
        ``y -> scalar`` on flat centred positions ``(d,)``.
    fit_position
        ``(d,)`` centred position whose hyperparameters ``v₀`` the fit uses (its latents are not
        read: the Newton steps start from the prior location ``m(v₀)``).
    hyper_indices, latent_indices
        Flat indices of the hyperparameters ``v`` (``loc_scale``'s argument, in this order) and of
        the latents ``h`` (``k`` of them, in ``loc_scale``'s output order); disjoint.
    loc_scale
        ``v -> (m, s)``, the latents' prior location and standard deviation, shapes ``(k,)``.
    newton_steps
        Newton steps to the conditional mode (a step that does not increase the conditional
        density, or is not finite, is not taken).

    Returns
    -------
    PartialNoncentering

    Raises
    ------
    ShapeError
        If the indices are not distinct, in range and disjoint, or ``loc_scale`` does not return
        two ``(k,)`` arrays.
    InitialPointError
        If the fit is not finite at ``fit_position`` (the log-density, its latents' Hessian or the
        prior scale there).
    """
    fit_position = jnp.asarray(fit_position)
    if fit_position.ndim != 1:
        raise ShapeError(f"fit_position must be one flat position (d,), got shape {fit_position.shape}")
    d = fit_position.shape[0]
    hyper = check_flat_indices("hyper_indices", list(hyper_indices), d)
    latent = check_flat_indices("latent_indices", list(latent_indices), d)
    if set(hyper.tolist()) & set(latent.tolist()):
        raise ShapeError("hyper_indices and latent_indices overlap")
    hyper_idx, latent_idx = jnp.asarray(hyper), jnp.asarray(latent)
    k = latent.size
    m0, s0 = loc_scale(fit_position[hyper_idx])
    if jnp.shape(m0) != (k,) or jnp.shape(s0) != (k,):
        raise ShapeError(f"loc_scale must return (m, s) of shape ({k},) each, got {jnp.shape(m0)} and {jnp.shape(s0)}")

    def conditional(h):
        return centered_logdensity_fn(fit_position.at[latent_idx].set(h))

    def newton(h, _):
        new = h - jnp.linalg.solve(jax.hessian(conditional)(h), jax.grad(conditional)(h))
        better = jnp.all(jnp.isfinite(new)) & (conditional(new) >= conditional(h))
        return jnp.where(better, new, h), None

    mode, _ = jax.lax.scan(newton, m0, None, length=newton_steps)
    curvature = -jax.hessian(conditional)(mode) - jnp.diag(s0**-2.0)
    if not (bool(jnp.all(jnp.isfinite(curvature))) and bool(jnp.all(jnp.isfinite(s0))) and bool(jnp.all(s0 > 0))):
        raise InitialPointError("the partial non-centring fit is not finite at fit_position: check its "
                                "hyperparameters (the latents' prior scale must be finite and > 0 there)")
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (curvature + curvature.T))
    H = (vectors * jnp.clip(eigenvalues, 0.0)) @ vectors.T
    b = H @ mode + (mode - m0) / s0**2
    off_diagonal = float(jnp.max(jnp.abs(H - jnp.diag(jnp.diag(H)))))
    diagonal = off_diagonal <= 1e-12 * float(jnp.max(jnp.abs(H))) or k == 1
    fitted = partial_noncentering_map(centered_logdensity_fn, jnp.diag(H) if diagonal else H, b, hyper_idx,
                                      latent_idx, loc_scale)
    return fitted._replace(curvature=jnp.diag(jnp.diag(H)) if diagonal else H)


def partial_noncentering_map(
    centered_logdensity_fn: Callable, curvature: Array, linear: Array, hyper_indices, latent_indices, loc_scale: Callable
) -> PartialNoncentering:
    """The partially non-centred coordinates of a given fit ``(H, b)`` (jittable; no checks).

    ``curvature`` is ``H``, ``(k,)`` for a diagonal one (the elementwise path) or ``(k, k)``;
    ``linear`` is ``b`` ``(k,)``; both ``None``: the non-centred map ``h = m(v) + s(v) e`` (the
    limit ``H = 0, b = 0``, computed as such). The other arguments are
    :func:`fit_partial_noncentering`'s (indices as integer arrays). The returned ``curvature`` and
    ``linear`` are as given.
    """
    hyper_idx, latent_idx = jnp.asarray(hyper_indices), jnp.asarray(latent_indices)
    noncentered = curvature is None
    if noncentered != (linear is None):
        raise ValueError("give curvature and linear both, or neither (the non-centred map)")
    H, b = (None, None) if noncentered else (jnp.asarray(curvature), jnp.asarray(linear))
    diagonal = noncentered or H.ndim == 1

    def affine(v):
        """``(μ(v), e -> L⁻ᵀ e, r -> Lᵀ r, log det L)``: elementwise for a diagonal ``H``."""
        m, s = loc_scale(v)
        if noncentered:
            return m, lambda e: s * e, lambda r: r / s, -jnp.sum(jnp.log(s))
        if diagonal:
            root = jnp.sqrt(H + s**-2.0)
            return (b + m / s**2) / root**2, lambda e: e / root, lambda r: root * r, jnp.sum(jnp.log(root))
        chol = jnp.linalg.cholesky(H + jnp.diag(s**-2.0))
        mu = jax.scipy.linalg.cho_solve((chol, True), b + m / s**2)
        return (mu, lambda e: jax.scipy.linalg.solve_triangular(chol.T, e, lower=False), lambda r: chol.T @ r,
                jnp.sum(jnp.log(jnp.diag(chol))))

    def centered_and_log_det(x):
        mu, forward, _, log_det = affine(x[hyper_idx])
        return x.at[latent_idx].set(mu + forward(x[latent_idx])), log_det

    def to_centered(x):
        return centered_and_log_det(x)[0]

    def to_partial(y):
        mu, _, backward, _ = affine(y[hyper_idx])
        return y.at[latent_idx].set(backward(y[latent_idx] - mu))

    def logdensity_fn(x):
        y, log_det = centered_and_log_det(x)  # one factorisation of P(v) per evaluation
        return centered_logdensity_fn(y) - log_det

    def log_det_jacobian_fn(x):
        return -centered_and_log_det(x)[1]

    return PartialNoncentering(logdensity_fn, to_centered, to_partial, H, b, log_det_jacobian_fn)
