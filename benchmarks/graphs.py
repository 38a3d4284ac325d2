"""psample's homomorphism chains vs the authors' reference implementation (NNetwork).

Same path motif, same graphs, same kind of chain (pivot, Glauber), MACC of the k-path as the
observable:

* **psample**: ``num_chains`` chains vmapped and jitted (:func:`psample.runtime.observables.block_averaged`
  over :func:`psample.graphs.pivot_chain` / ``glauber_chain``, patches ``A[x, x]`` averaged inside
  the scan); compiled ahead of time, so the time is sampling only (compile time reported apart);
* **NNetwork** (``pip install NNetwork``, Lyu et al.; pure Python, one chain): ``get_patches``
  with ``sampling_alg="pivot"`` or ``"glauber"``, run until a time cap (it is 10³–10⁵ times
  slower) or until it has made as many chain steps as psample.

Reported per graph: chain steps per second and their ratio psample / NNetwork; the largest MACC
error against the exact value (:func:`psample.graphs.exact.path_macc`), that error in Monte Carlo
standard errors (batch means), and error × √seconds (the error one second of work buys, for an
estimator whose error falls as 1/√time; smaller is better). The first 20% of each chain is
discarded from the estimates (burn-in) but counted in the work.

Bias: NNetwork's default pivot walks its root to a *uniform* stationary law and then samples a
simple random walk, which is the homomorphism measure only on regular graphs. On a
Barabási–Albert graph its MACC converges to the uniform-root walk value (computed exactly here),
not to the exact MACC; psample's pivot uses the exact Metropolis–Hastings rule.

NNetwork is optional and not a psample dependency: without it the script reports psample alone
(``--install-nnetwork`` runs ``pip install NNetwork`` into the current environment first).

Run (the numbers in BENCHMARKS.md)::

    python benchmarks/graphs.py --sizes 1000 10000 100000 --chains 1000 --steps 1000 --nn-seconds 6
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shlex
import subprocess
import sys
import time

import jax
import networkx as nx
import numpy as np

from psample.diagnostics.batch_means import batch_means
from psample.graphs import exact
from psample.graphs import observables as obs
from psample.graphs.embeddings import initial_embeddings
from psample.graphs.estimate import SAMPLERS, homomorphism_chain
from psample.graphs.motif import Motif
from psample.graphs.network import Network
from psample.models import graphs as zoo
from psample.runtime.observables import block_averaged

BURN_IN_FRACTION = 0.2
NUM_BATCHES = 20  # batch means for NNetwork's single chain


# ----------------------------------------------------------------------------- graphs
def make_graph(family: str, n: int, seed: int):
    """Barabási–Albert (m = 3) or a 2-block SBM with mean degree ~10 (largest component)."""
    if family == "BA":
        return zoo.barabasi_albert(n, 3, seed=seed)
    half = n // 2
    graph = zoo.stochastic_block_model((half, n - half), min(1.0, 8.0 / half), 2.0 / half, seed=seed)
    return zoo.largest_component(graph)


# ----------------------------------------------------------------------------- psample
def psample_run(network: Network, k: int, sampler: str, num_chains: int, num_steps: int, seed: int):
    """MACC by ``num_chains`` chains of ``num_steps`` steps; returns (estimate, se, seconds, compile_s)."""
    motif = Motif.path(k)
    algorithm = homomorphism_chain(network, motif, sampler)
    num_blocks = 50
    block_size = max(1, num_steps // num_blocks)
    wrapped = block_averaged(algorithm, {"macc": obs.patch(network, k)}, block_size)

    @jax.jit
    def run(key, starts):
        states = jax.vmap(wrapped.init)(starts)

        def one(states, key):
            states, _ = jax.vmap(wrapped.step)(jax.random.split(key, num_chains), states)
            return states, states.block_means["macc"]

        _, means = jax.lax.scan(one, states, jax.random.split(key, num_blocks))
        return means  # (block, chain, k, k)

    starts = initial_embeddings(network, motif, jax.random.PRNGKey(seed), num_chains)
    key = jax.random.PRNGKey(seed + 1)
    start = time.perf_counter()
    compiled = run.lower(key, starts).compile()  # ahead of time: the timed call runs only
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    means = np.asarray(jax.block_until_ready(compiled(key, starts)))
    seconds = time.perf_counter() - start
    kept = means[int(BURN_IN_FRACTION * num_blocks):].mean(axis=0)  # chain time averages
    est = batch_means(kept, num_steps=block_size * num_blocks)
    return est.estimate, est.mcse, num_chains * block_size * num_blocks, seconds, compile_seconds


# ----------------------------------------------------------------------------- NNetwork
def load_nnetwork(install: bool):
    try:
        return importlib.import_module("NNetwork.NNetwork")
    except ImportError:
        if not install:
            return None
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "NNetwork"], check=True)
    return importlib.import_module("NNetwork.NNetwork")


def nnetwork_graph(module, graph):
    G = module.NNetwork()
    G.add_edges([[str(u), str(v)] for u, v in graph.edges()])
    return G


def nnetwork_run(G, k: int, sampler: str, max_steps: int, max_seconds: float, seed: int, batch: int = 100):
    """NNetwork ``get_patches`` in batches until ``max_steps`` or ``max_seconds``."""
    np.random.seed(seed)
    emb, patches = None, []
    start = time.perf_counter()
    steps = 0
    while steps < max_steps and time.perf_counter() - start < max_seconds:
        X, embs = G.get_patches(k=k, emb=emb, sample_size=batch, sampling_alg=sampler)
        emb = embs[-1]
        patches.append(X.T.reshape(-1, k, k))
        steps += batch
    seconds = time.perf_counter() - start
    patches = np.concatenate(patches)
    kept = patches[int(BURN_IN_FRACTION * len(patches)):]
    batches = np.array_split(kept, NUM_BATCHES)
    means = np.stack([b.mean(axis=0) for b in batches])
    return kept.mean(axis=0), means.std(axis=0, ddof=1) / np.sqrt(NUM_BATCHES), steps, seconds


def uniform_root_walk_macc(graph, k: int) -> np.ndarray:
    """Exact limit of NNetwork's default pivot: uniform root, then a simple random walk."""
    A = nx.to_numpy_array(graph)
    P = A / A.sum(axis=1, keepdims=True)
    n = len(A)
    law = [np.full(n, 1.0 / n)]
    for _ in range(k - 1):
        law.append(law[-1] @ P)
    macc = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            macc[i, j] = macc[j, i] = law[i] @ (np.linalg.matrix_power(P, j - i) * A).sum(axis=1)
    return macc


