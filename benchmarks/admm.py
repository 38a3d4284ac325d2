"""Distributed sampling: psample's D-ADMMS vs decentralized SGLD, noise-free ADMM and centralized NUTS.

One process, the same data, graph, starting points and number of chains for every method.
Every method runs as ``jax.vmap`` over chains inside one jitted ``lax.scan`` (D-ADMMS through
``psample.admm``'s own step), compiled before it is timed (``block_until_ready``).

Methods
-------
- ``d-admms``: ``psample.admm`` (Tzikas et al. 2024), ``rho = 5``, closed-form prox for the
  linear regressions (the reference code solves the prox exactly with CVXPY), Newton for the
  logistic one. Real neighbours (the reference code's quadratic term uses agents
  ``0 .. deg_i - 1``: its stored figures are not reproduced exactly).
- ``admm``: the same with ``noise=False`` (deterministic consensus ADMM).
- ``d-sgld``: decentralized SGLD (Gürbüzbalaban et al. 2021) on the same graph, written on
  BlackJAX's SGLD kernel: ``x_i <- sum_j W_ij x_j + [sgld(x_i; grad log p_i) - x_i]`` with
  the reference code's mixing matrix ``W_ij = 1 / (max(deg_i, deg_j) + 1)``, full gradients
  (no minibatches, as in the reference code) and its step size ``eta = 0.009`` (linear) /
  ``3e-4`` (logistic).
- ``nuts``: BlackJAX NUTS on the pooled data (centralized: no communication graph), step size
  and diagonal mass matrix from ``blackjax.window_adaptation`` on one chain; its iterations are
  NUTS transitions (many gradient evaluations of all the data each).

Every method starts every chain (and agent) at ``x ~ N(0, I)``, as the reference code does.
One iteration of ``d-admms``, ``admm`` and ``d-sgld`` is one communication round (each agent
sends one ``d``-vector to its neighbours).

Parts
-----
1. The reference set-up: Bayesian linear regression, ``d = 2``, 20 agents x 50 points,
   ring (cycle) and complete graphs, 100 chains; exact Gaussian W2 between the Gaussian fitted
   to the 100 chains' network-average iterate and the exact posterior, per iteration (=
   communication round) and against wall time. For D-ADMMS the W2 of the exact law of the
   iterate (the linear recursion, ``tests/mcmc/admm/reference.py``) is printed too: the bias by design.
2. Scale: ``d = 100``, 1,000 agents x 50 points, ring and complete graphs, 100 chains. With
   100 chains in 100 dimensions a fitted covariance is rank deficient, so the score is the W2
   between the product of the fitted marginals and that of the posterior ("marginal W2") and
   the error of the ensemble mean in posterior sds.
3. Devices: wall time per D-ADMMS iteration on a ``"shards"`` mesh of 1, 2 and 4 emulated CPU
   devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``, a subprocess). Emulated
   devices share the same cores: this measures overhead, not a speed-up. The complete graph
   with ``layout_invariant`` on (exact fixed-point sums, the default) and off (float
   ``psum``), and Newton on part 4's logistic data with and without per-chain shard copies:
   the cost of bit-for-bit layouts.
4. Logistic regression (the breast-cancer data of ``psample.models``, 560 of its 569 rows,
   ``d = 31``, prior N(0, I)) split over 20 agents: posterior means and sds of the
   network-average draws against a long NumPyro NUTS reference on the pooled rows.

5. ``rho`` on the complete graph: the exact recursion's stationary network-average variance
   against the temperature ``(N - 1) / (2 rho)`` (20 agents), then ``d = 100``, 1,000 agents,
   20 chains for several ``rho`` (``--rhos``, ``--iters``).

Run ``python benchmarks/admm.py`` (more than 10 minutes on two shared CPU cores: run parts
separately with ``--parts``, each under the benchmark lock) or ``--quick``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from scipy.linalg import sqrtm  # noqa: E402

import psample  # noqa: E402
from psample.mcmc import admm  # noqa: E402

RHO = 5.0


# ----------------------------------------------------------------------------- data, exact answers


def regression(num_agents, n, d, seed=10, lam=10.0, sd=4.0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, np.sqrt(lam), d)
    X = rng.normal(size=(num_agents, n, d))
    y = X @ truth + sd * rng.normal(size=(num_agents, n))
    precision = np.eye(d) / lam + np.einsum("inj,ink->jk", X, X) / sd**2
    cov = np.linalg.inv(precision)
    mean = cov @ np.einsum("inj,in->j", X, y) / sd**2

    def logprior(x):
        return -0.5 * jnp.sum(x**2) / lam

    def loglik(x, shard):
        return -0.5 * jnp.sum((shard[1] - shard[0] @ x) ** 2) / sd**2

    return (jnp.asarray(X), jnp.asarray(y)), logprior, loglik, mean, cov


def w2_gaussian(m1, S1, m2, S2):
    root = np.real(sqrtm(S2))
    cross = np.real(sqrtm(root @ S1 @ root))
    return float(np.sqrt(max(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross), 0.0)))


def w2_marginal(draws, mean, cov):
    sd = np.sqrt(np.diag(cov))
    return float(np.sqrt(np.sum((draws.mean(0) - mean) ** 2 + (draws.std(0, ddof=1) - sd) ** 2)))


def graph_of(name, num_agents):
    return nx.complete_graph(num_agents) if name == "complete" else nx.cycle_graph(num_agents)


def mixing_matrix(graph):
    """The reference code's D-SGLD mixing matrix: W_ij = 1 / (max(deg_i, deg_j) + 1), rows sum to 1."""
    A = nx.to_numpy_array(graph, nodelist=sorted(graph.nodes))
    deg = A.sum(1)
    W = A / (np.maximum(deg[:, None], deg[None, :]) + 1)
    return W + np.diag(1 - W.sum(1))


