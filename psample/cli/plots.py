"""The figures of the ``psample`` command line: ``run --plot``, ``fkc --plot``, ``graph --plot``.

Every figure is drawn with matplotlib on the non-interactive Agg canvas and written at
:data:`DPI` dots per inch, titled in words with the run's parameters, with axis labels, a legend
where lines or markers stand for something, a colour bar where colour encodes a value, and
error bars where the quantity has one. Each function returns the figure(s) it wrote (closed),
so that tests can inspect them.

``run --plot`` (:func:`plot_run`): ArviZ 1.x plots, drawn by arviz-plots —
:func:`arviz.plot_trace_dist` (trace and marginal density, one row per scalar component) and
:func:`arviz.plot_rank` (fractional-rank Δ-ECDF per chain, with ArviZ's multi-chain uniformity
test, Säilynoja, Bürkner & Vehtari 2022 [1]_). Vector sites are shown per element, the first
:data:`MAX_ELEMENTS` of each dimension and at most :data:`MAX_PANELS` components in all; the
figure says what was left out.

Why a rank plot once flagged ``p = 0.00`` while R-hat was at most 1.007: ArviZ's multi-chain
uniformity test treats the draws of a chain as **independent**; MCMC draws are autocorrelated,
so on all draws the ECDF of a chain's ranks wanders further from uniform than independent draws
would, and the test rejects (``psample run`` on eight schools, seed 0, 4 x 1,000 draws: ``p <
0.01`` for ``tau`` and four ``theta`` elements while every R-hat was below 1.006). Rank-normalised R-hat
accounts for autocorrelation; the test does not. :func:`rank_test` therefore runs the test on
draws thinned until they are about independent (thinning factor ``chains x draws / min ESS``
over the components, bulk and tail ESS as :func:`arviz.thin` computes them), and the rank plot
draws those same thinned draws, so the ``p`` in the plot and the line ``psample run`` prints
(:func:`rank_test_line`) agree. The test is per panel at level ``alpha = 1 -
rcParams["stats.envelope_prob"]`` (0.01): with many components a few fail by chance alone,
and the line says how many to expect.

``fkc --plot`` (:func:`plot_fkc`): the exact target, the FKC population and the uncorrected SDE's,
as 2-D histograms with one colour scale (2-D demos), and the 1-D marginals of both samplers
against the exact marginal density, with the mode masses (exact, FKC ± s.e., uncorrected ± s.e.).

``graph --plot`` (:func:`plot_macc`, :func:`plot_chd_profile`): the MACC matrix as an annotated
heat map (estimate ± MCSE per cell) beside the entries with error bars (± 2 MCSE) and the exact
values; the CHD profile with ± 2 MCSE error bars and the exact profile.

References
----------
.. [1] Teemu Säilynoja, Paul-Christian Bürkner and Aki Vehtari, "Graphical test for discrete
   uniformity and its applications in goodness-of-fit evaluation and multiple sample comparison",
   Statistics and Computing 32, 32, 2022. arXiv:2103.10522.

Limits: matplotlib must be installed (``check_plot_path`` says so before any work).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "DPI",
    "MAX_ELEMENTS",
    "MAX_PANELS",
    "MAX_TEST_DRAWS",
    "RankTest",
    "shown_components",
    "rank_test",
    "rank_test_line",
    "plot_run",
    "plot_fkc",
    "exact_marginal",
    "plot_macc",
    "plot_chd_profile",
]

#: Resolution of every written image (dots per inch).
DPI = 150
#: Elements shown per dimension of a vector site in ``run --plot``.
MAX_ELEMENTS = 4
#: Scalar components (rows of the trace plot, panels of the rank plot) shown at most.
MAX_PANELS = 16
#: Draws per chain the rank test reads at most (thinned further if needed).
MAX_TEST_DRAWS = 1000
_SAMPLE_DIMS = ("chain", "draw")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------ run --plot
def _posterior(data):
    """The posterior ``xarray.Dataset`` of a Trace or DataTree."""
    if hasattr(data, "to_datatree"):
        data = data.to_datatree()
    return data["posterior"].to_dataset()


def shown_components(posterior, max_elements: int = MAX_ELEMENTS, max_panels: int = MAX_PANELS):
    """Which components ``run --plot`` shows: ``(var_names, coords, left_out)``.

    Parameters
    ----------
    posterior
        ``xarray.Dataset`` with dims ``(chain, draw, ...)``.
    max_elements
        Elements kept along each non-sample dimension (the first ones).
    max_panels
        Scalar components kept in all; whole variables past this are left out.

    Returns
    -------
    var_names : list of str
    coords : dict
        ``{dim: first max_elements coordinate values}`` for the dims that were cut.
    left_out : list of str
        What is not shown, in words (``"theta: elements 4..7 of 8"``).
    """
    var_names, coords, left_out, panels = [], {}, [], 0
    for name, da in posterior.data_vars.items():
        extra = [d for d in da.dims if d not in _SAMPLE_DIMS]
        sizes = [da.sizes[d] for d in extra]
        kept = [min(n, max_elements) for n in sizes]
        count = int(np.prod(kept)) if kept else 1
        if panels + count > max_panels:
            left_out.append(f"{name} (all {int(np.prod(sizes)) if sizes else 1} components: panel limit {max_panels})")
            continue
        panels += count
        var_names.append(name)
        for dim, n, k in zip(extra, sizes, kept):
            if n > k:
                coords[dim] = posterior[dim].values[:k]
                left_out.append(f"{name}: elements {k}..{n - 1} of {n} along {dim}")
    return var_names, coords, left_out


class RankTest(NamedTuple):
    """ArviZ's multi-chain rank-uniformity test on about independent draws (:func:`rank_test`)."""

    p_values: dict  #: ``{component label: p-value}``, every scalar component of the posterior
    alpha: float  #: per-component level, ``1 - rcParams["stats.envelope_prob"]``
    thin: int  #: every ``thin``-th draw was tested
    thinned: object  #: the thinned posterior ``xarray.Dataset`` (what the rank plot draws)

    @property
    def failing(self) -> dict:
        """``{component: p}`` with ``p < alpha``."""
        return {k: p for k, p in self.p_values.items() if p < self.alpha}


