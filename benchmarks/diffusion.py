"""Diffusion samplers for unnormalised densities: reverse diffusion, DDS, PIS and tempered SMC.

Usage::

    # 1. train (resumable: rerun with a larger --iterations to continue from the checkpoints)
    python benchmarks/diffusion.py train --targets gmm25 gmm40 --iterations 500
    python benchmarks/diffusion.py train --targets funnel many_well --iterations 500
    # 2. evaluate every method side by side, in one run
    python benchmarks/diffusion.py eval [--budget 100000] [--replicates 4]

Targets (``psample.models``, each with exact ``log_Z`` and exact draws): ``gmm25`` (d = 2),
``gmm40`` (d = 2), ``funnel`` (Neal's funnel d = 10, ``x_0 ~ N(0, 3²)``) and ``many_well``
(d = 32, ``log Z = 164.6957``). Each target has one reference scale ``s`` (``SCALES``: the
spread of the target), given to every method alike: DDS's ``init_std``, PIS's diffusion,
reverse diffusion's ``data_std`` and VE ``sigma_max = 3 s`` (its reference ``N(0, 9 s² I)``),
and tempered SMC's prior ``N(0, s² I)``.

Methods, at (about) equal target-evaluation budgets for *sampling* (``--budget`` evaluations of
the log-density with its gradient per replicate; training is reported separately):

- ``DDS`` and ``PIS`` (``psample.diffusion.train_sampler``, KL loss, ``K = 50`` steps, batch
  128, Adam 1e-3; checkpoints in ``--cache``; the recipe options change the loss, exploration,
  learning rate, and ``--backward-smc M`` adds backward paths from ``M`` tempered-SMC draws
  to every batch): ``N = budget / (K + 1)`` particles;
- ``reverse diffusion`` (``psample.diffusion.reverse_diffusion``, VE schedule, ``K = 25``
  steps, ``M = 16`` importance draws per particle and step, SMC correction):
  ``N = budget / (K (M + 1))``;
- ``tempered SMC`` (``psample.smc.tempered_smc``, adaptive, HMC with 5 integration steps, 2 moves
  per level, prior ``N(0, s² I)``): a calibration run of ``--smc-particles`` particles gives
  its evaluations per particle, then ``N = budget / that`` (the count it really spent is
  printed; adaptive schedules vary).

Reported per method and target: ``|Δlog Z|`` of the importance-weighted estimate (mean over
``--replicates`` independent replicates, with their standard deviation), ``Δ`` of the ELBO
(bound, learned samplers), W2 between 1000 importance-resampled draws and 1000 exact draws
(exact optimal assignment, ``scipy.optimize.linear_sum_assignment``), mode coverage (GMMs:
modes holding at least a quarter of their true share of 2000 resampled draws; many-well: share
of negative-well coordinates vs exact 0.1557), the final ESS, evaluations, and wall times
(training, and sampling: best of ``--repeats`` runs after a compiling one).

``all`` trains and evaluates target by target in one process (one benchmark slot on a shared
machine; a run cut short keeps whole rows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import signal
import threading

import jax

# `train --float32` trains in float32 (about 1.5x faster on CPU); evaluation always runs in
# float64 (`eval --float32` only picks that recipe's files; the parameters are read back in
# float64), so log Z keeps its precision.
jax.config.update("jax_enable_x64", not (sys.argv[1:2] == ["train"] and "--float32" in sys.argv))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

import psample  # noqa: E402
from psample import models  # noqa: E402
from psample.diffusion import VE, reverse_diffusion, train_sampler  # noqa: E402

TARGETS = {
    "gmm25": lambda: models.gmm25(),
    "gmm40": lambda: models.gmm40(),
    "funnel": lambda: models.neal_funnel(10),
    "many_well": lambda: models.many_well(32),
}
SCALES = {"gmm25": 7.0, "gmm40": 23.0, "funnel": 3.0, "many_well": 1.5}
NUM_STEPS, BATCH, RD_STEPS, RD_SAMPLES = 50, 128, 25, 16


def _recipe(args):
    """Training options and the file-name tag that keeps each recipe's checkpoints apart."""
    recipe = dict(loss=args.loss, num_steps=args.steps, batch_size=args.batch, width=args.width)
    tag = "" if (args.loss, args.steps, args.batch, args.width, args.lr, args.lr_decay, args.exploration,
                 args.float32, args.backward_smc, args.init_std) == ("kl", NUM_STEPS, BATCH, 64, 1e-3, 0, 0.0, False, 0, 0.0) else (
        f"-{args.loss}-K{args.steps}-b{args.batch}-w{args.width}-lr{args.lr:g}-dec{args.lr_decay}"
        f"-ex{args.exploration:g}-{args.exploration_decay}{'-f32' if args.float32 else ''}"
        f"{f'-bsmc{args.backward_smc}' if args.backward_smc else ''}{f'-s{args.init_std:g}' if args.init_std else ''}")  # fmt: skip
    # Learning rate: constant, or cosine-decayed to lr/10 over --lr-decay iterations.
    lr = optax.cosine_decay_schedule(args.lr, args.lr_decay, alpha=0.1) if args.lr_decay else args.lr
    recipe["optimizer"] = optax.adam(lr)
    if args.exploration:
        decay = args.exploration_decay
        recipe["exploration"] = optax.linear_schedule(args.exploration, 0.0, decay) if decay else args.exploration
    return recipe, tag


