"""Gibbsian polar slice sampling side by side with hit-and-run slice, elliptical slice and NUTS.

One process, one machine, the same targets (``psample.models``) and the same number of vmapped
chains for every sampler; every sampler runs as ``jax.vmap`` over chains inside one jitted
``lax.scan``, and each scan is compiled before it is timed (``block_until_ready``).

Samplers
--------
- ``polar_slice``: ``psample.polar_slice`` (Schär, Habeck and Rudolf 2023) with the target's
  ``hints["polar_slice_w"]`` (the paper's ``w`` for the Cauchy and the funnel).
- ``hit_and_run``: ``blackjax.slice_sampling`` with a uniformly random direction and Neal's
  stepping-out (the paper's HRUSS), the same window ``w``, stepping-out limit 1000.
- ``elliptical``: ``blackjax.elliptical_slice`` with a Gaussian reference ``N(0, s² I)``: the
  target is written as that prior times ``ρ / prior`` (``s = 1`` for the Cauchy and the funnel,
  the paper's "naive" ESS; the model's own prior ``s`` for logistic regression).
- ``nuts``: ``blackjax.nuts`` after ``blackjax.window_adaptation`` (diagonal mass matrix) per chain.
- ``polar_adapted``: ``psample.polar_slice`` after its own warm-up adaptation
  (``psample.mcmc.polar_slice_adaptation``: windowed, cross-chain, robust centre, scale and
  ``w``; ``structure="auto"``), reported with the structure it chose; the adaptation's time
  (compilation included) is reported separately and not counted in ESS/s.
- ``numpyro_nuts``: ``numpyro.infer.NUTS`` (diagonal mass matrix) on the same log-density,
  ``MCMC(..., chain_method="vectorized")``; warm-up first, then a compiling run, then the
  timed run from the same post-warm-up state.

``--samplers`` picks a subset (default: all six).

Evaluations are counted from each sampler's info: polar slice ``num_evals``; hit-and-run
``2 + num_expansions + num_shrink`` (the two initial bracket ends are always evaluated);
elliptical ``subiter``; NUTS ``num_integration_steps`` (each a log-density *and gradient*
evaluation, costlier than the others' plain evaluations; ESS/s accounts for that).

Reported per target and sampler: evaluations per step, wall time of the sampling scan, ArviZ
bulk ESS of the summary statistic (``log ‖x‖`` for the Cauchy and logistic regression, ``x_0``
for the funnel), bulk ESS per second and per 1000 evaluations, the integrated autocorrelation
time ``IAT = C·N / ESS_mean`` and the estimate of the statistic's mean (with the exact value
where known), and the ratios polar-slice / peer of the two ESS rates. ESS below ~100 is not
reliable (the run is too short for that sampler), and is flagged with ``*``.

Run ``python benchmarks/polar_slice.py`` (about five minutes on two shared CPU cores) or
``--quick`` (a smoke run of 5 % of the draws, about two minutes, mostly compilation).
``--repeats R`` times every sampling chunk ``R`` times and keeps the fastest, for a machine
other jobs load (the draws, ESS and evaluations do not change).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from typing import Callable

import jax

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from blackjax.mcmc import slice as blackjax_slice  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import psample  # noqa: E402
from psample import models  # noqa: E402
from psample.mcmc import polar_slice  # noqa: E402

SAMPLERS = ("polar_slice", "hit_and_run", "elliptical", "nuts", "polar_adapted", "numpyro_nuts")


@dataclass(frozen=True)
class Case:
    """A benchmark target, its summary statistic and the Gaussian reference of elliptical slice."""

    name: str
    target: psample.Target
    statistic_name: str
    statistic: Callable  # flat position (d,) -> scalar
    exact_mean: float | None
    prior_scale: float
    num_draws: int  # per chain, slice samplers (a tenth more is burn-in)
    num_draws_nuts: int  # per chain, after window adaptation


def _log_norm(flat):
    return jnp.log(jnp.linalg.norm(flat))


def _first(flat):
    return flat[0]


def _second(flat):
    return flat[1]


def _cauchy() -> Case:
    cauchy = models.cauchy(100)
    # The funnel and the Cauchy need long runs for any sampler (IATs in the hundreds or more).
    return Case("cauchy(d=100)", cauchy, "log|x|", _log_norm, cauchy.exact["E[log|x|]"], 1.0, 50_000, 2000)


def _funnel() -> Case:
    funnel = models.neal_funnel(10)
    return Case("funnel(d=10)", funnel, "x_0", _first, funnel.exact["E[x_0]"], 1.0, 50_000, 2000)


def _logistic() -> Case:
    # One logistic-regression evaluation costs a (569 x 31) mat-vec, so fewer draws.
    logistic = models.logistic_regression(prior_scale=1.0)
    return Case("logistic(breast_cancer, d=31)", logistic, "log|x|", _log_norm, None, 1.0, 5000, 1000)


def _eight_schools() -> Case:
    schools = models.eight_schools()
    # Flat order of eight schools' sites: mu, tau (log scale, unconstrained), theta_tilde.
    return Case("eight_schools(non-centred, d=10)", schools, "log tau", _second, schools.exact["E[log tau]"], 5.0,
                20_000, 2000)  # fmt: skip


def _ill_conditioned() -> Case:
    gaussian = models.ill_conditioned_gaussian(100)
    widest = jnp.asarray(gaussian.exact["eigenvectors"][:, 0])
    return Case("ill_conditioned_gaussian(d=100, kappa=100, rotated)", gaussian, "x.u_1 (widest direction)",
                lambda flat: flat @ widest, 0.0, 1.0, 10_000, 2000)  # fmt: skip


#: Case name prefix -> its builder, in the order of the report.
CASES = {"cauchy": _cauchy, "funnel": _funnel, "logistic": _logistic, "eight_schools": _eight_schools,
         "ill_conditioned_gaussian": _ill_conditioned}  # fmt: skip


def build_cases(prefixes=None) -> list[Case]:
    """The benchmark cases whose names start with one of ``prefixes`` (default: all), built on demand."""
    return [build() for name, build in CASES.items() if prefixes is None or build_cases_selected(name, prefixes)]


def build_cases_selected(name: str, prefixes) -> bool:
    """Whether a case name prefix of ``prefixes`` may select the case of :data:`CASES` key ``name``."""
    return any(name.startswith(p) or p.startswith(name) for p in prefixes)


# ----------------------------------------------------------------------------- samplers


def _flat_logdensity(case: Case):
    """The target's log-density as a function of the flattened position."""
    example = jax.tree.map(lambda a: a[0], case.target.initial_positions(jax.random.key(0), 1))
    _, unravel = ravel_pytree(example)
    return lambda flat: case.target.logdensity_fn(unravel(flat))