# ----------------------------------------------------------------------------- methods


def run_admm(alg, x0, data, logprior, loglik, graph, num_iters, key, record):
    """Iterate ``alg`` from per-agent starts ``x0`` (chains, N, d); ``record(state) -> array`` per iteration."""
    network = admm.build_network(graph, x0.shape[1])
    target = admm.ShardedTarget(logprior, loglik)
    states = jax.jit(jax.vmap(lambda x: admm.init(x[0], target, data, network, local_positions=x)))(x0)
    step = jax.vmap(alg.step)
    C = x0.shape[0]

    def one(s, t):
        s, _ = step(jax.random.split(jax.random.fold_in(key, t), C), s)
        return s, record(s)

    run = jax.jit(lambda s: jax.lax.scan(one, s, jnp.arange(num_iters)))
    return timed(run, states)


def run_dsgld(x0, data, logprior, loglik, graph, step_size, num_iters, key, record):
    N = x0.shape[1]
    W = mixing_matrix(graph)
    sgld = blackjax.sgld.build_kernel()
    # W x without a dense N x N product where W is structured (1,000 agents): the complete
    # graph's W is the averaging matrix, the cycle's has 1/3 on and beside the diagonal.
    if nx.is_isomorphic(graph, nx.complete_graph(N)) if N <= 50 else graph.number_of_edges() == N * (N - 1) // 2:
        assert np.allclose(W, 1.0 / N)
        mix = lambda x: jnp.broadcast_to(x.mean(0), x.shape)  # noqa: E731
    elif graph.number_of_edges() == N and all(dg == 2 for _, dg in graph.degree()) and nx.is_connected(graph):
        assert np.allclose(np.diag(W), 1 / 3)
        mix = lambda x: (x + jnp.roll(x, 1, 0) + jnp.roll(x, -1, 0)) / 3  # noqa: E731
    else:
        W = jnp.asarray(W)
        mix = lambda x: W @ x  # noqa: E731

    def grad_local(x, shard):  # gradient of agent i's log-density (prior shared equally)
        return jax.grad(lambda z: loglik(z, shard) + logprior(z) / N)(x)

    def chain_step(key, x):
        keys = jax.random.split(key, N)
        moved = jax.vmap(lambda k, xi, shard: sgld(k, xi, grad_local, shard, step_size))(keys, x, data)
        return mix(x) + (moved - x)

    C = x0.shape[0]

    def one(x, t):
        x = jax.vmap(chain_step)(jax.random.split(jax.random.fold_in(key, t), C), x)
        return x, record(x)

    run = jax.jit(lambda x: jax.lax.scan(one, x, jnp.arange(num_iters)))
    return timed(run, x0)


