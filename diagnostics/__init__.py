"""Diagnostics on psample traces, computed by ArviZ (arviz_stats): we write none of them.

A :class:`psample.Trace` is an ArviZ ``xarray.DataTree``: ``az.summary(trace)``, ``az.ess``,
``az.loo`` and the plots take it as it is. ``psample.diagnostics.summary(trace)`` is
``arviz.summary`` of the same groups (kept for the command line): mean, sd, credible interval,
MCSE, bulk and tail ESS and rank-normalised split R-hat.
:mod:`psample.diagnostics.batch_means` (the module; ``batch_means.batch_means(values)``) gives the
batch-means standard errors of time averages over independent chains, as an :class:`Estimate`
(the network observables' error bars), and checks their tails.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from psample.diagnostics import batch_means
from psample.diagnostics.batch_means import Estimate

__all__ = [
    "to_datatree",
    "summary",
    "rhat",
    "ess",
    "plot_trace",
    "batch_means",
    "Estimate",
    "thinned",
    "check_convergence",
    "RHAT_MAX",
    "MIN_ESS_PER_CHAIN",
    "MAX_ESS_CHAINS",
    "MIN_DRAWS_FOR_ESS",
    "CHECK_VALUES",
]

#: Rank-normalised split R-hat above this fails the convergence check (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Bulk or tail ESS below this many per chain fails the convergence check (Stan, PyMC)...
MIN_ESS_PER_CHAIN = 100
#: ... counted over at most this many chains: 400 in all, Vehtari et al. (2021)'s threshold for
#: four chains. Thousands of short chains (psample's many-chain regime) would otherwise need
#: more ESS per chain than a chain has draws, and warn however well they mix.
MAX_ESS_CHAINS = 4
#: Draws per chain below which ArviZ's ESS, and the MCSE it divides by, are too optimistic even on
#: independent draws. ArviZ estimates the autocorrelation on split half-chains; with a handful of
#: draws per half the lag estimates are biased negative, the ESS comes out above the number of
#: draws (at 4-8 draws per chain it reaches ArviZ's cap ``N log10 N``, ``N = chains x draws``)
#: and the MCSE is too small by up to ``sqrt(log10 N)``. The bias fades as the chains lengthen;
#: at this many draws per chain the MCSE of independent draws is about 10 % small (measured; see
#: BENCHMARKS.md). The check warns below this.
MIN_DRAWS_FOR_ESS = 20
#: Values (chains x draws x scalar components) the convergence check reads at most; longer runs
#: are checked on every k-th draw, which keeps it well under a second.
CHECK_VALUES = 1_000_000
#: Draws per chain a thinned check keeps at least (ten times the ESS threshold, so that
#: thinning alone never makes an ESS fall below it).
_MIN_CHECK_DRAWS = 10 * MIN_ESS_PER_CHAIN


def to_datatree(trace_or_datatree):
    """Return an ArviZ ``xarray.DataTree`` for a :class:`psample.Trace` (or pass one through).

    A :class:`psample.Trace` is a DataTree already: every ``az.*`` function takes it as it is."""
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


def thinned(trace, max_values: int):
    """``(trace, k)``: every ``k``-th draw of ``trace``, ``k`` the smallest step that keeps
    ``chains x draws x scalar components`` of its posterior within ``max_values``.

    The last draw is always kept. ``k = 1`` returns ``trace`` itself.
    """
    import jax

    num_chains, num_draws = trace.num_chains, trace.num_draws
    scalars = sum(int(np.prod(np.shape(leaf)[2:])) for leaf in jax.tree.leaves(trace.positions))
    per_draw = max(1, num_chains * scalars)
    step = max(1, -(-num_draws * per_draw // max(1, max_values)))
    if step == 1:
        return trace, 1

    def take(tree):
        return jax.tree.map(lambda x: np.asarray(x)[:, ::-1][:, ::step][:, ::-1], tree)

    fields = {name: getattr(trace, name) for name in type(trace).FIELDS}
    fields.update(
        positions=take(trace.positions), info=take(trace.info),
        logdensity=None if trace.logdensity is None else take(trace.logdensity),
        observables=take({k: np.asarray(v) for k, v in trace.observables.items()}),
    )  # fmt: skip
    return type(trace)(**fields, log_likelihood=False), step


def _component_names(name: str, shape: tuple) -> list[str]:
    """``theta[0]``, ``x[1, 2]``: scalar components named as :func:`arviz.summary` names them."""
    if not shape:
        return [name]
    return [f"{name}[{', '.join(map(str, index))}]" for index in np.ndindex(*shape)]


def check_convergence(trace, *, advice: str, max_values: int = CHECK_VALUES, stacklevel: int = 2) -> dict | None:
    """Warn once if the chains of ``trace`` have not mixed, with ArviZ's numbers.

    Rank-normalised split R-hat above :data:`RHAT_MAX` (1.01), or bulk or tail ESS below
    :data:`MIN_ESS_PER_CHAIN` (100) per chain (over at most :data:`MAX_ESS_CHAINS` chains: 400
    in all for many chains), for any scalar component of the posterior
    (constrained sites when the trace has a target) fails the check, as in Stan, NumPyro and
    PyMC. The numbers are :mod:`arviz_stats`' (``ess`` tail at ArviZ's default ``ci_prob``, as
    :func:`arviz.summary` computes it). A run longer than ``max_values`` values is checked on
    every ``k``-th draw (at least 1,000 per chain; the message says so): thinning lowers an
    ESS only to about the draws kept, ten times the threshold, and R-hat keeps its meaning.
    Integer positions (node labels of graph chains) are not checked.

    Parameters
    ----------
    trace : psample.Trace
        Draws with axes ``(chain, draw, ...)``.
    advice : str
        What to change, appended to the message; it names only arguments of the caller.
    max_values : int
        Values read at most (chains x draws x scalar components).
    stacklevel : int
        Passed to :func:`warnings.warn`.

    Returns
    -------
    dict or None
        ``{component: (r_hat, ess_bulk, ess_tail)}`` of every checked component, or ``None``
        when nothing was checked (no draws, or integer positions only).

    Warns
    -----
    psample.errors.ConvergenceWarning
        Naming the components that fail, with their values, or saying why the run could not
        be checked (fewer than 4 draws per chain).
    psample.errors.UnreliableErrorWarning
        With 4 to :data:`MIN_DRAWS_FOR_ESS` - 1 draws per chain: ArviZ's ESS and MCSE of the
        run (``az.summary``, ``az.ess``, ``az.mcse``) are too optimistic there, whatever the
        sampler (ESS above the number of draws on independent draws), and the ESS part of this
        check passes runs it should not; error bars from the chains as independent batches
        (the standard deviation of the chain means over the square root of the number of chains)
        stay honest.
    """
    import jax
    from arviz_stats.base import array_stats
    from arviz_stats.validate import validate_ci_prob

    from psample.errors import ConvergenceWarning

    if trace.num_draws == 0 or not any(
        np.issubdtype(np.asarray(leaf).dtype, np.inexact) for leaf in jax.tree.leaves(trace.positions)
    ):
        return None
    num_chains, num_draws = trace.num_chains, trace.num_draws
    where = f"{num_chains} chain{'s' if num_chains > 1 else ''} x {num_draws} draws{' (interrupted)' if trace.interrupted else ''}"
    if num_draws < 4:
        warnings.warn(
            f"convergence not checked: {where} are too few for R-hat and ESS (at least 4 draws per chain); {advice}",
            ConvergenceWarning, stacklevel=stacklevel,
        )  # fmt: skip
        return None
    if num_draws < MIN_DRAWS_FOR_ESS:
        from psample.errors import UnreliableErrorWarning

        total = num_chains * num_draws
        cap = total * math.log10(total) if total > 1 else float(total)
        warnings.warn(
            f"ArviZ's ESS and MCSE of this run are unreliable: with {num_draws} draws per chain "
            f"({where}) its autocorrelation estimate on half-chains of {num_draws // 2} draws is biased, so "
            f"the ESS comes out too large (on independent draws up to {cap:.0f}, above the {total} draws) "
            f"and the MCSE too small (by up to {math.sqrt(max(cap / total, 1.0)):.1f}x), so the ESS part "
            f"of the convergence check cannot flag poor mixing; at least {MIN_DRAWS_FOR_ESS} draws per chain are needed "
            f"for them, or take the chains as independent batches (sd of the chain means / "
            f"sqrt({num_chains})). {advice}",
            UnreliableErrorWarning, stacklevel=stacklevel,
        )  # fmt: skip
    scalars = sum(int(np.prod(np.shape(leaf)[2:])) for leaf in jax.tree.leaves(trace.positions))
    budget = max(max_values, num_chains * scalars * min(num_draws, _MIN_CHECK_DRAWS))
    checked, step = thinned(trace, budget)
    tail_prob = validate_ci_prob(None)
    table = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant components: R-hat 0/0 = nan
        for name, values in checked["posterior"].data_vars.items():
            values = np.asarray(values)
            if not np.issubdtype(values.dtype, np.inexact):
                continue
            flat = values.reshape(values.shape[:2] + (-1,)).astype(np.float64)
            stats = [
                array_stats.rhat(flat, chain_axis=0, draw_axis=1),
                array_stats.ess(flat, chain_axis=0, draw_axis=1, method="bulk"),
                array_stats.ess(flat, chain_axis=0, draw_axis=1, method="tail", prob=tail_prob),
            ]
            for j, component in enumerate(_component_names(name, values.shape[2:])):
                table[component] = tuple(float(np.ravel(s)[j]) for s in stats)
    min_ess = MIN_ESS_PER_CHAIN * min(num_chains, MAX_ESS_CHAINS)
    failures = []
    for label, column, bad in (
        (f"R-hat > {RHAT_MAX}", 0, lambda v: v > RHAT_MAX),
        (f"bulk ESS < {min_ess}", 1, lambda v: v < min_ess),
        (f"tail ESS < {min_ess}", 2, lambda v: v < min_ess),
    ):
        hits = [(c, v[column]) for c, v in table.items() if bad(v[column])]  # nan compares False
        if hits:
            hits.sort(key=lambda h: -h[1] if column == 0 else h[1])
            shown = ", ".join(f"{c} {v:.3g}" if column == 0 else f"{c} {v:.0f}" for c, v in hits[:8])
            more = f" and {len(hits) - 8} more" if len(hits) > 8 else ""
            failures.append(f"{label} for {shown}{more}")
    if failures:
        thin_note = f", checked on every {step}th draw" if step > 1 else ""
        warnings.warn(
            f"the chains have not converged ({where}{thin_note}): {'; '.join(failures)} "
            f"(ArviZ's rank-normalised R-hat, bulk and tail ESS; the thresholds are 1.01 and "
            f"{MIN_ESS_PER_CHAIN} per chain, {MIN_ESS_PER_CHAIN * MAX_ESS_CHAINS} in all beyond "
            f"{MAX_ESS_CHAINS} chains). {advice}",
            ConvergenceWarning, stacklevel=stacklevel,
        )  # fmt: skip
    return table
