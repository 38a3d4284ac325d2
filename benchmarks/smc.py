"""Tempered SMC evidence: psample (HMC and polar-slice moves) vs BlackJAX adaptive_tempered_smc.

Usage::

    python benchmarks/smc.py [--particles 1000] [--replicates 16] [--repeats 3]
        [--models linear_regression,eight_schools,student_t_regression]
        [--methods blackjax,runner,hmc,hmc-dense,hmc-ess,polar] [--sweep 0.5:10,0.7:5]

Every method runs ``--replicates`` independent populations (vmapped) of ``--particles``
particles with an adaptive schedule, on models whose log evidence is known: Bayesian linear
regression (closed form), eight schools (quadrature in tau) and Student-t regression with
outliers (2-D quadrature). Reported per method: log-Z error (mean over replicates, i.e. bias,
and its spread), RMSE, steady-state wall and process CPU time (best of ``--repeats`` runs after
a compiling one), log-density evaluations per replicate (gradient evaluations for HMC),
``RMSE² x evals`` relative to BlackJAX (lower: less error at equal evaluations) and the CPU
time psample needs to reach BlackJAX's error (``CPU time x MSE / BlackJAX's MSE``: the
variance falls like 1/cost). The ``±`` are one standard error from the replicates (the
relative errors of the two mean squared errors in quadrature; times taken as exact).

BlackJAX is hand-wired as its documentation shows: ``blackjax.adaptive_tempered_smc`` (ESS
target 0.5) with ``blackjax.hmc.build_kernel()``, ``extend_params`` of a fixed step size (0.1),
identity inverse mass matrix and 10 integration steps, ``--mcmc-steps`` moves per level,
systematic resampling, driven by ``lax.while_loop`` until the temperature reaches 1; ``log Z``
is the sum of ``info.log_likelihood_increment``. Its evaluations are counted as BlackJAX spends
them: per level ``N`` log-likelihoods for the ESS bisection, ``N`` for the weights and
``N * steps * 10`` gradients. psample's rows use ``psample.smc.tempered_smc``'s defaults but for
what the row names (``--sweep`` adds HMC rows at other ``target_ess`` and moves per level);
psample tunes the step size and the metric from the particles, BlackJAX keeps them fixed (as
its docs do). Errors pool the replicates of all ``--repeats`` timed runs. The row "same
BlackJAX algorithm through psample.run_particles" wraps BlackJAX's own kernel as a
``psample.smc.ParticleAlgorithm``: its time against the hand-wired loop is the runner's cost.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from blackjax.smc import extend_params, resampling  # noqa: E402

import psample  # noqa: E402
import psample.models  # noqa: E402


def _blackjax_smc(target, num_particles, num_mcmc_steps, step_size, num_integration_steps):
    """BlackJAX's ``adaptive_tempered_smc`` with HMC moves, wired as its docs show, and the
    log-density evaluations it makes per tempering level."""
    example = jax.tree.map(lambda x: x[0], target.prior_sample_fn(jax.random.PRNGKey(0), 1))
    d = jax.flatten_util.ravel_pytree(example)[0].size
    params = extend_params(
        dict(step_size=step_size, inverse_mass_matrix=jnp.ones(d), num_integration_steps=num_integration_steps)
    )
    smc = blackjax.adaptive_tempered_smc(
        target.logprior_fn, target.loglikelihood_fn, blackjax.hmc.build_kernel(), blackjax.hmc.init,
        params, resampling.systematic, 0.5, num_mcmc_steps=num_mcmc_steps,
    )  # fmt: skip
    return smc, num_particles * (2 + num_mcmc_steps * num_integration_steps)


def blackjax_run(target, num_particles, num_replicates, num_mcmc_steps, step_size=0.1, num_integration_steps=10):
    """``(run(key) -> (log_Z (R,), evals (R,)))``, jitted, BlackJAX hand-wired."""
    smc, per_level = _blackjax_smc(target, num_particles, num_mcmc_steps, step_size, num_integration_steps)

    def one(key):
        init_key, key = jax.random.split(key)
        state = smc.init(target.prior_sample_fn(init_key, num_particles))

        def cond(carry):
            return carry[1].tempering_param < 1

        def body(carry):
            i, state, log_z, key = carry
            key, sub = jax.random.split(key)
            state, info = smc.step(sub, state)
            return i + 1, state, log_z + info.log_likelihood_increment, key

        steps, _, log_z, _ = jax.lax.while_loop(cond, body, (0, state, 0.0, key))
        return log_z, steps * per_level

    return jax.jit(lambda key: jax.vmap(one)(jax.random.split(key, num_replicates)))


class _WrappedState(NamedTuple):
    """BlackJAX's TemperedSMCState under psample's particle contract."""

    inner: Any
    log_Z: Any

    @property
    def particles(self):
        return self.inner.particles

    @property
    def log_weights(self):
        return jnp.log(self.inner.weights)


class _WrappedInfo(NamedTuple):
    ess: Any
    log_Z_increment: Any
    is_resampled: Any


def blackjax_through_runner(target, num_particles, num_replicates, num_mcmc_steps, step_size=0.1, num_integration_steps=10):
    """The same BlackJAX algorithm as :func:`blackjax_run`, run by ``psample.run_particles``:
    the difference in wall time is the runner's cost."""
    smc, per_level = _blackjax_smc(target, num_particles, num_mcmc_steps, step_size, num_integration_steps)

    def init(key, n):
        return _WrappedState(smc.init(target.prior_sample_fn(key, n)), jnp.zeros(()))

    def step(key, state):
        inner, info = smc.step(key, state.inner)
        ess = blackjax.smc.ess.ess(jnp.log(inner.weights))
        return _WrappedState(inner, state.log_Z + info.log_likelihood_increment), _WrappedInfo(
            ess, info.log_likelihood_increment, jnp.asarray(True)
        )

    algorithm = psample.smc.ParticleAlgorithm(init, step, None, lambda s: s.inner.tempering_param >= 1)

    def run(key):
        result = psample.run_particles(algorithm, key, num_particles, num_replicates=num_replicates, progress=False)
        return result.log_Z, result.num_steps * per_level

    return run