def run_nuts(x0, logdensity, num_iters, key):
    warm = blackjax.window_adaptation(blackjax.nuts, logdensity)
    (_, params), _ = warm.run(jax.random.fold_in(key, 1), x0[0], num_steps=500)
    nuts = blackjax.nuts(logdensity, **params)
    C = x0.shape[0]

    def one(s, t):
        s, info = jax.vmap(nuts.step)(jax.random.split(jax.random.fold_in(key, t), C), s)
        return s, (s.position, info.num_integration_steps)

    run = jax.jit(lambda s: jax.lax.scan(one, s, jnp.arange(num_iters)))
    return timed(run, jax.vmap(nuts.init)(x0))


def timed(run, init):
    compiled = run.lower(init).compile()  # compile first: the time is the run's alone
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(init))
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------- part 1


def part_reference(num_chains, num_iters, report_at):
    data, logprior, loglik, mean, cov = regression(20, 50, 2)
    N, d = 20, 2
    x0 = jax.random.normal(jax.random.PRNGKey(0), (num_chains, N, d))
    key = jax.random.PRNGKey(1)
    avg = lambda s: s.local_positions.mean(1)  # noqa: E731
    print(f"\n## 1. Reference set-up: linear regression d=2, 20 agents x 50 points, {num_chains} chains")
    print(f"posterior mean {np.round(mean, 4)}, var {np.round(np.diag(cov), 4)}")

    def pooled(x):
        return logprior(x) + jax.vmap(loglik, (None, 0))(x, data).sum()

    (_, (nuts_draws, nuts_steps)), nuts_time = run_nuts(x0[:, 0], pooled, num_iters, key)
    for name in ("ring", "complete"):
        graph = graph_of(name, N)
        rows = {}
        for label, noise in (("d-admms", True), ("admm", False)):
            alg = psample.admm(logprior, loglik, data, rho=RHO, graph=graph, prox="quadratic", noise=noise)
            (_, draws), secs = run_admm(alg, x0, data, logprior, loglik, graph, num_iters, key, avg)
            rows[label] = (np.asarray(draws), secs)
        (_, draws), secs = run_dsgld(x0, data, logprior, loglik, graph, 0.009, num_iters, key, lambda x: x.mean(1))
        rows["d-sgld"] = (np.asarray(draws), secs)
        rows["nuts"] = (np.asarray(nuts_draws), nuts_time)
        print(f"\n### {name} graph: W2(network average, posterior) at iteration k (= communication round)")
        print(f"{'method':10s} " + " ".join(f"k={k:<6d}" for k in report_at) + "  s/iter (100 chains)  W2 per second*")
        for label, (draws, secs) in rows.items():
            w2 = [w2_gaussian(draws[k - 1].mean(0), np.cov(draws[k - 1].T), mean, cov) for k in report_at]
            per_iter = secs / num_iters
            print(f"{label:10s} " + " ".join(f"{w:<8.3f}" for w in w2)
                  + f"  {per_iter:.2e}            {w2[-1]:.3f} after {secs:.3f} s")  # fmt: skip
        print(f"(nuts: centralized, {np.asarray(nuts_steps).mean():.1f} gradient evaluations of all the data per "
              "iteration, no graph)")  # fmt: skip
        # The exact law of the D-ADMMS agents (linear recursion): its stationary W2 is the bias.
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from tests.mcmc.admm.reference import exact_moments, regression_data

        X, y = regression_data()
        exact = exact_moments(X, y, name, tuple(report_at))
        Nd = N * d
        w2_exact = []
        for k in report_at:
            m, S = exact[k]
            P = np.kron(np.ones((1, N)) / N, np.eye(d))  # network average of the x block
            w2_exact.append(w2_gaussian(P @ m[:Nd], P @ S[:Nd, :Nd] @ P.T, mean, cov))
        print(f"{'exact law':10s} " + " ".join(f"{w:<8.3f}" for w in w2_exact) + "  (D-ADMMS network average, recursion)")


# ----------------------------------------------------------------------------- part 2