def make_sampler(kind: str, case: Case, logdensity: Callable, w: float, d: int):
    """``(init, step, evals_fn)`` for one chain of ``kind`` on the flat ``logdensity`` over R^d."""
    if kind == "polar_slice":
        algorithm = polar_slice.as_top_level_api(logdensity, w=w)
        return algorithm.init, algorithm.step, lambda info: info.num_evals
    if kind == "hit_and_run":
        algorithm = blackjax.slice_sampling(
            logdensity,
            width=w,
            interval=blackjax_slice.stepping_out,
            max_expansions=1000,
            max_shrinkage=1000,
        )
        return algorithm.init, algorithm.step, lambda info: 2 + info.num_expansions + info.num_shrink
    if kind == "elliptical":
        scale = case.prior_scale

        def loglikelihood(flat):  # ρ / N(0, s² I), up to a constant
            return logdensity(flat) + 0.5 * jnp.sum(flat**2) / scale**2

        algorithm = blackjax.elliptical_slice(loglikelihood, mean=jnp.zeros(d), cov=jnp.full(d, scale**2))
        return algorithm.init, algorithm.step, lambda info: info.subiter
    raise ValueError(f"unknown sampler {kind!r}")


def run_chunks(init_states, step, chunk_length, num_chunks, rng_key, record, burn_in_chunks=0, repeats=1):
    """Vmapped ``step`` in jitted ``lax.scan`` chunks of ``chunk_length`` steps.

    The chunk is compiled once, before anything is timed; ``burn_in_chunks`` chunks run
    first and are discarded, then ``num_chunks`` timed chunks are recorded. Each timed chunk
    runs ``repeats`` times from the same state and keys (the same result) and its fastest
    time counts: on a shared machine the minimum is what the code costs, the rest is load.

    Returns ``(records with leading axis (step,), seconds of the timed chunks)``.
    """
    num_chains = jax.tree.leaves(init_states)[0].shape[0]

    def one_step(states, key):
        states, info = jax.vmap(step)(jax.random.split(key, num_chains), states)
        return states, record(states, info)

    run = jax.jit(lambda states, keys: jax.lax.scan(one_step, states, keys))
    chunk_keys = jax.random.split(rng_key, burn_in_chunks + num_chunks)
    keys = lambda i: jax.random.split(chunk_keys[i], chunk_length)  # noqa: E731
    compiled = run.lower(init_states, keys(0)).compile()
    states = init_states
    for i in range(burn_in_chunks):
        states, _ = jax.block_until_ready(compiled(states, keys(i)))
    records, seconds = [], 0.0
    for i in range(burn_in_chunks, burn_in_chunks + num_chunks):
        chunk_keys_i = jax.block_until_ready(keys(i))
        fastest = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            out = jax.block_until_ready(compiled(states, chunk_keys_i))
            fastest = min(fastest, time.perf_counter() - start)
        states, chunk = out
        seconds += fastest
        records.append(chunk)
    return jax.tree.map(lambda *parts: np.concatenate(parts), *records), seconds


