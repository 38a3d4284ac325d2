"""
Polar slice sampling on Neal's funnel
=====================================

Neal's funnel with Gibbsian polar slice sampling, checked against its exact quantiles.

The funnel (x1 ~ N(0, 9), x_i | x1 ~ N(0, e^{x1}), d = 10) is the classic target where
gradient-based samplers cannot enter the neck. Here polar slice sampling runs 16 chains with
a checkpoint, the run is resumed to double its length (bit for bit the same as one long run),
and the x1 quantiles are compared with the exact ones, with their Monte Carlo standard errors
from ArviZ. A trace plot is written to ``--plot``.

Run::

    python examples/polar_slice_funnel.py [--draws 20000] [--plot funnel.png]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import arviz as az
import jax
import numpy as np

import psample
import psample.models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--draws", type=int, default=20000, help="total draws per chain")
    parser.add_argument("--plot", default=None, help="PNG path for an ArviZ trace plot of x1")
    args = parser.parse_args(argv)

    target = psample.models.neal_funnel(10)
    algorithm = psample.polar_slice(target.logdensity_fn, w=target.hints["polar_slice_w"])
    init_key, run_key = jax.random.split(jax.random.PRNGKey(0))
    positions = target.initial_positions(init_key, args.chains)

    workdir = Path(tempfile.mkdtemp())
    store = workdir / "funnel.zarr"
    half = args.draws // 2
    first = psample.sample(algorithm, positions, run_key, half, num_warmup=1000, checkpoint=store)
    print(f"first half: {first}, checkpoint at {store}")
    trace = psample.resume(store, algorithm, args.draws - half)
    print(f"resumed:    {trace}")

    x1 = trace.positions[..., 0]
    print(f"log-density evaluations per step: {trace.info.num_evals.mean():.2f}")
    print(f"{'quantity':>10s} {'estimate':>9s} {'mcse':>7s} {'exact':>8s}")
    print(f"{'mean':>10s} {x1.mean():9.3f} {float(az.mcse(x1, method='mean')):7.3f} {0.0:8.3f}")
    print(f"{'sd':>10s} {x1.std():9.3f} {float(az.mcse(x1, method='sd')):7.3f} {3.0:8.3f}")
    for p in (0.01, 0.5, 0.99):
        exact = target.exact[f"q{p}[x_0]"]
        estimate = np.quantile(x1, p)
        mcse = float(az.mcse(x1, method="quantile", prob=p))
        print(f"{'q' + str(p):>10s} {estimate:9.3f} {mcse:7.3f} {exact:8.3f}")
    print(psample.diagnostics.summary(trace, kind="diagnostics"))
    if args.plot:
        tree = trace.to_datatree()
        psample.diagnostics.plot_trace(tree, args.plot, var_names=["x"])
        print(f"trace plot written to {args.plot}")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
