"""One-call sampling with the chain of log-concave Markov chains: the final jumps as a DataTree.

:func:`psample.logconcave_chain` makes one measurement per step, so a plain
:func:`psample.sample` run records each chain's tunnelling trajectory ``x̂_1, ..., x̂_m``.
Most users want only the samples, ``x̂_m``: :func:`logconcave_chain_samples` keeps
``num_samples`` draws with ``thin = m`` (``num_samples · m`` steps) (after ``m`` measurements the algorithm starts a new
chain of measurements from the re-noised jump, so draw ``j`` is the ``j``-th sample of that chain)
and returns the ArviZ DataTree, so that ``arviz`` summaries and diagnostics apply. The same
idiom by hand::

    algorithm = psample.logconcave_chain(..., num_measurements=m)
    trace = psample.sample(algorithm, positions, key, num_draws=n, thin=m)
    idata = trace.to_datatree()
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from psample.errors import NumericalWarning
from psample.mcmc.logconcave_chain import DEFAULT_NUM_SCORE_SAMPLES, MIN_EFFECTIVE_SCORE_SAMPLES, check_score_ess
from psample.mcmc.logconcave_chain import as_top_level_api as logconcave_chain
from psample.runtime.chains import sample

__all__ = ["logconcave_chain_samples", "MIN_EFFECTIVE_SCORE_SAMPLES"]

#: Recorded with every sample (``observables``): what happened over its chain of measurements.
_OBSERVABLES = {
    "num_nonfinite": lambda state: state.chain_num_nonfinite,
    "first_score_ess": lambda state: state.first_score_ess,
}


def logconcave_chain_samples(
    initial_positions,
    rng_key,
    logdensity_fn: Callable | None = None,
    *,
    num_samples: int = 1,
    target=None,
    progress: bool = True,
    return_trace: bool = False,
    **tuning,
):
    """Draw ``num_samples`` final jumps ``x̂_m`` per chain and return them as an ArviZ DataTree.

    Parameters
    ----------
    initial_positions
        Pytree with a leading chain axis ``(num_chains, ...)``: each chain's ``x̂_0``, around
        which its first measurement is drawn (``x̂_0 + σ ξ``).
    rng_key
        A JAX PRNG key.
    logdensity_fn
        As in :func:`psample.logconcave_chain`; defaults to ``target.logdensity_fn`` when a target
        is given and no smoothed score is passed.
    num_samples
        Samples per chain (``>= 1``): the DataTree's ``draw`` dimension.
    target
        A :class:`psample.Target` naming the sites (``posterior``) and checking the shapes.
    progress
        Show the runner's progress bar.
    return_trace
        Return the :class:`psample.Trace` instead of its DataTree.
    **tuning
        Keyword arguments of :func:`psample.logconcave_chain` (``sigma`` and
        ``num_measurements`` at least).

    Returns
    -------
    xarray.DataTree
        ``posterior`` with dims ``(chain, draw, ...)``: draw ``j`` of chain ``c`` is the jump
        after the ``m``-th measurement of that chain's ``j``-th chain of measurements;
        ``sample_stats`` holds the last measurement's info (evaluation counts, score ESS);
        ``observables`` holds, per sample, ``num_nonfinite`` (non-finite evaluations over its
        ``m`` measurements) and ``first_score_ess`` (mean relative ESS of the importance weights
        on its first measurement, 1 for a given score).

    Warns
    -----
    NumericalWarning
        If any evaluation was not finite (with the count), or if the importance-sampling score
        rested on fewer than :data:`MIN_EFFECTIVE_SCORE_SAMPLES` effective proposals on the first
        measurement, where the mode weights are decided: they are then biased.
    """
    if logdensity_fn is None and target is not None and not (
        "smoothed_score" in tuning or "smoothed_logdensity" in tuning
    ):
        logdensity_fn = target.logdensity_fn
    algorithm = logconcave_chain(logdensity_fn, **tuning)
    m = int(tuning["num_measurements"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trace = sample(
            algorithm,
            initial_positions,
            rng_key,
            num_samples,
            thin=m,
            target=target,
            observables=_OBSERVABLES,
            progress=progress,
        )
    nonfinite = np.asarray(trace.observables["num_nonfinite"])
    for w in caught:
        # The runner sees only every m-th step's info and final state; _warn's counts and the
        # score-ESS check below cover every sample, so they replace the runner's.
        if not issubclass(w.category, NumericalWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _warn(nonfinite, np.asarray(trace.observables["first_score_ess"]), tuning)
    return trace if return_trace else trace.to_datatree()


def _warn(nonfinite, first_score_ess, tuning):
    if nonfinite.any():
        bad = int((nonfinite > 0).sum())
        what = "logdensity_fn" if not ("smoothed_score" in tuning or "smoothed_logdensity" in tuning) else (
            "smoothed_score" if "smoothed_score" in tuning else "smoothed_logdensity"
        )
        warnings.warn(
            f"{what} returned non-finite values {int(nonfinite.sum())} times, in the chains of "
            f"measurements of {bad} of {nonfinite.size} samples (observables.num_nonfinite has the "
            "counts per sample); the walk did not move on them and the importance weights dropped "
            f"them, so those samples treat the places concerned as zero density: check {what} "
            "for overflow or invalid values",
            NumericalWarning,
            stacklevel=3,
        )
    if "smoothed_score" in tuning or "smoothed_logdensity" in tuning:
        return
    check_score_ess(first_score_ess, int(tuning.get("num_score_samples", DEFAULT_NUM_SCORE_SAMPLES)), stacklevel=4)
