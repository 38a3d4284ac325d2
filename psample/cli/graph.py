"""``psample graph``: network observables of a graph from the command line.

Examples
--------
::

    psample graph --network karate --motif path3                       # MACC of the 3-path
    psample graph --network lesmis --weighted --observable chd         # t(C3 | P3) and CHD profile
    psample graph --network florentine --motif star4 --observable density
    psample graph --network my.edgelist --motif path4 --plot macc.png  # 'u v [w]' per line

The estimate is the mean over chains of each chain's time average over ``--draws`` steps after
``--warmup`` steps, ± its Monte Carlo standard error (batch means across chains); the exact value
is printed next to it whenever it is available in closed form (Lyu, Mémoli & Sivakoff 2023;
:mod:`psample.graphs.exact`). ``--steps`` and ``--burn-in``, the old names of ``--draws`` and
``--warmup``, still work for one release.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

from psample.cli.plots import plot_macc  # noqa: F401  (public here since psample 0.1; drawn in plots.py)
from psample.errors import InvalidTuningError, MotifError, NetworkError, PsampleError, check_positive_int

__all__ = ["OBSERVABLES", "add_graph_parser", "run_graph", "load_network", "plot_macc"]

#: What ``--observable`` can estimate.
OBSERVABLES = ("macc", "chd", "density")
#: CHD profile thresholds printed (and plotted) by ``--observable chd``.
CHD_THRESHOLDS = np.linspace(0.0, 1.0, 11)


def add_graph_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``graph`` sub-command to an ``argparse`` sub-parsers object; returns its parser."""
    from psample.graphs.estimate import SAMPLERS
    from psample.models.graphs import REAL_NETWORKS

    parser = subparsers.add_parser(
        "graph",
        help="estimate network observables (MACC, CHD, hom density) with homomorphism chains",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    parser.add_argument("--network", required=True,
                        help=f"one of {', '.join(REAL_NETWORKS)} (networkx built-ins) or a path to "
                             "an edge list ('u v' or 'u v weight' per line; its largest component "
                             "is used)")
    parser.add_argument("--motif", default="path3",
                        help="pathK, starK or cycleK (cycles need --sampler glauber); default path3")
    parser.add_argument("--observable", choices=OBSERVABLES, default="macc",
                        help="macc: E[A(x_i, x_j)]; chd: t(H | F) and its profile, H = motif plus "
                             "the edge (0, k-1); density: t(F, G) (tree motifs); default macc")
    parser.add_argument("--chains", type=int, default=1000, help="independent chains (default 1000)")
    parser.add_argument("--draws", type=int, default=None,
                        help="chain steps per chain entering the averages, after warm-up (default 1000)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="chain steps per chain discarded first (default draws/4)")
    # psample 0.1 spellings, for one release (a note on stderr says so).
    parser.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--burn-in", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--sampler", choices=SAMPLERS, default="pivot",
                        help="pivot (tree motifs, exact MH rule; lazy on bipartite networks) or "
                             "glauber (any motif); default pivot")
    parser.add_argument("--weighted", action="store_true",
                        help="use edge weights (scaled to (0, 1]) of the built-in networks")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="write the MACC heat map (or, with --observable chd, the CHD profile)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_graph)
    return parser


# ------------------------------------------------------------------------------ inputs
def _read_edgelist(path: str):
    import networkx as nx

    graph = nx.Graph()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            if len(tokens) not in (2, 3):
                raise NetworkError(f"{path}:{number}: expected 'u v' or 'u v weight', got {line.strip()!r}")
            u, v = tokens[:2]
            if len(tokens) == 3:
                try:
                    weight = float(tokens[2])
                except ValueError:
                    raise NetworkError(f"{path}:{number}: weight must be a number, got {tokens[2]!r}") from None
                graph.add_edge(u, v, weight=weight)
            else:
                graph.add_edge(u, v)
    if graph.number_of_edges() == 0:
        raise NetworkError(f"--network {path!r} holds no edge")
    return graph


def load_network(name: str, weighted: bool = False):
    """``(graph, description)`` for a built-in network name or an edge-list file.

    A file's largest connected component is kept (the chains cannot move between components).
    """
    from psample.models.graphs import REAL_NETWORKS, largest_component, real_network

    if name in REAL_NETWORKS:
        graph = real_network(name, weighted=weighted)
        return graph, name
    if not os.path.isfile(name):
        raise NetworkError(f"--network must be one of {sorted(REAL_NETWORKS)} or an edge-list "
                           f"file, got {name!r} (no such file)")
    full = _read_edgelist(name)
    graph = largest_component(full)
    description = os.path.basename(name)
    dropped = full.number_of_nodes() - graph.number_of_nodes()
    if dropped:
        description += f" (largest component; {dropped} nodes in other components dropped)"
    return graph, description


def _extra_edge_motif(motif):
    """``H`` = ``motif`` plus the edge (0, k-1): the cycle over a path."""
    from psample.graphs.motif import Motif

    k = motif.num_nodes
    pairs = {frozenset(map(int, e)) for e in motif.edges}
    if k < 3 or frozenset((0, k - 1)) in pairs:
        raise MotifError(f"--observable chd adds the edge (0, {k - 1}) to the motif, which needs "
                         f"k >= 3 and no such edge already; got {motif!r} (use a pathK motif)")
    return Motif.from_edges(np.vstack([motif.edges, [[0, k - 1]]]), num_nodes=k, root=motif.root)


# ------------------------------------------------------------------------------ output
def _format_matrix(estimate, mcse, exact=None) -> str:
    k = estimate.shape[0]
    cells = [[f"{estimate[i, j]:.4f}±{mcse[i, j]:.4f}" for j in range(k)] for i in range(k)]
    width = max(len(c) for row in cells for c in row)
    lines = ["      " + " ".join(f"{j:>{width}d}" for j in range(k))]
    lines += [f"  {i:>3d} " + " ".join(f"{c:>{width}s}" for c in row) for i, row in enumerate(cells)]
    if exact is not None:
        lines.append("exact:")
        lines += [f"  {i:>3d} " + " ".join(f"{exact[i, j]:>{width}.4f}" for j in range(k))
                  for i in range(k)]
    return "\n".join(lines)


def _z_line(estimate, mcse, exact) -> str:
    estimate, mcse, exact = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (estimate, mcse, exact))
    varying = mcse > 0
    exact_hits = np.allclose(estimate[~varying], exact[~varying], atol=1e-12)
    z = np.abs(estimate[varying] - exact[varying]) / mcse[varying]
    worst = f"{z.max():.2f}" if z.size else "n/a"
    note = "" if exact_hits else " (an entry without Monte Carlo error differs from exact!)"
    return f"max |estimate - exact| / MCSE = {worst} over {z.size} varying entries{note}"