def psample_run(target, mcmc, num_particles, num_replicates, **options):
    """psample's tempered SMC run by ``psample.run_particles``; ``options`` are keyword arguments
    of ``psample.smc.tempered_smc`` (its defaults otherwise), ``metric`` goes to
    ``mcmc_parameters``."""
    metric = options.pop("metric", None)
    parameters = {} if metric is None else {"metric": metric}
    # Systematic, as BlackJAX's peer above: the BENCHMARKS.md rows were measured with it (the
    # library's default became multinomial, whose single-run log_Z_se is valid).
    options.setdefault("resampling", "systematic")
    algorithm = psample.smc.tempered_smc(target, mcmc=mcmc, mcmc_parameters=parameters, **options)

    def run(key):
        result = psample.run_particles(algorithm, key, num_particles, num_replicates=num_replicates, progress=False)
        evals = np.nansum(result.info.num_evals, axis=1) + num_particles  # + the prior draws' likelihoods
        return result.log_Z, evals

    return run


def timed(run, repeats):
    """Best wall time and best process CPU time of ``repeats`` runs after a compiling one; the
    log-Z estimates and evaluation counts of every timed run are pooled (``repeats x R``
    replicates). CPU time is the steadier measure on a machine other work loads."""
    jax.block_until_ready(run(jax.random.PRNGKey(0)))  # compile
    best, best_cpu, log_zs, evals = np.inf, np.inf, [], []
    for r in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        log_z, num_evals = jax.block_until_ready(run(jax.random.PRNGKey(r + 1)))
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
        log_zs.append(np.asarray(log_z))
        evals.append(np.asarray(num_evals))
    return np.concatenate(log_zs), np.concatenate(evals), best, best_cpu


def _mse_and_relative_se(err):
    """Mean squared error and the relative standard error of that mean (delta method:
    ``sd(err²) / sqrt(n) / mean(err²)``)."""
    sq = err**2
    return sq.mean(), sq.std(ddof=1) / np.sqrt(sq.size) / sq.mean()


