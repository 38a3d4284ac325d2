"""
Tempered SMC: the model evidence against its exact value
========================================================

Tempered sequential Monte Carlo (:func:`psample.smc.tempered_smc`) moves a population of
particles from the prior to the posterior through :math:`p(x) L(x)^\\lambda`, choosing each
temperature :math:`\\lambda` so that the conditional effective sample size halves, and
multiplies the normalising constants of the steps into an estimate of the evidence
:math:`Z = \\int p(x) L(x)\\,dx`. The model is conjugate (``psample.models.conjugate_gaussian``:
the mean of 30 Gaussian observations in 3 dimensions, under a wide Gaussian prior), so its log
evidence and its posterior are known exactly.
Independent replicates give the Monte Carlo error of every estimate; each replicate also carries
its own single-run error bar (Lee and Whiteley's estimator). Small sizes: this script runs on
every build of the documentation (seconds on a CPU).
"""

import jax
import matplotlib.pyplot as plt
import numpy as np

import psample
import psample.models

target = psample.models.conjugate_gaussian(d=3, n=30, prior_sd=5.0)
algorithm = psample.smc.tempered_smc(target)  # HMC moves, adaptive schedule, multinomial resampling
result = psample.run_particles(algorithm, jax.random.PRNGKey(0), num_particles=500,
                               num_replicates=16, progress=False)
exact = target.exact["log_Z"]
print(f"log Z = {result.log_Z_mean:.3f} +- {result.log_Z_se:.3f} (16 replicates); exact {exact:.3f}")
mean, se = result.weighted_mean(lambda s: s["mu"])
print("posterior mean of mu:", np.round(mean, 3), "+-", np.round(se, 3),
      " exact:", np.round(target.exact["mean"], 3))

# %%
# Left: the temperatures the adaptive schedule chose, one line per replicate. Right: each
# replicate's log Z with its single-run error bar (±2 SE), the mean over replicates with its
# error bar, and the exact value.

temperature = np.asarray(result.info.temperature)  # (replicate, step), NaN after the end
single = result.log_Z_se_single_run
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
for r in range(result.num_replicates):
    t = temperature[r][np.isfinite(temperature[r])]
    ax0.plot(np.arange(len(t) + 1), np.concatenate([[0.0], t]), "o-", ms=3, color="C0", alpha=0.4)
ax0.set_yscale("symlog", linthresh=1e-3)
ax0.set_xlabel("step")
ax0.set_ylabel("temperature $\\lambda$")
ax0.set_title("adaptive schedule (16 replicates)")
replicates = np.arange(result.num_replicates)
ax1.errorbar(replicates, result.log_Z, yerr=2 * single, fmt="o", ms=4, label="replicate (±2 single-run SE)")
ax1.axhline(exact, color="k", lw=1, label="exact")
ax1.axhspan(result.log_Z_mean - 2 * result.log_Z_se, result.log_Z_mean + 2 * result.log_Z_se, color="C1",
            alpha=0.3, label="mean over replicates (±2 SE)")
ax1.set_xlabel("replicate")
ax1.set_ylabel("$\\log Z$")
ax1.set_title("log evidence, 500 particles per replicate")
ax1.legend(fontsize=8)
fig.tight_layout()
