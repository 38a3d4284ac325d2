"""One-call sampling with the chain of log-concave Markov chains: the final jumps as a Trace.

:func:`psample.logconcave_chain` makes one measurement per step, so a plain
:func:`psample.sample` run records each chain's tunnelling trajectory ``x̂_1, ..., x̂_m``.
Most users want only the samples, ``x̂_m``: :func:`logconcave_chain_samples` keeps
``num_draws`` draws per chain with ``thin = m`` (``num_draws · m`` steps; after ``m``
measurements the algorithm starts a new chain of measurements from the re-noised jump, so draw
``j`` is the ``j``-th sample of that chain) and returns the :class:`psample.Trace`, whose
``to_datatree()`` gives the ArviZ DataTree. The same idiom by hand::

    algorithm = psample.logconcave_chain(..., num_measurements=m)
    trace = psample.sample(algorithm, positions, rng_key, n, thin=m)
    idata = trace.to_datatree()

See the :doc:`family page </families/logconcave_chain>` for the method, tuning and measured limits.

Contract
--------
``logconcave_chain_samples(initial_positions, rng_key, logdensity_fn=None, *, num_draws=1,
target=None, progress=True, **tuning) -> Trace`` with the chains' draws on the leading two
axes ``(chain, draw, ...)``, and per draw the observables ``num_nonfinite`` and
``first_score_ess``. The draws are bit for bit those of every ``m``-th step of
:func:`psample.sample` with the same key.

Limits
------
Those of :mod:`psample.mcmc.logconcave_chain`: the output's bias is at most ``dσ²/m`` in squared
W2, and the importance-sampling score (``logdensity_fn`` alone) can weigh separated modes
wrongly; this call warns when the first measurement rests on too few effective proposals.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from psample import _deprecated
from psample.errors import NumericalWarning, user_stacklevel
from psample.mcmc.logconcave_chain import DEFAULT_NUM_SCORE_SAMPLES, MIN_EFFECTIVE_SCORE_SAMPLES, check_score_ess
from psample.mcmc.logconcave_chain import as_top_level_api as logconcave_chain
from psample.runtime.chains import sample
from psample.runtime.trace import Trace

__all__ = ["logconcave_chain_samples", "MIN_EFFECTIVE_SCORE_SAMPLES"]

#: A deprecated keyword not given (``num_samples``, ``return_trace``).
_UNSET = object()

#: Recorded with every sample (``observables``): what happened over its chain of measurements.
_OBSERVABLES = {
    "num_nonfinite": lambda state: state.chain_num_nonfinite,
    "first_score_ess": lambda state: state.first_score_ess,
}


@_deprecated.renamed_keywords(num_samples="num_draws")
def logconcave_chain_samples(
    initial_positions,
    rng_key,
    logdensity_fn: Callable | None = None,
    *,
    num_draws: int = 1,
    target=None,
    progress: bool = True,
    **tuning,
) -> Trace:
    """Draw ``num_draws`` final jumps ``x̂_m`` per chain and return them as a :class:`psample.Trace`.

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
    num_draws
        Samples per chain (``>= 1``): the ``draw`` axis. The old keyword
        ``num_samples=`` works for one release with a ``DeprecationWarning``.
    target
        A :class:`psample.Target` naming the sites (``posterior``) and checking the shapes.
    progress
        Show the runner's progress bar (where someone watches).
    **tuning
        Keyword arguments of :func:`psample.logconcave_chain` (``sigma`` and
        ``num_measurements`` at least). ``return_trace=`` is deprecated (one release, with a
        ``DeprecationWarning``): ``True`` changes nothing, ``False`` returns the DataTree.

    Returns
    -------
    psample.Trace
        ``positions`` ``(chain, draw, ...)``: draw ``j`` of chain ``c`` is the jump after the
        ``m``-th measurement of that chain's ``j``-th chain of measurements; ``info`` holds the
        last measurement's info (evaluation counts, score ESS); ``observables`` holds, per
        sample, ``num_nonfinite`` (non-finite evaluations over its ``m`` measurements) and
        ``first_score_ess`` (mean relative ESS of the importance weights on its first
        measurement, 1 for a given score). ``to_datatree()`` gives the ArviZ DataTree
        (``posterior``, ``sample_stats``, ``observables``).

    Warns
    -----
    NumericalWarning
        If any evaluation was not finite (with the count), or if the importance-sampling score
        rested on fewer than :data:`MIN_EFFECTIVE_SCORE_SAMPLES` effective proposals on the first
        measurement, where the mode weights are decided: they are then biased.
    """
    return_trace = tuning.pop("return_trace", _UNSET)
    if return_trace is not _UNSET:
        _deprecated.warn(
            "logconcave_chain_samples(return_trace=...) is deprecated: it returns a psample.Trace "
            "(its DataTree via .to_datatree())"
        )
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
            num_draws,
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
    if return_trace is not _UNSET and not return_trace:
        return trace.to_datatree()
    return trace


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
            stacklevel=user_stacklevel(),
        )
    if "smoothed_score" in tuning or "smoothed_logdensity" in tuning:
        return
    check_score_ess(first_score_ess, int(tuning.get("num_score_samples", DEFAULT_NUM_SCORE_SAMPLES)), stacklevel=user_stacklevel())
