"""The figures of ``psample run/fkc/graph --plot`` and ``ParticleResult.plot``: each is written,
at 150 dpi, with titles, axis labels, legends, colour bars and error bars where they belong; the
rank test the CLI prints agrees with the ``p`` in the rank plot; the FKC marginals carry the exact
marginal density."""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np
import pytest

from psample.cli import plots


def png_size(path) -> tuple[int, int]:
    """``(width, height)`` in pixels, from the PNG header."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def assert_written_at_dpi(path, fig) -> None:
    width, height = png_size(path)
    w_in, h_in = fig.get_size_inches()
    assert abs(width - w_in * plots.DPI) <= 2 and abs(height - h_in * plots.DPI) <= 2
    assert width >= 900 and height >= 600


def ar1_chains(rng, num_chains, num_draws, shape=(), phi=0.0):
    """``(chain, draw, *shape)`` stationary AR(1) draws with N(0, 1) margins (independent for phi = 0)."""
    noise = rng.normal(size=(num_chains, num_draws, *shape))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0]
    for t in range(1, num_draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * noise[:, t]
    return x


@pytest.fixture(scope="module")
def posterior_tree():
    import arviz as az

    rng = np.random.default_rng(0)
    return az.from_dict(
        {"posterior": {"mu": ar1_chains(rng, 4, 2000, phi=0.8), "theta": ar1_chains(rng, 4, 2000, (8,), phi=0.8)}},
        dims={"theta": ["school"]},
    )


# ------------------------------------------------------------------------------ run --plot
def test_shown_components_cut_vector_sites_and_say_what_was_left_out(posterior_tree):
    posterior = posterior_tree["posterior"].to_dataset()
    var_names, coords, left_out = plots.shown_components(posterior, max_elements=3)
    assert var_names == ["mu", "theta"]
    assert list(coords["school"]) == [0, 1, 2]
    assert left_out == ["theta: elements 3..7 of 8 along school"]
    var_names, _, left_out = plots.shown_components(posterior, max_elements=8, max_panels=4)
    assert var_names == ["mu"] and "theta (all 8 components" in left_out[0]


def test_rank_test_thins_autocorrelated_draws_as_rhat_allows(posterior_tree):
    """AR(1) chains with phi = 0.8 of one stationary law: R-hat is fine, the uniformity test on all
    draws rejects (it assumes independent draws: the 'p = 0.00 with R-hat 1.007' of issue #25),
    and on the thinned draws rank_test uses it does not reject more than chance allows."""
    import arviz as az

    rhat = az.rhat(posterior_tree)
    assert float(rhat["mu"]) < 1.01 and float(rhat["theta"].max()) < 1.01
    posterior = posterior_tree["posterior"].to_dataset().isel(school=[0, 1, 2])
    ranks = posterior.azstats.compute_ranks(dim=("chain", "draw"), relative=True)
    raw, _, _ = ranks.azstats.mchain_uniformity_test(dim=("chain", "draw"))
    raw_p = np.concatenate([np.ravel(raw[v].values) for v in raw.data_vars])
    assert np.mean(raw_p < 0.01) >= 0.75  # autocorrelation alone: most components "fail"

    test = plots.rank_test(posterior_tree)
    assert test.alpha == pytest.approx(0.01)
    # The ESS of an AR(1) is n (1 - phi) / (1 + phi): a thinning factor near 9.
    assert 6 <= test.thin <= 20
    assert set(test.p_values) == {"mu", *(f"theta[{i}]" for i in range(8))}
    assert len(test.failing) <= 1  # 9 tests at alpha = 0.01
    line = plots.rank_test_line(test)
    assert line.startswith("rank test:") and f"one draw in {test.thin}" in line


def test_rank_test_line_names_failing_components():
    test = plots.RankTest({"mu": 0.5, "tau": 0.001, "theta[3]": 0.004}, 0.01, 2, None)
    line = plots.rank_test_line(test)
    assert "tau (p = 0.001), theta[3] (p = 0.004)" in line and "2 of 3 components" in line
    assert "mu" not in line.split(";")[0]


def test_plot_run_writes_labelled_trace_and_rank_plots(posterior_tree, tmp_path):
    trace_path, rank_path = tmp_path / "trace.png", tmp_path / "trace_rank.png"
    fig_trace, fig_rank, test = plots.plot_run(posterior_tree, trace_path, rank_path, title="demo run, seed 0")
    # mu and theta[0..3]: one density and one trace panel each; the rest is named as left out.
    assert len(fig_trace.axes) == 2 * 5
    assert "demo run, seed 0" in fig_trace._suptitle.get_text()
    assert "theta: elements 4..7 of 8" in fig_trace._supxlabel.get_text()
    ylabels = [ax.get_ylabel() for ax in fig_trace.axes]
    assert ylabels[0] == "density" and ylabels[1] == "mu" and "theta[3]" in ylabels
    assert fig_trace.axes[-1].get_xlabel() == "draw (after warm-up)"
    legend_texts = [t.get_text() for t in fig_trace.legends[0].get_texts()]
    assert legend_texts == [f"chain {i}" for i in range(4)]
    assert_written_at_dpi(trace_path, fig_trace)

    assert len(fig_rank.axes) == 5
    assert [ax.get_title() for ax in fig_rank.axes] == ["mu", *(f"theta[{i}]" for i in range(4))]
    assert all(ax.get_xlabel() == "fractional rank" and ax.get_ylabel() for ax in fig_rank.axes)
    assert [t.get_text() for t in fig_rank.legends[0].get_texts()] == [f"chain {i}" for i in range(4)]
    caption = fig_rank._supxlabel.get_text()
    assert "assumes independent draws" in caption and f"one draw in {test.thin}" in caption
    # The p written in each panel is the p the CLI's line reports.
    for ax in fig_rank.axes:
        (text,) = [t.get_text() for t in ax.texts if t.get_text().startswith("p=")]
        assert float(text[2:6]) == pytest.approx(test.p_values[ax.get_title()], abs=0.0051)
    assert_written_at_dpi(rank_path, fig_rank)


@pytest.mark.heavy
def test_cli_run_plot_prints_the_rank_test(capsys, tmp_path):
    from psample.cli import main

    plot = tmp_path / "trace.png"
    code = main(["run", "--model", "gaussian", "--chains", "2", "--draws", "200", "--warmup", "0",
                 "--no-progress", "--plot", str(plot)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rank test: " in out and png_size(plot)[0] >= 900
    assert png_size(tmp_path / "trace_rank.png")[0] >= 900


# ------------------------------------------------------------------------------ fkc --plot
class _Pop(NamedTuple):
    particles: np.ndarray
    log_weights: np.ndarray
    num_replicates: int
    num_particles: int


@pytest.fixture(scope="module")
def anneal_problem():
    import psample
    import psample.models

    return psample.models.fkc_problem("anneal_bimodal", psample.diffusion.VP())


def test_exact_marginal_is_the_mixture_marginal(anneal_problem):
    ref = anneal_problem.reference
    grid = np.linspace(-6, 6, 1201)
    marginal = plots.exact_marginal(ref, grid, 0)
    assert np.trapezoid(marginal, grid) == pytest.approx(1.0, abs=1e-6)
    # Integrate the 2-D density over x_1 numerically at a few x_0.
    x1 = np.linspace(-6, 6, 2401)
    for x0 in (-2.0, 0.3, 2.0):
        dens = np.exp(np.asarray(ref.logdensity(np.stack([np.full_like(x1, x0), x1], -1))))
        assert np.trapezoid(dens, x1) == pytest.approx(float(plots.exact_marginal(ref, np.array([x0]), 0)[0]), rel=1e-6)
    # Mode mass left of 0 matches the problem's exact P(x_0 < 0).
    left = grid < 0
    assert np.trapezoid(marginal[left], grid[left]) == pytest.approx(anneal_problem.exact["P(x_0<0)"], abs=2e-3)


def test_plot_fkc_shows_marginals_against_the_exact_density(anneal_problem, tmp_path):
    ref = anneal_problem.reference
    rng = np.random.default_rng(1)
    exact_draws = np.asarray(ref.sample(rng, 2 * 512)).reshape(2, 512, 2)
    fkc = _Pop(exact_draws, np.full((2, 512), -np.log(512.0)), 2, 512)
    plain = _Pop(rng.normal(size=(2, 512, 2)), np.zeros((2, 512)), 2, 512)
    table = {"P(x_0<0)": (0.845, 0.84, 0.01, 0.7, 0.01)}
    path = tmp_path / "fkc.png"
    fig = plots.plot_fkc(path, anneal_problem, fkc, plain, title="anneal demo: β = 2, 500 steps, seed 0", table=table)
    assert "β = 2" in fig._suptitle.get_text()
    marginal_axes = [ax for ax in fig.axes if ax.get_title().startswith("1-D marginal")]
    assert [ax.get_xlabel() for ax in marginal_axes] == ["x_0", "x_1"]
    for j, ax in enumerate(marginal_axes):
        assert ax.get_ylabel() == f"marginal density of x_{j}"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert sorted(labels) == ["FKC (weighted)", "exact marginal density", "uncorrected SDE"]
        (curve,) = [line for line in ax.get_lines() if line.get_label() == "exact marginal density"]
        x, y = curve.get_data()
        np.testing.assert_allclose(y, plots.exact_marginal(ref, x, j), rtol=1e-12)
    assert "P(x_0<0): exact 0.845; FKC 0.840 ± 0.010; uncorrected 0.700 ± 0.010" in marginal_axes[0].texts[0].get_text()
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == "probability density"]
    assert len(colorbars) == 1
    assert_written_at_dpi(path, fig)


@pytest.mark.heavy
def test_cli_fkc_anneal_plot(tmp_path, capsys):
    from psample.cli import main

    path = tmp_path / "fkc.png"
    assert main(["fkc", "--demo", "anneal", "--particles", "256", "--replicates", "2", "--steps", "20",
                 "--no-progress", "--plot", str(path)]) == 0
    assert png_size(path)[0] >= 1500


# ------------------------------------------------------------------------------ graph --plot
def test_plot_macc_has_values_colour_bar_and_error_bars(tmp_path):
    from matplotlib.container import ErrorbarContainer

    estimate = np.array([[1.0, 0.4, 0.2], [0.4, 1.0, 0.4], [0.2, 0.4, 1.0]])
    mcse = np.array([[0.0, 0.01, 0.02], [0.01, 0.0, 0.01], [0.02, 0.01, 0.0]])
    path = tmp_path / "macc.png"
    fig = plots.plot_macc(estimate, path, "MACC of the 3-path in karate", mcse=mcse, exact=estimate + 0.005)
    assert len(fig.axes) == 3
    (heat,) = [ax for ax in fig.axes if ax.get_xlabel() == "motif node j"]
    (bars,) = [ax for ax in fig.axes if ax.get_xlabel() == "motif node pair (i, j)"]
    (colorbar,) = [ax for ax in fig.axes if ax.get_ylabel() == "MACC entry E[A(x_i, x_j)]"]
    assert heat.get_ylabel() == "motif node i" and len(colorbar.get_yticks()) > 2
    assert len(heat.texts) == 9 and heat.texts[1].get_text() == "0.400\n±0.010"
    (container,) = [c for c in bars.containers if isinstance(c, ErrorbarContainer)]
    segments = container.lines[2][0].get_segments()
    assert len(segments) == 3  # the pairs (0,1), (0,2), (1,2)
    assert np.ptp(segments[1][:, 1]) == pytest.approx(4 * 0.02)  # ± 2 MCSE
    assert sorted(t.get_text() for t in bars.get_legend().get_texts()) == ["estimate ± 2 MCSE", "exact"]
    assert bars.get_xlabel() == "motif node pair (i, j)"
    assert "karate" in fig._suptitle.get_text()
    assert_written_at_dpi(path, fig)


def test_plot_chd_profile_has_error_bars(tmp_path):
    from matplotlib.container import ErrorbarContainer

    thresholds = np.linspace(0, 1, 11)
    path = tmp_path / "chd.png"
    fig = plots.plot_chd_profile(thresholds, 1 - thresholds, np.full(11, 0.01), 1 - thresholds, path,
                                 title="CHD profile in lesmis", last=2)
    (ax,) = fig.axes
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    assert ax.get_xlabel().startswith("threshold") and ax.get_ylabel() == "P(A(x_0, x_2) ≥ θ)"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["estimate ± 2 MCSE", "exact"]
    assert_written_at_dpi(path, fig)


def test_graph_plot_macc_keeps_its_public_name():
    from psample.cli import graph

    assert graph.plot_macc is plots.plot_macc


# ------------------------------------------------------------------------------ ParticleResult.plot
class _Info(NamedTuple):
    ess: np.ndarray
    log_Z_increment: np.ndarray


def test_particle_result_plot_integer_steps_and_replicate_legend(tmp_path):
    from psample.runtime import plotting
    from psample.runtime.particle_result import ParticleResult

    rng = np.random.default_rng(2)
    num_replicates, num_steps, num_particles = 3, 7, 100
    valid = np.ones((num_replicates, num_steps), bool)
    valid[2, 5:] = False
    info = _Info(rng.uniform(30, 100, (num_replicates, num_steps)), rng.normal(-0.1, 0.01, (num_replicates, num_steps)))
    result = ParticleResult(particles=np.zeros((num_replicates, num_particles, 1)),
                            log_weights=np.full((num_replicates, num_particles), -np.log(num_particles)),
                            log_Z=info.log_Z_increment.sum(1), info=info, observables={}, valid=valid,
                            final_state=None)  # fmt: skip
    path = tmp_path / "particles.png"
    result.plot(path)
    assert png_size(path)[0] >= 900
    fig = plotting.plot_particle_result(result, tmp_path / "again.png")
    ax_ess, ax_z = fig.axes
    assert [t.get_text() for t in ax_ess.get_legend().get_texts()] == ["replicate 1", "replicate 2", "replicate 3"]
    ticks = ax_z.get_xticks()
    assert np.all(ticks == np.round(ticks))
    assert ax_z.get_xlabel() == "time step" and ax_ess.get_ylabel() and ax_z.get_ylabel()
    assert "log Z =" in ax_z.get_title() and "3 replicates × 100 particles, 7 steps" in fig._suptitle.get_text()
    # A replicate that stopped early draws nothing after its last step.
    assert np.isnan(ax_z.get_lines()[2].get_ydata()[5:]).all()
    assert_written_at_dpi(tmp_path / "again.png", fig)


def test_plot_fkc_one_dimensional_guidance(tmp_path):
    import psample
    import psample.models

    problem = psample.models.fkc_problem("guidance", psample.diffusion.VP())
    rng = np.random.default_rng(3)
    fkc = _Pop(rng.normal(1.0, 0.45, (2, 400, 1)), np.full((2, 400), -np.log(400.0)), 2, 400)
    plain = _Pop(rng.normal(0.8, 0.5, (2, 400, 1)), np.zeros((2, 400)), 2, 400)
    fig = plots.plot_fkc(tmp_path / "g.png", problem, fkc, plain, title="guidance demo, w = 3",
                         table={"P(x_0<0)": (0.01, 0.02, 0.01, 0.05, 0.01)})
    (ax,) = fig.axes
    assert ax.get_xlabel() == "x_0" and ax.get_ylabel() == "marginal density of x_0"
    (curve,) = [line for line in ax.get_lines() if line.get_label() == "exact marginal density"]
    x, y = curve.get_data()
    np.testing.assert_allclose(y, np.interp(x, problem.exact["grid"], problem.exact["density"]))
    assert "P(x_0<0): exact 0.010" in ax.texts[0].get_text()
    assert_written_at_dpi(tmp_path / "g.png", fig)
