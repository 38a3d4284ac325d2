"""D-ADMMS (psample.mcmc.admm.kernel) against the exact linear recursion of Gaussian targets.

The exact law comes from :mod:`.reference`. Tolerances: many independent chains at one
iteration, so MCSE(mean) = sd / sqrt(C), MCSE(variance) = S_aa sqrt(2 / C), MCSE(covariance) =
sqrt((S_aa S_bb + S_ab^2) / C) (the ensemble is exactly Gaussian); z is the Bonferroni bound
Phi^-1(1 - 0.001 / (2K)) over the K comparisons of a test.
"""

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import psample
from psample.errors import InitialPointError, InvalidTuningError, NetworkError, NumericalWarning, ShapeError
from psample.mcmc import admm

from .reference import (
    RHO,
    LAM,
    SD,
    N,
    advance,
    bonferroni_z,
    d,
    exact_moments,
    gaussian_w2,
    loglik,
    logprior,
    posterior,
    random_starts,
    regression_data,
    run_chains,
    stationary_average_cov,
)

# ----------------------------------------------------------------------------- the recursion


@pytest.mark.heavy
@pytest.mark.parametrize("graph", ["ring", pytest.param("complete", marks=pytest.mark.slow),
                                   pytest.param("regular", marks=pytest.mark.slow)])
def test_finite_k_moments_of_every_agent_match_the_exact_recursion(graph, reference_data, ring_quadratic):
    if graph == "regular":
        graph = nx.random_regular_graph(3, N, seed=2)
    X, y = regression_data()
    data = reference_data
    if graph == "ring":
        alg = ring_quadratic
    else:
        alg = psample.admm(logprior, loglik, data, rho=RHO, graph=graph, prox="quadratic")
    C, ks = 2000, (1, 5, 50)
    exact = exact_moments(X, y, graph, ks)
    states = random_starts(data, graph, C, jax.random.PRNGKey(0))
    z = bonferroni_z(len(ks) * N * (d + 3))
    done = 0
    for k in ks:
        states = advance(alg, states, jax.random.PRNGKey(1 + k), k - done)
        done = k
        m, S = exact[k]
        x = np.asarray(states.local_positions).reshape(C, N * d)
        mean_err = np.abs(x.mean(0) - m[: N * d]) / np.sqrt(np.diag(S)[: N * d] / C)
        assert mean_err.max() < z, (k, mean_err.max())
        for i in range(N):
            block = slice(i * d, (i + 1) * d)
            Si = S[block, block]
            emp = np.cov(x[:, block].T)
            se = np.sqrt((np.outer(np.diag(Si), np.diag(Si)) + Si**2) / C)
            assert (np.abs(emp - Si) / se).max() < z, (k, i, emp, Si)


@pytest.mark.heavy
def test_noise_free_admm_reaches_the_posterior_mode_in_consensus(reference_data):
    """ADMM without noise: every agent -> posterior mean (= MAP) to 1e-8, duals summing to 0."""
    X, y = regression_data()
    mu, _ = posterior(X, y)
    data = reference_data
    # The complete graph's penalty 2 rho (N - 1) dwarfs each agent's curvature: it contracts
    # slowly (the reference's noise-free ADMM is still far from the mode after 100 iterations).
    for graph, prox, steps in [("ring", "quadratic", 600), ("complete", "quadratic", 3000), ("ring", "newton", 600)]:
        alg = psample.admm(logprior, loglik, data, graph=graph, prox=prox, noise=False, prox_tol=1e-12)
        states = jax.vmap(alg.init)(jnp.zeros((1, d)))
        states, info = run_chains(alg, states, jax.random.PRNGKey(0), steps)
        x = np.asarray(states.local_positions[0])
        assert np.abs(x - mu).max() < 1e-8, (graph, prox, np.abs(x - mu).max())
        assert float(info.consensus_distance[-1, 0]) < 1e-8
        assert float(np.max(info.dual_sum)) < 1e-9 * RHO * N
        np.testing.assert_allclose(np.asarray(states.position[0]), mu, atol=1e-8)