def _train(args):
    os.makedirs(args.cache, exist_ok=True)
    recipe, tag = _recipe(args)
    for name in args.targets:
        target = TARGETS[name]()
        d = target.exact["mean"].shape[0] if "mean" in target.exact else None
        scale = args.init_std or SCALES[name]
        extra = {}
        if args.backward_smc:  # once per target, outside the training clock
            extra["target_samples"], smc_evals = _smc_draws(target, scale, args.backward_smc)
            print(f"{name}: backward paths from {args.backward_smc} tempered-SMC draws ({smc_evals:,.0f} "
                  "target evaluations, not counted in the sampling budget)", flush=True)  # fmt: skip
        for method in args.methods:
            path = os.path.join(args.cache, f"{name}-{method}{tag}.npz")
            times_path = path + ".json"
            spent = json.load(open(times_path)) if os.path.exists(times_path) else {"seconds": 0.0, "cpu_seconds": 0.0}
            spent.setdefault("cpu_seconds", float("nan"))  # files from before CPU time was recorded
            began, cpu_began = time.perf_counter(), time.process_time()
            # --time-limit: a SIGINT after that many seconds stops training like Ctrl-C does,
            # after the last whole chunk (kept in the checkpoint, which the next slot resumes).
            timer = None
            if args.time_limit:
                timer = threading.Timer(args.time_limit, lambda: os.kill(os.getpid(), signal.SIGINT))
                timer.start()
            try:
                sampler = train_sampler(
                    target.logdensity_fn, d, jax.random.key(0), method=method, num_iterations=args.iterations,
                    init_std=scale, checkpoint=path, progress=not args.no_progress, **recipe, **extra,
                )  # fmt: skip
            finally:
                if timer is not None:
                    timer.cancel()
            spent["seconds"] += time.perf_counter() - began
            spent["cpu_seconds"] += time.process_time() - cpu_began
            spent["iterations"] = sampler.num_iterations
            json.dump(spent, open(times_path, "w"))
            sampler.save(os.path.join(args.cache, f"{name}-{method}{tag}-sampler.npz"))
            print(f"{name} {method}{tag}: {sampler.num_iterations} iterations, {spent['seconds']:.0f} s wall "
                  f"({spent['cpu_seconds']:.0f} s CPU) training in all, last losses "
                  f"{np.round(sampler.losses[-3:], 3).tolist()}", flush=True)  # fmt: skip


def _smc_draws(target, scale, num):
    """``num`` resampled draws of psample's tempered SMC (``num`` particles, fixed seed) for
    ``train_sampler(target_samples=...)``, and the target evaluations they cost."""
    result = psample.run_particles(_tempered(target, scale, num), jax.random.key(11), num, progress=False)
    draws = np.asarray(result.resample(jax.random.key(12), num)[0], dtype=np.float64)
    return draws, float(np.nansum(np.asarray(result.info.num_evals)))


