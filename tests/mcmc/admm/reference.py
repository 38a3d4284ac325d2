"""The reference set-up of the D-ADMMS tests and its exact answers.

Bayesian linear regression (Tzikas et al. 2024's set-up): d = 2, 50 points per agent, features
N(0, I), noise sd 4, prior N(0, 10 I). Every local potential is quadratic, so one iteration is
affine in the state ``s = (x_1..x_N, p_1..p_N)`` and the noise: ``s' = A s + c + B xi``. The
exact mean and covariance of every agent after ``k`` iterations follow from ``m' = A m + c``,
``S' = A S A^T + B Q B^T``. ``A``, ``B``, ``c`` are built here in NumPy from the update formulas
of :mod:`psample.mcmc.admm.kernel` (not from the implementation). ``benchmarks/admm.py``
imports them too.
"""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
from scipy import stats

from psample.mcmc import admm

N, n, d, LAM, SD = 20, 50, 2, 10.0, 4.0
RHO = 5.0


def regression_data(num_agents=N, seed=10, sd=SD):
    """The reference data: ``X`` ``(num_agents, n, d)``, ``y`` ``(num_agents, n)``."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, np.sqrt(LAM), d)
    X = rng.normal(size=(num_agents, n, d))
    y = X @ truth + sd * rng.normal(size=(num_agents, n))
    return X, y


def logprior(x):
    return -0.5 * jnp.sum(x**2) / LAM


def loglik(x, shard):
    X, y = shard
    return -0.5 * jnp.sum((y - X @ x) ** 2) / SD**2


def posterior(X, y, sd=SD):
    """The exact posterior's mean ``(d,)`` and covariance ``(d, d)``."""
    precision = np.eye(d) / LAM + np.einsum("inj,ink->jk", X, X) / sd**2
    cov = np.linalg.inv(precision)
    return cov @ np.einsum("inj,in->j", X, y) / sd**2, cov


def adjacency(graph, num_agents=N):
    if graph == "complete":
        return np.ones((num_agents, num_agents)) - np.eye(num_agents)
    if graph == "ring":
        return nx.to_numpy_array(nx.cycle_graph(num_agents))
    return nx.to_numpy_array(graph, nodelist=range(num_agents))


def recursion(X, y, graph, rho=RHO, sd=SD):
    """``A``, ``c``, ``B Q B^T`` of the affine D-ADMMS map, from the iteration's formulas."""
    num_agents = X.shape[0]
    adj = adjacency(graph, num_agents)
    deg = adj.sum(1)
    H = np.einsum("inj,ink->ijk", X, X) / sd**2 + np.eye(d) / (LAM * num_agents)
    b = np.einsum("inj,in->ij", X, y) / sd**2
    K = np.zeros((num_agents * d, num_agents * d))
    for i in range(num_agents):
        K[i * d:(i + 1) * d, i * d:(i + 1) * d] = np.linalg.inv(H[i] + 2 * rho * deg[i] * np.eye(d))
    I = np.eye(d)
    Dm, Am = np.kron(np.diag(deg), I), np.kron(adj, I)
    Lm = Dm - Am
    # x' = K (b - p + 2 rho deg (c - xi)), c_i = (x_i + nsum_i / deg_i) / 2;  p' = p + rho L x'
    Axx, Axp, Bx, cx = rho * K @ (Dm + Am), -K, -2 * rho * K @ Dm, K @ b.reshape(-1)
    Nd = num_agents * d
    A = np.block([[Axx, Axp], [rho * Lm @ Axx, np.eye(Nd) + rho * Lm @ Axp]])
    c = np.concatenate([cx, rho * Lm @ cx])
    B = np.concatenate([Bx, rho * Lm @ Bx])
    return A, c, B @ B.T / (2 * rho**2)


def exact_moments(X, y, graph, ks, rho=RHO):
    """``{k: (mean, cov)}`` of the state after k iterations from x_i^0 ~ N(0, I), p_i^0 = 0."""
    A, c, BQB = recursion(X, y, graph, rho)
    Nd = X.shape[0] * d
    m = np.zeros(2 * Nd)
    S = np.zeros((2 * Nd, 2 * Nd))
    S[:Nd, :Nd] = np.eye(Nd)
    out = {}
    for k in range(1, max(ks) + 1):
        m, S = A @ m + c, A @ S @ A.T + BQB
        if k in ks:
            out[k] = (m.copy(), S.copy())
    return out


def stationary_average_cov(X, y, graph, rho, sd=SD):
    """Exact stationary covariance ``(d, d)`` of the network average (the recursion iterated by doubling)."""
    A, _, BQB = recursion(X, y, graph, rho, sd)
    S, Ak = BQB.copy(), A.copy()
    for _ in range(24):  # S_{2k} = S_k + A^k S_k A^kT: 2^24 iterations
        S, Ak = S + Ak @ S @ Ak.T, Ak @ Ak
    num_agents = X.shape[0]
    average = np.kron(np.ones((1, num_agents)) / num_agents, np.eye(d))
    Nd = num_agents * d
    return average @ S[:Nd, :Nd] @ average.T


_COMPILED = {}


def run_chains(alg, states, key, num_steps):
    """``num_steps`` iterations of every chain (keys as the runner makes them): ``(states, info)``.

    The compiled scan is kept per algorithm object (and recompiled only for a new number of
    chains or steps), so tests that share an algorithm share its compilation.
    """
    if alg not in _COMPILED:
        step = jax.vmap(alg.step)

        def scan(s, key, ts):
            num_chains = s.local_positions.shape[0]

            def one(s, t):
                return step(jax.random.split(jax.random.fold_in(key, t), num_chains), s)

            return jax.lax.scan(one, s, ts)

        _COMPILED[alg] = jax.jit(scan)
    return _COMPILED[alg](states, key, jnp.arange(num_steps))


_ADVANCE = {}


def advance(alg, states, key, num_steps):
    """``num_steps`` iterations of every chain, the same keys as :func:`run_chains`; the states only.

    The number of steps is an argument of the compiled loop, so one compilation per algorithm
    object (and number of chains) serves every length.
    """
    if alg not in _ADVANCE:
        step = jax.vmap(alg.step)

        def loop(s, key, num_steps):
            num_chains = s.local_positions.shape[0]

            def one(t, s):
                return step(jax.random.split(jax.random.fold_in(key, t), num_chains), s)[0]

            return jax.lax.fori_loop(0, num_steps, one, s)

        _ADVANCE[alg] = jax.jit(loop)
    return _ADVANCE[alg](states, key, num_steps)


def random_starts(alg_data, graph, num_chains, key):
    """States ``(num_chains, ...)`` with x_i^0 ~ N(0, I) i.i.d. (the reference code's start), duals 0."""
    network = admm.build_network(graph, N)
    target = admm.ShardedTarget(logprior, loglik)
    x0 = jax.random.normal(key, (num_chains, N, d))
    return jax.vmap(lambda x: admm.init(jnp.zeros(d), target, alg_data, network, local_positions=x))(x0)


def bonferroni_z(num_tests):
    return stats.norm.ppf(1 - 0.001 / (2 * num_tests))


def gaussian_w2(m1, S1, m2, S2):
    from scipy.linalg import sqrtm

    root = sqrtm(S2)
    cross = np.real(sqrtm(root @ S1 @ root))
    return float(np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross)))