@pytest.mark.heavy
def test_stationary_mean_is_unbiased_and_the_bias_is_the_recursions(reference_data, ring_quadratic):
    """Large k on the ring: agent means = posterior mean; covariance = the recursion's, not the posterior's.

    The recursion's stationary covariance comes from iterating it (A has a unit eigenvalue:
    the conserved sum of duals, so no Lyapunov solver). Its W2 to the posterior is the
    method's bias; the ensemble's agrees with it, and it is far from 0 (asserted as predicted).
    """
    X, y = regression_data()
    mu, post_cov = posterior(X, y)
    data = reference_data
    graph, k, C = "ring", 300, 2000
    stationary = exact_moments(X, y, graph, (k, 2 * k))
    (m, S), (m2, S2) = stationary[k], stationary[2 * k]
    assert np.abs(S2 - S).max() < 1e-12 and np.abs(m2 - m).max() < 1e-8  # converged by k
    alg = ring_quadratic
    states = advance(alg, random_starts(data, graph, C, jax.random.PRNGKey(3)), jax.random.PRNGKey(4), k)
    x = np.asarray(states.local_positions)  # (C, N, d)
    z = bonferroni_z(N * d * 2)
    for i in range(N):
        Si = S[i * d:(i + 1) * d, i * d:(i + 1) * d]
        np.testing.assert_allclose(m[i * d:(i + 1) * d], mu, atol=1e-8)  # unbiased mean (exact as k grows)
        assert (np.abs(x[:, i].mean(0) - mu) / np.sqrt(np.diag(Si) / C)).max() < z
        assert (np.abs(x[:, i].var(0) - np.diag(Si)) / (np.diag(Si) * np.sqrt(2 / C))).max() < z
    predicted = gaussian_w2(m[:d], S[:d, :d], mu, post_cov)
    fitted = gaussian_w2(x[:, 0].mean(0), np.cov(x[:, 0].T), mu, post_cov)
    # The agents' stationary variance is about twice the posterior's, so the W2 of the exact
    # law is far from 0 (the complete graph's is about twice the ring's); the fit of 2000 draws
    # estimates the W2 to within a few per cent.
    assert 0.06 < predicted < 0.09
    assert abs(fitted - predicted) < 0.15 * predicted, (fitted, predicted)
    assert np.all(np.diag(S[:d, :d]) > 1.5 * np.diag(post_cov))


@pytest.mark.parametrize("PROXES", [("quadratic",), pytest.param(("lbfgs",), marks=pytest.mark.slow)])
def test_without_edges_every_agent_stays_at_its_local_map(PROXES):
    X, y = regression_data(num_agents=5)
    data = (jnp.asarray(X), jnp.asarray(y))
    for prox in PROXES:
        alg = psample.admm(logprior, loglik, data, graph=nx.empty_graph(5), prox=prox, prox_tol=1e-12)
        states, info = run_chains(alg, jax.vmap(alg.init)(jnp.ones((3, d))), jax.random.PRNGKey(0), 3)
        for i in range(5):
            H = X[i].T @ X[i] / SD**2 + np.eye(d) / (LAM * 5)
            local_map = np.linalg.solve(H, X[i].T @ y[i] / SD**2)
            np.testing.assert_allclose(np.asarray(states.local_positions[:, i]), np.broadcast_to(local_map, (3, d)),
                                       atol=1e-10)  # fmt: skip
        assert np.all(np.asarray(info.prox_residual) < 1e-9)


def rule_cov(post_cov, graph, rho, num_agents):
    """The rule of psample.mcmc.admm: an implicit Langevin step eta = 1/(2 rho deg N) at temperature deg/(2 rho)."""
    degree = num_agents - 1 if graph == "complete" else 2
    temperature, eta = degree / (2 * rho), 1 / (2 * rho * degree * num_agents)
    return temperature * np.linalg.inv(np.linalg.inv(post_cov) + 0.5 * eta * np.linalg.inv(post_cov) @ np.linalg.inv(post_cov))


