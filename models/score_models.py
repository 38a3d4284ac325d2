"""Gaussian-mixture diffusion score models with exact noised scores and log-densities.

A Gaussian mixture :math:`q_0 = \\sum_k w_k N(\\mu_k, \\Sigma_k)` pushed through an affine forward
diffusion with marginal :math:`x_t = \\alpha_t x_0 + \\sigma_t \\varepsilon` (a
:mod:`psample.diffusion` schedule, VP or VE) stays a mixture at every time,

.. math::

    q_t = \\sum_k w_k N(\\alpha_t \\mu_k, \\alpha_t^2 \\Sigma_k + \\sigma_t^2 I),

so its score :math:`\\nabla \\log q_t` and log-density are known in closed form: an exact
"pretrained model" (the Feynman–Kac correctors' authors test their GMM annealing the same way).
The evaluations reuse :func:`psample.models.smoothed_gaussian_mixture` through
:math:`q_t(x) = \\alpha_t^{-d} p_{\\sigma_t/\\alpha_t}(x / \\alpha_t)`.

Exact references for the targets FKC builds from such models:

- :func:`mixture_product`: the product of two mixtures is a mixture (Gaussian-product rule:
  :math:`N(x; m_1, S_1) N(x; m_2, S_2) = N(m_1; m_2, S_1 + S_2) N(x; m, S)` with
  :math:`S = (S_1^{-1} + S_2^{-1})^{-1}`, :math:`m = S(S_1^{-1} m_1 + S_2^{-1} m_2)`);
- :func:`mixture_power`: integer powers ``q^beta`` (``K^beta`` components, negligible ones
  dropped);
- :func:`fkc_problem`: the annealing, product and guidance problems of the tests, benchmarks and
  ``psample fkc --demo``, each with its exact answers at ``t_min`` (non-Gaussian ones by
  quadrature).

Schedules are passed in (``psample.diffusion.VP()`` or ``VE(...)``, or any object with
``alpha(t)`` and ``sigma(t)``): this module defines models only and imports neither a sampler
nor :mod:`psample.diffusion` (DESIGN §8).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from psample.errors import ModelError

from .diffusion_targets import GMM40_MEANS
from .mixtures import _check_mixture, smoothed_gaussian_mixture

__all__ = [
    "Mixture",
    "DiffusionMixture",
    "diffusion_mixture",
    "mixture_product",
    "mixture_power",
    "FORTY_MODE_MEANS",
    "forty_mode_mixture",
    "FKCProblem",
    "FKC_PROBLEMS",
    "fkc_problem",
]

#: Means of the 40-mode mixture in 2-D: :data:`psample.models.diffusion_targets.GMM40_MEANS`
#: (``data/gmm40_means.csv``), the one 40-mode mixture of the zoo (see that module).
FORTY_MODE_MEANS = GMM40_MEANS


class Mixture(NamedTuple):
    """A Gaussian mixture in NumPy (float64): the exact law of a reference.

    weights
        ``(K,)`` normalised weights.
    means
        ``(K, d)`` component means.
    covs
        ``(K, d, d)`` component covariances.
    log_mass
        ``()`` log of the total mass before normalisation (``0`` for a normalised density; for
        a product or power, ``log ∫ prod``).
    """

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    log_mass: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def mean(self) -> np.ndarray:
        """``(d,)`` mixture mean."""
        return self.weights @ self.means

    def cov(self) -> np.ndarray:
        """``(d, d)`` mixture covariance (within plus between components)."""
        centred = self.means - self.mean()
        return np.einsum("k,kij->ij", self.weights, self.covs) + np.einsum("k,ki,kj->ij", self.weights, centred, centred)

    def prob_below(self, axis: int, threshold: float) -> float:
        """``P(x[axis] < threshold)``."""
        sd = np.sqrt(self.covs[:, axis, axis])
        return float(self.weights @ special.ndtr((threshold - self.means[:, axis]) / sd))

    def prob_ball(self, center, radius: float) -> float:
        """``P(|x - center| < radius)``; exact for isotropic components (noncentral chi-square)."""
        center = np.asarray(center, dtype=np.float64)
        variances = np.einsum("kii->ki", self.covs)
        if not np.allclose(self.covs, np.einsum("ki,ij->kij", variances, np.eye(self.dim))) or not np.allclose(
            variances, variances[:, :1]
        ):
            raise ModelError("prob_ball needs isotropic components")
        var = variances[:, 0]
        nc = np.sum((self.means - center) ** 2, axis=1) / var
        return float(self.weights @ stats.ncx2.cdf(radius**2 / var, self.dim, nc))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``(n, d)`` exact draws (NumPy generator)."""
        comp = rng.choice(self.weights.size, size=n, p=self.weights)
        chol = np.linalg.cholesky(self.covs)
        z = rng.standard_normal((n, self.dim))
        return self.means[comp] + np.einsum("nij,nj->ni", chol[comp], z)

    def logdensity(self, x: np.ndarray) -> np.ndarray:
        """``log q(x)`` (normalised) at ``x`` ``(..., d)``, NumPy."""
        x = np.asarray(x, dtype=np.float64)
        log_comp = np.stack([
            stats.multivariate_normal(m, c).logpdf(x) for m, c in zip(self.means, self.covs)
        ], axis=-1)  # fmt: skip
        return special.logsumexp(log_comp + np.log(self.weights), axis=-1)


