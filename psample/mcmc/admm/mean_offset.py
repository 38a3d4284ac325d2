"""The end-of-run check of a D-ADMMS run's mean (:func:`check_mean_offset`).

At stationarity the network average moves by ``-eta sum_i grad f_i(x_i) - noise``, the
gradients taken at the agents' own positions ``x_i``. When they act as one gradient at the
average, the posterior's score at the average (``info.average_score``) has mean 0; a nonzero
mean is an offset of the network average's mean off the posterior's. The check tests that mean
against its Monte Carlo error (group means over chains) with a Bonferroni-corrected Student-t
threshold and a false-alarm rate of 1e-3, and estimates the offset in posterior sds by a
Gaussian approximation fitted to the draws. It needs no reference run.

Limits: it sees the offset that the agents' disagreement causes, not the shift of a too-narrow
law's mean towards the posterior's mode, nor the method's variance error; with fewer than 20
chains it assumes blocks of a chain are longer than its autocorrelation time; a run that has not
reached stationarity can be flagged too.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.flatten_util
import numpy as np

from psample.errors import NumericalWarning, ShapeError

__all__ = ["MeanOffset", "check_mean_offset"]


class MeanOffset(NamedTuple):
    """What :func:`check_mean_offset` found, per flattened coordinate (``d`` of them).

    score_mean
        ``(d,)`` mean of ``info.average_score`` (the posterior's score at the network average)
        over every chain and draw.
    score_se
        ``(d,)`` its Monte Carlo standard error: the spread of ``num_groups`` group means
        (whole chains, or equal consecutive blocks of them when there are fewer than 20 chains).
    z
        ``(d,)`` ``score_mean / score_se``.
    threshold
        The ``|z|`` beyond which the mean is called off: the Student-t quantile with
        ``num_groups - 1`` degrees of freedom of a 1e-3 false-alarm rate over all ``d``
        coordinates (Bonferroni).
    offset_sd
        ``(d,)`` the network average's mean minus the posterior's, in posterior sds, by a
        Gaussian approximation fitted to the draws (NaN where it cannot be fitted).
    biased
        ``max |z| > threshold``.
    num_groups
        The number of group means behind ``score_se``.
    """

    score_mean: np.ndarray
    score_se: np.ndarray
    z: np.ndarray
    threshold: float
    offset_sd: np.ndarray
    biased: bool
    num_groups: int


def check_mean_offset(trace, *, rho: float | None = None, warn: bool = True) -> MeanOffset:
    """Test a D-ADMMS run for a mean offset beyond its Monte Carlo error; warn if there is one.

    At stationarity the network average moves by ``-eta sum_i grad f_i(x_i) - noise`` with the
    gradients taken at the agents' own positions ``x_i`` (the rule of :mod:`psample.mcmc.admm`), so the mean of
    ``sum_i grad f_i(x_i)`` is 0. If the agents' gradients acted as one gradient at the average
    (agents in consensus, or Gaussian shards of equal curvature), the posterior's score at the
    average, ``info.average_score``, would have mean 0 as well, and for a near-Gaussian
    posterior ``E[score] = -H (mean - posterior mean)`` (``H`` its precision): a nonzero mean is
    an offset of the network average's mean. Tempering the posterior (the method's variance
    error) leaves the score's mean at 0, so this checks the mean alone. It needs no reference
    run: the group means of the recorded scores give the Monte Carlo error (chains are
    independent; with fewer than 20 chains each is cut into consecutive blocks, which assumes
    the blocks are longer than the autocorrelation time). The warm-up's draws are not in the
    trace; a run that has not reached stationarity can be flagged too.

    Parameters
    ----------
    trace
        A :class:`psample.Trace` of a ``psample.admm`` run: ``trace.info.average_score`` of
        shape ``(chains, draws, d)`` and ``trace.positions`` (the network average).
    rho
        The ``rho`` of the run, quoted in the warning (``psample.admm`` passes its own).
    warn
        ``False``: return the result without warning.

    Returns
    -------
    MeanOffset

    Warns
    -----
    NumericalWarning
        When ``max |z|`` exceeds the threshold, with the offset in posterior sds and what to
        change in ``psample.admm``.
    """
    from scipy import stats

    score = np.asarray(getattr(trace.info, "average_score", None) if trace.info is not None else None)
    if score.ndim != 3:
        raise ShapeError(
            f"trace.info.average_score must have shape (chains, draws, d) (a psample.admm run), got {score.shape}"
        )
    num_chains, num_draws, d = score.shape
    positions = jax.vmap(jax.vmap(lambda x: jax.flatten_util.ravel_pytree(x)[0]))(trace.positions)
    positions = np.asarray(positions)
    blocks = min(num_draws, -(-20 // num_chains))
    length = num_draws // blocks
    # Group means over the last blocks * length draws (the first draws of a short remainder go).
    groups = score[:, num_draws - blocks * length :].reshape(num_chains, blocks, length, d).mean(axis=2)
    groups = groups.reshape(num_chains * blocks, d)
    k = groups.shape[0]
    mean = score.reshape(-1, d).mean(axis=0)
    se = groups.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.full(d, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, mean / se, np.where(mean == 0, 0.0, np.inf))
    threshold = float(stats.t.ppf(1 - 0.5e-3 / d, max(k - 1, 1)))
    biased = bool(np.nanmax(np.abs(z)) > threshold) if k > 1 else False
    offset = _gaussian_offset(positions.reshape(-1, d), score.reshape(-1, d), mean)
    result = MeanOffset(mean, se, z, threshold, offset, biased, k)
    if biased and warn:
        worst = int(np.nanargmax(np.abs(z)))
        size = (
            f"about {abs(offset[worst]):.2g} posterior sd by a Gaussian approximation"
            if np.isfinite(offset[worst]) else "its size in posterior sds could not be estimated"
        )  # fmt: skip
        said = "" if rho is None else f" (rho={rho:g}: agents' noise sd 1/(sqrt(2) rho) = {np.sqrt(0.5) / rho:.3g})"
        warnings.warn(
            f"the D-ADMMS network average's mean is off the posterior's beyond its Monte Carlo error: the "
            f"posterior's score at the average has mean {mean[worst]:.3g} +- {se[worst]:.2g} in coordinate "
            f"{worst} (z = {z[worst]:.1f}, threshold {threshold:.1f}), an offset of {size}. The agents' noise"
            f"{said} spreads them around their average and their gradients at their own positions pull it off "
            "the posterior's mean. A larger rho in psample.admm shrinks the offset, at a "
            "cost: the average's variance shrinks too (its temperature is deg / (2 rho) on a regular graph of "
            "degree deg) and it relaxes more slowly; or keep rho and read the means as biased by this much.",
            NumericalWarning,
            stacklevel=2,
        )
    return result


def _gaussian_offset(x: np.ndarray, g: np.ndarray, g_mean: np.ndarray) -> np.ndarray:
    """Mean offset in posterior sds from draws ``x`` and scores ``g`` (both ``(M, d)``).

    For a Gaussian posterior of precision ``H`` the score is ``-H (x - mu)``, so the draws'
    cross-covariance is ``Cov(x, g) = -Cov(x) H`` whatever the draws' own covariance (which
    D-ADMMS gets wrong): ``H = -Cov(x)^{-1} Cov(x, g)``, the offset ``-H^{-1} E[g]`` and the
    posterior sds ``sqrt(diag H^{-1})``.
    """
    d = x.shape[1]
    nan = np.full(d, np.nan)
    if x.shape[0] <= d + 1:
        return nan
    xc, gc = x - x.mean(axis=0), g - g.mean(axis=0)
    cov, cross = xc.T @ xc, xc.T @ gc
    try:
        precision = -np.linalg.solve(cov, cross)
        precision = 0.5 * (precision + precision.T)
        if not np.all(np.isfinite(precision)) or np.linalg.eigvalsh(precision).min() <= 0:
            return nan
        covariance = np.linalg.inv(precision)
    except np.linalg.LinAlgError:
        return nan
    return -(covariance @ g_mean) / np.sqrt(np.diag(covariance))