def part_scale(num_agents, d, num_chains, num_iters, report_at):
    data, logprior, loglik, mean, cov = regression(num_agents, 50, d, seed=11)
    print(f"\n## 2. Scale: linear regression d={d}, {num_agents} agents x 50 points, {num_chains} chains, "
          f"{num_iters} iterations")  # fmt: skip
    x0 = jax.random.normal(jax.random.PRNGKey(0), (num_chains, num_agents, d))
    key = jax.random.PRNGKey(1)
    sd = np.sqrt(np.diag(cov))
    print(f"{'graph':9s}{'method':9s} " + " ".join(f"mW2@{k:<5d}" for k in report_at)
          + f" {'max|mean err|/sd':>17s} {'s/iter':>9s}")  # fmt: skip
    for name in ("ring", "complete"):
        graph = "ring" if name == "ring" else "complete"
        nxg = graph_of(name, num_agents)
        results = {}
        start = time.perf_counter()
        alg = psample.admm(logprior, loglik, data, rho=RHO, graph=graph, prox="quadratic")
        (_, draws), secs = run_admm(alg, x0, data, logprior, loglik, graph, num_iters, key, lambda s: s.local_positions.mean(1))
        setup = time.perf_counter() - start - secs
        results["d-admms"] = (np.asarray(draws), secs)
        (_, draws), secs = run_dsgld(x0, data, logprior, loglik, nxg, 0.009, num_iters, key, lambda x: x.mean(1))
        results["d-sgld"] = (np.asarray(draws), secs)
        for label, (draws, secs) in results.items():
            mw2 = [w2_marginal(draws[k - 1], mean, cov) for k in report_at]
            err = np.abs(draws[-1].mean(0) - mean).max() / sd.min()
            print(f"{name:9s}{label:9s} " + " ".join(f"{w:<9.3f}" for w in mw2) + f" {err:17.2f} {secs / num_iters:9.3f}")
        print(f"(d-admms set-up: closed-form prox matrices and compilation {setup:.1f} s)")
    print(f"posterior: marginal sds {sd.min():.4f}..{sd.max():.4f}; a perfect sampler's mW2 with {num_chains} chains is "
          f"about {np.sqrt(d * (1 / num_chains + 1 / (2 * num_chains))) * sd.mean():.3f}")  # fmt: skip


# ----------------------------------------------------------------------------- part 3

_DEVICES_SCRIPT = """
import time, sys, jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, {here!r})
import psample
from admm import regression
from jax.sharding import Mesh
N, d, C, K = {num_agents}, {d}, {num_chains}, {num_iters}
data, logprior, loglik, _, _ = regression(N, 50, d, seed=11)
def seconds_per_iteration(alg, dim):
    states = jax.jit(jax.vmap(alg.init))(jnp.zeros((C, dim)))
    step = jax.vmap(alg.step)
    def one(s, t):
        return step(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), t), C), s)[0], None
    compiled = jax.jit(lambda s: jax.lax.scan(one, s, jnp.arange(K))[0]).lower(states).compile()
    best = np.inf
    for _ in range(3):  # best of 3: the cores are shared
        t = time.perf_counter(); jax.block_until_ready(compiled(states)); best = min(best, time.perf_counter() - t)
    return best / K
for graph, exact in (("ring", True), ("complete", True), ("complete", False)):
    for size in (1, 2, 4):
        mesh = None if size == 1 else Mesh(np.array(jax.devices()[:size]), ("shards",))
        alg = psample.admm(logprior, loglik, data, graph=graph, prox="quadratic", mesh=mesh, layout_invariant=exact)
        sums = "exact sums" if exact else "float psum"
        print(f"{{graph:9s}} {{sums:10s}} {{size}} device(s): {{seconds_per_iteration(alg, d):.4f}} s/iteration")
# The iterative prox: Newton on the logistic regression of part 4 (20 agents x 28 rows, d = 31),
# with (layout_invariant) and without a per-chain copy of the shards.
from psample.models.regression import logistic_regression_data, logistic_regression_model
from psample.mcmc import admm
design, labels = logistic_regression_data()
model = admm.sharded_numpyro_model(logistic_regression_model, 20, {{"design": design[:560], "labels": labels[:560].astype(float)}})
lp = lambda z: model.logprior_fn({{"beta": z}})
ll = lambda z, s: model.loglik_fn({{"beta": z}}, s)
for exact in (True, False):
    for size in (1, 4):
        mesh = None if size == 1 else Mesh(np.array(jax.devices()[:size]), ("shards",))
        alg = psample.admm(lp, ll, model.data, graph="complete", prox="newton", mesh=mesh, layout_invariant=exact)
        copies = "shard per chain" if exact else "shared shard"
        print(f"logistic newton complete, {{copies:15s}} {{size}} device(s): {{seconds_per_iteration(alg, 31):.4f}} s/iteration")
"""


