"""Adapted polar slice now against polar slice at a base commit, on issue #28's non-hierarchical gym targets.

Issue #28 asks that the posteriors where adapted polar slice beats NUTS (an ill-conditioned
Gaussian, a logistic regression, an item-response model, a banana, Neal's funnel) lose no more than
10 % of their polar / NUTS ratio through the hierarchical work. ``benchmarks/gym_wins.py`` measures
the ratios; this script answers the question of a loss directly, by running ``psample.polar_slice``
of the working tree and of a base commit (default ``b95a55a``, the first commit of the issue's work)
side by side on the same targets, starts and keys:

- **draws**: whether the two produce the same draws and evaluation counts, bit for bit (warm-up
  included: the draws can only agree if the adapted centre, scale and ``w`` agree);
- **program**: whether the jitted sampling chunk lowers to the same StableHLO text (no debug
  locations), i.e. whether XLA is handed the same computation;
- **seconds**: the sampling seconds of each, processes alternating (head, base, base, head, ...),
  compile time excluded; the median over ``--repeats``.

Where draws and program agree, ESS is the same and the ratio to NUTS (which is BlackJAX's, unchanged)
can only move with the seconds, which then differ by noise alone. The base's source comes from
``git archive``; each side runs in its own interpreter with its ``psample`` first on ``sys.path``.
Targets, starts and keys are ``benchmarks/gym_wins.py``'s (8 chains from N(0, 1), 500 warm-up steps
of ``psample.polar_slice(logdensity, w=10.0)``'s adaptation, ``--draws`` draws in 10 chunks).

Run: ``python benchmarks/polar_slice_regression.py`` (every case, base ``b95a55a``), or e.g.
``python benchmarks/polar_slice_regression.py --base HEAD~10 --cases logreg gaussian --repeats 5``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CASES = ("gaussian", "logreg", "irt", "banana", "funnel")


def child(root, out, cases, seed, num_draws, german):
    """Sample every case with ``root``'s psample; save draws, evaluations, seconds and program hashes."""
    sys.path.insert(0, root)
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    import psample

    if not os.path.abspath(psample.__file__).startswith(os.path.abspath(root) + os.sep):
        raise RuntimeError(f"imported {psample.__file__}, not the psample under {root}")
    sys.path.insert(1, HERE)
    import gym_wins

    german_data = dict(np.load(german))
    num_chains, num_chunks, num_warmup = 8, 10, 500
    saved = {}
    for case in cases:
        logdensity, _, dim = gym_wins.flat_logdensity(gym_wins.gym_target(case, german_data))
        init_key, warm_key, draw_key = jax.random.split(jax.random.key(seed), 3)  # gym_wins.run_case's keys
        flat0 = jax.random.normal(init_key, (num_chains, dim), jnp.float64)
        algorithm = psample.polar_slice(logdensity, w=10.0)
        (states, parameters), _ = algorithm.adaptation.run(warm_key, flat0, num_warmup)
        tuned = algorithm.with_parameters(parameters)

        def one(state, key):
            state, info = jax.vmap(tuned.step)(jax.random.split(key, num_chains), state)
            return state, (state.position, info.num_evals)

        chunk = num_draws // num_chunks
        lowered = jax.jit(lambda s, k: jax.lax.scan(one, s, jax.random.split(k, chunk))).lower(states, draw_key)
        program = hashlib.sha256(lowered.as_text().encode()).hexdigest()
        run = lowered.compile()
        seconds, draws, evals = 0.0, [], []
        for c in range(num_chunks):
            start = time.perf_counter()
            states, (x, e) = jax.block_until_ready(run(states, jax.random.fold_in(draw_key, c)))
            seconds += time.perf_counter() - start
            draws.append(np.asarray(x))
            evals.append(np.asarray(e))
        saved[f"{case}/draws"] = np.concatenate(draws)
        saved[f"{case}/evals"] = np.concatenate(evals)
        saved[f"{case}/seconds"] = seconds
        saved[f"{case}/program"] = program
        saved[f"{case}/dim"] = dim
    np.savez(out, **saved)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="b95a55a", help="the commit to compare with (default b95a55a)")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="processes per side (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--german", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.cases, args.seed, args.draws, args.german)
        return
    if args.repeats < 1 or args.draws < 10 or args.draws % 10:
        parser.error("--repeats must be >= 1 and --draws a positive multiple of 10")

    import numpy as np

    import jax

    sys.path.insert(0, HERE)
    from polar_slice import _cpu_model

    from psample.models.hierarchical import german_credit_numeric_data

    base = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", args.base], check=True,
                          capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "psample"], check=True,
                           capture_output=True, text=True).stdout.strip()
    print("command: python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"machine: {_cpu_model()}, {os.cpu_count()} logical CPUs; jax {jax.__version__}")
    print(f"8 chains, 500 warm-up steps, {args.draws} draws per chain in 10 chunks, seed {args.seed}; "
          f"{args.repeats} processes per side, alternating; float64 samplers, the gym's float32 log-densities")
    print(f"head: the working tree at {head}{' (psample/ modified)' if dirty else ''}; base: {base}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        base_root = os.path.join(tmp, "base")
        os.makedirs(base_root)
        archive = subprocess.run(["git", "-C", REPO, "archive", base], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base_root], input=archive, check=True)
        german = os.path.join(tmp, "german.npz")
        np.savez(german, **german_credit_numeric_data())
        runs = {"head": [], "base": []}
        for r in range(args.repeats):
            for side in (("head", "base") if r % 2 == 0 else ("base", "head")):
                out = os.path.join(tmp, f"{side}{r}.npz")
                subprocess.run([sys.executable, __file__, "--child", REPO if side == "head" else base_root, out,
                                "--german", german, "--seed", str(args.seed), "--draws", str(args.draws),
                                "--cases", *args.cases], check=True)
                runs[side].append(dict(np.load(out)))
                print(f"  {side} run {r + 1} of {args.repeats} done", flush=True)
    print(f"\n{'case':<9} {'d':>4} {'evals/step':>10} {'same draws':>10} {'same program':>12} "
          f"{'head s':>8} {'base s':>8} {'base s / head s':>15}")
    for case in args.cases:
        h, b = runs["head"], runs["base"]
        same_draws = all(np.array_equal(x[f"{case}/draws"], h[0][f"{case}/draws"])
                         and np.array_equal(x[f"{case}/evals"], h[0][f"{case}/evals"]) for x in h + b)
        same_program = len({str(x[f"{case}/program"]) for x in h + b}) == 1
        head_s = statistics.median(float(x[f"{case}/seconds"]) for x in h)
        base_s = statistics.median(float(x[f"{case}/seconds"]) for x in b)
        print(f"{case:<9} {int(h[0][f'{case}/dim']):>4} {float(np.mean(h[0][f'{case}/evals'])):>10.2f} "
              f"{'yes' if same_draws else 'NO':>10} {'yes' if same_program else 'NO':>12} "
              f"{head_s:>8.3f} {base_s:>8.3f} {base_s / head_s:>15.2f}")
    print("\nseconds: median over the repeats of the sampling seconds (compile excluded); "
          "a ratio above 1 means head is faster", flush=True)


if __name__ == "__main__":
    main()
