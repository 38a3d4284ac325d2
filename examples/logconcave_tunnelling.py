"""
Tunnelling between modes with log-concave chains
================================================

Tunnelling between modes with the chain of log-concave Markov chains (walk-jump sampling).

The target is a two-mode Gaussian mixture in d = 32 (modes at ±1, covariance 0.05 I,
weights 2:1): the modes are 51 standard deviations apart, so a Langevin chain stays in the mode
it starts in. The chain of log-concave Markov chains (Saremi, Park and Bach 2024) draws noisy
measurements y_k = x + σ ε_k one at a time, each from a log-concave conditional, and its jump
x̂_k = E[X | y_1..y_k] moves between the modes while the evidence is weak, then settles.

The script runs both samplers from the same starting points (every chain in the lighter mode,
the wrong one for two thirds of the draws), with the same number of gradient evaluations
per chain, prints the fraction of chains ending in each mode (exact: 2/3, 1/3) and writes a PNG
of one chain's trajectory x̂_k · θ (θ the unit vector between the modes) next to a MALA chain's.
The plotted CoLCMC chain is the one whose trajectory changes sides most often among the
chains (say so in the title); every chain's final point is in the printed proportions.

Run::

    python examples/logconcave_tunnelling.py [--chains 1000] [--plot tunnelling.png]
"""

from __future__ import annotations

import argparse
import math

import blackjax
import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import psample  # noqa: E402
import psample.models  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=1000)
    parser.add_argument("--measurements", type=int, default=64)
    parser.add_argument("--plot", default="tunnelling.png", help="PNG path of the trajectory plot")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    d = 32
    target = psample.models.two_mode_mixture(d=d)
    theta = jnp.asarray(target.exact["mode_axis"])
    sigma = target.hints["logconcave_chain"]["sigma"]  # √(d + 0.05): every conditional log-concave
    positions = jnp.tile(-jnp.ones(d), (args.chains, 1))  # every chain in the lighter mode

    # Defaults for everything but sigma and the number of measurements.
    algorithm = psample.logconcave_chain(
        sigma=sigma, num_measurements=args.measurements, smoothed_score=target.exact["smoothed_score"]
    )
    trace = psample.sample(
        algorithm, positions, jax.random.PRNGKey(1), args.measurements, target=target,
        observables={"proj": lambda state: state.position @ theta}, progress=False,
    )  # fmt: skip
    proj = trace.observables["proj"]  # (chain, k): x̂_k · θ
    budget = int(trace.info.num_score_evals.sum(axis=1).mean())

    # MALA from the same points, with the same number of gradients per chain.
    mala = blackjax.mala(target.logdensity_fn, 0.02)
    mala_trace = psample.sample(
        mala, positions, jax.random.PRNGKey(2), budget, target=target,
        observables={"proj": lambda state: state.position @ theta}, progress=False,
    )  # fmt: skip
    mala_proj = mala_trace.observables["proj"]

    n = args.chains
    p_colcmc = float(np.mean(proj[:, -1] > 0))
    p_mala = float(np.mean(mala_proj[:, -1] > 0))
    se = math.sqrt(p_colcmc * (1 - p_colcmc) / n)
    print(f"two_mode_mixture(d={d}), {n} chains started in the mode of weight 1/3, {budget} gradients per chain")
    print(f"  exact:                      mode +1: {2 / 3:.4f}   mode -1: {1 / 3:.4f}")
    print(f"  log-concave chain (m={args.measurements}): mode +1: {p_colcmc:.4f}   mode -1: {1 - p_colcmc:.4f}   (± {se:.4f})")
    print(f"  MALA (step 0.02):           mode +1: {p_mala:.4f}   mode -1: {1 - p_mala:.4f}")
    print(f"  MALA acceptance rate: {float(np.mean(mala_trace.info.acceptance_rate)):.2f}")

    crossings = np.sum(np.diff(np.sign(proj), axis=1) != 0, axis=1)
    chain = int(np.argmax(crossings))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    modes = (math.sqrt(d), -math.sqrt(d))
    for ax in (ax0, ax1):
        for level in modes:
            ax.axhline(level, color="grey", lw=0.8, ls="--")
    ax0.plot(np.arange(1, args.measurements + 1), proj[chain], "o-", ms=3)
    ax0.set_xlabel("measurement k")
    ax0.set_ylabel("x̂_k · θ   (modes at ±√d)")
    ax0.set_title(f"log-concave chain: chain {chain} ({crossings[chain]} side changes, the most of {n})")
    ax1.plot(np.arange(1, budget + 1), mala_proj[chain], lw=0.8, color="C3")
    ax1.set_xlabel("MALA step (same gradient budget)")
    ax1.set_title(f"MALA, chain {chain}: stays in its starting mode")
    fig.suptitle(f"two-mode mixture, d={d}, weights 2:1: final fractions in mode +1: "
                 f"CoLCMC {p_colcmc:.3f}, MALA {p_mala:.3f}, exact 0.667")  # fmt: skip
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"trajectory plot written to {args.plot}")


if __name__ == "__main__":
    main()