def part_devices(num_agents, d, num_chains, num_iters):
    print(f"\n## 3. Devices: D-ADMMS, d={d}, {num_agents} agents, {num_chains} chains, agents on a 'shards' mesh "
          "of 1/2/4 emulated CPU devices (they share the same cores)")  # fmt: skip
    script = _DEVICES_SCRIPT.format(here=os.path.dirname(os.path.abspath(__file__)), num_agents=num_agents, d=d,
                                    num_chains=num_chains, num_iters=num_iters)  # fmt: skip
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    print(out.stdout.strip() or out.stderr[-2000:])


# ----------------------------------------------------------------------------- part 4


def part_logistic(num_chains, num_draws, num_warmup, nuts_draws):
    from numpyro.infer import MCMC, NUTS

    from psample.models.regression import logistic_regression_data, logistic_regression_model

    design, labels = logistic_regression_data()
    design, labels = design[:560], labels[:560].astype(float)
    N = 20
    print(f"\n## 4. Logistic regression: breast cancer, 560 rows x d={design.shape[1]}, {N} agents x 28 rows, "
          f"{num_chains} chains x {num_draws} draws (after {num_warmup})")  # fmt: skip
    start = time.perf_counter()
    mcmc = MCMC(NUTS(logistic_regression_model), num_warmup=500, num_samples=nuts_draws, num_chains=4,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.PRNGKey(0), jnp.asarray(design), jnp.asarray(labels))
    ref = np.asarray(mcmc.get_samples()["beta"])
    print(f"reference: NumPyro NUTS 4 x {nuts_draws} draws on the pooled rows ({time.perf_counter() - start:.0f} s)")
    model = admm.sharded_numpyro_model(logistic_regression_model, N, {"design": design, "labels": labels})
    data = model.data
    logprior = lambda z: model.logprior_fn({"beta": z})  # noqa: E731
    loglik = lambda z, s: model.loglik_fn({"beta": z}, s)  # noqa: E731
    d = design.shape[1]
    x0 = 0.1 * jax.random.normal(jax.random.PRNGKey(2), (num_chains, N, d))
    key = jax.random.PRNGKey(3)
    rm, rs = ref.mean(0), ref.std(0)
    print(f"{'graph':9s}{'method':9s} {'max|dmean|/sd':>14s} {'median sd ratio':>16s} {'s/iter':>9s}")
    for graph in ("ring", "complete"):
        alg = psample.admm(logprior, loglik, data, rho=RHO, graph=graph, prox="newton")
        total = num_warmup + num_draws
        (_, draws), secs = run_admm(alg, x0, data, logprior, loglik, graph, total, key, lambda s: s.local_positions.mean(1))
        rows = {"d-admms": (np.asarray(draws)[num_warmup:], secs)}
        (_, draws), secs = run_dsgld(x0, data, logprior, loglik, graph_of(graph, N), 3e-4, total, key, lambda x: x.mean(1))
        rows["d-sgld"] = (np.asarray(draws)[num_warmup:], secs)
        for label, (draws, secs) in rows.items():
            flat = draws.reshape(-1, d)
            dm = np.abs(flat.mean(0) - rm) / rs
            ratio = np.median(flat.std(0) / rs)
            print(f"{graph:9s}{label:9s} {dm.max():14.2f} {ratio:16.2f} {secs / total:9.4f}")


# ----------------------------------------------------------------------------- part 5