def _label(name, da, index) -> str:
    if not index:
        return name
    coords = [str(da[d].values[i]) for d, i in zip([d for d in da.dims if d not in _SAMPLE_DIMS], index)]
    return f"{name}[{', '.join(coords)}]"


def rank_test(data) -> RankTest:
    """Run ArviZ's multi-chain uniformity test on every scalar component, on thinned draws.

    The draws are thinned by ``max over variables of floor(chains x draws / min(bulk ESS, tail
    ESS))`` (``thin_factor`` of arviz-stats with ``reduce_func="min"``), at most down to 20
    draws per chain, so that the test's assumption of independent draws about holds; and to at
    most :data:`MAX_TEST_DRAWS` draws per chain (the test's cost grows faster than linearly).

    Parameters
    ----------
    data
        A :class:`psample.Trace` or an ArviZ DataTree with a ``posterior`` group.

    Returns
    -------
    RankTest
    """
    import warnings

    import arviz as az

    posterior = _posterior(data)
    num_draws = posterior.sizes["draw"]
    factor = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant components: ESS is NaN
        for name in posterior.data_vars:
            try:
                f = posterior[[name]].azstats.thin_factor(reduce_func="min")
            except (ValueError, OverflowError):  # NaN ESS
                continue
            factor = max(factor, int(f))
    factor = max(1, min(factor, num_draws // 20), -(-num_draws // MAX_TEST_DRAWS))
    thinned = posterior.isel(draw=slice(None, None, factor)) if factor > 1 else posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranks = thinned.azstats.compute_ranks(dim=_SAMPLE_DIMS, relative=True)
        p_values, _, _ = ranks.azstats.mchain_uniformity_test(dim=_SAMPLE_DIMS)
    out = {}
    for name, da in p_values.data_vars.items():
        values = np.asarray(da.values)
        for index in np.ndindex(*values.shape):
            out[_label(name, da, index)] = float(values[index])
    return RankTest(out, 1.0 - float(az.rcParams["stats.envelope_prob"]), factor, thinned)


def rank_test_line(test: RankTest) -> str:
    """The one line ``psample run`` prints about the rank test (what the rank plot's ``p`` say)."""
    n = len(test.p_values)
    how = (f"ArviZ multi-chain rank-uniformity test on one draw in {test.thin} (about independent), "
           f"alpha = {test.alpha:g} per component")
    failing = test.failing
    if not failing:
        return f"rank test: no component fails ({n} tested; {how})"
    listed = ", ".join(f"{k} (p = {p:.3f})" for k, p in sorted(failing.items(), key=lambda kv: kv[1])[:12])
    more = f" and {len(failing) - 12} more" if len(failing) > 12 else ""
    return (f"rank test: p < {test.alpha:g} for {listed}{more}; {len(failing)} of {n} components "
            f"(about {test.alpha * n:.2g} would fail by chance alone; {how})")


def _figure_of(collection):
    fig = collection.viz["figure"]
    return fig.item() if hasattr(fig, "item") else fig


def plot_run(data, trace_path, rank_path, *, title: str, test: RankTest | None = None,
             max_elements: int = MAX_ELEMENTS, max_panels: int = MAX_PANELS):
    """Write ``run --plot``'s trace plot and rank plot; returns ``(trace_figure, rank_figure, test)``.

    Parameters
    ----------
    data
        A :class:`psample.Trace` or ArviZ DataTree (``posterior`` with dims ``chain, draw, ...``).
    trace_path, rank_path
        Image files to write.
    title
        The run in words (model, sampler, chains, draws, warm-up, seed): the start of both titles.
    test
        :func:`rank_test` of ``data`` if already computed (the rank plot draws its thinned draws).
    """
    import arviz as az
    import xarray as xr

    plt = _pyplot()
    posterior = _posterior(data)
    var_names, coords, left_out = shown_components(posterior, max_elements, max_panels)
    note = ("Not shown: " + "; ".join(left_out) + ".") if left_out else "Every component is shown."
    num_chains, num_draws = posterior.sizes["chain"], posterior.sizes["draw"]

    dt = xr.DataTree.from_dict({"posterior": posterior[var_names]})
    collection = az.plot_trace_dist(dt, var_names=var_names, coords=coords or None, compact=False,
                                    backend="matplotlib")
    fig_trace = _figure_of(collection)
    for i, ax in enumerate(fig_trace.axes):  # arviz-plots' order: density, trace, per component
        if i % 2 == 0:
            ax.set_ylabel("density", fontsize=8)
            ax.set_xlabel(_flat(ax.get_xlabel()), fontsize=9)
        else:
            ax.set_ylabel(_flat(ax.get_ylabel()), fontsize=9)
        ax.tick_params(labelbottom=True, labelsize=8)
    fig_trace.axes[-1].set_xlabel("draw (after warm-up)")
    fig_trace.set_size_inches(12, 2.0 * len(fig_trace.axes) / 2 + 2.0)
    fig_trace.set_layout_engine("constrained")
    _chain_legend(fig_trace, num_chains)
    fig_trace.suptitle(f"{title}\nTrace (right) and marginal density (left) of each chain, "
                       f"{num_chains} chains x {num_draws} draws", fontsize=11)
    fig_trace.supxlabel(note, fontsize=8, wrap=True)
    fig_trace.savefig(trace_path, dpi=DPI)
    plt.close(fig_trace)

    if test is None:
        test = rank_test(data)
    rank_dt = xr.DataTree.from_dict({"posterior": test.thinned[var_names]})
    collection = az.plot_rank(rank_dt, var_names=var_names, coords=coords or None, thin=False, backend="matplotlib",
                              visuals={"remove_axis": False})
    fig_rank = _figure_of(collection)
    for ax in list(fig_rank.axes):
        if not ax.get_title() and not ax.get_lines():  # the grid's unused cells
            fig_rank.delaxes(ax)
    for ax in fig_rank.axes:
        ax.set_title(_flat(ax.get_title()), fontsize=10)
        ax.set_ylabel("ECDF - uniform CDF", fontsize=8)
        ax.set_xlabel("fractional rank", fontsize=8)
        ax.tick_params(labelsize=8)
    rows = -(-len(fig_rank.axes) // 4)
    fig_rank.set_size_inches(16, 3.0 * rows + 2.0)
    fig_rank.set_layout_engine("constrained")
    _chain_legend(fig_rank, num_chains)
    n = len(test.p_values)
    fig_rank.suptitle(
        f"{title}\nRank plots: Δ-ECDF of each chain's fractional ranks (flat = chains agree); "
        f"one draw in {test.thin}", fontsize=11)
    caption = (
        f"p: ArviZ's multi-chain uniformity test per panel at α = {test.alpha:g} on one draw in {test.thin} "
        f"(the test assumes independent draws; on all draws autocorrelation alone drives p towards 0 where "
        f"R-hat is fine). {len(test.failing)} of {n} components fail; about {test.alpha * n:.2g} would by chance. "
        + note)
    fig_rank.supxlabel(caption, fontsize=8, wrap=True)
    fig_rank.savefig(rank_path, dpi=DPI)
    plt.close(fig_rank)
    return fig_trace, fig_rank, test


def _flat(label: str) -> str:
    """arviz-plots' two-line label ``"theta\\n0"`` as ``"theta[0]"``."""
    name, _, index = label.partition("\n")
    return f"{name}[{index.replace(chr(10), ', ')}]" if index else name


def _chain_legend(fig, num_chains: int) -> None:
    """A figure legend naming the chains by the colours arviz-plots gave them (the first axes' lines)."""
    from matplotlib.lines import Line2D

    colours = []
    for ax in fig.axes:
        colours = [line.get_color() for line in ax.get_lines()][:num_chains]
        if len(colours) == num_chains:
            break
    if len(colours) != num_chains:
        return
    handles = [Line2D([], [], color=c, lw=1.5) for c in colours]
    fig.legend(handles, [f"chain {i}" for i in range(num_chains)], loc="upper left", fontsize=8,
               ncol=min(num_chains, 8), title="colour", title_fontsize=8)


# ------------------------------------------------------------------------------ fkc --plot
def exact_marginal(reference, grid, axis: int):
    """Density of coordinate ``axis`` of a Gaussian mixture ``reference`` (weights, means, covs) on ``grid``."""
    from scipy.stats import norm

    weights = np.asarray(reference.weights)
    means = np.asarray(reference.means)[:, axis]
    covs = np.asarray(reference.covs)
    var = covs[:, axis, axis] if covs.ndim == 3 else covs[:, axis]
    return np.sum(weights[:, None] * norm.pdf(np.asarray(grid)[None, :], means[:, None], np.sqrt(var)[:, None]), axis=0)


def _weighted_pool(particles, log_weights=None):
    """Pooled ``(n, d)`` particles of every replicate and their weights (summing to one)."""
    x = np.asarray(particles)
    x = x.reshape(-1, x.shape[-1]) if x.ndim == 3 else x.reshape(-1, 1)
    if log_weights is None:
        w = np.full(x.shape[0], 1.0 / x.shape[0])
    else:
        w = np.exp(np.asarray(log_weights, dtype=float)).reshape(-1)
        w = w / w.sum()
    return x, w


def plot_fkc(path, problem, result, plain, *, title: str, table: dict | None = None):
    """Write the FKC demo figure; returns it.

    Parameters
    ----------
    path
        Image file to write.
    problem
        A :class:`psample.models.FKCProblem` (1-D: ``exact["grid"], exact["density"]``; 2-D: a
        Gaussian-mixture ``reference``).
    result, plain
        :class:`ParticleResult` of FKC (weighted) and of the uncorrected SDE (equal weights),
        particles ``(replicate, particle, d)``.
    title
        The run in words (demo, target, noise, weights, resampling, particles, steps, seed).
    table
        ``run_demo``'s table ``{statistic: (exact, fkc, fkc se, uncorrected, uncorrected se)}``;
        mode masses (``P(...)`` rows) are written on the marginal panels.
    """
    plt = _pyplot()
    dim = problem.models[0].dim
    fkc_x, fkc_w = _weighted_pool(result.particles, result.log_weights)
    plain_x, plain_w = _weighted_pool(plain.particles)
    masses = "" if not table else "\n".join(
        f"{k}: exact {v[0]:.3f}; FKC {v[1]:.3f} ± {v[2]:.3f}; uncorrected {v[3]:.3f} ± {v[4]:.3f}"
        for k, v in table.items() if k.startswith("P("))
    pooled = f"{result.num_replicates} replicates x {result.num_particles:,} particles pooled (FKC weighted)"
    if dim == 1:
        fig, axes = plt.subplots(1, 1, figsize=(8, 5), constrained_layout=True)
        marginal_axes = [axes]
        grids = [np.asarray(problem.exact["grid"])]
        densities = [np.asarray(problem.exact["density"])]
    else:
        ref = problem.reference
        lo = np.minimum(ref.means.min(0), -3.5) - 1.0
        hi = np.maximum(ref.means.max(0), 3.5) + 1.0
        fig = plt.figure(figsize=(14, 9), constrained_layout=True)
        sub = fig.subfigures(2, 1, height_ratios=[1.1, 1])
        top = sub[0].subplots(1, 3, sharex=True, sharey=True)
        marginal_axes = list(sub[1].subplots(1, 2))
        xs, ys = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        dens = np.exp(ref.logdensity(np.stack([xs, ys], -1)))
        edges = [np.linspace(lo[0], hi[0], 121), np.linspace(lo[1], hi[1], 121)]
        h_fkc, _, _ = np.histogram2d(fkc_x[:, 0], fkc_x[:, 1], bins=edges, weights=fkc_w, density=True)
        h_plain, _, _ = np.histogram2d(plain_x[:, 0], plain_x[:, 1], bins=edges, weights=plain_w, density=True)
        vmax = float(max(dens.max(), h_fkc.max(), h_plain.max()))
        image = top[0].pcolormesh(xs, ys, dens, cmap="viridis", vmin=0, vmax=vmax, shading="auto")
        top[0].set_title("exact target density", fontsize=10)
        for ax, h, name in ((top[1], h_fkc, "FKC (weighted particles)"), (top[2], h_plain, "uncorrected SDE")):
            ax.pcolormesh(edges[0], edges[1], h.T, cmap="viridis", vmin=0, vmax=vmax)
            ax.set_title(f"{name}: histogram", fontsize=10)
        for ax in top:
            ax.set_xlabel("x_0")
        top[0].set_ylabel("x_1")
        sub[0].colorbar(image, ax=list(top), label="probability density", shrink=0.9)
        grids = [np.linspace(lo[j], hi[j], 400) for j in range(2)]
        densities = [exact_marginal(ref, grids[j], j) for j in range(2)]
    for j, ax in enumerate(marginal_axes):
        bins = np.linspace(grids[j][0], grids[j][-1], 121) if dim > 1 else np.linspace(-3, 3, 121)
        ax.hist(plain_x[:, j], bins=bins, weights=plain_w, density=True, histtype="stepfilled", alpha=0.35,
                color="tab:orange", label="uncorrected SDE")
        ax.hist(fkc_x[:, j], bins=bins, weights=fkc_w, density=True, histtype="step", lw=1.8,
                color="tab:blue", label="FKC (weighted)")
        sel = (grids[j] >= bins[0]) & (grids[j] <= bins[-1])
        ax.plot(grids[j][sel], densities[j][sel], "k", lw=1.5, label="exact marginal density")
        ax.set_xlabel(f"x_{j}")
        ax.set_ylabel(f"marginal density of x_{j}")
        ax.set_title(f"1-D marginal of x_{j}", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        if masses and j == 0:
            ax.text(0.01, 0.98, masses, transform=ax.transAxes, va="top", ha="left", fontsize=8,
                    bbox=dict(boxstyle="round", fc="white", alpha=0.85))
    fig.suptitle(f"{title}\n{pooled}", fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return fig


# ------------------------------------------------------------------------------ graph --plot
def plot_macc(estimate, path: str, title: str = "MACC", *, mcse=None, exact=None):
    """Write the MACC figure: annotated heat map, and (with ``mcse``) the entries with error bars.

    Parameters
    ----------
    estimate
        ``(k, k)`` MACC estimate ``E[A(x_i, x_j)]``.
    path
        Image file to write.
    title
        The run in words (network, motif, sampler, chains x draws, seed).
    mcse
        ``(k, k)`` Monte Carlo standard errors: written in the cells, and error bars of
        ± 2 MCSE in a second panel.
    exact
        ``(k, k)`` exact MACC, if known: drawn in the second panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    estimate = np.asarray(estimate, dtype=float)
    k = estimate.shape[0]
    panels = 2 if mcse is not None else 1
    cell = max(0.75, 6.0 / k)
    fig, axes = plt.subplots(1, panels, figsize=(max(6.5, 1.5 + cell * k) + (6.5 if panels == 2 else 0),
                                                 max(5.0, 1.2 + cell * k)), constrained_layout=True,
                             squeeze=False)  # fmt: skip
    ax = axes[0, 0]
    image = ax.imshow(estimate, cmap="viridis", vmin=0.0, vmax=max(1.0, float(estimate.max())))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("motif node j")
    ax.set_ylabel("motif node i")
    ax.set_title("E[A(x_i, x_j)]" + (" ± MCSE" if mcse is not None else ""), fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.85, label="MACC entry E[A(x_i, x_j)]")
    if k <= 12:
        for i in range(k):
            for j in range(k):
                text = f"{estimate[i, j]:.3f}" + (f"\n±{np.asarray(mcse)[i, j]:.3f}" if mcse is not None else "")
                colour = "white" if estimate[i, j] < 0.6 * max(1.0, float(estimate.max())) else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if k > 6 else 8, color=colour)
    if mcse is not None:
        mcse = np.asarray(mcse, dtype=float)
        ax = axes[0, 1]
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        x = np.arange(len(pairs))
        ax.errorbar(x, [estimate[p] for p in pairs], yerr=[2 * mcse[p] for p in pairs], fmt="o", ms=4,
                    capsize=3, label="estimate ± 2 MCSE")
        if exact is not None:
            exact = np.asarray(exact, dtype=float)
            ax.plot(x, [exact[p] for p in pairs], "x", color="k", ms=7, label="exact")
        ax.set_xticks(x)
        ax.set_xticklabels([f"({i},{j})" for i, j in pairs], rotation=90 if len(pairs) > 10 else 0, fontsize=8)
        ax.set_xlabel("motif node pair (i, j)")
        ax.set_ylabel("E[A(x_i, x_j)]")
        ax.set_title("Off-diagonal entries with error bars", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return fig


def plot_chd_profile(thresholds, estimate, mcse, exact, path: str, *, title: str, last: int):
    """Write the CHD profile ``P(A(x_0, x_last) >= θ)`` with ± 2 MCSE error bars (and the exact
    profile when known); returns the figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    ax.errorbar(thresholds, estimate, yerr=2 * np.asarray(mcse), fmt="o", ms=4, capsize=3, label="estimate ± 2 MCSE")
    if exact is not None:
        ax.plot(thresholds, exact, "x", color="k", ms=7, label="exact")
    ax.set_xlabel("threshold θ on the edge weight")
    ax.set_ylabel(f"P(A(x_0, x_{last}) ≥ θ)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return fig