def _as_mixture(weights, means, covs) -> Mixture:
    weights, means, eigvals, eigvecs = _check_mixture(weights, means, covs)
    if eigvecs is None:
        full = np.einsum("ki,ij->kij", eigvals, np.eye(means.shape[1]))
    else:
        full = np.einsum("kij,kj,klj->kil", eigvecs, eigvals, eigvecs)
    return Mixture(weights, means, 0.5 * (full + np.swapaxes(full, 1, 2)))


def mixture_product(a: Mixture, b: Mixture, *, prune: float = 40.0) -> Mixture:
    """The normalised product ``a(x) b(x) / ∫ a b`` of two mixtures, with ``log_mass = log ∫ a b``
    (plus the factors' own ``log_mass``).

    Components whose log-weight falls more than ``prune`` below the largest are dropped
    (``e^-40 ≈ 4e-18`` of the mass); ``log_mass`` counts every component.
    """
    inv_a = np.linalg.inv(a.covs)
    inv_b = np.linalg.inv(b.covs)
    cov = np.linalg.inv(inv_a[:, None] + inv_b[None, :])  # (Ka, Kb, d, d)
    rhs = np.einsum("kij,kj->ki", inv_a, a.means)[:, None] + np.einsum("kij,kj->ki", inv_b, b.means)[None, :]
    mean = np.einsum("abij,abj->abi", cov, rhs)
    joint = a.covs[:, None] + b.covs[None, :]
    diff = a.means[:, None] - b.means[None, :]
    sign, logdet = np.linalg.slogdet(joint)
    quad = np.einsum("abi,abi->ab", diff, np.linalg.solve(joint, diff[..., None])[..., 0])
    log_overlap = -0.5 * (quad + logdet + a.dim * math.log(2 * math.pi))
    log_w = np.log(a.weights)[:, None] + np.log(b.weights)[None, :] + log_overlap
    log_w, mean, cov = log_w.ravel(), mean.reshape(-1, a.dim), cov.reshape(-1, a.dim, a.dim)
    log_mass = float(special.logsumexp(log_w))
    keep = log_w > log_w.max() - prune
    weights = np.exp(log_w[keep] - special.logsumexp(log_w[keep]))
    cov = 0.5 * (cov[keep] + np.swapaxes(cov[keep], 1, 2))
    return Mixture(weights, mean[keep], cov, log_mass + a.log_mass + b.log_mass)


def mixture_power(a: Mixture, beta: int, *, prune: float = 40.0) -> Mixture:
    """``a^beta / ∫ a^beta`` for an integer ``beta >= 1`` (``log_mass = log ∫ a^beta``)."""
    if isinstance(beta, bool) or int(beta) != beta or beta < 1:
        raise ModelError(f"beta must be an integer >= 1 for an exact mixture power, got {beta!r}")
    out = a
    for _ in range(int(beta) - 1):  # beta is a small integer; each product is vectorised
        out = mixture_product(out, a, prune=prune)
    return out


