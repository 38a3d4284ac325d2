"""NumPyro models whose evidence (marginal likelihood) is known exactly, for tempered SMC.

- :func:`conjugate_gaussian`: ``mu ~ N(0, s² I_d)``, ``y_i ~ N(mu, I_d)``; the evidence and the
  posterior are Gaussian in closed form.
- :func:`linear_regression`: ``beta ~ N(0, s² I_p)``, ``y ~ N(X beta, sigma² I_n)`` with known
  ``sigma``; ``y ~ N(0, sigma² I + s² X Xᵀ)`` marginally (Bishop 2006, eq. 3.86).
- :func:`student_t_regression`: the same design with Student-t noise (heavy-tailed likelihood,
  a few gross outliers), ``p = 2`` so that the evidence is a two-dimensional integral computed by
  quadrature.
- :func:`eight_schools_log_evidence`: the evidence of the eight-schools model by
  one-dimensional quadrature over ``tau`` (``mu`` and ``theta`` integrate out in closed form).

Every target's ``exact`` holds ``"log_Z"`` (and posterior moments where closed-form).
Data are simulated with a fixed NumPy seed, so the exact values are reproducible.

References
----------
.. [1] Christopher M. Bishop, "Pattern recognition and machine learning", Springer, 2006, §3.3
   and §3.5.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy import integrate, special, stats

from psample.targets import Target, from_numpyro

from ._common import check_dimension, check_model_positive

__all__ = [
    "conjugate_gaussian",
    "conjugate_gaussian_model",
    "linear_regression",
    "linear_regression_model",
    "linear_regression_data",
    "student_t_regression",
    "student_t_regression_model",
    "eight_schools_log_evidence",
]


def conjugate_gaussian_model(y, prior_sd: float = 2.0):
    """``mu ~ N(0, prior_sd² I_d)``, ``y_i ~ N(mu, I_d)`` for the rows of ``y`` ``(n, d)``."""
    n, d = np.shape(y)
    mu = numpyro.sample("mu", dist.Normal(0.0, prior_sd).expand([d]).to_event(1))
    with numpyro.plate("data", n):
        numpyro.sample("obs", dist.Normal(mu, 1.0).to_event(1), obs=y)


def conjugate_gaussian(d: int = 2, n: int = 20, prior_sd: float = 2.0, seed: int = 0) -> Target:
    """Gaussian mean with a conjugate Gaussian prior; exact evidence and posterior.

    Data: ``y_i ~ N(1, I_d)``, ``i < n``, simulated with ``numpy.random.default_rng(seed)``.
    ``exact``: ``"log_Z"``, posterior ``"mean"`` ``(d,)`` and ``"var"`` ``(d,)`` (each coordinate
    ``N(sum y / (n + 1/s²), 1/(n + 1/s²))``).
    """
    d = check_dimension(d)
    n = check_dimension(n)
    prior_sd = check_model_positive("prior_sd", prior_sd)
    y = np.random.default_rng(seed).normal(1.0, 1.0, size=(n, d))
    cov = np.eye(n) + prior_sd**2 * np.ones((n, n))
    log_z = float(sum(stats.multivariate_normal(np.zeros(n), cov).logpdf(y[:, j]) for j in range(d)))
    precision = n + 1.0 / prior_sd**2
    target = from_numpyro(conjugate_gaussian_model, y, prior_sd=prior_sd)
    return dataclasses.replace(
        target,
        name=f"conjugate_gaussian(d={d}, n={n})",
        exact={"log_Z": log_z, "mean": y.sum(0) / precision, "var": np.full(d, 1.0 / precision)},
        hints={"polar_slice_w": 1.0 / np.sqrt(precision)},
    )


def linear_regression_data(n: int = 50, p: int = 3, noise_sd: float = 0.5, seed: int = 0):
    """Design ``X`` ``(n, p)`` (standard normal) and responses ``y = X beta* + noise``,
    ``beta* = (1, -1, 0.5, ...)`` cycled to length ``p``."""
    rng = np.random.default_rng(seed)
    design = rng.normal(size=(n, p))
    beta = np.resize(np.array([1.0, -1.0, 0.5]), p)
    return design, design @ beta + noise_sd * rng.normal(size=n)


def linear_regression_model(design, y, prior_sd: float = 1.0, noise_sd: float = 0.5):
    """``beta ~ N(0, prior_sd² I_p)``, ``y ~ N(design @ beta, noise_sd² I_n)``."""
    n, p = np.shape(design)
    beta = numpyro.sample("beta", dist.Normal(0.0, prior_sd).expand([p]).to_event(1))
    with numpyro.plate("data", n):
        numpyro.sample("obs", dist.Normal(jnp.dot(design, beta), noise_sd), obs=y)


def linear_regression(
    n: int = 50, p: int = 3, prior_sd: float = 1.0, noise_sd: float = 0.5, seed: int = 0
) -> Target:
    """Bayesian linear regression with known noise; exact evidence and posterior.

    ``exact``: ``"log_Z" = log N(y; 0, noise_sd² I + prior_sd² X Xᵀ)``, posterior ``"mean"``
    ``(p,)``, ``"cov"`` ``(p, p)``, ``"var"`` ``(p,)`` (Bishop 2006, eqs. 3.53-3.54).
    """
    n, p = check_dimension(n), check_dimension(p)
    prior_sd = check_model_positive("prior_sd", prior_sd)
    noise_sd = check_model_positive("noise_sd", noise_sd)
    design, y = linear_regression_data(n, p, noise_sd, seed)
    marginal = noise_sd**2 * np.eye(n) + prior_sd**2 * design @ design.T
    log_z = float(stats.multivariate_normal(np.zeros(n), marginal).logpdf(y))
    precision = np.eye(p) / prior_sd**2 + design.T @ design / noise_sd**2
    cov = np.linalg.inv(precision)
    mean = cov @ design.T @ y / noise_sd**2
    target = from_numpyro(linear_regression_model, design, y, prior_sd=prior_sd, noise_sd=noise_sd)
    return dataclasses.replace(
        target,
        name=f"linear_regression(n={n}, p={p})",
        exact={"log_Z": log_z, "mean": mean, "cov": cov, "var": np.diag(cov)},
        hints={"polar_slice_w": float(np.sqrt(np.trace(cov)))},
    )


def student_t_regression_model(design, y, prior_sd: float = 5.0, df: float = 2.0, noise_sd: float = 0.5):
    """``beta ~ N(0, prior_sd² I_p)``, ``y_i ~ StudentT(df, design_i · beta, noise_sd)``."""
    n, p = np.shape(design)
    beta = numpyro.sample("beta", dist.Normal(0.0, prior_sd).expand([p]).to_event(1))
    with numpyro.plate("data", n):
        numpyro.sample("obs", dist.StudentT(df, jnp.dot(design, beta), noise_sd), obs=y)


def student_t_regression(
    n: int = 40, prior_sd: float = 5.0, df: float = 2.0, noise_sd: float = 0.5, seed: int = 0
) -> Target:
    """Robust regression (Student-t noise) on two coefficients with gross outliers.

    Data: ``x_i ~ N(0, 1)``, design ``[1, x_i]``, ``y = 1 - 2 x + noise_sd * t_df`` noise, and
    every fifth response shifted by +15 (outliers). With its heavy tails the likelihood keeps
    the outliers from dragging the fit, and the tempered bridge passes through skewed,
    heavy-tailed intermediate distributions. ``exact["log_Z"]`` is
    the evidence by two-dimensional quadrature (Simpson on an 801² grid over the region
    holding the posterior; a 1,601² grid agrees to 1e-6, see the tests).
    """
    n = check_dimension(n, minimum=2)
    prior_sd = check_model_positive("prior_sd", prior_sd)
    df = check_model_positive("df", df)
    noise_sd = check_model_positive("noise_sd", noise_sd)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    design = np.column_stack([np.ones(n), x])
    y = 1.0 - 2.0 * x + noise_sd * rng.standard_t(df, size=n)
    y[::5] += 15.0
    log_z = _student_t_log_evidence(design, y, prior_sd, df, noise_sd, 801)
    target = from_numpyro(student_t_regression_model, design, y, prior_sd=prior_sd, df=df, noise_sd=noise_sd)
    return dataclasses.replace(
        target, name=f"student_t_regression(n={n}, df={df:g})", exact={"log_Z": log_z},
        hints={"polar_slice_w": 0.5},
    )  # fmt: skip


def _student_t_log_evidence(design, y, prior_sd, df, noise_sd, num_grid) -> float:
    """``log ∫ N(beta; 0, s² I) prod_i t_df(y_i; x_i·beta, noise_sd) d beta`` on a grid.

    The grid spans ``±8`` posterior-like widths around the likelihood's mode region, found on a
    coarse grid over the prior's ``±6 s`` box first.
    """

    n = y.shape[0]
    log_norm = special.gammaln(0.5 * (df + 1)) - special.gammaln(0.5 * df) - 0.5 * np.log(df * np.pi) - np.log(noise_sd)

    def log_joint(b0, b1):
        # Blocks of rows keep the (rows, columns, n) temporaries at a few tens of MB.
        out = np.empty(np.broadcast_shapes(b0.shape, b1.shape))
        for start in range(0, out.shape[0], 32):
            rows = slice(start, start + 32)
            mean = b0[rows, :, None] * design[:, 0] + b1[rows, :, None] * design[:, 1]
            z2 = ((y - mean) / noise_sd) ** 2
            loglik = n * log_norm - 0.5 * (df + 1.0) * np.log1p(z2 / df).sum(-1)
            out[rows] = loglik + stats.norm.logpdf(b0[rows], 0, prior_sd) + stats.norm.logpdf(b1[rows], 0, prior_sd)
        return out

    coarse = np.linspace(-6 * prior_sd, 6 * prior_sd, 241)
    b0, b1 = np.meshgrid(coarse, coarse, indexing="ij")
    values = log_joint(b0, b1)
    keep = values > values.max() - 40.0
    lo0, hi0 = b0[keep].min(), b0[keep].max()
    lo1, hi1 = b1[keep].min(), b1[keep].max()
    step = coarse[1] - coarse[0]
    g0 = np.linspace(lo0 - 2 * step, hi0 + 2 * step, num_grid)
    g1 = np.linspace(lo1 - 2 * step, hi1 + 2 * step, num_grid)
    b0, b1 = np.meshgrid(g0, g1, indexing="ij")
    values = log_joint(b0, b1)
    peak = values.max()
    inner = integrate.simpson(np.exp(values - peak), x=g1, axis=1)
    return float(peak + np.log(integrate.simpson(inner, x=g0)))


def eight_schools_log_evidence() -> float:
    """Log evidence of the eight-schools model (either parameterisation) by quadrature.

    ``p(y) = ∫ HalfCauchy(tau; 5) N(y; 0, diag(σ² + tau²) + 5² 11ᵀ) d tau`` (``mu`` and
    ``theta`` integrated out), Simpson's rule in ``u = log tau`` on ``[-20, 8]``.
    """
    from .schools import EIGHT_SCHOOLS_SIGMA, EIGHT_SCHOOLS_Y, MU_PRIOR_SD, TAU_PRIOR_SCALE

    y, var_obs = EIGHT_SCHOOLS_Y, EIGHT_SCHOOLS_SIGMA**2
    u = np.linspace(-20.0, 8.0, 28_001)
    tau = np.exp(u)
    c = MU_PRIOR_SD**2
    total = var_obs + tau[:, None] ** 2
    sum_precision = np.sum(1.0 / total, axis=1)
    sum_weighted = np.sum(y / total, axis=1)
    log_det = np.sum(np.log(total), axis=1) + np.log1p(c * sum_precision)
    quad = np.sum(y**2 / total, axis=1) - c * sum_weighted**2 / (1.0 + c * sum_precision)
    log_marginal = -0.5 * (log_det + quad + y.size * np.log(2 * np.pi))
    log_integrand = log_marginal + stats.halfcauchy(scale=TAU_PRIOR_SCALE).logpdf(tau) + u
    peak = log_integrand.max()
    return float(peak + np.log(integrate.simpson(np.exp(log_integrand - peak), x=u)))