@pytest.mark.parametrize("graph", ["complete", "ring"])
def test_the_readme_rule_for_the_network_average_covariance_holds(graph):
    """README and psample.mcmc.admm: covariance T H^-1 (I + eta H / 2)^-1, T = deg/(2 rho), eta = 1/(2 rho deg N).

    Exact (to the recursion's round-off) when every shard has the same curvature; within 7% on
    the reference data, whose shards differ (largest on the ring at rho = 1). Where eta * lambda
    is not small (noise sd 0.4: posterior precision about 3,000 on 10 agents) the old rule
    "rho = (N - 1) / 2 gives the posterior's variance" is far off (the (I + eta H / 2)^-1
    factor); this one is a lower bound within 30% there (unequal shards). Deterministic: the
    exact law of the recursion.
    """
    X, y = regression_data()
    equal = np.broadcast_to(X[:1], X.shape).copy()
    for rho in (1.0, RHO, 9.5, 20.0):
        for design, tol in ((equal, 1e-5), (X, 0.07)):
            _, post_cov = posterior(design, y)
            exact = stationary_average_cov(design, y, graph, rho)
            rule = rule_cov(post_cov, graph, rho, N)
            assert np.abs(np.diag(exact) / np.diag(rule) - 1).max() < tol, (rho, tol, np.diag(exact), np.diag(rule))
    # High precision: 10 agents x 50 rows, noise sd 0.4 instead of 4 (lambda ~ 100x larger).
    X10, y10 = regression_data(num_agents=10, sd=0.4)
    _, post_cov = posterior(X10, y10, sd=0.4)
    exact = stationary_average_cov(X10, y10, graph, 4.5, sd=0.4)
    rule = rule_cov(post_cov, graph, 4.5, 10)
    excess = np.diag(exact) / np.diag(rule) - 1
    assert np.all((excess > 0) & (excess < 0.3)), (np.diag(exact), np.diag(rule))
    if graph == "complete":  # the old rule: rho = (N - 1) / 2 = 4.5 "gives the posterior's variance"
        assert np.all(np.diag(exact) / np.diag(post_cov) < 0.6), np.diag(exact) / np.diag(post_cov)


# ----------------------------------------------------------------------------- runner, observables


def test_sample_records_the_network_average_and_local_positions(ring_quadratic):
    alg = ring_quadratic
    # 30 draws from zeros have not converged: that check is not what this test is about.
    trace = psample.sample(alg, jnp.zeros((4, d)), jax.random.PRNGKey(0), 30, progress=False,
                           observables={"local": lambda s: s.local_positions},
                           compute_convergence_checks=False)  # fmt: skip
    local = np.asarray(trace.observables["local"])
    assert local.shape == (4, 30, N, d)
    np.testing.assert_allclose(np.asarray(trace.positions), local.mean(axis=2), atol=1e-12)
    assert np.asarray(trace.info.prox_residual).max() < 1e-9
    tree = trace.to_datatree()
    assert "posterior" in tree.children


def test_non_finite_gradients_are_counted_and_warned():
    """A log-likelihood that is NaN beyond x > 0.3 on agent 0 (its gradient stays finite): the
    agents whose prox ends at a NaN value are counted in info.num_nonfinite, and the runner
    warns with the count."""
    flags = jnp.zeros((4, 1)).at[0].set(1.0)

    def ll(x, flag):
        value = -0.5 * jnp.sum((x - 0.2) ** 2)
        return jnp.where((flag[0] > 0) & (x[0] > 0.3), jnp.nan, value)

    alg = psample.admm(lambda x: -0.5 * jnp.sum(x**2), ll, flags, rho=0.5, graph="complete", prox="newton")
    with pytest.warns(NumericalWarning, match="num_nonfinite"):
        trace = psample.sample(alg, jnp.zeros((4, 1)), jax.random.PRNGKey(0), 20, progress=False)
    assert int(np.asarray(trace.info.num_nonfinite).sum()) > 0