class DiffusionMixture:
    """A Gaussian mixture at ``t = 0`` under a forward diffusion, with exact noised quantities.

    Attributes
    ----------
    mixture
        The data law :class:`Mixture` (``t = 0``).
    schedule
        The forward schedule (:class:`psample.diffusion.VP` or ``VE``).
    dim, shape
        ``d`` and ``(d,)``: one particle is a flat ``(d,)`` vector.

    Methods ``score(t, x)`` (also ``model(t, x)``) and ``logdensity(t, x)`` take one point
    ``x`` ``(d,)`` and a scalar time, are jittable and vmappable, and are exact.
    """

    def __init__(self, weights, means, covs, schedule, name: str | None = None):
        self.mixture = _as_mixture(weights, means, covs)
        if not (callable(getattr(schedule, "alpha", None)) and callable(getattr(schedule, "sigma", None))):
            raise ModelError(f"schedule must be a psample.diffusion.VP or VE schedule, got {schedule!r}")
        self.schedule = schedule
        self.dim = self.mixture.dim
        self.shape = (self.dim,)
        self.name = name or f"diffusion_mixture(K={self.mixture.weights.size}, d={self.dim})"
        self._smoothed = smoothed_gaussian_mixture(self.mixture.weights, self.mixture.means, self.mixture.covs)

    def __repr__(self) -> str:
        return f"{self.name} under {self.schedule!r}"

    def at(self, t: float) -> Mixture:
        """The exact law ``q_t`` (NumPy, float64) at a concrete time ``t``."""
        with jax.ensure_compile_time_eval():  # concrete even when called under jit
            alpha = float(self.schedule.alpha(float(t)))
            sigma = float(self.schedule.sigma(float(t)))
        m = self.mixture
        covs = alpha**2 * m.covs + sigma**2 * np.eye(self.dim)
        return Mixture(m.weights, alpha * m.means, covs)

    def logdensity(self, t, x):
        """``log q_t(x)``, normalised."""
        alpha = self.schedule.alpha(t).astype(x.dtype)
        s = self.schedule.sigma(t).astype(x.dtype) / alpha
        return self._smoothed.logdensity(x / alpha, s) - self.dim * jnp.log(alpha)

    def score(self, t, x):
        """``∇_x log q_t(x)`` in closed form."""
        alpha = self.schedule.alpha(t).astype(x.dtype)
        s = self.schedule.sigma(t).astype(x.dtype) / alpha
        return self._smoothed.score(x / alpha, s) / alpha

    __call__ = score

    def sample(self, rng_key, num: int, t: float = 0.0):
        """``(num, d)`` exact draws from ``q_t`` (JAX)."""
        law = self.at(t)
        k1, k2 = jax.random.split(rng_key)
        comp = jax.random.categorical(k1, jnp.log(jnp.asarray(law.weights)), shape=(num,))
        chol = jnp.asarray(np.linalg.cholesky(law.covs))
        z = jax.random.normal(k2, (num, self.dim))
        return jnp.asarray(law.means)[comp] + jnp.einsum("nij,nj->ni", chol[comp], z)


def diffusion_mixture(weights, means, covs, schedule, *, name: str | None = None) -> DiffusionMixture:
    """A mixture ``Σ_k w_k N(μ_k, Σ_k)`` as an exact diffusion score model.

    Parameters
    ----------
    weights, means, covs
        As in :func:`psample.models.gaussian_mixture`: ``(K,)``, ``(K, d)`` and ``(K,)``
        isotropic, ``(K, d)`` diagonal or ``(K, d, d)`` covariances.
    schedule
        The forward schedule: ``psample.diffusion.VP()`` or ``VE(...)``.

    Raises
    ------
    ModelError
        Shapes that disagree, non-positive weights or covariances, not a schedule.
    """
    return DiffusionMixture(weights, means, covs, schedule, name)


def forty_mode_mixture(schedule, *, normalisation: float = 20.0) -> DiffusionMixture:
    """The 40-mode mixture in 2-D (FAB benchmark [1]; the FKC paper's annealing target [2]).

    Equal weights, means :data:`FORTY_MODE_MEANS` on ``[-40, 40]^2``, per-coordinate standard
    deviation ``softplus(1) = 1.3133``, all divided by ``normalisation`` (the authors divide by
    50 for their VE schedule; 20 puts the means in ``[-2, 2]`` for the default VP schedule).

    References
    ----------
    .. [1] Laurence I. Midgley et al., "Flow annealed importance sampling bootstrap", ICLR 2023.
    .. [2] Skreta et al., "Feynman-Kac Correctors in Diffusion", ICML 2025. arXiv:2503.02819.
    """
    scale = float(normalisation)
    if not scale > 0:
        raise ModelError(f"normalisation must be > 0, got {normalisation!r}")
    std = math.log1p(math.e) / scale
    return DiffusionMixture(np.ones(40), FORTY_MODE_MEANS / scale, np.full(40, std**2), schedule,
                            name=f"forty_mode_mixture(normalisation={scale:g})")


class FKCProblem(NamedTuple):
    """An FKC target built from exact score models, with its exact answers at ``t_min``.

    name
        Problem name (:data:`FKC_PROBLEMS`).
    models
        The score models (:class:`DiffusionMixture`), in the order of ``exponents``.
    exponents
        The ``b_i`` of the target ``prod_i q_t^(i)^b_i``.
    t_min
        Time the references are computed at.
    reference
        The exact target as a :class:`Mixture` (annealing with integer ``beta``, products), or
        ``None`` (guidance, by quadrature).
    exact
        ``"mean"`` ``(d,)``, ``"var"`` ``(d,)``, and per problem: ``"P(x_0<0)"`` (mode weight of
        the bimodal and guidance problems), ``"P(|x-(2,0)|<1)"`` (product), ``"log_Z"`` (``log
        ∫ prod q_{t_min}^b - log ∫ prod q_1^b`` where exact), ``"grid"``/``"density"`` (1-D
        quadrature).
    """

    name: str
    models: tuple
    exponents: tuple
    t_min: float
    reference: Mixture | None
    exact: dict


