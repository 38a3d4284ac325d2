"""D-ADMMS on a logistic regression: mean offset and variance ratio against ``rho`` and graph.

The data of issue #23 point 5: ``d = 3`` (intercept and two N(0, 1) features), 2,000 rows,
coefficients (0.5, -1, 1), prior N(0, 3^2 I), split over 10 agents (200 rows each). The
reference is a long BlackJAX NUTS run on the pooled rows (window adaptation, then 4 chains).
For every graph and ``rho``, ``psample.admm`` (Newton prox) runs ``--chains`` chains started
at the reference mean, ``--warmup`` iterations dropped, ``--draws`` kept, and the network
average's draws are compared with the reference:

- ``offset/sd``: (ADMM mean - NUTS mean) / NUTS sd per coordinate, its largest magnitude;
- ``z``: the same difference over the Monte Carlo error of both runs (ArviZ mean-ESS MCSE);
- ``var ratio``: ADMM variance / NUTS variance per coordinate (min..max);
- ``rule``: the ratio predicted by the implicit-Langevin rule of :mod:`psample.mcmc.admm`,
  ``diag(T H^-1 (I + eta H / 2)^-1) / diag(H^-1)`` with ``T = deg / (2 rho)``,
  ``eta = 1 / (2 rho deg N)`` and ``H`` the inverse of the NUTS covariance;
- ``check z`` and ``check offset/sd``: what ``admm.check_mean_offset`` (no reference run)
  finds: its largest ``|z|`` (threshold in brackets) and its offset estimate at that coordinate;
- ``s/it``: seconds per iteration for all chains (compiled, on this machine).

Run ``python benchmarks/admm_rho.py`` (a few minutes on two CPU cores).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import psample  # noqa: E402
from psample.mcmc import admm  # noqa: E402

NUM_AGENTS = 10


def logistic_problem(num_rows=2000, seed=1):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(num_rows), rng.normal(size=(num_rows, 2))])
    y = (rng.random(num_rows) < 1 / (1 + np.exp(-X @ np.array([0.5, -1.0, 1.0])))).astype(float)

    def logprior(beta):
        return -0.5 * jnp.sum(beta**2) / 9.0

    def loglik(beta, shard):
        Xs, ys = shard
        logits = Xs @ beta
        return jnp.sum(ys * logits - jnp.logaddexp(0.0, logits))

    return jnp.asarray(X), jnp.asarray(y), logprior, loglik


def nuts_reference(X, y, logprior, loglik, num_chains, num_draws, key):
    logdensity = lambda b: logprior(b) + loglik(b, (X, y))  # noqa: E731
    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity)
    k1, k2 = jax.random.split(key)
    (state, params), _ = warmup.run(k1, jnp.zeros(X.shape[1]), num_steps=1000)
    kernel = blackjax.nuts(logdensity, **params)

    @jax.jit
    def run(key):
        def one(s, k):
            s, _ = kernel.step(k, s)
            return s, s.position

        return jax.lax.scan(one, state, jax.random.split(key, num_draws))[1]

    return np.asarray(jax.vmap(run)(jax.random.split(k2, num_chains)))  # (chains, draws, d)


def mcse_mean(draws):
    """ArviZ mean-ESS Monte Carlo error of every coordinate's mean; ``draws`` (chains, draws, d)."""
    ess = np.asarray(az.ess(draws, method="mean"))
    return draws.std(axis=(0, 1)) / np.sqrt(ess)


def rule_ratio(cov, rho, degree, num_agents):
    precision = np.linalg.inv(cov)
    temperature, eta = degree / (2 * rho), 1 / (2 * rho * degree * num_agents)
    predicted = temperature * np.linalg.inv(precision @ (np.eye(len(cov)) + 0.5 * eta * precision))
    return np.diag(predicted) / np.diag(cov)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rhos", default="2.5,5,10,20,40")
    parser.add_argument("--graphs", default="complete,ring")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--nuts-draws", type=int, default=5000)
    args = parser.parse_args()
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"machine: {platform.machine()}, {jax.devices()[0].platform}, jax {jax.__version__}")

    X, y, logprior, loglik = logistic_problem()
    start = time.perf_counter()
    ref = nuts_reference(X, y, logprior, loglik, 4, args.nuts_draws, jax.random.key(0))
    ref_mean, ref_sd, ref_se = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1)), mcse_mean(ref)
    ref_cov = np.cov(ref.reshape(-1, ref.shape[-1]).T)
    print(f"NUTS 4 x {args.nuts_draws} ({time.perf_counter() - start:.0f} s): mean {np.round(ref_mean, 4)}, "
          f"sd {np.round(ref_sd, 4)}, precision eigenvalues {np.round(np.linalg.eigvalsh(np.linalg.inv(ref_cov)), 0)}")

    data = (admm.shard(X, NUM_AGENTS), admm.shard(y, NUM_AGENTS))
    header = ("| graph | rho | offset/sd (max) | z (max) | var ratio | rule | check z [threshold] | "
              "check offset/sd | s/it |")
    print("\n" + header)
    print("|" + "---|" * (header.count("|") - 1))
    for graph in args.graphs.split(","):
        degree = NUM_AGENTS - 1 if graph == "complete" else 2
        for rho in map(float, args.rhos.split(",")):
            alg = admm.as_top_level_api(logprior, loglik, data, rho=rho, graph=graph, prox="newton")
            starts = jnp.broadcast_to(jnp.asarray(ref_mean), (args.chains, 3))
            psample.sample(alg, starts, jax.random.key(1), 2, progress=False)  # compile outside the clock
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trace = psample.sample(alg, starts, jax.random.key(2), args.draws, num_warmup=args.warmup,
                                       progress=False)  # fmt: skip
            seconds = (time.perf_counter() - t0) / (args.warmup + args.draws)
            draws = np.asarray(trace.positions)
            diff = draws.mean(axis=(0, 1)) - ref_mean
            offset = diff / ref_sd
            z = diff / np.hypot(mcse_mean(draws), ref_se)
            ratio = draws.var(axis=(0, 1)) / ref_sd**2
            rule = rule_ratio(ref_cov, rho, degree, NUM_AGENTS)
            check = admm.check_mean_offset(trace, rho=rho, warn=False)
            worst = int(np.argmax(np.abs(check.z)))
            i = int(np.argmax(np.abs(offset)))
            print(f"| {graph} | {rho:g} | {offset[i]:+.3f} | {z[i]:+.1f} | {ratio.min():.3f}..{ratio.max():.3f} | "
                  f"{rule.min():.3f}..{rule.max():.3f} | {check.z[worst]:+.1f} [{check.threshold:.1f}] | "
                  f"{check.offset_sd[worst]:+.3f} | {seconds:.1e} |", flush=True)


if __name__ == "__main__":
    main()
