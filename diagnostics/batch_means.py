"""Batch-means confidence intervals of time averages over independent chains, and a tail check.

Each independent chain's time average after burn-in is one batch. Chains are independent, so
the mean of the ``C`` batches has the standard error ``sd(batches) / √C``, whatever the
autocorrelation within a chain (Jones, Haran, Caffo & Neath 2006).

That standard error needs the batches to have a finite variance, and to be estimated well it
needs their tails to be light. Averages of unbounded terms (importance ratios such as the
``Π 1 / d`` of :func:`psample.graphs.hom_density`) can have tails so heavy that the sample
standard deviation says little about the error. :func:`tail_shape` estimates the shape ``k`` of
the right tail of the batches by a generalized Pareto fit (ArviZ's Pareto k-hat, Vehtari et al.
2024); :func:`check_tails` warns with :class:`psample.errors.UnreliableErrorWarning` when ``k``
exceeds ``min(1 - 1/log10(C), 0.7)``, the level above which Vehtari et al. find Monte Carlo
estimates unreliable for ``C`` draws.

References
----------
.. [1] G. L. Jones, M. Haran, B. S. Caffo, R. Neath. "Fixed-width output analysis for Markov
   chain Monte Carlo." JASA 101(476), 2006.
.. [2] A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry. "Pareto smoothed importance
   sampling." JMLR 25(72), 2024. arXiv:1507.02646.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

from psample.errors import ShapeError, UnreliableErrorWarning

__all__ = ["Estimate", "batch_means", "reciprocal", "tail_shape", "khat_threshold", "check_tails"]


class Estimate(NamedTuple):
    """A Monte Carlo estimate with its standard error.

    Attributes
    ----------
    estimate
        The estimate, shape ``(...)`` of the observable.
    mcse
        Its Monte Carlo standard error (batch means across chains), same shape.
    num_chains
        Number of independent chains (batches).
    num_steps
        Chain steps per chain that entered the averages (burn-in excluded).
    """

    estimate: np.ndarray
    mcse: np.ndarray
    num_chains: int
    num_steps: int


def batch_means(values, num_steps: int | None = None) -> Estimate:
    """Mean over chains of each chain's time average, with ``SE = sd / √C``.

    Parameters
    ----------
    values
        Observable values of shape ``(chain, draw, ...)`` (burn-in already removed), or chain
        time averages of shape ``(chain, ...)`` when ``num_steps`` is given.
    num_steps
        Steps per chain behind each time average; default ``values.shape[1]``.

    Returns
    -------
    Estimate
    """
    values = np.asarray(values, dtype=np.float64)
    if num_steps is None:
        if values.ndim < 2:
            raise ShapeError(f"values must have axes (chain, draw, ...), got shape {values.shape}")
        num_steps = values.shape[1]
        values = values.mean(axis=1)
    num_chains = values.shape[0]
    if num_chains < 2:
        raise ShapeError(f"batch means need at least 2 chains, got {num_chains}")
    mcse = values.std(axis=0, ddof=1) / np.sqrt(num_chains)
    return Estimate(values.mean(axis=0), mcse, int(num_chains), int(num_steps))


def reciprocal(estimate: Estimate) -> Estimate:
    """``1 / θ`` with the delta-method standard error ``SE(θ) / θ²``."""
    value = np.asarray(estimate.estimate, dtype=np.float64)
    return Estimate(1.0 / value, np.asarray(estimate.mcse) / value**2, estimate.num_chains,
                    estimate.num_steps)


def tail_shape(batches) -> float:
    """Pareto k-hat of the right tail of scalar batches (``arviz_stats``); ``nan`` if undefined.

    Parameters
    ----------
    batches : float (C,)
        One value per independent chain.
    """
    from arviz_stats.base import array_stats

    batches = np.asarray(batches, dtype=np.float64).reshape(1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own notes on small or constant samples
        try:
            return float(array_stats.pareto_khat(batches, tail="right"))
        except ValueError:  # too few distinct values in the tail to fit (e.g. constant batches)
            return math.nan


def khat_threshold(num_batches: int) -> float:
    """``min(1 - 1/log10(C), 0.7)``: the k-hat above which ``C`` draws give unreliable means."""
    return min(1.0 - 1.0 / math.log10(num_batches), 0.7) if num_batches > 10 else 0.0


def check_tails(batches, what: str, advice: str) -> float:
    """Warn when the batches' right tail is too heavy for their standard error to be trusted.

    Parameters
    ----------
    batches : float (C,)
        One value per independent chain (e.g. each chain's time average).
    what : str
        The estimate, for the message (e.g. ``"t(F, G)"``).
    advice : str
        What to do instead, appended to the message.

    Returns
    -------
    float
        The Pareto k-hat.

    Warns
    -----
    UnreliableErrorWarning
        When k-hat exceeds :func:`khat_threshold` (or cannot be computed from non-finite
        batches).
    """
    batches = np.asarray(batches, dtype=np.float64).ravel()
    khat = tail_shape(batches) if np.all(np.isfinite(batches)) else math.inf
    limit = khat_threshold(batches.size)
    if khat > limit:  # nan (e.g. constant batches, no tail) does not warn
        warnings.warn(
            f"the error bar of {what} is unreliable: the per-chain terms it averages are heavy-"
            f"tailed (Pareto k-hat {khat:.2f} > {limit:.2f} over {batches.size} chains), so a few "
            f"chains dominate and the standard error understates the error; {advice}",
            UnreliableErrorWarning,
            stacklevel=3,
        )
    return khat