def _log_mass_at(models, exponents, t) -> float:
    """``log ∫ prod_i q_t^(i)^b_i`` for integer exponents (exact mixture algebra)."""
    out = None
    for model, b in zip(models, exponents):
        part = mixture_power(model.at(t), int(b))
        out = part if out is None else mixture_product(out, part)
    return out


def _problem(name, models, exponents, t_min, reference, extra):
    exact = dict(extra)
    if reference is not None:
        exact.setdefault("mean", reference.mean())
        exact.setdefault("var", np.diag(reference.cov()).copy())
        start = _log_mass_at(models, exponents, 1.0)
        exact["log_Z"] = reference.log_mass - start.log_mass
    return FKCProblem(name, tuple(models), tuple(float(b) for b in exponents), float(t_min), reference, exact)


#: Problem names and what they are.
FKC_PROBLEMS = {
    "anneal_gaussian": "N((1,-1), I) annealed to beta = 4: N((1,-1), I/4)",
    "anneal_bimodal": "0.7 N((-2,0), I/4) + 0.3 N((2,0), I/4) annealed to beta = 2: mode weights 0.8448 / 0.1552",
    "product": "product of 0.5 N((-2,0)) + 0.5 N((2,0)) and 0.5 N((2,0)) + 0.5 N((2,3)) (cov I/4): the shared mode",
    "guidance": "1-D CFG, q = 0.5 N(-1, 1/4) + 0.5 N(1, 1/4), q(x|c) = N(1, 1/4), w = 3: mean 1.0511, var 0.2086",
    "forty_mode": "40-mode 2-D mixture (FAB; means / 20) annealed to beta = 3: an exact 64000-component power",
}


def fkc_problem(name: str, schedule, *, t_min: float = 1e-3) -> FKCProblem:
    """One of :data:`FKC_PROBLEMS` with exact score models under ``schedule`` (e.g.
    ``psample.diffusion.VP()``, the setting of the tests and benchmarks) and its exact answers
    at ``t_min``."""
    if name not in FKC_PROBLEMS:
        raise ModelError(f"unknown FKC problem {name!r}; known: {', '.join(FKC_PROBLEMS)}")
    t_min = float(t_min)
    if name == "anneal_gaussian":
        model = diffusion_mixture([1.0], [[1.0, -1.0]], [1.0], schedule, name="N((1,-1), I)")
        return _problem(name, [model], [4.0], t_min, mixture_power(model.at(t_min), 4), {})
    if name == "anneal_bimodal":
        model = diffusion_mixture([0.7, 0.3], [[-2.0, 0.0], [2.0, 0.0]], [0.25, 0.25], schedule, name="bimodal")
        ref = mixture_power(model.at(t_min), 2)
        return _problem(name, [model], [2.0], t_min, ref, {"P(x_0<0)": ref.prob_below(0, 0.0)})
    if name == "product":
        q1 = diffusion_mixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [0.25, 0.25], schedule, name="left-right")
        q2 = diffusion_mixture([0.5, 0.5], [[2.0, 0.0], [2.0, 3.0]], [0.25, 0.25], schedule, name="right-up")
        ref = mixture_product(q1.at(t_min), q2.at(t_min))
        return _problem(name, [q1, q2], [1.0, 1.0], t_min, ref, {"P(|x-(2,0)|<1)": ref.prob_ball([2.0, 0.0], 1.0)})
    if name == "guidance":
        w = 3.0
        uncond = diffusion_mixture([0.5, 0.5], [[-1.0], [1.0]], [0.25, 0.25], schedule, name="q(x)")
        cond = diffusion_mixture([1.0], [[1.0]], [0.25], schedule, name="q(x|c)")
        grid = np.linspace(-8.0, 8.0, 100_001)
        log_p = (1 - w) * uncond.at(t_min).logdensity(grid[:, None]) + w * cond.at(t_min).logdensity(grid[:, None])
        density = np.exp(log_p - log_p.max())
        density /= np.trapezoid(density, grid)
        mean = np.trapezoid(grid * density, grid)
        var = np.trapezoid((grid - mean) ** 2 * density, grid)
        below = np.trapezoid(np.where(grid < 0, density, 0.0), grid)
        exact = {"mean": np.array([mean]), "var": np.array([var]), "P(x_0<0)": float(below), "grid": grid,
                 "density": density, "w": w}
        return _problem(name, [uncond, cond], [1.0 - w, w], t_min, None, exact)
    # forty_mode
    model = forty_mode_mixture(schedule)
    ref = mixture_power(model.at(t_min), 3)
    return _problem(name, [model], [3.0], t_min, ref, {"beta": 3.0})