# ----------------------------------------------------------------------------- report
def varying_mask(truth, se):
    return np.triu(se > 0, 1)


def summarise(estimate, se, truth):
    mask = varying_mask(truth, se)
    error = np.abs(estimate - truth)
    worst = float(error.max())
    z = float((error[mask] / se[mask]).max()) if mask.any() else float("nan")
    return worst, z


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--families", nargs="+", default=["BA", "SBM"], choices=["BA", "SBM"])
    parser.add_argument("--k", type=int, default=4, help="path motif nodes (default 4)")
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1000, help="steps per psample chain")
    parser.add_argument("--nn-seconds", type=float, default=30.0,
                        help="time cap of each NNetwork run (it has one chain)")
    parser.add_argument("--bias-seconds", type=float, default=30.0,
                        help="NNetwork time on the bias demonstration (BA, n = 1000)")
    parser.add_argument("--glauber-max-nodes", type=int, default=sys.maxsize,
                        help="skip psample's Glauber above this many nodes (default: no limit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--install-nnetwork", action="store_true",
                        help="pip install NNetwork into this environment if it is missing")
    args = parser.parse_args(argv)

    print("command: python " + " ".join(shlex.quote(a) for a in ["benchmarks/graphs.py", *sys.argv[1:]]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"jax {jax.__version__} on {jax.devices()[0].platform}; "
          f"x64={jax.config.jax_enable_x64}; python {platform.python_version()}")
    module = load_nnetwork(args.install_nnetwork)
    if module is None:
        print("NNetwork not installed: psample only (pip install NNetwork, or --install-nnetwork)")
    else:
        print(f"NNetwork {importlib.import_module('NNetwork').__version__} (reference implementation)")
    k = args.k
    print(f"motif: {k}-path; psample: {args.chains} chains x {args.steps} steps; NNetwork: 1 chain, "
          f"<= {args.nn_seconds:g} s or as many steps as psample\n")

    header = (f"{'graph':>10s} {'n':>7s} {'sampler':>8s} {'impl':>9s} {'steps':>9s} {'seconds':>8s} "
              f"{'steps/s':>10s} {'ratio':>8s} {'max err':>8s} {'z':>6s} {'err·√s':>8s} {'compile s':>9s}")
    print(header)
    print("-" * len(header))
    for family in args.families:
        for n in args.sizes:
            graph = make_graph(family, n, args.seed)
            network = Network.from_networkx(graph)
            start = time.perf_counter()
            truth = exact.path_macc(network, k)
            exact_seconds = time.perf_counter() - start
            G = nnetwork_graph(module, graph) if module is not None else None
            label = f"{family}"
            for sampler in SAMPLERS:
                if sampler == "glauber" and graph.number_of_nodes() > args.glauber_max_nodes:
                    rate, steps = None, args.chains * args.steps
                    print(f"{label:>10s} {graph.number_of_nodes():>7d} {sampler:>8s} {'psample':>9s} "
                          f"skipped (--glauber-max-nodes)")
                else:
                    est, se, steps, seconds, compile_s = psample_run(network, k, sampler, args.chains,
                                                                     args.steps, args.seed)
                    err, z = summarise(est, se, truth)
                    rate = steps / seconds
                    print(f"{label:>10s} {graph.number_of_nodes():>7d} {sampler:>8s} {'psample':>9s} "
                          f"{steps:>9d} {seconds:>8.2f} {rate:>10.3g} {'':>8s} {err:>8.4f} {z:>6.2f} "
                          f"{err * np.sqrt(seconds):>8.4f} {compile_s:>9.1f}")
                if G is not None:
                    nn_est, nn_se, nn_steps, nn_seconds = nnetwork_run(G, k, sampler, steps, args.nn_seconds,
                                                                       args.seed)
                    nn_err, nn_z = summarise(nn_est, nn_se, truth)
                    nn_rate = nn_steps / nn_seconds
                    ratio = f"{rate / nn_rate:>8.0f}" if rate is not None else f"{'':>8s}"
                    print(f"{'':>10s} {'':>7s} {'':>8s} {'NNetwork':>9s} {nn_steps:>9d} {nn_seconds:>8.2f} "
                          f"{nn_rate:>10.3g} {ratio} {nn_err:>8.4f} {nn_z:>6.2f} "
                          f"{nn_err * np.sqrt(nn_seconds):>8.4f} {'':>9s}")
            print(f"{'':>10s} (exact MACC by sparse products: {exact_seconds:.1f} s; "
                  f"{graph.number_of_edges()} edges, max degree {max(d for _, d in graph.degree())})")

    # ------------------------------------------------------------------ bias of the default rule
    graph = zoo.barabasi_albert(1000, 3, seed=args.seed)
    network = Network.from_networkx(graph)
    truth = exact.path_macc(network, k)
    walk = uniform_root_walk_macc(graph, k)
    est, se, steps, seconds, _ = psample_run(network, k, "pivot", args.chains, args.steps, args.seed)
    print(f"\nbias on a non-regular graph (BA, n = 1000, m = 3): {k}-path MACC entries; z = "
          "(estimate - exact) / MCSE")
    runs = [(f"psample pivot, {steps} steps", est, se)]
    if module is not None and args.bias_seconds > 0:
        G = nnetwork_graph(module, graph)
        nn_est, nn_se, nn_steps, _ = nnetwork_run(G, k, "pivot", 10**9, args.bias_seconds, args.seed)
        runs.append((f"NNetwork pivot, {nn_steps} steps", nn_est, nn_se))
    print(f"{'entry':>6s} {'exact':>8s} {'unif-root':>9s} "
          + " ".join(f"{name:>32s}" for name, _, _ in runs))
    for i in range(k):
        for j in range(i + 2, k):
            cells = [f"{e[i, j]:.4f} ± {s_[i, j]:.4f} (z {(e[i, j] - truth[i, j]) / s_[i, j]:+6.1f})"
                     for _, e, s_ in runs]
            print(f"{f'({i},{j})':>6s} {truth[i, j]:>8.4f} {walk[i, j]:>9.4f} "
                  + " ".join(f"{c:>32s}" for c in cells))
    print("unif-root = the exact limit of NNetwork's default pivot (uniform root, then a simple "
          "random walk)")


if __name__ == "__main__":
    main()
