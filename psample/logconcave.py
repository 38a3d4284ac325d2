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

from typing import Callable

from psample.mcmc.logconcave_chain import as_top_level_api as logconcave_chain
from psample.run import sample

__all__ = ["logconcave_chain_samples"]


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
        ``sample_stats`` holds the last measurement's info (evaluation counts, score ESS).
    """
    if logdensity_fn is None and target is not None and not (
        "smoothed_score" in tuning or "smoothed_logdensity" in tuning
    ):
        logdensity_fn = target.logdensity_fn
    algorithm = logconcave_chain(logdensity_fn, **tuning)
    m = int(tuning["num_measurements"])
    trace = sample(
        algorithm,
        initial_positions,
        rng_key,
        num_samples,
        thin=m,
        target=target,
        progress=progress,
    )
    return trace if return_trace else trace.to_datatree()