def part_rho(num_agents, d, num_chains, num_iters, report_at, rhos):
    """D-ADMMS on the complete graph at scale for several rho: how far the network average gets."""
    # First the rule on the reference set-up (20 agents, d = 2), from the exact linear recursion
    # of tests/mcmc/admm/reference.py iterated to stationarity: the network average's variance over the
    # posterior's against the temperature (N - 1) / (2 rho).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.mcmc.admm.reference import N as N20, posterior, recursion, regression_data

    X, y = regression_data()
    _, cov20 = posterior(X, y)
    print("\n## 5. rho on the complete graph\nexact recursion, 20 agents, d=2 (stationary): "
          "network-average variance / posterior variance vs T = (N - 1) / (2 rho)")
    for rho in (1.0, 5.0, 9.5, 20.0):
        A, c, BQB = recursion(X, y, "complete", rho)
        Nd = N20 * 2
        S = np.zeros((2 * Nd, 2 * Nd))
        S[:Nd, :Nd] = np.eye(Nd)
        for _ in range(3000):
            S = A @ S @ A.T + BQB
        P = np.kron(np.ones((1, N20)) / N20, np.eye(2))
        ratio = np.diag(P @ S[:Nd, :Nd] @ P.T) / np.diag(cov20)
        print(f"  rho {rho:5.1f}: variance ratio {ratio[0]:.3f}, {ratio[1]:.3f}; T = {(N20 - 1) / (2 * rho):.3f}")
    data, logprior, loglik, mean, cov = regression(num_agents, 50, d, seed=11)
    sd = np.sqrt(np.diag(cov))
    print(f"\nscale: d={d}, {num_agents} agents x 50 points, {num_chains} chains, "
          f"{num_iters} iterations (penalty 2 rho (N - 1); noise sd 1 / (sqrt(2) rho) per agent)")  # fmt: skip
    x0 = jax.random.normal(jax.random.PRNGKey(0), (num_chains, num_agents, d))
    key = jax.random.PRNGKey(1)
    # The network average of the complete graph is an implicit Langevin chain (module notes of
    # psample.mcmc.admm): temperature T = (N - 1) / (2 rho), so its stationary sd is sqrt(T)
    # posterior sds, and it relaxes in about 2 rho N (N - 1) / lambda iterations along a
    # posterior precision eigenvalue lambda.
    lam = np.linalg.eigvalsh(np.linalg.inv(cov))
    print(f"posterior precision eigenvalues {lam.min():.0f}..{lam.max():.0f}")
    print(f"{'rho':>8s} {'2rho(N-1)':>10s} {'sqrt(T)':>8s} {'relax its':>13s} " + " ".join(f"mW2@{k:<5d}" for k in report_at)
          + f" {'max|mean err|/sd':>17s} {'median sd ratio':>16s} {'s/iter':>8s}")  # fmt: skip
    for rho in rhos:
        alg = psample.admm(logprior, loglik, data, rho=rho, graph="complete", prox="quadratic")
        (_, draws), secs = run_admm(alg, x0, data, logprior, loglik, "complete", num_iters, key,
                                    lambda s: s.local_positions.mean(1))  # fmt: skip
        draws = np.asarray(draws)
        mw2 = [w2_marginal(draws[k - 1], mean, cov) for k in report_at]
        err = np.abs(draws[-1].mean(0) - mean).max() / sd.min()
        ratio = np.median(draws[-1].std(0, ddof=1) / sd)
        relax = 2 * rho * num_agents * (num_agents - 1) / lam
        print(f"{rho:8.4g} {2 * rho * (num_agents - 1):10.4g} {np.sqrt((num_agents - 1) / (2 * rho)):8.2f} "
              f"{relax.min():6.0f}-{relax.max():<6.0f} " + " ".join(f"{w:<9.3f}" for w in mw2)
              + f" {err:17.2f} {ratio:16.2f} {secs / num_iters:8.3f}")  # fmt: skip
    print(f"posterior: marginal sds {sd.min():.4f}..{sd.max():.4f}; a perfect sampler's mW2 with {num_chains} chains is "
          f"about {np.sqrt(d * (1 / num_chains + 1 / (2 * num_chains))) * sd.mean():.3f}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--parts", default="1,2,3,4,5", help="comma-separated parts to run (default all)")
    parser.add_argument("--rhos", default=None, help="part 5: comma-separated rho values (default 499.5,5,0.5,0.05,0.01)")
    parser.add_argument("--iters", type=int, default=100, help="part 5: iterations (default 100)")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    q = args.quick
    print(f"# benchmarks/admm.py: {shlex.join(sys.argv)}")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPU cores (shared), "
          f"jax {jax.__version__} on {jax.default_backend()}, float64")  # fmt: skip
    t0 = time.perf_counter()
    if 1 in parts:
        part_reference(100, 100, (10, 20, 50, 100))
    if 2 in parts:
        if q:
            part_scale(100, 20, 20, 20, (10, 20))
        else:
            part_scale(1000, 100, 100, 50, (10, 25, 50))
    if 3 in parts:
        part_devices(*((100, 20, 20, 10) if q else (1000, 100, 20, 10)))
    if 4 in parts:
        part_logistic(*((10, 50, 20, 300) if q else (50, 300, 100, 1500)))
    if 5 in parts:
        if q:
            part_rho(100, 20, 20, 40, (10, 20, 40), (5.0, 0.5, 5.0 * 2 / 99))
        else:
            rhos = tuple(map(float, args.rhos.split(","))) if args.rhos else (499.5, 5.0, 0.5, 0.05, 0.01)
            report = tuple(k for k in (10, 25, 50, 100) if k < args.iters) + (args.iters,)
            part_rho(1000, 100, 20, args.iters, report, rhos)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
