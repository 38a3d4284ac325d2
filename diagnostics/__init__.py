"""Diagnostics on psample traces, computed by ArviZ (arviz_stats): we write none of them.

``psample.diagnostics.summary(trace)`` is ``arviz.summary`` on the trace's DataTree: mean, sd,
credible interval, MCSE, bulk and tail ESS and rank-normalised split R-hat.
:mod:`psample.diagnostics.batch_means` (the module; ``batch_means.batch_means(values)``) gives the
batch-means standard errors of time averages over independent chains, as an :class:`Estimate`
(the network observables' error bars), and checks their tails.
"""

from __future__ import annotations

from psample.diagnostics import batch_means
from psample.diagnostics.batch_means import Estimate

__all__ = ["to_datatree", "summary", "rhat", "ess", "plot_trace", "batch_means", "Estimate"]


def to_datatree(trace_or_datatree):
    """Return an ArviZ ``xarray.DataTree`` for a :class:`psample.Trace` (or pass one through)."""
    if hasattr(trace_or_datatree, "to_datatree"):
        return trace_or_datatree.to_datatree()
    return trace_or_datatree


def summary(trace_or_datatree, **kwargs):
    """``arviz.summary`` of a trace or DataTree.

    Parameters
    ----------
    trace_or_datatree
        A :class:`psample.Trace` or an ArviZ DataTree (e.g. a checkpoint opened with
        ``xarray.open_datatree(path, engine="zarr")``).
    **kwargs
        Passed to :func:`arviz.summary` (``var_names``, ``group="observables"``, ``kind``,
        ``ci_prob``, ``round_to`` ...).

    Returns
    -------
    pandas.DataFrame
        One row per scalar component: mean, sd, interval, ess_bulk, ess_tail, r_hat, mcse_*.
    """
    import arviz as az

    return az.summary(to_datatree(trace_or_datatree), **kwargs)


def rhat(trace_or_datatree, **kwargs):
    """``arviz.rhat`` (rank-normalised split R-hat) of a trace or DataTree."""
    import arviz as az

    return az.rhat(to_datatree(trace_or_datatree), **kwargs)


def ess(trace_or_datatree, **kwargs):
    """``arviz.ess`` (bulk by default) of a trace or DataTree."""
    import arviz as az

    return az.ess(to_datatree(trace_or_datatree), **kwargs)


def plot_trace(trace_or_datatree, path, *, var_names=None, kind="trace"):
    """Write an ArviZ plot of the draws to ``path`` (PNG) and return the path.

    ``kind="trace"``: :func:`arviz.plot_trace_dist` (trace and marginal density per variable);
    ``kind="rank"``: :func:`arviz.plot_rank_dist` (rank plots per chain, the sharper visual
    check of mixing). Uses arviz-plots' matplotlib backend on the non-interactive Agg canvas.
    """
    if kind not in ("trace", "rank"):
        raise ValueError(f"kind must be 'trace' or 'rank', got {kind!r}")
    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt

    data = to_datatree(trace_or_datatree)
    plot = az.plot_trace_dist if kind == "trace" else az.plot_rank_dist
    collection = plot(data, var_names=var_names, backend="matplotlib")
    collection.savefig(path)
    plt.close("all")
    return path
