"""Chain of log-concave Markov chains vs BlackJAX MALA, GHMC, MCLMC and NUTS at an equal gradient budget.

One process, one machine, the same targets (``psample.models``), the same number of vmapped
chains and the same budget of gradient (score) evaluations per chain for every sampler. Each
chain yields ONE sample: the final jump ``x̂_m`` for the chain of log-concave Markov chains
(CoLCMC), the final state for the peers, so every sampler is judged on ``C`` independent draws
made with the same number of gradients each.

Budget: CoLCMC with its defaults (``m = 64`` measurements, 200 inner underdamped steps on the
first, 20 on each later one, one score per step plus one per jump: 1,524 scores per sample).
One exact smoothed score ``∇ log p_s`` of a Gaussian mixture costs about what one gradient of
the mixture's log-density costs, so the peers get 1,524 gradients per chain:

- ``mala``: ``blackjax.mala``, 1,524 steps (one gradient each), step size from a pilot grid
  (largest step with mean acceptance >= 0.574, pilot runs not counted);
- ``ghmc``: ``blackjax.ghmc`` (generalised HMC: one leapfrog step per iteration with partial
  momentum refreshment, i.e. MH-adjusted underdamped Langevin), 1,524 steps, ``alpha = 0.1``,
  ``delta = 0.07``, step size from a pilot grid (acceptance >= 0.8);
- ``mclmc``: ``blackjax.mclmc`` (isokinetic, microcanonical Langevin; McLachlan integrator, two
  gradients per step), 762 steps, ``L`` and step size from ``blackjax.mclmc_find_L_and_step_size``
  on a pilot chain (not counted);
- ``nuts``: ``blackjax.nuts`` with ``blackjax.window_adaptation`` on a pilot chain (not counted);
  as many steps as the budget allows at the pilot's mean number of integration steps; the
  gradients actually used are reported.

Not counting the peers' tuning favours them. Initial positions: ``centre`` is the target's
``initial_positions`` (around the mixture mean, near the midpoint of the modes), ``one mode``
puts every chain at the second mode ``-1``, and ``wide`` (``--inits wide``) draws them from
``N(mean, σ² I)``, over-dispersed, so that each peer chain settles in the basin it starts in.

Sections
--------
1. Two-mode mixture (2:1 weights, modes ``±1``, covariance ``0.05 I``) in d = 8, 32, 128: error
   of the mode proportion ``|p̂ - 2/3|`` (with its standard error ``sqrt(p̂(1-p̂)/C)``) and 1-D W2
   along the mode axis ``θ = 1/√d`` against an exact sample of the target.
2. Ill-conditioned Gaussian (d = 100, eigenvalues in [0.01, 1], rotated): W2 between the exact
   Gaussian and the Gaussian fitted to the ``C`` draws (mean and covariance).
3. The mode decision: the first measurement's steps against ``σ²``, chains started in the wrong
   mode (d = 32).
4. The smoothed score by importance sampling: error, relative ESS and cost per estimate for the
   three estimators (d = 2, 8, 32).
5. The sampler on the importance-sampling score (d = 2), where the estimator works and where it
   fails.

Run ``flock /tmp/psample-bench.lock .venv/bin/python benchmarks/logconcave_chain.py`` (about ten
minutes on two shared CPU cores) or ``--quick`` (fewer chains and dimensions, a smoke run).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

jax.config.update("jax_enable_x64", True)

import psample  # noqa: E402
import psample.models as models  # noqa: E402
from psample.mcmc import logconcave_chain as lc  # noqa: E402

M = 64
SCHEDULE = lc.default_steps_schedule(M)
BUDGET = int(SCHEDULE.sum() + M)  # one score per inner step, one per jump


def _timed(fn, *args):
    out = fn(*args)  # compile
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def _scan_final(step, states, key, num_steps, num_chains):
    def body(s, k):
        s, info = jax.vmap(step)(jax.random.split(k, num_chains), s)
        return s, info

    return jax.lax.scan(body, states, jax.random.split(key, num_steps))


def run_colcmc(target, positions, key, sigma, smoothed_score, num_measurements=M, schedule=None):
    alg = psample.logconcave_chain(
        sigma=sigma, num_measurements=num_measurements, smoothed_score=smoothed_score,
        steps_per_measurement=schedule,
    )  # fmt: skip
    num_chains = positions.shape[0]

    @jax.jit
    def go(positions, key):
        states = jax.vmap(alg.init)(positions)
        states, info = _scan_final(alg.step, states, key, num_measurements, num_chains)
        return states.position, jnp.sum(info.num_score_evals, axis=0).mean()

    (x, evals), seconds = _timed(go, positions, key)
    return np.asarray(x), float(evals), seconds


def _pilot_step(kernel, init, logdensity_fn, x0, key, grid, target_acc, num_steps=200, extra=()):
    """Largest step in ``grid`` whose pilot run (32 chains) has mean acceptance >= ``target_acc``.

    ``kernel(key, state, logdensity_fn, step_size, *extra)``: the step size is traced, so the
    whole grid runs in one compiled, vmapped scan.
    """
    x0 = x0[:32]
    keys = jax.random.split(key, 32)

    def accept(eps):
        states = jax.vmap(lambda x, k: init(x, logdensity_fn, k))(x0, keys)

        def body(s, k):
            s, info = jax.vmap(lambda kk, ss: kernel(kk, ss, logdensity_fn, eps, *extra))(jax.random.split(k, 32), s)
            return s, info.acceptance_rate

        _, acc = jax.lax.scan(body, states, jax.random.split(key, num_steps))
        return jnp.mean(acc[num_steps // 2 :])

    acc = np.asarray(jax.jit(jax.vmap(accept))(jnp.asarray(grid)))
    ok = [g for g, a in zip(grid, acc) if a >= target_acc]
    return max(ok) if ok else min(grid)


def _init(alg, x, key):
    try:
        return alg.init(x, key)
    except TypeError:
        return alg.init(x)


def run_peer(name, logdensity_fn, positions, key, budget, d):
    num_chains = positions.shape[0]
    pilot_key, run_key = jax.random.split(key)
    grid = [0.05 * 2 ** (i / 2) * d ** (-1 / 3) for i in range(-4, 7)]
    if name == "mala":
        eps = _pilot_step(
            blackjax.mcmc.mala.build_kernel(), lambda x, f, k: blackjax.mcmc.mala.init(x, f),
            logdensity_fn, positions, pilot_key, grid, 0.574,
        )  # fmt: skip
        alg, num_steps, per_step = blackjax.mala(logdensity_fn, eps), budget, 1
    elif name == "ghmc":
        metric = blackjax.mcmc.metrics.default_metric(jnp.ones(d))
        eps = _pilot_step(
            blackjax.mcmc.ghmc.build_kernel(), blackjax.mcmc.ghmc.init, logdensity_fn, positions, pilot_key,
            [4 * g for g in grid], 0.8, extra=(metric, 0.1, 0.07),
        )  # fmt: skip
        alg, num_steps, per_step = blackjax.ghmc(logdensity_fn, eps, jnp.ones(d), 0.1, 0.07), budget, 1
    elif name == "mclmc":
        kernel = blackjax.mcmc.mclmc.build_kernel(integrator=blackjax.mcmc.integrators.isokinetic_mclachlan)
        state0 = blackjax.mcmc.mclmc.init(positions[0], logdensity_fn, pilot_key)
        _, params, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, num_steps=2000, state=state0, rng_key=pilot_key, logdensity_fn=logdensity_fn,
            diagonal_preconditioning=False,
        )
        alg = blackjax.mclmc(logdensity_fn, L=params.L, step_size=params.step_size)
        num_steps, per_step = budget // 2, 2
        eps = float(params.step_size)
    elif name == "nuts":
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity_fn)
        (_, parameters), _ = warmup.run(pilot_key, positions[0], num_steps=500)
        alg = blackjax.nuts(logdensity_fn, **parameters)
        states = jax.vmap(alg.init)(positions[:32])
        _, info = jax.jit(lambda s: _scan_final(alg.step, s, pilot_key, 100, 32))(states)
        per_step = float(np.mean(info.num_integration_steps))
        num_steps = max(1, int(budget / per_step))
        eps = float(parameters["step_size"])
    else:
        raise ValueError(name)

    @jax.jit
    def go(positions, key):
        states = jax.vmap(lambda x, k: _init(alg, x, k))(positions, jax.random.split(key, num_chains))
        states, info = _scan_final(alg.step, states, key, num_steps, num_chains)
        if name == "nuts":
            evals = jnp.sum(info.num_integration_steps, axis=0).mean()
        else:
            evals = jnp.asarray(num_steps * per_step, jnp.float64)
        return states.position, evals

    (x, evals), seconds = _timed(go, positions, run_key)
    return np.asarray(x), float(evals), seconds, eps


def w2_1d(samples, reference):
    samples = np.sort(samples)
    q = (np.arange(samples.size) + 0.5) / samples.size
    return float(np.sqrt(np.mean((samples - np.quantile(reference, q)) ** 2)))


def gaussian_w2(m1, c1, m2, c2):
    root = scipy.linalg.sqrtm(c2)
    cross = scipy.linalg.sqrtm(root @ c1 @ root)
    return float(np.sqrt(max(0.0, np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(cross)))))


PEERS = ("mala", "ghmc", "mclmc", "nuts")


def section_modes(dims, num_chains, seed, init_names=("centre", "one mode")):
    print("\n### 1. Two-mode mixture, 2:1, modes ±1, covariance 0.05 I\n")
    print(f"{num_chains} chains, one draw each; budget {BUDGET} gradients (scores) per chain.\n")
    print("| d | init | sampler | gradients/chain | p̂(mode +1) | abs. error ± SE | W2 along θ | time (s) | tuning |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    rng = np.random.default_rng(seed)
    for d in dims:
        target = models.two_mode_mixture(d=d)
        theta = target.exact["mode_axis"]
        sigma = target.hints["logconcave_chain"]["sigma"]
        n_ref = 400_000
        ref = np.where(rng.uniform(size=n_ref) < 2 / 3, 1.0, -1.0) * math.sqrt(d) + math.sqrt(0.05) * rng.normal(size=n_ref)
        inits = {
            "centre": lambda: target.initial_positions(jax.random.PRNGKey(seed), num_chains),  # noqa: B023
            "one mode": lambda: jnp.tile(-jnp.ones(d), (num_chains, 1)),  # noqa: B023
            # Over-dispersed, N(mean, σ² I): each peer chain falls into the basin it starts in.
            "wide": lambda: jnp.asarray(target.exact["mean"])  # noqa: B023
            + sigma * jax.random.normal(jax.random.PRNGKey(seed), (num_chains, d)),  # noqa: B023
        }
        for init_name in init_names:
            positions = inits[init_name]()
            key = jax.random.PRNGKey(seed + d)
            rows = [("colcmc",) + run_colcmc(target, positions, key, sigma, target.exact["smoothed_score"]) + (f"σ²={sigma**2:.4g}",)]
            for peer in PEERS:
                x, evals, seconds, eps = run_peer(peer, target.logdensity_fn, positions, key, BUDGET, d)
                rows.append((peer, x, evals, seconds, f"step={eps:.3g}"))
            for name, x, evals, seconds, tuning in rows:
                proj = x @ theta
                p = float(np.mean(proj > 0))
                se = math.sqrt(max(p * (1 - p), 1e-12) / num_chains)
                err = abs(p - 2 / 3)
                w2 = w2_1d(proj, ref)
                results[d, init_name, name] = (err, se, w2)
                print(f"| {d} | {init_name} | {name} | {evals:.0f} | {p:.4f} | {err:.4f} ± {se:.4f} | {w2:.3f} | {seconds:.1f} | {tuning} |")
            sys.stdout.flush()
    return results


def section_gaussian(num_chains, seed):
    print("\n### 2. Ill-conditioned Gaussian, d = 100, eigenvalues 1 ... 0.01 (rotated)\n")
    target = models.ill_conditioned_gaussian(100, 100.0)
    cov, lam = target.exact["cov"], target.exact["eigenvalues"]
    smoothed = models.smoothed_gaussian(np.zeros(100), cov)
    positions = target.initial_positions(jax.random.PRNGKey(seed), num_chains)
    key = jax.random.PRNGKey(seed + 1)
    print(f"{num_chains} chains, one draw each; W2 between N(0, Σ) and the Gaussian fitted to the draws. ")
    print("For CoLCMC, 'limit' is the W2 of its exact output law N(0, Σ(Σ + σ²/m)^{-1}Σ) (an exact walk).\n")
    print("| sampler | gradients/chain | W2 (fitted) | limit | time (s) | tuning |")
    print("|---|---|---|---|---|---|")
    out = {}
    exact_draws = np.random.default_rng(seed).multivariate_normal(np.zeros(100), cov, size=num_chains)
    floor = gaussian_w2(exact_draws.mean(0), np.cov(exact_draws.T), np.zeros(100), cov)
    print(f"| exact i.i.d. draws (the estimation floor) | - | {floor:.3f} | | | |")
    out["exact draws"] = floor
    for sigma2 in (1.0, 0.1):
        x, evals, seconds = run_colcmc(target, positions, key, math.sqrt(sigma2), smoothed.score)
        w2 = gaussian_w2(x.mean(0), np.cov(x.T), np.zeros(100), cov)
        limit = float(np.sqrt(np.sum((np.sqrt(lam) - lam / np.sqrt(lam + sigma2 / M)) ** 2)))
        out[f"colcmc σ²={sigma2}"] = w2
        print(f"| colcmc | {evals:.0f} | {w2:.3f} | {limit:.3f} | {seconds:.1f} | σ²={sigma2}, m={M} |")
    for peer in PEERS:
        x, evals, seconds, eps = run_peer(peer, target.logdensity_fn, positions, key, BUDGET, 100)
        w2 = gaussian_w2(x.mean(0), np.cov(x.T), np.zeros(100), cov)
        out[peer] = w2
        print(f"| {peer} | {evals:.0f} | {w2:.3f} | | {seconds:.1f} | step={eps:.3g} |")
    sys.stdout.flush()
    return out


def section_mode_decision(num_chains, seed):
    print("\n### 3. The mode decision: first-measurement steps vs σ² (d = 32, all chains in the wrong mode)\n")
    target = models.two_mode_mixture(d=32)
    positions = jnp.tile(-jnp.ones(32), (num_chains, 1))
    theta = target.exact["mode_axis"]
    firsts = (20, 50, 100, 200, 400)
    print(f"{num_chains} chains, m = {M}, 20 steps per later measurement, step 0.5, friction 1; "
          f"|p̂ - 2/3| (SE ≈ {math.sqrt(2 / 9 / num_chains):.3f}).\n")  # fmt: skip
    print("| σ² | " + " | ".join(f"first = {f}" for f in firsts) + " |")
    print("|---|" + "---|" * len(firsts))
    for sigma2 in (10.0, 32.05, 64.0):
        cells = []
        for first in firsts:
            schedule = lc.default_steps_schedule(M, 20, first)
            x, _, _ = run_colcmc(target, positions, jax.random.PRNGKey(seed), math.sqrt(sigma2), target.exact["smoothed_score"], schedule=schedule)
            cells.append(f"{abs(float(np.mean(x @ theta > 0)) - 2 / 3):.3f}")
        print(f"| {sigma2:g} | " + " | ".join(cells) + " |")
        sys.stdout.flush()


def section_importance(seed):
    print("\n### 4. Smoothed score by importance sampling (Gaussian target N(μ, diag λ), λ in [0.5, 2])\n")
    print("Relative RMSE of 200 independent estimates at y = μ + 1.5, mean relative ESS, and the time of one")
    print("batch of 200 estimates (compiled).\n")
    print("| d | s | N | ESS/N | tweedie RMSE | identity RMSE | mixed RMSE | time tweedie / mixed (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for d in (2, 8, 32):
        lam = np.logspace(-0.3, 0.3, d)
        mu = np.linspace(-1, 1, d)
        smoothed = models.smoothed_gaussian(mu, lam)
        y = jnp.asarray(mu + 1.5)
        for s in (0.5, 2.0):
            exact = np.asarray(smoothed.score(y, s))
            for n in (100, 10_000):
                rmse, times, ess_value = {}, {}, None
                for est in lc.SCORE_ESTIMATORS:
                    source = lc.importance_smoothed_score(lambda x: smoothed.logdensity(x, 0.0), n, est)  # noqa: B023
                    fn = jax.jit(jax.vmap(lambda k: source.score(k, y, s)))  # noqa: B023
                    (out, ess, _), seconds = _timed(fn, jax.random.split(jax.random.PRNGKey(seed), 200))
                    err = np.linalg.norm(np.asarray(out) - exact, axis=1) / np.linalg.norm(exact)
                    rmse[est], times[est], ess_value = float(np.sqrt(np.mean(err**2))), seconds, float(np.mean(ess))
                print(f"| {d} | {s} | {n} | {ess_value:.3f} | {rmse['tweedie']:.4f} | {rmse['identity']:.4f} | "
                      f"{rmse['mixed']:.4f} | {1e3 * times['tweedie']:.0f} / {1e3 * times['mixed']:.0f} |")  # fmt: skip
        sys.stdout.flush()


def section_importance_sampler(seed):
    print("\nThe sampler on the importance-sampling score (d = 2, weights 0.3 / 0.7, m = 16, 500 chains):\n")
    print("| components | score | N | P(x̂_0 < 0) | min relative ESS | time (s) |")
    print("|---|---|---|---|---|---|")
    for var, centre in ((0.5, 1.5), (0.1, 2.0)):
        target = models.gaussian_mixture([0.3, 0.7], [[-centre, 0.0], [centre, 0.0]], [var, var])
        sigma = target.hints["logconcave_chain"]["sigma"]
        positions = target.initial_positions(jax.random.PRNGKey(seed), 500)
        for label, kwargs in (
            ("exact", {"smoothed_score": target.exact["smoothed_score"]}),
            ("IS mixed", {"num_score_samples": 64}),
            ("IS mixed", {"num_score_samples": 512}),
            ("IS tweedie", {"num_score_samples": 512, "score_estimator": "tweedie"}),
        ):
            logdensity = None if "smoothed_score" in kwargs else target.logdensity_fn
            alg = psample.logconcave_chain(logdensity, sigma=sigma, num_measurements=16,
                                           steps_per_measurement=[100] + [15] * 15, **kwargs)  # fmt: skip

            @jax.jit
            def go(positions, key, alg=alg):
                states = jax.vmap(alg.init)(positions)
                states, info = _scan_final(alg.step, states, key, 16, 500)
                return states.position, jnp.min(jnp.nan_to_num(info.score_ess, nan=1.0))

            (x, ess), seconds = _timed(go, positions, jax.random.PRNGKey(seed + 1))
            n = kwargs.get("num_score_samples", "-")
            print(f"| N(±{centre}, {var}) | {label} | {n} | {float(np.mean(np.asarray(x)[:, 0] < 0)):.3f} | "
                  f"{float(ess):.4f} | {seconds:.1f} |")  # fmt: skip
        sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer chains, d = 8 only")
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sections", default="12345")
    parser.add_argument("--inits", default="centre,one mode", help="section 1 inits: centre, one mode, wide")
    parser.add_argument("--dims", default=None, help="section 1 dimensions, e.g. 32 (default 8,32,128)")
    args = parser.parse_args(argv)
    num_chains = 100 if args.quick else args.chains
    dims = (8,) if args.quick else (8, 32, 128)
    if args.dims:
        dims = tuple(int(v) for v in args.dims.split(","))
    init_names = tuple(args.inits.split(","))
    print(f"command: {shlex.join([os.path.basename(sys.executable), 'benchmarks/logconcave_chain.py', *sys.argv[1:]])}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, blackjax {blackjax.__version__}, "
          f"{jax.devices()[0].platform}")  # fmt: skip
    t0 = time.perf_counter()
    if "1" in args.sections:
        results = section_modes(dims, num_chains, args.seed, init_names)
        for d in dims:
            for init in init_names:
                best = min(PEERS, key=lambda p: results[d, init, p][0])  # noqa: B023
                ours, theirs = results[d, init, "colcmc"][0], results[d, init, best][0]
                print(f"\nd={d}, {init}: CoLCMC error {ours:.4f} vs best peer ({best}) {theirs:.4f}: "
                      f"ratio {ours / max(theirs, 1e-12):.3f} (goal <= 1/3)")  # fmt: skip
    if "2" in args.sections:
        section_gaussian(num_chains, args.seed)
    if "3" in args.sections:
        section_mode_decision(num_chains, args.seed)
    if "4" in args.sections:
        section_importance(args.seed)
    if "5" in args.sections:
        section_importance_sampler(args.seed)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
