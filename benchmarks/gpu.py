"""Every family's headline beside its peer, in one run, on whatever device JAX sees first.

Run on a GPU (one device; under 8 minutes is the aim of ``--size full``)::

    python benchmarks/gpu.py --size full [--json rows.json] [--only runner fkc]

and on a CPU as a smoke check (seconds; ``tests/test_benchmarks_gpu.py`` runs it)::

    python benchmarks/gpu.py --size small

Each family is one row, measured by the functions of its own benchmark script (imported, not
copied), psample and its peer in the same process on the same device:

============  ==========================================  =========================================
family        psample                                     peer (what the ratio divides by)
============  ==========================================  =========================================
runner        ``psample.sample`` (runner_overhead.py)     the hand-written jitted ``lax.scan``
polar_slice   adapted polar slice (polar_slice.py)        BlackJAX NUTS after window adaptation
tempered_smc  ``psample.smc.tempered_smc`` HMC (smc.py)   BlackJAX ``adaptive_tempered_smc`` (HMC)
fkc           ``psample.smc.fkc_smc`` (fkc.py)            SMC with MALA correctors, k/2 levels
diffusion     ``psample.diffusion.train_sampler`` (DDS)   the same jitted optax chunk, one call
graphs        pivot chains, vmapped (graphs.py)           NNetwork's pivot (pure Python, 1 chain)
admm          ``psample.admm`` D-ADMMS (admm.py)          decentralized SGLD on the same ring
============  ==========================================  =========================================

Rates (higher is better, so ratio = psample / peer > 1 favours psample): draws/s (chain-draws
brought to the host), bulk ESS/s of the benchmark case's statistic (sampling only; warm-up not
timed), particles/s of a whole adaptive SMC run, particle-score-evaluations/s (FKC: k per particle;
SMC-MALA: 2 per level), training iterations/s, chain steps/s, iterations/s. Every timed call
follows a compiling one; times are the best of ``--repeats`` where the source script repeats.
Float64 wherever the source script uses it (all but the runner row, float32 as its script).

Contract: a family that fails prints its error in its row and the others still run; the exit
status is 1 if any failed. The table is Markdown in BENCHMARKS.md's form, with the device
(``jax.devices()[0].device_kind``), the command and the total time. The graphs row needs
``pip install NNetwork`` for its peer (the peer cell says so otherwise).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
import traceback
import warnings
from typing import Callable, NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import jax  # noqa: E402
import numpy as np  # noqa: E402

FAMILIES = ("runner", "polar_slice", "tempered_smc", "fkc", "diffusion", "graphs", "admm")

#: Workload sizes per family: ``full`` is the GPU headline, ``small`` a CPU smoke run.
SIZES = {
    "full": {
        "runner": dict(chains=10_000, draws=1000, dim=10, repeats=3),
        "polar_slice": dict(chains=1024, draws=1000, warmup=500, case="eight_schools"),
        "tempered_smc": dict(particles=1_000_000, replicates=1, mcmc_steps=10, model="linear_regression"),
        "fkc": dict(particles=1_000_000, steps=100, problem="forty_mode"),
        "diffusion": dict(target="gmm25", iterations=1000, steps=50, batch=128),
        "graphs": dict(n=10_000, k=4, chains=10_000, steps=1000, nn_seconds=20.0),
        "admm": dict(agents=1000, d=5, chains=16, iterations=500),
    },
    "small": {
        "runner": dict(chains=64, draws=50, dim=4, repeats=1),
        "polar_slice": dict(chains=4, draws=100, warmup=50, case="funnel"),
        "tempered_smc": dict(particles=128, replicates=2, mcmc_steps=2, model="linear_regression"),
        "fkc": dict(particles=256, steps=8, problem="product"),
        "diffusion": dict(target="gmm25", iterations=10, steps=5, batch=8),
        "graphs": dict(n=200, k=3, chains=16, steps=100, nn_seconds=0.5),
        "admm": dict(agents=8, d=2, chains=2, iterations=20),
    },
}


class Row(NamedTuple):
    """One family's line of the table."""

    family: str
    workload: str
    unit: str
    psample: float
    peer_name: str
    peer: float
    seconds: float  # wall time of the whole section, compilation included
    error: str = ""

    @property
    def ratio(self) -> float:
        return self.psample / self.peer if self.peer > 0 else math.nan