def run_sampler(kind, case, flat0, rng_key, num_draws, num_warmup_nuts, repeats=1):
    """Draws of the statistic ``(chain, draw)``, evaluations per step, and sampling seconds.

    Slice samplers discard a burn-in of ``num_draws / 10`` steps; NUTS is tuned by window
    adaptation first (reported, not timed with the draws).
    """
    logdensity = _flat_logdensity(case)
    w = float(case.target.hints["polar_slice_w"])
    warm_key, draw_key = jax.random.split(rng_key)
    extra, burn_in_chunks = "", 1
    if kind == "nuts":
        warmup = blackjax.window_adaptation(blackjax.nuts, logdensity)
        warm_start = time.perf_counter()
        (states, parameters), _ = jax.jit(
            jax.vmap(lambda key, x: warmup.run(key, x, num_steps=num_warmup_nuts))
        )(jax.random.split(warm_key, flat0.shape[0]), flat0)
        jax.block_until_ready(states)
        extra, burn_in_chunks = f"warm-up {time.perf_counter() - warm_start:.1f}s incl. compile", 0

        def step(key, chain):
            state, params = chain
            state, info = blackjax.nuts(logdensity, **params).step(key, state)
            return (state, params), info

        init_states = (states, parameters)
        evals_fn = lambda info: info.num_integration_steps  # noqa: E731
        position_of = lambda chain: chain[0].position  # noqa: E731
    elif kind == "numpyro_nuts":
        return run_numpyro_nuts(case, logdensity, flat0, rng_key, num_draws, num_warmup_nuts, repeats)
    elif kind == "polar_adapted":
        algorithm = psample.polar_slice(logdensity, w=w)
        warm_start = time.perf_counter()
        num_warmup = num_warmup_nuts
        (init_states, parameters), _ = algorithm.adaptation.run(warm_key, flat0, num_warmup)
        jax.block_until_ready(init_states)
        form = "vector" if np.ndim(parameters["scale"]) == 1 else (
            "dense" if np.ndim(parameters["scale"]) == 2 else "low-rank")
        extra = (f"adaptation {num_warmup} steps {time.perf_counter() - warm_start:.1f}s incl. compile; "
                 f"scale {form}, w {float(parameters['w']):.3g}, "
                 f"|centre| {float(np.linalg.norm(np.asarray(parameters['center']))):.3g}"
                 + (f", scale {np.min(parameters['scale']):.3g}-{np.max(parameters['scale']):.3g}"
                    if form == "vector" else ""))
        burn_in_chunks = 0
        tuned = algorithm.with_parameters(parameters)
        step, evals_fn = tuned.step, (lambda info: info.num_evals)
        position_of = lambda state: state.position  # noqa: E731
    else:
        init, step, evals_fn = make_sampler(kind, case, logdensity, w, flat0.shape[1])
        position_of = lambda state: state.position  # noqa: E731
        init_states = jax.vmap(init)(flat0)

    def record(states, info):
        return jax.vmap(case.statistic)(position_of(states)), evals_fn(info)

    num_chunks = 10
    (stat, evals), seconds = run_chunks(
        init_states, step, num_draws // num_chunks, num_chunks, draw_key, record, burn_in_chunks, repeats
    )
    return stat.T, float(np.mean(evals)), seconds, extra


