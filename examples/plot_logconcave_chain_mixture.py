"""
Log-concave chains across the modes of a 2-D mixture
=====================================================

The chain of log-concave Markov chains (:func:`psample.logconcave_chain`; Saremi, Park
and Bach 2024) on a two-dimensional mixture of three Gaussians whose modes are 11 to 13
standard deviations apart. Each sample is the jump :math:`\\hat x_m = E[X \\mid y_1, \\dots,
y_m]` after ``m`` noisy measurements :math:`y_k = x + \\sigma\\varepsilon_k`, each drawn from a
log-concave conditional, so the chains move between modes that a Langevin chain never leaves.
The mixture's exact smoothed score comes with the target (``target.exact["smoothed_score"]``),
and ``sigma`` and ``num_measurements`` from its hints. The draws are compared with the exact
density and the exact mode weights; a MALA run from the same starting points, with as many
gradient evaluations per chain, shows what a local sampler does. Small sizes: this script runs
on every build of the documentation (seconds on a CPU).
"""

import blackjax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import psample
import psample.mcmc.logconcave_chain
import psample.models

weights = np.array([0.5, 0.3, 0.2])
means = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
target = psample.models.gaussian_mixture(weights, means, np.full(3, 0.2))
hints = target.hints["logconcave_chain"]
print(f"sigma = {hints['sigma']:.3f}, num_measurements = {hints['num_measurements']}")

num_chains = 1000
init_key, run_key, mala_key = jax.random.split(jax.random.PRNGKey(0), 3)
# Every chain starts in the lightest mode, (0, 4): the wrong one for 80% of the mass.
start = jnp.asarray(means[2]) + 0.3 * jax.random.normal(init_key, (num_chains, 2))

# One step adds one measurement; thin=m keeps each chain's m-th jump, its sample
# (psample.logconcave_chain_samples does the same in one call).
m = hints["num_measurements"]
algorithm = psample.logconcave_chain(sigma=hints["sigma"], num_measurements=m,
                                     smoothed_score=target.exact["smoothed_score"])
trace = psample.sample(algorithm, start, run_key, num_draws=1, thin=m, progress=False,
                       compute_convergence_checks=False)  # one independent draw per chain
x_lc = np.asarray(trace.positions).reshape(-1, 2)
se = x_lc.std(0, ddof=1) / np.sqrt(num_chains)
print("mean:", x_lc.mean(0).round(3), "+-", se.round(3), " exact:", target.exact["mean"].round(3))

# %%
# MALA (BlackJAX's kernel through :func:`psample.sample`) from the same points, with as many
# gradient evaluations per chain as the log-concave chain spends on its sample: one score per
# inner Langevin step (200 on the first measurement, 20 on each later one) and one per jump.

budget = int(psample.mcmc.logconcave_chain.default_steps_schedule(m).sum()) + m
mala = psample.sample(blackjax.mala(target.logdensity_fn, step_size=0.1), start, mala_key,
                      num_draws=1, thin=budget, progress=False, compute_convergence_checks=False)
x_mala = np.asarray(mala.positions).reshape(-1, 2)
print("gradient evaluations per chain:", budget)

# %%
# Mode weights: the fraction of draws nearest each component's mean, with binomial standard
# errors (independent chains), against the exact weights.


def mode_weights(x):
    nearest = np.argmin(((x[:, None, :] - means) ** 2).sum(-1), axis=1)
    p = np.bincount(nearest, minlength=len(weights)) / len(x)
    return p, np.sqrt(p * (1 - p) / len(x))


p_lc, se_lc = mode_weights(x_lc)
p_mala, se_mala = mode_weights(x_mala)
for k in range(len(weights)):
    print(f"mode {k}: exact {weights[k]:.3f}  log-concave chain {p_lc[k]:.3f} +- {se_lc[k]:.3f}"
          f"  MALA {p_mala[k]:.3f} +- {se_mala[k]:.3f}")

# %%
# The draws over the exact log-density's contours (0.5, 2, 4.5 and 8 below its maximum),
# and the mode weights against the exact ones. The mode weights are right, but the draws show
# the method's known bias: a sample is the posterior mean of ``x`` given ``m`` noisy
# measurements, so within a mode of variance :math:`\lambda` it has the smaller variance
# :math:`\lambda^2/(\lambda + \sigma^2/m)`, and a few samples sit between the modes where the
# measurements left doubt. The squared W2 bias is at most :math:`d\sigma^2/m`; the hinted
# ``num_measurements`` makes it a quarter of the target's total variance, and more measurements
# shrink it.

xx, yy = np.meshgrid(np.linspace(-6, 6, 241), np.linspace(-3, 7, 201))
logp = np.asarray(jax.vmap(target.logdensity_fn)(jnp.stack([xx.ravel(), yy.ravel()], -1))).reshape(xx.shape)

fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
ax0.plot(*x_mala.T, "x", ms=3, alpha=0.2, color="C3", label="MALA")
ax0.plot(*x_lc.T, ".", ms=3, alpha=0.6, color="C0", label="log-concave chain")
ax0.contour(xx, yy, logp, levels=np.sort(logp.max() - np.array([0.5, 2.0, 4.5, 8.0])), colors="k",
            linewidths=0.7, linestyles="solid")
ax0.set_xlabel("$x_0$")
ax0.set_ylabel("$x_1$")
ax0.set_title("draws over the exact density (all chains start at the top mode)", fontsize=10)
ax0.legend(loc="upper left", fontsize=8)
positions = np.arange(len(weights))
ax1.bar(positions - 0.25, weights, 0.25, color="0.6", label="exact")
ax1.bar(positions, p_lc, 0.25, yerr=2 * se_lc, color="C0", label="log-concave chain (±2 SE)")
ax1.bar(positions + 0.25, p_mala, 0.25, yerr=2 * se_mala, color="C3", label="MALA (±2 SE)")
ax1.set_xticks(positions, [f"({m[0]:g}, {m[1]:g})" for m in means])
ax1.set_xlabel("mode (component mean)")
ax1.set_ylabel("fraction of draws")
ax1.set_title(f"mode weights, {num_chains} chains x 1 draw, {budget} gradients each", fontsize=10)
ax1.legend(fontsize=8)
fig.tight_layout()