#: The rows, by the name ``--methods`` selects them with.
METHODS = {
    "blackjax": "BlackJAX adaptive_tempered_smc (HMC)",
    "runner": "same BlackJAX algorithm through psample.run_particles",
    "hmc": "psample tempered (HMC, defaults)",
    "hmc-dense": "psample tempered (HMC, dense metric)",
    "hmc-ess": "psample tempered (HMC, resample when ESS < N/2)",
    "polar": "psample tempered (polar slice)",
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--replicates", type=int, default=16)
    parser.add_argument("--mcmc-steps", type=int, default=10, help="BlackJAX's moves per level")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default="linear_regression,eight_schools,student_t_regression")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated rows among {list(METHODS)}")
    parser.add_argument(
        "--sweep", default="", help="extra psample HMC rows, comma-separated target_ess:num_mcmc_steps pairs (e.g. 0.5:10,0.7:5)"
    )
    args = parser.parse_args(argv)
    sweep = [(float(a), int(b)) for a, b in (v.split(":") for v in args.sweep.split(",") if v)]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose among {list(METHODS)}")
    print(f"jax {jax.__version__}, blackjax {blackjax.__version__}, devices {jax.devices()}")
    print(f"N = {args.particles} particles, R = {args.replicates} replicates x {args.repeats} timed runs, "
          f"BlackJAX: {args.mcmc_steps} moves per level")  # fmt: skip
    for name in args.models.split(","):
        target = psample.models.get(name)
        exact = target.exact.get("log_Z")
        if exact is None:
            exact = psample.models.eight_schools_log_evidence()
        print(f"\n### {target.name} (exact log Z {exact:.4f})\n")
        print("| method | bias | sd | RMSE | wall s | CPU s | evals / replicate | RMSE² x evals (rel.) | "
              "CPU time ratio | CPU time at equal error (rel.) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        n, r, k = args.particles, args.replicates, args.mcmc_steps
        makers = {
            "blackjax": lambda: blackjax_run(target, n, r, k),
            "runner": lambda: blackjax_through_runner(target, n, r, k),
            "hmc": lambda: psample_run(target, "hmc", n, r),
            "hmc-dense": lambda: psample_run(target, "hmc", n, r, metric="dense"),
            "hmc-ess": lambda: psample_run(target, "hmc", n, r, resample_ess=0.5),
            "polar": lambda: psample_run(target, "polar_slice", n, r),
        }
        runs = {METHODS["blackjax"]: makers["blackjax"]()}
        runs.update({METHODS[m]: makers[m]() for m in methods if m != "blackjax"})
        for target_ess, steps in sweep:
            runs[f"psample tempered (HMC, target_ess {target_ess}, {steps} moves per level)"] = psample_run(
                target, "hmc", n, r, target_ess=target_ess, num_mcmc_steps=steps
            )
        base = None
        for label, run in runs.items():  # BlackJAX first: each row is printed as soon as it is timed
            log_z, evals, seconds, cpu = timed(run, args.repeats)
            err = log_z - exact
            mse, rel_se = _mse_and_relative_se(err)
            row = (err.mean(), err.std(ddof=1), mse, rel_se, seconds, evals.mean(), cpu)
            base = row if base is None else base
            bias, sd, mse, rel_se, seconds, evals, cpu = row
            # Independent runs: the relative errors of the two mean squared errors add in quadrature.
            ratio_se = 0.0 if row is base else np.hypot(rel_se, base[3])
            work = mse * evals / (base[2] * base[5])
            # Time to reach BlackJAX's error: variance falls like 1/cost, so scale by the MSE ratio.
            equal_error = cpu * mse / (base[6] * base[2])
            print(f"| {label} | {bias:+.4f} | {sd:.4f} | {np.sqrt(mse):.4f} | {seconds:.2f} | {cpu:.2f} | "
                  f"{evals:,.0f} | {work:.2f} ± {work * ratio_se:.2f} | {cpu / base[6]:.2f} | "
                  f"{equal_error:.2f} ± {equal_error * ratio_se:.2f} |", flush=True)  # fmt: skip

if __name__ == "__main__":
    main()
