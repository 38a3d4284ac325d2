"""
Pivot and Glauber chains on the karate club against the exact MACC
==================================================================

The matrix of average clustering coefficients (MACC) of the 4-path in Zachary's karate club,
:math:`\\mathrm{MACC}[i, j] = \\mathbb{E}_\\pi[A(x_i, x_j)]` under the homomorphism measure
:math:`\\pi_{F \\to G}` of the path :math:`F = P_4` into the network, estimated by the pivot
chain (:func:`psample.graphs.pivot_chain`, exact Metropolis–Hastings) and by the Glauber chain
(:func:`psample.graphs.glauber_chain`) through :func:`psample.graphs.macc`, each with its Monte
Carlo standard error (batch means over independent chains), and checked against the exact
value by sparse matrix products (:func:`psample.graphs.exact.path_macc`). See
:doc:`/families/graphs` for the method. Small sizes: this script runs on every build of the
documentation.
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

import psample.graphs as pg
import psample.models

network = pg.Network.from_networkx(psample.models.graphs.karate(), weight=None)
k = 4
exact = pg.exact.path_macc(network, k)
print("exact MACC of the 4-path:\n", np.round(exact, 4))

# %%
# 200 chains per sampler, 200 warm-up steps dropped, 500 steps averaged per chain.

estimates = {sampler: pg.macc(network, k, jax.random.key(1), num_chains=200, num_draws=500,
                              num_warmup=200, sampler=sampler, progress=False)
             for sampler in ("pivot", "glauber")}
entries = [(0, 2), (0, 3), (1, 3)]  # the others are 0 (diagonal) or 1 (path edges) exactly
print(f"{'entry':>7} {'exact':>8} " + " ".join(f"{s + ' ± MCSE (z)':>26}" for s in estimates))
for i, j in entries:
    row = " ".join(f"{e.estimate[i, j]:10.4f} ± {e.mcse[i, j]:.4f} ({(e.estimate[i, j] - exact[i, j]) / e.mcse[i, j]:+5.2f})"
                   for e in estimates.values())
    print(f"{str((i, j)):>7} {exact[i, j]:8.4f} {row}")

# %%
# Left: the exact MACC. Right: each chain's error on the three entries that are not fixed by
# the path itself, with bars of two standard errors; the pivot chain's error bar is about
# half the Glauber chain's for the same number of steps.

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
image = left.imshow(exact, cmap="viridis", vmin=0, vmax=1)
for i in range(k):
    for j in range(k):
        left.text(j, i, f"{exact[i, j]:.3f}", ha="center", va="center",
                  color="k" if exact[i, j] > 0.5 else "w", fontsize=8)
left.set_xticks(range(k))
left.set_yticks(range(k))
left.set_xlabel("path node $j$")
left.set_ylabel("path node $i$")
left.set_title("exact MACC, karate club, 4-path")
fig.colorbar(image, ax=left, shrink=0.8)

positions = np.arange(len(entries))
for offset, (sampler, e) in zip((-0.1, 0.1), estimates.items()):
    error = np.array([e.estimate[i, j] - exact[i, j] for i, j in entries])
    bars = np.array([2 * e.mcse[i, j] for i, j in entries])
    right.errorbar(positions + offset, error, yerr=bars, fmt="o", capsize=4,
                   label=f"{sampler} ({e.num_chains} chains x {e.num_steps} steps)")
right.axhline(0.0, color="0.5", lw=1)
right.set_xticks(positions, [f"({i}, {j})" for i, j in entries])
right.set_xlabel("MACC entry")
right.set_ylabel("estimate - exact (bars: 2 MCSE)")
right.set_title("homomorphism chains against the exact value")
right.legend(fontsize=8)
fig.tight_layout()