def _best(fn: Callable, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``fn()`` (after one compiling call)."""
    jax.block_until_ready(fn())
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------- sections
def runner(chains, draws, dim, repeats):
    import blackjax
    import jax.numpy as jnp
    import runner_overhead as bench

    jax.config.update("jax_enable_x64", False)  # as runner_overhead.py: float32
    alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.5)
    x0 = jax.random.normal(jax.random.PRNGKey(0), (chains, dim))
    baseline = bench.hand_written(alg, chains, draws)
    key = jax.random.PRNGKey(1)
    peer = _best(lambda: baseline(x0, key), repeats)
    ours = _best(lambda: bench.with_psample(alg, x0, key, draws).positions, repeats)
    work = chains * draws
    return (f"RWM d={dim}, {chains:,} chains x {draws:,} draws to the host, float32", "draws/s",
            work / ours, "hand-written lax.scan", work / peer)


def polar_slice(chains, draws, warmup, case):
    import polar_slice as bench
    from jax.flatten_util import ravel_pytree

    jax.config.update("jax_enable_x64", True)
    (chosen,) = [c for c in bench.build_cases([case]) if c.name.startswith(case)]
    init_key, run_key = jax.random.split(jax.random.key(0))
    positions = chosen.target.initial_positions(init_key, chains)
    flat0 = jax.vmap(lambda p: ravel_pytree(p)[0])(positions)
    rates = {}
    for kind in ("polar_adapted", "nuts"):
        stat, evals, seconds, _ = bench.run_sampler(kind, chosen, flat0, run_key, draws, warmup)
        rates[kind] = bench.summarise(stat, evals, seconds)["ess/s"]
    return (f"{chosen.name}, statistic {chosen.statistic_name}, {chains:,} chains x {draws:,} draws "
            f"after {warmup} warm-up", "bulk ESS/s", rates["polar_adapted"], "BlackJAX NUTS", rates["nuts"])


def tempered_smc(particles, replicates, mcmc_steps, model):
    import psample.models
    import smc as bench

    jax.config.update("jax_enable_x64", True)
    target = psample.models.get(model)
    work = particles * replicates
    ours = bench.timed(bench.psample_run(target, "hmc", particles, replicates), 1)[2]
    peer = bench.timed(bench.blackjax_run(target, particles, replicates, mcmc_steps), 1)[2]
    return (f"{target.name}, {particles:,} particles x {replicates} replicate(s), adaptive tempering to 1, HMC moves",
            "particles/s (whole run)", work / ours, f"BlackJAX adaptive_tempered_smc ({mcmc_steps} moves/level)", work / peer)


def fkc(particles, steps, problem):
    import fkc as bench
    import psample
    import psample.models

    jax.config.update("jax_enable_x64", True)
    fkc_problem = psample.models.fkc_problem(problem, psample.diffusion.VP())
    methods = bench._methods(fkc_problem, steps, ["FKC", "SMC-MALA"])
    rates = {}
    for label, (algorithm, _, evals, _) in methods.items():
        seconds = _best(lambda: psample.run_particles(algorithm, jax.random.key(1), particles, progress=False).log_Z, 1)
        rates[label] = particles * evals / seconds
    return (f"{problem}, {particles:,} particles, {steps} steps (SMC-MALA: {steps // 2} levels, equal score evaluations)",
            "particle-score evals/s", rates["FKC"], "SMC with MALA correctors", rates["SMC-MALA"])


def diffusion(target, iterations, steps, batch):
    import diffusion as bench
    import optax

    from psample.diffusion import train as train_module

    jax.config.update("jax_enable_x64", True)
    model = bench.TARGETS[target]()
    dim = int(model.exact["mean"].shape[0])
    scale = bench.SCALES[target]
    optimizer = optax.adam(1e-3)
    options = dict(method="dds", num_iterations=iterations, num_steps=steps, batch_size=batch, init_std=scale,
                   optimizer=optimizer, progress=False)

    def ours():
        return train_module.train_sampler(model.logdensity_fn, dim, jax.random.key(0), **options)

    process = ours().process  # compiles the chunk (cached by train_sampler for the next call)
    start = time.perf_counter()
    jax.block_until_ready(ours().losses)
    our_seconds = time.perf_counter() - start

    # The peer: train_sampler's own jitted optax chunk (same loss, network and Adam step), called
    # once over every iteration, as a hand-written training loop would be: no driver, no checks.
    chunk = train_module._build_chunk(process, model.logdensity_fn, "kl", batch, optimizer, 0.0)
    params = train_module._init_params(process, "kl", jax.random.key(1))
    carry = (params, optimizer.init(params), jax.random.key(2))
    indices = np.arange(iterations)
    peer_seconds = _best(lambda: chunk(carry, indices)[1].loss, 1)
    return (f"DDS on {target} (d={dim}), K={steps} steps, batch {batch}, {iterations:,} iterations, Adam",
            "iterations/s", iterations / our_seconds, "the same jitted optax chunk, one call", iterations / peer_seconds)


def graphs(n, k, chains, steps, nn_seconds):
    import graphs as bench
    from psample.graphs.network import Network

    jax.config.update("jax_enable_x64", True)
    graph = bench.make_graph("BA", n, seed=0)
    network = Network.from_networkx(graph)
    bench.psample_run(network, k, "pivot", chains, steps, 0)  # compiles (psample_run times its run alone)
    _, _, our_steps, our_seconds, _ = bench.psample_run(network, k, "pivot", chains, steps, 0)
    module = bench.load_nnetwork(False)
    workload = f"Barabási–Albert n={graph.number_of_nodes():,}, MACC of the {k}-path, pivot, {chains:,} chains x {steps:,} steps"
    if module is None:
        return workload, "chain steps/s", our_steps / our_seconds, "NNetwork (not installed: pip install NNetwork)", math.nan
    G = bench.nnetwork_graph(module, graph)
    _, _, nn_steps, nn_time = bench.nnetwork_run(G, k, "pivot", our_steps, nn_seconds, 0)
    return workload, "chain steps/s", our_steps / our_seconds, "NNetwork pivot (pure Python, 1 chain)", nn_steps / nn_time


def admm(agents, d, chains, iterations):
    import admm as bench
    import psample

    jax.config.update("jax_enable_x64", True)
    data, logprior, loglik, _, _ = bench.regression(agents, 50, d, seed=11)
    x0 = jax.random.normal(jax.random.PRNGKey(0), (chains, agents, d))
    key = jax.random.PRNGKey(1)
    alg = psample.admm(logprior, loglik, data, rho=bench.RHO, graph="ring", prox="quadratic")
    _, ours = bench.run_admm(alg, x0, data, logprior, loglik, "ring", iterations, key, lambda s: s.local_positions.mean(1))
    _, peer = bench.run_dsgld(x0, data, logprior, loglik, bench.graph_of("ring", agents), 0.009, iterations, key,
                              lambda x: x.mean(1))  # fmt: skip
    return (f"linear regression d={d}, {agents:,} agents x 50 points on a ring, {chains} chains x {iterations} iterations",
            "iterations/s", iterations / ours, "decentralized SGLD (BlackJAX SGLD kernel)", iterations / peer)


SECTIONS = {"runner": runner, "polar_slice": polar_slice, "tempered_smc": tempered_smc, "fkc": fkc,
            "diffusion": diffusion, "graphs": graphs, "admm": admm}  # fmt: skip


# ----------------------------------------------------------------------------- report
def run_family(family: str, size: str) -> Row:
    """Run one family's section; a failure becomes a row with its error (the others go on)."""
    from psample.errors import ConvergenceWarning

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # psample.sample's closing convergence check (part of its cost) judges toy runs here.
            warnings.simplefilter("ignore", ConvergenceWarning)
            workload, unit, ours, peer_name, peer = SECTIONS[family](**SIZES[size][family])
        return Row(family, workload, unit, float(ours), peer_name, float(peer), time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001  (reported in the table; the other families still run)
        traceback.print_exc(file=sys.stderr)
        return Row(family, "", "", math.nan, "", math.nan, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")


def table(rows, device: str) -> str:
    """The Markdown table of ``rows`` (BENCHMARKS.md's form)."""
    lines = ["| family | workload | unit | psample | peer | peer rate | ratio psample / peer | device | section s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.error:
            lines.append(f"| {row.family} | FAILED: {row.error} | | | | | | {device} | {row.seconds:.1f} |")
            continue
        lines.append(f"| {row.family} | {row.workload} | {row.unit} | {row.psample:.4g} | {row.peer_name} | "
                     f"{row.peer:.4g} | {row.ratio:.3g} | {device} | {row.seconds:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the GPU headline workloads (default); small: seconds on a CPU")
    parser.add_argument("--only", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="run these families only")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    device = jax.devices()[0]
    device_name = f"{device.device_kind} ({device.platform})"
    print("command: python " + " ".join(shlex.quote(a) for a in ["benchmarks/gpu.py", *(sys.argv[1:] if argv is None else argv)]))
    print(f"device: {device_name}, {len(jax.devices())} device(s); host {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs; jax {jax.__version__}", flush=True)
    rows = []
    for family in args.only:
        row = run_family(family, args.size)
        rows.append(row)
        status = f"FAILED ({row.error})" if row.error else f"ratio {row.ratio:.3g}"
        print(f"{family}: {status}, {row.seconds:.1f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - began
    print()
    print(table(rows, device_name))
    print(f"\ntotal {total:.1f} s (--size {args.size})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": device_name, "size": args.size, "total_seconds": total,
                       "rows": [dict(row._asdict(), ratio=row.ratio) for row in rows]}, handle, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(1 if any(row.error for row in main()) else 0)
