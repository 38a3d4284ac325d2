"""Gaussian targets with every moment known: isotropic, ill-conditioned and the hyperplane disk.

Each factory returns a :class:`psample.Target` over a flat vector ``x`` of shape ``(d,)``
whose ``exact`` dict holds the moments (and, for the isotropic case, the χ law of ``‖x‖``),
computed from closed forms with NumPy/SciPy when the target is built. The hyperplane disk is
the second experiment of Schär, Habeck and Rudolf (2023), where Gibbsian polar slice sampling
mixes in about one step while random-direction slice samplers need hundreds.

References
----------
.. [1] Schär, P., Habeck, M. and Rudolf, D. (2023). "Gibbsian Polar Slice Sampling".
   Proceedings of the 40th International Conference on Machine Learning, PMLR 202:30204-30223.
   arXiv:2302.03945.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import stats

from psample.errors import ModelError
from psample.targets import Target

from ._common import (
    check_dimension,
    check_model_positive,
    flat_target,
    log_chi2_moments,
    quantile_entries,
)

__all__ = ["isotropic_gaussian", "ill_conditioned_gaussian", "hyperplane_disk"]

#: Chains of a Gaussian target start at ``N(0, (INIT_OVERDISPERSION · σ_max)² I)``.
INIT_OVERDISPERSION = 2.0
#: Polar slice window for a Gaussian: ten times its largest standard deviation (``w = 10`` for the
#: standard Gaussian): wide enough that the stepping-out rarely needs to expand the window.
_POLAR_SLICE_W_PER_SD = 10.0


def _gaussian_moment_entries(cov_diag: np.ndarray) -> dict:
    d = cov_diag.shape[0]
    return {
        "mean": np.zeros(d),
        "var": cov_diag,
        "E[x_0]": 0.0,
        "Var[x_0]": float(cov_diag[0]),
        "E[|x|^2]": float(cov_diag.sum()),
    }


def isotropic_gaussian(d: int, scale: float = 1.0) -> Target:
    """``N(0, scale² I_d)``: ``log ρ(x) = -‖x‖² / (2 scale²)``.

    Parameters
    ----------
    d
        Dimension, ``>= 1``.
    scale
        Standard deviation of every coordinate, ``> 0``.

    Returns
    -------
    Target
        Over ``x`` of shape ``(d,)``; chains start at ``N(0, (2 scale)² I)``. ``exact`` holds
        ``mean`` ``(d,)``, ``var`` ``(d,)`` (the covariance is ``scale² I``), ``E[x_0]``,
        ``Var[x_0]``, ``E[|x|^2]`` and, since ``‖x‖ / scale ~ χ_d``, ``E[|x|]``,
        ``median[|x|]``, ``q{p}[|x|]``, ``E[log|x|]`` and ``Var[log|x|]``.

    Raises
    ------
    ModelError
        If ``d < 1`` or ``scale`` is not a finite positive number.
    """
    d = check_dimension(d)
    scale = check_model_positive("scale", scale)
    inv_var = 1.0 / scale**2

    def logdensity_fn(x):
        return -0.5 * inv_var * jnp.sum(x**2)

    radius = stats.chi(d, scale=scale)
    mean_log_q, var_log_q = log_chi2_moments(d)  # log ‖x‖² = 2 log scale + log χ²_d
    exact = _gaussian_moment_entries(np.full(d, scale**2))
    exact.update(
        {
            "E[|x|]": float(radius.mean()),
            "median[|x|]": float(radius.median()),
            **quantile_entries("|x|", radius.ppf),
            "E[log|x|]": float(np.log(scale) + 0.5 * mean_log_q),
            "Var[log|x|]": 0.25 * var_log_q,
        }
    )
    return flat_target(
        logdensity_fn,
        d,
        init_scale=INIT_OVERDISPERSION * scale,
        name=f"gaussian(d={d}, scale={scale:g})",
        exact=exact,
        hints={"polar_slice_w": _POLAR_SLICE_W_PER_SD * scale},
    )


def ill_conditioned_gaussian(
    d: int, condition_number: float = 100.0, *, rotate: bool = True, seed: int = 0
) -> Target:
    """``N(0, Σ)`` with ``Σ = Q diag(λ) Qᵀ`` and eigenvalues ``λ_i = κ^{-i/(d-1)}`` in ``[1/κ, 1]``.

    Parameters
    ----------
    d
        Dimension, ``>= 2``.
    condition_number
        ``κ = λ_max / λ_min >= 1``; the eigenvalues are log-spaced from ``1`` down to ``1/κ``.
    rotate
        If true, ``Q`` is a Haar-random rotation (``scipy.stats.ortho_group``, seeded), so the
        covariance is dense; otherwise ``Q = I`` and the target is a diagonal Gaussian.
    seed
        Seed of the rotation.

    Returns
    -------
    Target
        Over ``x`` of shape ``(d,)``; chains start at ``N(0, 4 I)`` (twice the largest standard
        deviation). ``exact`` holds ``mean`` ``(d,)``, ``cov`` ``(d, d)``, ``var`` ``(d,)``,
        ``eigenvalues`` ``(d,)`` (descending), ``eigenvectors`` ``(d, d)`` (columns, ``Q``),
        ``condition_number``, ``E[x_0]``, ``Var[x_0]`` and ``E[|x|^2] = Σ λ_i``.

    Raises
    ------
    ModelError
        If ``d < 2`` or ``condition_number`` is below 1 or not finite.
    """
    d = check_dimension(d, minimum=2)
    kappa = check_model_positive("condition_number", condition_number)
    if kappa < 1.0:
        raise ModelError(f"condition_number must be >= 1, got {condition_number!r}")
    eigenvalues = kappa ** (-np.arange(d) / (d - 1))
    q = stats.ortho_group.rvs(d, random_state=seed) if rotate else np.eye(d)
    cov = (q * eigenvalues) @ q.T
    precision = (q / eigenvalues) @ q.T
    precision = 0.5 * (precision + precision.T)  # exactly symmetric, so the gradient is P x

    def logdensity_fn(x):
        return -0.5 * jnp.dot(x, jnp.dot(precision, x))

    exact = _gaussian_moment_entries(np.diag(cov).copy())
    exact.update(
        {
            "cov": cov,
            "eigenvalues": eigenvalues,
            "eigenvectors": q,
            "condition_number": kappa,
        }
    )
    kind = "rotated" if rotate else "diagonal"
    return flat_target(
        logdensity_fn,
        d,
        init_scale=INIT_OVERDISPERSION * float(np.sqrt(eigenvalues.max())),
        name=f"ill_conditioned_gaussian(d={d}, condition_number={kappa:g}, {kind})",
        exact=exact,
        hints={"polar_slice_w": _POLAR_SLICE_W_PER_SD * float(np.sqrt(eigenvalues.max()))},
    )


def hyperplane_disk(d: int = 200) -> Target:
    """The hyperplane disk of [1]: ``log ρ(x) = -‖x‖² - (Σ_i x_i)²``.

    A Gaussian with precision ``2 (I + 11ᵀ)``, hence (Sherman–Morrison)
    ``Σ = ½ (I - 11ᵀ / (d + 1))``: almost isotropic, squeezed along ``1``.

    Parameters
    ----------
    d
        Dimension, ``>= 1`` (the paper uses ``d = 200``).

    Returns
    -------
    Target
        Over ``x`` of shape ``(d,)``; chains start at ``N(0, I)`` (the largest standard deviation
        is ``1/√2``). ``exact`` holds ``mean`` ``(d,)``, ``cov`` ``(d, d)``, ``var`` ``(d,)``,
        ``E[x_0]``, ``Var[x_0]``, ``Cov[x_0,x_1]`` (``d >= 2``), ``Var[sum x]`` and
        ``E[|x|^2]``. ``hints["polar_slice_w"] = 20``, the paper's value.

    Raises
    ------
    ModelError
        If ``d < 1``.
    """
    d = check_dimension(d)
    ones = np.ones(d)
    cov = 0.5 * (np.eye(d) - np.outer(ones, ones) / (d + 1))

    def logdensity_fn(x):
        return -jnp.sum(x**2) - jnp.sum(x) ** 2

    exact = _gaussian_moment_entries(np.diag(cov).copy())
    exact["cov"] = cov
    exact["Var[sum x]"] = float(ones @ cov @ ones)
    if d >= 2:
        exact["Cov[x_0,x_1]"] = float(cov[0, 1])
    return flat_target(
        logdensity_fn,
        d,
        init_scale=1.0,
        name=f"hyperplane_disk(d={d})",
        exact=exact,
        hints={"polar_slice_w": 20.0},
    )
