"""The figure of a :class:`~psample.runtime.particle_result.ParticleResult`: ESS and running log Z.

What it draws: two panels over the time steps of a particle run (:func:`psample.run_particles`),
one line per independent replicate, with a legend naming the replicates —

- the effective sample size of the weights, as a fraction of the particles (Kish's
  ``(sum w)^2 / sum w^2``, as :mod:`blackjax.smc.ess` computes it) after each step's
  reweighting;
- the running log normaliser ``sum of log-Z increments`` up to each step, the final estimate
  ``log Z`` with its standard error in the title (the method of
  :attr:`ParticleResult.log_Z_se_method`).

Contract: :func:`plot_particle_result` writes one image (any matplotlib format; Agg canvas,
150 dpi) and returns the :class:`matplotlib.figure.Figure` (closed, for inspection). Steps are
whole numbers on the axis. matplotlib is imported only when a figure is drawn.

Limits: with more than :data:`MAX_LEGEND_REPLICATES` replicates the lines share one legend entry.
This is a runtime module: it knows :class:`ParticleResult`'s fields and nothing of samplers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_particle_result", "MAX_LEGEND_REPLICATES", "DPI"]

#: Replicates named one by one in the legend; above this, one entry stands for all lines.
MAX_LEGEND_REPLICATES = 10
#: Resolution of the written image (dots per inch).
DPI = 150


def plot_particle_result(result, path, *, title: str | None = None):
    """Write the ESS and running-log-Z figure of ``result`` to ``path``.

    Parameters
    ----------
    result
        A :class:`~psample.runtime.particle_result.ParticleResult` (``R`` replicates, ``T`` steps).
    path
        The image file to write (its extension picks the format).
    title
        Overall title; default names the replicates, particles and steps.

    Returns
    -------
    matplotlib.figure.Figure
        The figure written (already closed).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    valid = np.asarray(result.valid)
    num_replicates, num_steps = valid.shape
    steps = np.arange(1, num_steps + 1)
    increments = np.where(valid, np.asarray(result.info.log_Z_increment), 0.0)
    running = np.where(valid, np.cumsum(increments, axis=1), np.nan)
    ess = np.where(valid, np.asarray(result.ess) / result.num_particles, np.nan)

    fig, (ax_ess, ax_z) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, constrained_layout=True)
    named = num_replicates <= MAX_LEGEND_REPLICATES
    colours = plt.get_cmap("tab10" if named else "viridis")
    for r in range(num_replicates):
        colour = colours(r % 10) if named else colours(r / max(1, num_replicates - 1))
        label = f"replicate {r + 1}" if named else (f"{num_replicates} replicates (one line each)" if r == 0 else None)
        marker = "o" if num_steps <= 20 else None
        ax_ess.plot(steps, ess[r], lw=1.2, color=colour, marker=marker, ms=3, label=label)
        ax_z.plot(steps, running[r], lw=1.2, color=colour, marker=marker, ms=3, label=label)
    ax_ess.set_ylabel("ESS / number of particles")
    ax_ess.set_ylim(0, 1.05)
    ax_ess.set_title("Effective sample size of the weights at each step", fontsize=10)
    ax_z.set_ylabel("running log Z (sum of increments)")
    ax_z.set_xlabel("time step")
    ax_z.set_title(
        f"Running log normaliser; final log Z = {result.log_Z_mean:.3f} ± {result.log_Z_se:.3f} "
        f"(standard error: {result.log_Z_se_method})",
        fontsize=10,
    )
    for ax in (ax_ess, ax_z):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_ess.legend(fontsize=8, ncol=2 if num_replicates > 5 else 1, loc="best", title="replicate", title_fontsize=8)
    if title is None:
        title = (f"Particle run: {num_replicates} replicate{'s' if num_replicates != 1 else ''} × "
                 f"{result.num_particles:,} particles, {num_steps} steps")
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return fig