def run_numpyro_nuts(case, logdensity, flat0, rng_key, num_draws, num_warmup, repeats=1):
    """NumPyro NUTS (diagonal mass matrix, vectorized chains) on the flat log-density."""
    from numpyro.infer import MCMC, NUTS

    num_chains = flat0.shape[0]
    mcmc = MCMC(NUTS(potential_fn=lambda z: -logdensity(z)), num_warmup=num_warmup, num_samples=num_draws,
                num_chains=num_chains, chain_method="vectorized", progress_bar=False)
    warm_key, compile_key, draw_key = jax.random.split(rng_key, 3)
    warm_start = time.perf_counter()
    mcmc.warmup(warm_key, init_params=flat0, extra_fields=("num_steps",))
    jax.block_until_ready(mcmc.post_warmup_state)
    warm_seconds = time.perf_counter() - warm_start
    # The timed draws: NumPyro's own (vectorized) sample function in a jitted scan, compiled
    # first (MCMC.run re-traces its loop at every call, which would time compilation).
    sampler = mcmc.sampler

    def one(state, _):
        state = sampler.sample(state, (), {})
        return state, (jax.vmap(case.statistic)(state.z), state.num_steps)

    scan = jax.jit(lambda state: jax.lax.scan(one, state, None, length=num_draws))
    compiled = scan.lower(mcmc.post_warmup_state).compile()
    del compile_key, draw_key
    seconds = math.inf
    for _ in range(repeats):  # the fastest of the repeats, as run_chunks
        start = time.perf_counter()
        _, (stat, steps) = jax.block_until_ready(compiled(mcmc.post_warmup_state))
        seconds = min(seconds, time.perf_counter() - start)
    stat = np.asarray(stat).T
    evals = float(np.mean(steps))
    return stat, evals, seconds, f"warm-up {warm_seconds:.1f}s incl. compile"


# ----------------------------------------------------------------------------- report