def _w2(a, b):
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def _coverage(name, target, draws):
    if name.startswith("gmm"):
        means = target.exact["means"]
        nearest = np.argmin(((draws[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(nearest, minlength=len(means))
        return f"{int((counts >= 0.25 * len(draws) / len(means)).sum())}/{len(means)}"
    if name == "many_well":
        return f"neg {float((draws[:, 0::2] < 0).mean()):.3f}"
    return "-"


REPEATS = 1


def _timed(fn):
    fn()  # compile
    best, out = float("inf"), None
    for _ in range(REPEATS):
        began = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - began)
    return out, best


def _tempered(target, scale, num_particles):
    d = target.exact["mean"].shape[0]
    logprior = lambda x: -0.5 * jnp.sum(x**2) / scale**2 - 0.5 * d * jnp.log(2 * jnp.pi * scale**2)
    loglik = lambda x: target.logdensity_fn(x) - logprior(x)
    sampler = lambda key, n: scale * jax.random.normal(key, (n, d))
    return psample.smc.tempered_smc(logprior, loglik, initial_sampler=sampler, mcmc="hmc", num_mcmc_steps=2,
                                mcmc_parameters={"num_integration_steps": 5},
                                resampling="systematic")  # as in the BENCHMARKS.md rows  # fmt: skip


def _row(method, name, target, result, draws, evals, train_s, sample_s, elbo=None):
    log_z = target.exact["log_Z"]
    errors = np.asarray(result.log_Z) - log_z
    exact = np.asarray(target.exact["sample"](jax.random.key(99), len(draws)))
    w2 = _w2(np.asarray(draws), exact)
    ess = float(np.mean(1.0 / np.sum(np.exp(2 * np.asarray(result.log_weights)), axis=1)))
    bound = "-" if elbo is None else f"{abs(elbo - log_z):.3f}"
    print(f"| {name} | {method} | {np.mean(np.abs(errors)):.3f} ± {np.std(errors):.3f} | {bound} | {w2:.3f} | "
          f"{_coverage(name, target, np.asarray(draws))} | {ess:.0f}/{result.num_particles} | {evals:,.0f} | "
          f"{train_s} | {sample_s:.2f} |", flush=True)  # fmt: skip


def _eval(args, header=True):
    if header:
        print("| target | method | IW abs(Δlog Z) ± sd | ELBO abs(Δ) | W2 | modes | final ESS/N | evals/replicate | train s | sample s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    key = jax.random.key(args.seed)
    _, tag = _recipe(args)
    for name in args.targets:
        target = TARGETS[name]()
        scale = SCALES[name]
        d = target.exact["mean"].shape[0]
        for method in args.methods:
            path = os.path.join(args.cache, f"{name}-{method}{tag}-sampler.npz")
            if not os.path.exists(path):
                print(f"| {name} | {method.upper()} | not trained (run `train` first) |", flush=True)
                continue
            sampler = psample.diffusion.TrainedSampler.load(path, target.logdensity_fn)
            spent = json.load(open(os.path.join(args.cache, f"{name}-{method}{tag}.npz.json")))
            k = sampler.process.num_steps
            n = args.budget // (k + 1)
            result, seconds = _timed(lambda: sampler.sample(jax.random.fold_in(key, 1), n, num_replicates=args.replicates,
                                                                   progress=False))
            draws = result.resample(jax.random.fold_in(key, 2), 1000)[0]
            cpu = spent.get("cpu_seconds", float("nan"))
            label = f"{method.upper()} ({sampler.num_iterations} it{', ' + sampler.loss if tag else ''})"
            _row(label, name, target, result, draws, n * (k + 1),
                 f"{spent['seconds']:.0f}" + ("" if cpu != cpu else f" ({cpu:.0f} CPU)"), seconds, elbo=result.elbo)  # fmt: skip
        if args.learned_only:
            continue
        n = max(2, args.budget // (RD_STEPS * (RD_SAMPLES + 1)))
        algorithm = reverse_diffusion(target.logdensity_fn, dim=d, schedule=VE(0.01, 3 * scale), num_steps=RD_STEPS,
                                      num_score_samples=RD_SAMPLES, data_std=scale)  # fmt: skip
        run = lambda: psample.run_particles(algorithm, jax.random.fold_in(key, 3), n, num_replicates=args.replicates,
                                            progress=False)  # fmt: skip
        result, seconds = _timed(run)
        draws = result.resample(jax.random.fold_in(key, 4), 1000)[0]
        evals = float(np.nansum(np.asarray(result.info.num_evals)[0]))
        _row("reverse diffusion (VE)", name, target, result, draws, evals, "0", seconds)
        # Calibrate: evaluations per particle of one adaptive run, then N to spend the budget.
        algorithm = _tempered(target, scale, args.smc_particles)
        probe = psample.run_particles(algorithm, jax.random.fold_in(key, 7), args.smc_particles, progress=False)
        per_particle = float(np.nansum(np.asarray(probe.info.num_evals))) / args.smc_particles
        n = int(min(max(args.budget / per_particle, 50), 20_000))
        run = lambda: psample.run_particles(algorithm, jax.random.fold_in(key, 5), n, num_replicates=args.replicates,
                                            progress=False)  # fmt: skip
        result, seconds = _timed(run)
        draws = result.resample(jax.random.fold_in(key, 6), 1000)[0]
        evals = float(np.nanmean(np.nansum(np.asarray(result.info.num_evals), axis=1)))
        _row("tempered SMC (HMC)", name, target, result, draws, evals, "0", seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    train.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    train.add_argument("--iterations", type=int, default=500)
    train.add_argument("--cache", default="/tmp/psample-diffusion-bench")
    train.add_argument("--no-progress", action="store_true")
    ev = sub.add_parser("eval")
    ev.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    ev.add_argument("--budget", type=int, default=100_000)
    ev.add_argument("--replicates", type=int, default=4)
    ev.add_argument("--smc-particles", type=int, default=256, help="tempered SMC's calibration run")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--cache", default="/tmp/psample-diffusion-bench")
    ev.add_argument("--repeats", type=int, default=1)
    both = sub.add_parser("all")
    for option, kwargs in [("--targets", dict(nargs="+", default=list(TARGETS), choices=list(TARGETS))),
                           ("--iterations", dict(type=int, default=500)), ("--budget", dict(type=int, default=100_000)),
                           ("--replicates", dict(type=int, default=4)), ("--smc-particles", dict(type=int, default=256)),
                           ("--seed", dict(type=int, default=0)), ("--cache", dict(default="/tmp/psample-diffusion-bench")),
                           ("--repeats", dict(type=int, default=1))]:  # fmt: skip
        both.add_argument(option, **kwargs)
    both.add_argument("--no-progress", action="store_true")
    recipe_options = [
        ("--methods", dict(nargs="+", default=["dds", "pis"], choices=["dds", "pis"])),
        ("--loss", dict(default="kl", choices=["kl", "log_variance", "trajectory_balance"])),
        ("--steps", dict(type=int, default=NUM_STEPS, help="sampler steps K")),
        ("--batch", dict(type=int, default=BATCH)), ("--width", dict(type=int, default=64)),
        ("--lr", dict(type=float, default=1e-3)),
        ("--lr-decay", dict(type=int, default=0, help="cosine decay to lr/10 over this many iterations (0: constant)")),
        ("--exploration", dict(type=float, default=0.0, help="off-policy exploration std (log_variance/TB)")),
        ("--exploration-decay", dict(type=int, default=0, help="linear decay of the exploration to 0 (iterations)")),
        ("--float32", dict(action="store_true", help="train in float32 (evaluation is float64)")),
        ("--init-std", dict(type=float, default=0.0, help="the learned samplers' reference scale (and the "
                            "backward-SMC prior's); default: the target's scale in SCALES")),
        ("--backward-smc", dict(type=int, default=0, help="off-policy losses: backward paths from this many "
                                "tempered-SMC draws (train_sampler's target_samples; 0: none)")),
    ]  # fmt: skip
    for sub_parser in (train, ev, both):
        for option, kwargs in recipe_options:
            sub_parser.add_argument(option, **kwargs)
    for sub_parser in (train, both):
        sub_parser.add_argument("--time-limit", type=float, default=0.0,
                                help="stop training after this many seconds per sampler (checkpointed)")
    for sub_parser in (ev, both):
        sub_parser.add_argument("--learned-only", action="store_true", help="skip reverse diffusion and SMC")
    args = parser.parse_args(argv)
    if args.command == "all" and args.float32:
        parser.error("--float32 trains in float32 and evaluates in float64: run `train` then `eval`")
    print(f"# python benchmarks/diffusion.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"# jax {jax.__version__}, {jax.devices()[0].platform}, {'x64' if jax.config.jax_enable_x64 else 'float32'}")
    global REPEATS
    REPEATS = getattr(args, "repeats", 1)
    if args.command == "train":
        _train(args)
    elif args.command == "eval":
        _eval(args)
    else:  # target by target, so that a run cut short still has whole rows
        targets = list(args.targets)
        for i, name in enumerate(targets):
            args.targets = [name]
            _train(args)
            _eval(args, header=i == 0)


if __name__ == "__main__":
    main()