# ----------------------------------------------------------------------------- errors


def test_bad_input_is_refused_before_any_work():
    X, y = regression_data(num_agents=6)
    data = (jnp.asarray(X), jnp.asarray(y))
    with pytest.raises(InvalidTuningError, match="rho.*-1"):
        psample.admm(logprior, loglik, data, rho=-1.0)
    with pytest.raises(InvalidTuningError, match="rho"):
        psample.admm(logprior, loglik, data, rho=0)
    with pytest.raises(ShapeError, match="disagree on the number of agents"):
        psample.admm(logprior, loglik, (jnp.asarray(X), jnp.asarray(y[:5])))
    with pytest.raises(ShapeError, match="7 nodes.*6 agents"):
        psample.admm(logprior, loglik, data, graph=nx.cycle_graph(7))
    with pytest.raises(NetworkError, match="disconnected"):
        psample.admm(logprior, loglik, data, graph=nx.disjoint_union(nx.cycle_graph(3), nx.cycle_graph(3)))
    with pytest.raises(NetworkError, match="at least 3"):
        psample.admm(logprior, loglik, (jnp.asarray(X[:2]), jnp.asarray(y[:2])), graph="ring")
    with pytest.raises(InvalidTuningError, match="graph"):
        psample.admm(logprior, loglik, data, graph="star")
    with pytest.raises(InvalidTuningError, match="prox"):
        psample.admm(logprior, loglik, data, prox="bfgs")
    with pytest.raises(InvalidTuningError, match="prox_steps"):
        psample.admm(logprior, loglik, data, prox_steps=0)
    with pytest.raises(ShapeError, match="301 observations.*num_agents=6"):
        admm.shard(np.zeros((301, 2)), 6)
    assert admm.shard(np.zeros((300, 2)), 6).shape == (6, 50, 2)


def test_a_non_finite_local_loglik_at_the_start_names_the_agents():
    X, y = regression_data(num_agents=6)
    y = y.copy()
    y[4, 0] = np.nan
    alg = psample.admm(logprior, loglik, (jnp.asarray(X), jnp.asarray(y)))
    with pytest.raises(InitialPointError, match=r"agent\(s\) \[4\]"):
        alg.init(jnp.zeros(d))
    with pytest.raises(InitialPointError, match=r"chain\(s\) \[0, 1\]"):
        psample.sample(alg, jnp.zeros((2, d)), jax.random.PRNGKey(0), 3, progress=False)


def test_quadratic_prox_refuses_a_non_gaussian_likelihood():
    X, y = regression_data(num_agents=4)
    alg = psample.admm(logprior, lambda x, s: -jnp.sum(jnp.log1p((s[1] - s[0] @ x) ** 2)),
                       (jnp.asarray(X), jnp.asarray(y)), prox="quadratic")  # fmt: skip
    with pytest.raises(InvalidTuningError, match="quadratic"):
        alg.step(jax.random.PRNGKey(0), alg.init(jnp.zeros(d)))


def test_the_package_keeps_every_public_name_of_the_module():
    """psample.mcmc.admm became a package: every name of the old module is still there, and
    psample.admm is its top-level API."""
    from psample.mcmc.admm import data, kernel, mean_offset, network, numpyro

    assert psample.admm is admm.as_top_level_api is kernel.as_top_level_api
    assert admm.shard is data.shard and admm.load_shards is data.load_shards
    assert admm.build_network is network.build_network and admm.SHARD_AXIS == "shards"
    assert admm.check_mean_offset is mean_offset.check_mean_offset
    assert admm.sharded_numpyro_model is numpyro.sharded_numpyro_model
    for name in ("ADMMState", "ADMMInfo", "ShardedTarget", "Network", "init", "build_kernel", "as_top_level_api",
                 "build_network", "shard", "sharded_numpyro_model", "ShardedModel", "SHARD_AXIS", "load_shards",
                 "MeanOffset", "check_mean_offset"):  # fmt: skip
        assert name in admm.__all__ and hasattr(admm, name), name
