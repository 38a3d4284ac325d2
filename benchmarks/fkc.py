"""Feynman–Kac correctors vs the uncorrected SDE and SMC with Langevin (MALA) correctors.

Usage::

    python benchmarks/fkc.py [--particles 1024 4096] [--steps 100 400] [--replicates 4]
                             [--problems forty_mode product guidance] [--methods FKC ...]
                             [--seed 0] [--langevin 2.0] [--no-cost] [--throughput 1000000]

Problems (exact score models and exact references at ``t_min = 1e-3``, VP schedule, from
:func:`psample.models.fkc_problem`): the 40-mode 2-D mixture annealed to ``beta = 3``
(reference: the exact power, a pruned 64,000-component mixture), the product of two 2-mode
mixtures, and 1-D guidance at ``w = 3`` (quadrature).

Methods (:data:`METHODS`) at ``k = --steps``; every row prints both budgets per particle, score
evaluations and score + log-density evaluations (times the number of models):

- **FKC**: ``psample.smc.fkc_smc`` with ``k`` uniform Euler–Maruyama steps, systematic resampling
  every step (the paper's setting): ``k`` score evaluations, no log-density;
  **FKC quad**: the same with ``time_grid="quadratic"``; **FKC quad ess**: the same, resampling
  when the ESS falls below half the particles; **FKC quad langevin**: FKC quad with the noise
  ``c_t^2 = r g_t^2``, ``r = --langevin`` (default 2: a Langevin corrector inside every step,
  no extra evaluation, same weights); **FKC quad stein**, **FKC quad langevin stein**: the
  same with ``weights="stein"`` (divergences estimated from each step's own noise; ``k + 1``
  score evaluations, the initial population's scores included);
- **uncorrected**, **uncorrected quad**, **uncorrected quad langevin**: the same SDEs with no
  weights and no resampling (annealed drift / naive product / naive CFG);
- **SMC-MALA**: SMC over the levels ``pi_j ∝ prod_i q_{t_j}^(i)^b_i`` (``k/2`` levels from
  ``t = 1`` to ``t_min``), exact incremental weights ``pi_{j+1}(x)/pi_j(x)`` (needs the exact
  log-densities, which trained networks do not give), systematic resampling every level, then
  one BlackJAX MALA move per level with step size ``0.5 v_j`` (``v_j`` the smallest component
  variance of the level's target, known here): two ``value_and_grad`` per particle per level
  (at the particle, which gives the weight and the move's start, and at the proposal), so
  ``k`` score and ``k`` log-density evaluations; **SMC-MALA half**: ``k/4`` levels, i.e. the
  same score + log-density evaluations as FKC.

Errors (root mean square over the replicates, so Monte Carlo noise is included): 40-mode:
total variation between the particles' weighted nearest-mode histogram and that of 2·10^6
exact draws ("mode TV", with its standard error over the replicates "± se", delta method;
the column "TV of mean" compares the replicates' averaged histogram,
which isolates the bias), and the relative error of the mean within-mode squared distance
``E|x - nearest mean|^2``; product: ``E[x_0]``, ``Var[x_0]``, ``P(|x-(2,0)|<1)``; guidance:
``E[x]``, ``Var[x]``; "wall s": seconds per row, compilation included. Cost (skipped with
``--no-cost``): microseconds per particle per score evaluation, steady state (the best of two
identical runs of ``--replicates`` x 4096 particles x 100 evaluations per particle, after one
that compiles). ``--throughput N`` times FKC (score and Stein weights) on the 40-mode problem with ``N``
particles, 10 steps (a rate, not a converged run), one replicate: particle-steps per second.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
from blackjax.mcmc.mala import MALAState  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import psample  # noqa: E402
import psample.models  # noqa: E402
from psample.cli.fkc import uncorrected  # noqa: E402
from psample.smc.base import ParticleAlgorithm, resample_if, resampling_fn, reweight  # noqa: E402


class MALAParticles(NamedTuple):
    """SMC-MALA population: ``particles`` ``(N, *shape)``, ``logdensity`` ``(N,)`` of the current
    level at the particles (carried so a level costs exactly two evaluations of ``value_and_grad``),
    and the :class:`psample.smc.base` fields."""

    particles: jax.Array
    logdensity: jax.Array
    log_weights: jax.Array
    log_Z: jax.Array
    step: jax.Array
    eve: jax.Array
    num_resampled: jax.Array


def smc_mala(problem, num_levels: int) -> ParticleAlgorithm:
    """SMC over the diffusion levels with exact weights and one MALA move per level.

    Per particle per level: one ``value_and_grad`` of ``log pi_{j+1}`` at the particle (the
    incremental weight ``log pi_{j+1} - log pi_j``, ``log pi_j`` carried from the previous move,
    and the MALA move's start) and one at the MALA proposal: two score and two log-density
    evaluations of each model. The initial population's ``log pi_0`` costs one more density
    evaluation per particle, once.
    """
    schedule = problem.models[0].schedule
    exponents = problem.exponents
    total = sum(exponents)
    times = np.linspace(1.0, problem.t_min, num_levels + 1)
    v0 = min(float(np.linalg.eigvalsh(m.mixture.covs).min()) for m in problem.models)
    variances = np.array([(float(schedule.alpha(t)) ** 2 * v0 + float(schedule.sigma(t)) ** 2) / total for t in times])
    resample = resampling_fn("systematic")
    mala = blackjax.mala.build_kernel()
    shape = problem.models[0].shape

    def log_gamma(t, x):
        return sum(b * m.logdensity(t, x) for b, m in zip(exponents, problem.models))

    def init(key, n):
        x = jax.random.normal(key, (n,) + shape) * schedule.reference_std() / np.sqrt(total)
        zero = jnp.zeros((), jnp.int32)
        value = jax.vmap(lambda p: log_gamma(times[0], p))(x)
        return MALAParticles(x, value, jnp.full((n,), -jnp.log(n)), jnp.zeros(()), zero,
                             jnp.arange(n, dtype=jnp.int32), zero)  # fmt: skip

    def step(key, state):
        k_res, k_move = jax.random.split(key)
        n = state.particles.shape[0]
        t_new = jnp.asarray(times)[state.step + 1]
        logdensity = lambda x: log_gamma(t_new, x)
        value, grad = jax.vmap(jax.value_and_grad(logdensity))(state.particles)
        rw = reweight(state.log_weights, value - state.logdensity)
        (x, value, grad), lw, eve = resample_if(k_res, jnp.asarray(True), (state.particles, value, grad),
                                                rw.log_weights, state.eve, resample)  # fmt: skip
        step_size = 0.5 * jnp.asarray(variances)[state.step + 1]
        keys = jax.random.split(k_move, n)
        moved, _ = jax.vmap(lambda k, s: mala(k, s, logdensity, step_size))(keys, MALAState(x, value, grad))
        new = MALAParticles(moved.position, moved.logdensity, lw, state.log_Z + rw.log_Z_increment, state.step + 1,
                            eve, state.num_resampled + 1)  # fmt: skip
        return new, _Info(rw.ess, rw.log_Z_increment, jnp.asarray(True))

    return ParticleAlgorithm(init=init, step=step, num_steps=num_levels)


class _Info(NamedTuple):
    ess: jax.Array
    log_Z_increment: jax.Array
    is_resampled: jax.Array


def _fkc(problem, num_steps, **options):
    return psample.smc.fkc_smc([m.score for m in problem.models], problem.exponents,
                           schedule=problem.models[0].schedule, num_steps=num_steps, t_min=problem.t_min,
                           shape=problem.models[0].shape, **options)  # fmt: skip


def _errors_forty(problem, particles, weights, exact_hist, exact_spread):
    means = problem.models[0].at(problem.t_min).means
    x = np.asarray(particles)  # (R, N, 2)
    nearest = np.argmin(((x[..., None, :] - means) ** 2).sum(-1), axis=-1)
    spread = ((x - means[nearest]) ** 2).sum(-1)
    tv, rel, hists = [], [], []
    for r in range(x.shape[0]):  # a few replicates, host-side
        hist = np.bincount(nearest[r], weights=weights[r], minlength=means.shape[0])
        hists.append(hist)
        tv.append(0.5 * np.abs(hist - exact_hist).sum())
        rel.append(np.sum(weights[r] * spread[r]) / exact_spread - 1.0)
    rms = float(np.sqrt(np.mean(np.square(tv))))
    se = float(np.std(np.square(tv), ddof=1) / (2 * rms * np.sqrt(len(tv))))  # delta method
    return {"mode TV": rms, "± se": se,
            "TV of mean": float(0.5 * np.abs(np.mean(hists, axis=0) - exact_hist).sum()),
            "rel. err E|x-mode|^2": float(np.sqrt(np.mean(np.square(rel))))}  # fmt: skip


def _errors_moments(problem, particles, weights):
    x = np.asarray(particles)
    exact = problem.exact
    m = np.sum(weights * x[..., 0], axis=1)
    v = np.sum(weights * (x[..., 0] - m[:, None]) ** 2, axis=1)
    rmse = lambda est, ref: float(np.sqrt(np.mean((est - ref) ** 2)))
    out = {"E[x_0]": rmse(m, exact["mean"][0]), "Var[x_0]": rmse(v, exact["var"][0])}
    if "P(|x-(2,0)|<1)" in exact:
        inside = (((x - np.array([2.0, 0.0])) ** 2).sum(-1) < 1).astype(float)
        out["P(|x-(2,0)|<1)"] = rmse(np.sum(weights * inside, axis=1), exact["P(|x-(2,0)|<1)"])
    return out


#: Method label -> (description, builder(problem, k) -> (algorithm, weighted, score evaluations
#: per particle, score + log-density evaluations per particle)); ``k`` is the FKC step count.
METHODS = {
    "FKC": "psample.smc.fkc, k uniform steps, resampling every step (the authors' setting)",
    "FKC quad": "the same on time_grid='quadratic' (steps equally spaced in sqrt(t))",
    "FKC quad ess": "the same, resampling when the ESS < N/2",
    "FKC quad langevin": "FKC quad with noise c_t^2 = r g_t^2, r = --langevin (a Langevin corrector in every step)",
    "FKC quad stein": "FKC quad with weights='stein' (divergences from each step's own noise)",
    "FKC quad langevin stein": "FKC quad langevin with weights='stein'",
    "uncorrected": "the same SDE without weights or resampling, uniform grid",
    "uncorrected quad": "the same on the quadratic grid",
    "uncorrected quad langevin": "the same with noise c_t^2 = r g_t^2, r = --langevin",
    "SMC-MALA": "k/2 levels: equal score evaluations (and as many log-density evaluations on top)",
    "SMC-MALA half": "k/4 levels: equal score + log-density evaluations",
}


def _methods(problem, k, labels, langevin=2.0):
    """Label -> (algorithm, weighted, score evals, score + density evals) per particle at ``k`` steps."""
    m = len(problem.models)
    out = {}
    for label in labels:
        noise = langevin if "langevin" in label else "standard"
        if label.startswith("FKC"):
            options = {"time_grid": "quadratic" if "quad" in label else "uniform", "noise": noise}
            if label.endswith("stein"):
                options["weights"] = "stein"
            if label.endswith("ess"):
                options["resample_ess"] = 0.5
            evals = (k + 1) * m if label.endswith("stein") else k * m  # stein: + the initial scores
            out[label] = (_fkc(problem, k, **options), True, evals, evals)
        elif label.startswith("uncorrected"):
            grid = "quadratic" if "quad" in label else "uniform"
            out[label] = (uncorrected(problem, num_steps=k, time_grid=grid, noise=noise), False, k * m, k * m)
        else:
            levels = k // 4 if label.endswith("half") else k // 2
            out[label] = (smc_mala(problem, levels), True, 2 * levels * m, 4 * levels * m)
    return out


def _steady_cost(problem, replicates, labels, langevin, n=4096, k=100):
    """Microseconds per particle per score evaluation (second of two identical runs)."""
    out = {}
    for label, (algorithm, _, evals, _) in _methods(problem, k, labels, langevin).items():
        psample.run_particles(algorithm, jax.random.key(0), n, num_replicates=replicates, progress=False)
        best = float("inf")
        for seed in (1, 2):  # best of two steady-state runs (the machine is shared)
            start = time.perf_counter()
            psample.run_particles(algorithm, jax.random.key(seed), n, num_replicates=replicates, progress=False)
            best = min(best, time.perf_counter() - start)
        out[label] = best / (replicates * n * evals) * 1e6
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--problems", nargs="+", default=["forty_mode", "product", "guidance"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="added to every run's key")
    parser.add_argument("--langevin", type=float, default=2.0, help="r of the 'langevin' methods' noise c_t^2 = r g_t^2")
    parser.add_argument("--no-cost", dest="cost", action="store_false", help="skip the cost timing")
    parser.add_argument("--throughput", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(f"# {platform.machine()} {jax.devices()[0].device_kind}, jax {jax.__version__}, float64, "
          f"{args.replicates} replicates, langevin r = {args.langevin}")  # fmt: skip

    for name in args.problems:
        problem = psample.models.fkc_problem(name, psample.diffusion.VP())
        extra = {}
        if name == "forty_mode":
            draws = problem.reference.sample(np.random.default_rng(0), 2_000_000)
            means = problem.models[0].at(problem.t_min).means
            nearest = np.argmin(((draws[:, None, :] - means) ** 2).sum(-1), axis=-1)
            extra = {"exact_hist": np.bincount(nearest, minlength=40) / draws.shape[0],
                     "exact_spread": float(((draws - means[nearest]) ** 2).sum(-1).mean())}  # fmt: skip
        print(f"\n## {name}: {psample.models.FKC_PROBLEMS[name]}")
        cost = _steady_cost(problem, args.replicates, args.methods, args.langevin) if args.cost else {}
        if cost:
            print("cost, us per particle per score evaluation: " + ", ".join(f"{k} {v:.3f}" for k, v in cost.items()))
        header = None
        for n in args.particles:
            for k in args.steps:
                for label, (algorithm, weighted, evals, both) in _methods(problem, k, args.methods,
                                                                          args.langevin).items():
                    start = time.perf_counter()
                    result = psample.run_particles(algorithm, jax.random.key(k + n + args.seed), n,
                                                   num_replicates=args.replicates, progress=False)  # fmt: skip
                    w = np.exp(result.log_weights) if weighted else np.full(result.log_weights.shape, 1.0 / n)
                    if name == "forty_mode":
                        errors = _errors_forty(problem, result.particles, w, **extra)
                    else:
                        errors = _errors_moments(problem, result.particles, w)
                    if header is None:
                        header = ("| N | score evals/particle | score+density evals/particle | method | "
                                  + " | ".join(errors) + " | wall s |")  # fmt: skip
                        print(header)
                        print("|" + "---|" * (5 + len(errors)))
                    cells = " | ".join(f"{v:.4f}" for v in errors.values())
                    wall = time.perf_counter() - start
                    print(f"| {n} | {evals} | {both} | {label} | {cells} | {wall:.0f} |", flush=True)

    if args.throughput:
        problem = psample.models.fkc_problem("forty_mode", psample.diffusion.VP())
        for weights in ("score", "stein"):
            algorithm = _fkc(problem, 10, weights=weights)
            psample.run_particles(algorithm, jax.random.key(6), args.throughput, progress=False)
            start = time.perf_counter()
            psample.run_particles(algorithm, jax.random.key(7), args.throughput, progress=False)
            wall = time.perf_counter() - start
            rate = args.throughput * 10 / wall
            print(f"\nthroughput: FKC ({weights} weights) on forty_mode, {args.throughput} particles x 10 steps, "
                  f"1 replicate: {wall:.2f} s, {rate:.3g} particle-steps/s")


if __name__ == "__main__":
    main()
