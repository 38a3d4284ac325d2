"""Batch-means confidence intervals of time averages over independent chains, and a tail check.

Each independent chain's time average after burn-in is one batch. Chains are independent, so
the mean of the ``C`` batches has the standard error ``sd(batches) / √C``, whatever the
autocorrelation within a chain (Jones, Haran, Caffo & Neath 2006).

That standard error needs the batches to have a finite variance, and to be estimated well it
needs their tails to be light. Averages of unbounded terms (importance ratios such as the
``Π 1 / d`` of :func:`psample.graphs.hom_density`) can have tails so heavy that the sample
standard deviation says little about the error. :func:`tail_shape` estimates the shape ``k`` of
a right tail by a generalized Pareto fit (ArviZ's Pareto k-hat, Vehtari et al. 2024);
:func:`check_tails` warns with :class:`psample.errors.UnreliableErrorWarning` when ``k`` of the
``C`` batches exceeds ``min(1 - 1/log10(C), 0.7)``, the level above which Vehtari et al. find
Monte Carlo estimates unreliable for ``C`` draws, or when ``k`` of the block means behind them
exceeds 1.

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

__all__ = ["Estimate", "batch_means", "reciprocal", "tail_shape", "khat_threshold", "BLOCK_KHAT_THRESHOLD",
           "check_tails"]


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


#: Pareto k-hat of the pooled block means above which their tail is too heavy for a mean.
BLOCK_KHAT_THRESHOLD = 1.0


def check_tails(batches, what: str, advice: str, *, blocks=None) -> tuple[float, float]:
    """Warn when the batches' right tail is too heavy for their standard error to be trusted.

    Two Pareto k-hats (Vehtari et al. 2024): of the ``C`` batches, against
    :func:`khat_threshold` ``(C)``; and, when given, of the pooled block means that make them
    up, against :data:`BLOCK_KHAT_THRESHOLD` = 1 (a tail with no finite mean at the sample
    sizes seen). The second catches runs whose chains happened to miss the rare large terms, so
    that their averages look tame while the estimate is off (it sees ``C × blocks`` draws of the
    tail instead of ``C``); on averages of light-tailed or bounded terms both stay far below
    their thresholds.

    Parameters
    ----------
    batches : float (C,)
        One value per independent chain (e.g. each chain's time average).
    what : str
        The estimate, for the message (e.g. ``"t(F, G)"``).
    advice : str
        What to do instead, appended to the message.
    blocks : float (C, B), optional
        The block means behind the batches.

    Returns
    -------
    (float, float)
        The two k-hats (``nan`` where undefined: no blocks, constant values, ties in the tail).

    Warns
    -----
    UnreliableErrorWarning
        When either k-hat exceeds its threshold (or the values are not finite).
    """
    def khat_of(values):
        values = np.asarray(values, dtype=np.float64).ravel()
        return tail_shape(values) if np.all(np.isfinite(values)) else math.inf

    batches = np.asarray(batches, dtype=np.float64).ravel()
    chain_khat = khat_of(batches)
    block_khat = math.nan if blocks is None else khat_of(blocks)
    limit = khat_threshold(batches.size)
    # nan (constant values, or ties in the tail) compares False: no warning from that k-hat.
    if chain_khat > limit or block_khat > BLOCK_KHAT_THRESHOLD:
        block_text = "" if blocks is None else (
            f"; {block_khat:.2f} (threshold {BLOCK_KHAT_THRESHOLD:.0f}) over its {np.size(blocks)} block means")
        warnings.warn(
            f"the error bar of {what} is unreliable: the per-chain terms it averages are heavy-"
            f"tailed (Pareto k-hat {chain_khat:.2f} (threshold {limit:.2f}) over {batches.size} "
            f"chain averages{block_text}), so a few rare terms dominate and the standard error "
            f"understates the error; {advice}",
            UnreliableErrorWarning,
            stacklevel=3,
        )
    return chain_khat, block_khat
