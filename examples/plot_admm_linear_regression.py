"""
Distributed linear regression with ADMM against the exact posterior
===================================================================

D-ADMMS (:func:`psample.admm`) on a Bayesian linear regression whose 80 rows are split over
10 agents of 8 rows each; every agent sees only its own shard and its neighbours' local
samples. The model is conjugate, so the posterior is an exact Gaussian, and the law that
D-ADMMS converges to is predicted in closed form: on a regular graph of degree :math:`D` the
network average is an implicit Langevin chain at temperature :math:`T = D / (2\\rho)` with step
:math:`\\eta = 1 / (2 \\rho D N)`, so for a posterior of precision :math:`H` its stationary
covariance is :math:`T H^{-1} (I + \\eta H / 2)^{-1}` (exact when every shard has the same
curvature), not :math:`H^{-1}`. Two runs show it: the complete graph with
:math:`\\rho = (N - 1) / 2` (temperature 1: the posterior's spread to within a few per cent)
and the ring with the paper's default :math:`\\rho = 5` (temperature 0.2: the right mean, a
spread less than half the posterior's). See :doc:`/families/admm` for the method and its
tuning.

The agents run vectorised on one device here; the same call places them in blocks on the
devices of a mesh (``mesh=``, see ``examples/distributed_logistic_regression.py``). Small
sizes: this script runs on every build of the documentation.
"""

import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import psample
from psample.mcmc import admm

num_agents, rows_per_agent, d = 10, 8, 2
noise_sd, prior_sd = 1.0, 1.0
X = np.asarray(jax.random.normal(jax.random.key(0), (num_agents * rows_per_agent, d)))
noise = np.asarray(jax.random.normal(jax.random.key(1), (num_agents * rows_per_agent,)))
y = X @ np.array([1.0, -0.5]) + noise_sd * noise


def logprior_fn(params):
    return -0.5 * jnp.sum(params["beta"] ** 2) / prior_sd**2


def loglik_fn(params, shard):  # the log-likelihood of one agent's rows
    rows, targets = shard
    return -0.5 * jnp.sum((targets - rows @ params["beta"]) ** 2) / noise_sd**2


data = (admm.shard(jnp.asarray(X), num_agents), admm.shard(jnp.asarray(y), num_agents))

# The exact posterior N(mean, H^-1) on the pooled rows.
H = X.T @ X / noise_sd**2 + np.eye(d) / prior_sd**2
posterior_cov = np.linalg.inv(H)
posterior_mean = posterior_cov @ (X.T @ y) / noise_sd**2

# %%
# Two runs of 8 chains: the complete graph at temperature 1 and the ring at the default
# ``rho``. ``prox="quadratic"`` is the closed-form proximal step of a Gaussian likelihood.

settings = {"complete graph, rho = 4.5": ("complete", (num_agents - 1) / 2, num_agents - 1),
            "ring, rho = 5 (default)": ("ring", 5.0, 2)}
runs = {}
for label, (graph, rho, degree) in settings.items():
    algorithm = psample.admm(logprior_fn, loglik_fn, data, rho=rho, graph=graph, prox="quadratic",
                             position_like={"beta": jnp.zeros(d)})
    trace = psample.sample(algorithm, {"beta": jnp.zeros((8, d))}, jax.random.key(2), num_draws=3000,
                           num_warmup=300, progress=False)
    temperature, step = degree / (2 * rho), 1 / (2 * rho * degree * num_agents)
    rule = temperature * posterior_cov @ np.linalg.inv(np.eye(d) + step * H / 2)
    runs[label] = (np.asarray(trace.positions["beta"]).reshape(-1, d), rule)
    print(label)
    print(az.summary(trace))

print("\nposterior mean", np.round(posterior_mean, 3), " sd", np.round(np.sqrt(np.diag(posterior_cov)), 3))
for label, (draws, rule) in runs.items():
    print(f"{label}: sd / posterior sd {np.round(draws.std(0) / np.sqrt(np.diag(posterior_cov)), 2)}, "
          f"predicted {np.round(np.sqrt(np.diag(rule) / np.diag(posterior_cov)), 2)}")

# %%
# The network average's draws of the first coefficient against the exact posterior density
# and against the law predicted by the temperature rule.

grid = np.linspace(posterior_mean[0] - 4 * np.sqrt(posterior_cov[0, 0]),
                   posterior_mean[0] + 4 * np.sqrt(posterior_cov[0, 0]), 200)


def normal_pdf(x, mean, var):
    return np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)


fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharex=True, sharey=True)
for ax, (label, (draws, rule)) in zip(axes, runs.items()):
    ax.hist(draws[:, 0], bins=40, density=True, color="C0", alpha=0.5, label="D-ADMMS network average")
    ax.plot(grid, normal_pdf(grid, posterior_mean[0], posterior_cov[0, 0]), "k", lw=1.5,
            label="exact posterior")
    ax.plot(grid, normal_pdf(grid, posterior_mean[0], rule[0, 0]), "C3--", lw=1.5,
            label="predicted: $T H^{-1}(I + \\eta H/2)^{-1}$")
    ax.set_title(label)
    ax.set_xlabel(r"$\beta_0$")
axes[0].set_ylabel("density")
axes[0].legend(fontsize=8, loc="upper left")
fig.suptitle("Linear regression, 10 agents x 8 rows, 8 chains x 3000 draws")
fig.tight_layout()