# ------------------------------------------------------------------------------ command
def _is_path(motif) -> bool:
    k = motif.num_nodes
    return motif.root == 0 and {frozenset(map(int, e)) for e in motif.edges} == {
        frozenset((i, i + 1)) for i in range(k - 1)}


def _renamed_flags(args) -> tuple[str, str]:
    """Map the old ``--steps`` / ``--burn-in`` onto ``--draws`` / ``--warmup`` (with a note on stderr);
    returns the flag names to quote in errors."""
    names = []
    for old, new, old_flag, new_flag in (("steps", "draws", "--steps", "--draws"),
                                         ("burn_in", "warmup", "--burn-in", "--warmup")):
        value = getattr(args, old)
        if value is None:
            names.append(new_flag)
            continue
        if getattr(args, new) is not None:
            raise InvalidTuningError(f"{old_flag} is the old name of {new_flag}: pass {new_flag} only")
        print(f"psample graph: {old_flag} is deprecated, use {new_flag} (removed in the next release)",
              file=sys.stderr)
        setattr(args, new, value)
        names.append(old_flag)
    return names[0], names[1]


def _run(args) -> int:
    import jax

    from psample import diagnostics
    from psample.graphs import exact, observables as obs
    from psample.graphs.estimate import hom_density, run_observables
    from psample.graphs.motif import as_motif
    from psample.graphs.network import as_network

    draws_flag, warmup_flag = _renamed_flags(args)
    chains = check_positive_int("--chains", args.chains, minimum=2)
    draws = 1000 if args.draws is None else check_positive_int(draws_flag, args.draws)
    warmup = draws // 4 if args.warmup is None else check_positive_int(warmup_flag, args.warmup, minimum=0)
    if args.plot is not None and args.observable == "density":
        raise InvalidTuningError("--plot needs --observable macc or chd, got --observable density")
    if args.plot is not None:  # before any work: the format, matplotlib, a writable directory
        from psample.cli.common import check_plot_path

        check_plot_path(args.plot, "--plot", formats=("png",))
    motif = as_motif(args.motif)
    if args.sampler == "pivot":
        motif.require_tree(f"--sampler pivot (--motif {args.motif})", instead="use --sampler glauber")
    if args.observable == "density":
        motif.require_tree(f"--observable density (--motif {args.motif})",
                           instead="use --observable macc or chd")
    graph, description = load_network(args.network, weighted=args.weighted)
    network = as_network(graph)
    k = motif.num_nodes
    path_motif = _is_path(motif)

    if args.observable == "macc":
        observables = {"macc": obs.patch(network, k)}
    elif args.observable == "chd":
        pairs = obs.extra_edges(motif, _extra_edge_motif(motif))
        observables = {"chd": obs.edge_product(network, pairs),
                       "profile": obs.threshold_indicators(network, pairs, CHD_THRESHOLDS)}

    print(f"network {description}: {network.num_nodes} nodes, {graph.number_of_edges()} edges"
          f"{' (weighted)' if args.weighted else ''}")
    print(f"motif {motif!r}; sampler {args.sampler}; {chains} chains x {draws} draws "
          f"(warm-up {warmup}); seed {args.seed}")
    start = time.perf_counter()
    rng_key = jax.random.key(args.seed)
    kwargs = dict(num_chains=chains, num_draws=draws, num_warmup=warmup, sampler=args.sampler,
                  progress=not args.no_progress)
    if args.observable == "density":
        # The one-call estimate: its input checks (dead nodes) and its tail check apply.
        est = hom_density(network, motif, rng_key, **kwargs)
        reference = exact.tree_hom_density(network, motif)
        print(f"t(F, G) = {est.estimate:.6g} ± {est.mcse:.2g}   exact (tree DP) {reference:.6g}")
        print(_z_line(est.estimate, est.mcse, reference))
        print(f"sampling took {time.perf_counter() - start:.1f} s")
        return 0
    run = run_observables(network, motif, observables, rng_key, **kwargs)
    elapsed = time.perf_counter() - start
    with warnings.catch_warnings():
        # More chains than block means, and constant entries (R-hat 0/0), are expected here.
        warnings.simplefilter("ignore")
        rhat = diagnostics.rhat(run.trace, group="observables")
    rhats = np.concatenate([np.ravel(np.asarray(rhat[name])) for name in rhat.data_vars])
    rhats = rhats[np.isfinite(rhats)]  # constant entries (no Monte Carlo error) have none
    worst_rhat = rhats.max() if rhats.size else float("nan")
    estimates = run.estimates

    if args.observable == "macc":
        est = estimates["macc"]
        reference = exact.path_macc(network, k) if path_motif else None
        print(f"MACC = E[A(x_i, x_j)] (estimate ± MCSE over {est.num_chains} chains x "
              f"{est.num_steps} draws):")
        print(_format_matrix(est.estimate, est.mcse, reference))
        if reference is not None:
            print(_z_line(est.estimate, est.mcse, reference))
        if args.plot:
            plot_macc(est.estimate, args.plot, mcse=est.mcse, exact=reference,
                      title=f"Mean average clustering coefficient (MACC) of the motif {args.motif} ({k} nodes) in {description}\n"
                            f"{args.sampler} chain, {chains} chains x {draws} draws (warm-up {warmup}), seed {args.seed}; "
                            f"± = Monte Carlo standard error (batch means)")
    elif args.observable == "chd":
        est, profile = estimates["chd"], estimates["profile"]
        reference = exact.path_edge_expectation(network, k, 0, k - 1) if path_motif else None
        exact_profile = (exact.path_chd_profile(network, k, 0, k - 1, CHD_THRESHOLDS)
                         if path_motif else None)
        line = f"t(H, G | F) with H = F + edge (0, {k - 1}): {est.estimate:.5f} ± {est.mcse:.5f}"
        if reference is not None:
            line += f"   exact {reference:.5f}"
        print(line)
        print("CHD profile P(A(x_0, x_{k-1}) >= θ):".replace("{k-1}", str(k - 1)))
        for t, (theta, value, se) in enumerate(zip(CHD_THRESHOLDS, profile.estimate, profile.mcse)):
            extra = f"   exact {exact_profile[t]:.5f}" if exact_profile is not None else ""
            print(f"  θ = {theta:4.2f}: {value:.5f} ± {se:.5f}{extra}")
        if reference is not None:
            print(_z_line(np.append(profile.estimate, est.estimate), np.append(profile.mcse, est.mcse),
                          np.append(exact_profile, reference)))
        if args.plot:
            from psample.cli.plots import plot_chd_profile

            plot_chd_profile(CHD_THRESHOLDS, profile.estimate, profile.mcse, exact_profile, args.plot, last=k - 1,
                             title=f"Conditional homomorphism density profile in {description}: motif {args.motif} "
                                   f"closed by the edge (0, {k - 1})\n{args.sampler} chain, {chains} chains x {draws} draws "
                                   f"(warm-up {warmup}), seed {args.seed}")
    print(f"max R-hat of the block means: {worst_rhat:.3f}; sampling took {elapsed:.1f} s")
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def run_graph(args) -> int:
    """Run ``psample graph`` with parsed ``args``; returns the exit status (0, or 2 on bad input)."""
    try:
        return _run(args)
    except (PsampleError, ValueError, OSError) as exc:
        print(f"psample graph: error: {exc}", file=sys.stderr)
        return 2