def summarise(stat, evals_per_step, seconds):
    num_chains, num_draws = stat.shape
    ess_bulk = float(az.ess(stat, method="bulk"))
    ess_mean = float(az.ess(stat, method="mean"))
    total_evals = evals_per_step * num_chains * num_draws
    return {
        "evals/step": evals_per_step,
        "seconds": seconds,
        "ess_bulk": ess_bulk,
        "ess/s": ess_bulk / seconds,
        "ess/1000 evals": 1000.0 * ess_bulk / total_evals,
        "iat": num_chains * num_draws / ess_mean,
        "estimate": float(np.mean(stat)),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--chains", type=int, default=None, help="vmapped chains per sampler (default 8)")
    parser.add_argument("--scale", type=float, default=None, help="multiply every run length (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up steps of NUTS, NumPyro NUTS and the polar slice adaptation (default 500 x scale, >= 100)")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--cases", nargs="+", default=None, help="case name prefixes (default: all)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="time every sampling chunk this many times and keep the fastest (a loaded machine)")
    args = parser.parse_args(argv)
    num_chains = args.chains or (4 if args.quick else 8)
    scale = args.scale or (0.05 if args.quick else 1.0)
    num_warmup_nuts = args.warmup or max(int(500 * scale), 100)

    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"machine: {_cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()}; "
          f"devices {jax.devices()}; jax {jax.__version__}, blackjax {blackjax.__version__}, "
          f"arviz {az.__version__}")
    print(f"{num_chains} chains per sampler, float64; slice samplers: burn-in of a tenth of the draws; "
          f"NUTS, NumPyro NUTS and adapted polar slice: {num_warmup_nuts} warm-up (adaptation) steps per chain\n")

    key = jax.random.key(args.seed)
    for case_index, name in enumerate(CASES):  # the index seeds the case: the same with or without --cases
        if args.cases and not build_cases_selected(name, args.cases):
            continue
        case = CASES[name]()
        if args.cases and not any(case.name.startswith(prefix) for prefix in args.cases):
            continue
        init_key, run_key = jax.random.split(jax.random.fold_in(key, case_index))
        positions = case.target.initial_positions(init_key, num_chains)
        flat0 = jax.vmap(lambda p: ravel_pytree(p)[0])(positions)
        num_draws = max(int(case.num_draws * scale), 100)
        num_draws_nuts = max(int(case.num_draws_nuts * scale), 100)
        exact = "" if case.exact_mean is None else f", exact mean {case.exact_mean:.4f}"
        w = case.target.hints["polar_slice_w"]
        print(f"== {case.name}: statistic {case.statistic_name}{exact}, w = {w:g}; "
              f"draws per chain: slice samplers {num_draws}, NUTS {num_draws_nuts}")
        header = f"{'sampler':<12} {'evals/step':>10} {'time s':>8} {'bulk ESS':>9} {'ESS/s':>9} " \
                 f"{'ESS/1k ev':>9} {'IAT':>9} {'mean':>8}"
        print(header)
        results = {}
        for kind in args.samplers:
            draws = num_draws_nuts if kind in ("nuts", "numpyro_nuts") else num_draws
            stat, evals, seconds, extra = run_sampler(
                kind, case, flat0, jax.random.fold_in(run_key, SAMPLERS.index(kind)), draws, num_warmup_nuts,
                args.repeats,
            )
            r = results[kind] = summarise(stat, evals, seconds)
            flag = "*" if r["ess_bulk"] < 100 else " "
            print(f"{kind:<12} {r['evals/step']:>10.2f} {r['seconds']:>8.2f} {r['ess_bulk']:>8.0f}{flag} "
                  f"{r['ess/s']:>9.1f} {r['ess/1000 evals']:>9.2f} {r['iat']:>9.1f} {r['estimate']:>8.3f}"
                  + (f"   ({extra})" if extra else ""))
        for mine in ("polar_slice", "polar_adapted"):
            if mine not in results:
                continue
            ours = results[mine]
            peers = [k for k in results if k not in ("polar_slice", "polar_adapted")]
            if mine == "polar_adapted" and "polar_slice" in results:
                peers = ["polar_slice", *peers]
            for peer in peers:
                other = results[peer]
                print(
                    f"  {mine} / {peer:<12}: ESS/s x{ours['ess/s'] / other['ess/s']:.3g}, "
                    f"ESS per 1000 evals x{ours['ess/1000 evals'] / other['ess/1000 evals']:.3g}, "
                    f"IAT {peer} / IAT {mine} = {other['iat'] / ours['iat']:.3g}"
                )
        print()


if __name__ == "__main__":
    main()
