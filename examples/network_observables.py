"""
Network observables of four social networks
===========================================

Network observables of four small social networks, and a clustering of the networks by them.

For Zachary's karate club, Les Misérables, the Florentine families and Davis' southern women
(the networks shipped with networkx), a pivot chain over homomorphisms of the k-path estimates

* the MACC matrix ``E[A(x_i, x_j)]`` (matrix of average clustering coefficients), and
* the CHD profile ``θ ↦ P(A(x_0, x_{k-1}) ≥ θ)`` of the cycle closing the path,

with Monte Carlo standard errors (batch means over chains), checked against the exact values
(:mod:`psample.graphs.exact`). MACCs are of the unweighted graphs, so that they compare structure;
CHD profiles are also computed with the edge weights of karate and Les Misérables (scaled to
(0, 1]), where they are not a single step. The networks are then clustered hierarchically
(``scipy.cluster.hierarchy``, average linkage) by the distance between their MACC matrices, as
Lyu, Mémoli & Sivakoff (2023) do for Facebook100 schools. Davis' network is bipartite, so its
pivot chain is lazy (chosen automatically): its MACC is 0 between motif nodes an even distance
apart.

Run::

    python examples/network_observables.py --out network_observables.png
"""

from __future__ import annotations

import argparse
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.cluster import hierarchy  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from psample.graphs import exact, observables as obs  # noqa: E402
from psample.graphs.estimate import run_observables  # noqa: E402
from psample.graphs.motif import Motif  # noqa: E402
from psample.graphs.network import Network  # noqa: E402
from psample.models.graphs import REAL_NETWORKS  # noqa: E402

#: Networks whose edges carry weights (scaled to (0, 1]).
WEIGHTED = ("karate", "lesmis")
TITLES = {"karate": "Karate club", "lesmis": "Les Misérables", "florentine": "Florentine families",
          "davis": "Davis southern women"}


def network_observables(name, weighted, k, thresholds, num_chains, num_draws, rng_key):
    """MACC and CHD-profile estimates of one network, with their exact values."""
    network = Network.from_networkx(REAL_NETWORKS[name](weighted=weighted))
    pair = [(0, k - 1)]
    run = run_observables(
        network, Motif.path(k),
        {"macc": obs.patch(network, k), "profile": obs.threshold_indicators(network, pair, thresholds)},
        rng_key, num_chains=num_chains, num_draws=num_draws, num_warmup=num_draws // 4)
    return {
        "macc": run.estimates["macc"],
        "profile": run.estimates["profile"],
        "macc_exact": exact.path_macc(network, k),
        "profile_exact": exact.path_chd_profile(network, k, 0, k - 1, thresholds),
    }


def max_z(estimate, exact_value) -> str:
    """Largest |estimate - exact| / MCSE; entries without Monte Carlo error must be exact."""
    varying = estimate.mcse > 0
    if not np.allclose(estimate.estimate[~varying], exact_value[~varying], atol=1e-12):
        return "MISMATCH in an entry without Monte Carlo error"
    if not varying.any():
        return "exact (no Monte Carlo error)"
    return f"{np.max(np.abs(estimate.estimate - exact_value)[varying] / estimate.mcse[varying]):.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="network_observables.png", help="PNG to write")
    parser.add_argument("--k", type=int, default=5, help="path motif nodes (default 5)")
    parser.add_argument("--chains", type=int, default=500, help="chains per network (default 500)")
    parser.add_argument("--draws", type=int, default=1000,
                        help="chain steps per chain entering the averages, after draws/4 warm-up steps (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    thresholds = np.linspace(0.0, 1.0, 21)
    results, profiles = {}, {}
    for name in TITLES:
        # MACC of the unweighted graph (structure only, comparable across networks); CHD profile
        # of the weighted one where there are weights (karate, Les Misérables).
        for weighted in (False, True) if name in WEIGHTED else (False,):
            start = time.perf_counter()
            res = network_observables(name, weighted, args.k, thresholds, args.chains, args.draws,
                                      jax.random.key(args.seed))
            macc, profile = res["macc"], res["profile"]
            label = f"{TITLES[name]}{' (weighted)' if weighted else ''}"
            print(f"{label}: {args.k}-path MACC ({macc.num_chains} chains x {macc.num_steps} draws, "
                  f"{time.perf_counter() - start:.1f} s)")
            print(np.array2string(macc.estimate, precision=3, suppress_small=True))
            print(f"  largest MCSE {macc.mcse.max():.4f}; max |estimate - exact| / MCSE: MACC "
                  f"{max_z(macc, res['macc_exact'])}, CHD profile {max_z(profile, res['profile_exact'])}")
            if not weighted:
                results[name] = res
            profiles[label] = profile

    # Hierarchical clustering of the networks by the Frobenius distance between MACC matrices.
    names = list(results)
    maccs = np.stack([results[n]["macc"].estimate for n in names])
    distance = np.linalg.norm(maccs[:, None] - maccs[None, :], axis=(2, 3))
    linkage = hierarchy.linkage(squareform(distance, checks=False), method="average")
    print("\nMACC distances (Frobenius):")
    width = max(map(len, names))
    for name, row in zip(names, distance):
        print(f"  {name:>{width}s} " + " ".join(f"{d:6.3f}" for d in row))
    print("average-linkage merges (cluster a, cluster b, distance, size); leaves 0..3 = "
          + ", ".join(f"{i}:{n}" for i, n in enumerate(names)))
    for a, b, d, size in linkage:
        print(f"  {int(a):2d} + {int(b):2d} at {d:.3f} -> {int(size)} networks")
    dendrogram = hierarchy.dendrogram(linkage, labels=names, no_plot=True)
    print("dendrogram leaf order:", " | ".join(dendrogram["ivl"]))

    fig = plt.figure(figsize=(12, 7), layout="constrained")
    grid = fig.add_gridspec(2, len(names))
    maps = [fig.add_subplot(grid[0, i]) for i in range(len(names))]
    for ax, name in zip(maps, names):
        image = ax.imshow(results[name]["macc"].estimate, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{TITLES[name]}\n{args.k}-path MACC", fontsize=9)
        ax.set_xticks(range(args.k))
        ax.set_yticks(range(args.k))
    fig.colorbar(image, ax=maps, shrink=0.8)
    ax = fig.add_subplot(grid[1, : len(names) // 2])
    for label, prof in profiles.items():
        ax.errorbar(thresholds, prof.estimate, yerr=2 * prof.mcse, fmt=".-", lw=1, ms=3, label=label)
    ax.set_xlabel("θ")
    ax.set_ylabel(f"P(A(x_0, x_{args.k - 1}) ≥ θ)")
    ax.set_title(f"CHD profiles, C{args.k} over P{args.k} (± 2 MCSE)", fontsize=9)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(grid[1, len(names) // 2:])
    hierarchy.dendrogram(linkage, labels=[TITLES[n] for n in names], ax=ax, orientation="right",
                         leaf_font_size=8)
    ax.set_title("average-linkage clustering by MACC distance", fontsize=9)
    fig.savefig(args.out, dpi=120)
    print(f"figure written to {args.out}")


if __name__ == "__main__":
    main()
