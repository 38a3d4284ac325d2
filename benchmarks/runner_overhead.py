"""Overhead of the psample runner over a hand-written ``lax.scan`` around the same kernel.

Both sides run BlackJAX's Gaussian random-walk Metropolis (``blackjax.rmh`` family, additive
normal steps) on a d-dimensional standard normal, vmapped over many chains, and bring every
draw (positions and info) to the host. The hand-written side is the idiom from BlackJAX's
docs: one jitted ``lax.scan`` over all steps. psample adds chunking, per-step key derivation,
the log-density record, the progress machinery and the host copy per chunk.

Run::

    python benchmarks/runner_overhead.py            # 1,000 chains x 1,000 draws, d = 10
    python benchmarks/runner_overhead.py --quick    # 100 x 200

Prints the steady-state wall time of each (best of ``--repeats``, after a compiling call) and
the ratio psample / hand-written (goal: <= 1.10).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import blackjax
import jax
import jax.numpy as jnp

import psample


def hand_written(alg, num_chains, num_draws):
    """The BlackJAX idiom, jitted once: ``run(positions, key)`` -> host draws and infos."""
    step = jax.vmap(alg.step)

    @jax.jit
    def run(positions, rng_key):
        def one(state, key):
            state, info = step(jax.random.split(key, num_chains), state)
            return state, (state.position, info)

        state = jax.vmap(alg.init)(positions)
        _, (draws, infos) = jax.lax.scan(one, state, jax.random.split(rng_key, num_draws))
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (draws, infos))

    return lambda positions, rng_key: jax.device_get(run(positions, rng_key))


def with_psample(alg, initial_positions, rng_key, num_draws):
    return psample.sample(alg, initial_positions, rng_key, num_draws, progress=False)


def best_time(fn, repeats):
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(jax.random.PRNGKey(100 + i))
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100 chains x 200 draws")
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.draws = 100, 200
    print("command: python " + " ".join(["benchmarks/runner_overhead.py", *sys.argv[1:]]))
    print(f"machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"device {jax.devices()[0].device_kind}, float32")

    alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.5)
    x0 = jax.random.normal(jax.random.PRNGKey(0), (args.chains, args.dim))
    baseline = hand_written(alg, args.chains, args.draws)
    runs = {
        "hand-written lax.scan": lambda key: baseline(x0, key),
        "psample.sample": lambda key: with_psample(alg, x0, key, args.draws),
    }
    results = {}
    for name, fn in runs.items():
        start = time.perf_counter()
        fn(jax.random.PRNGKey(1))  # compiles
        first = time.perf_counter() - start
        results[name] = (first, best_time(fn, args.repeats))
    print(f"{args.chains} chains x {args.draws} draws, d={args.dim}")
    print(f"{'':24s} {'first call (s)':>15s} {'steady (s)':>11s}")
    for name, (first, steady) in results.items():
        print(f"{name:24s} {first:15.3f} {steady:11.3f}")
    ratio = results["psample.sample"][1] / results["hand-written lax.scan"][1]
    print(f"ratio psample / hand-written (steady state): {ratio:.3f}  (goal <= 1.10)")
    return ratio


if __name__ == "__main__":
    main()
