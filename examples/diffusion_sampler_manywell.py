"""
Learned diffusion sampler (DDS) on the 32-d many-well
=====================================================

A learned diffusion sampler (DDS) on the 32-dimensional many-well, with exact importance weights.

The many-well target has 2^16 modes and a known normaliser (log Z = 164.6957). DDS is trained
with the reverse-KL loss (``psample.diffusion.train_sampler``; a tqdm bar shows the loss,
Ctrl-C stops training and keeps the parameters so far, ``--checkpoint`` makes training
resumable); then 2,000 weighted particles give log Z by importance weighting, with its
standard error, next to the ELBO and the EUBO (from backward paths of exact draws). The first
two coordinates of importance-resampled draws are plotted over the exact density of that pair.

With ``--backward-smc M`` the sampler trains with the log-variance loss instead, on its own
paths plus backward paths from ``M`` draws of psample's tempered SMC (``target_samples``):
these keep the light wells that reverse-KL training drops. The best recipe of
BENCHMARKS.md (a long training run)::

    python examples/diffusion_sampler_manywell.py --method pis --backward-smc 1000 --init-std 1.0 \
        --iterations 45000 --lr-decay

Run::

    python examples/diffusion_sampler_manywell.py [--iterations 2000] [--plot manywell.png]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

import psample  # noqa: E402
import psample.models  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=50, help="sampler steps K")
    parser.add_argument("--particles", type=int, default=2000)
    parser.add_argument("--checkpoint", default=None, help=".npz file to resume training from")
    parser.add_argument("--plot", default="manywell.png", help="PNG path of the two-coordinate plot")
    parser.add_argument("--method", default="dds", choices=["dds", "pis"])
    parser.add_argument("--init-std", type=float, default=1.5, help="the reference process's scale")
    parser.add_argument("--backward-smc", type=int, default=0,
                        help="log-variance loss with backward paths from this many tempered-SMC draws (0: KL loss)")
    parser.add_argument("--lr-decay", action="store_true", help="cosine-decay Adam's 1e-3 to 1e-4 over the iterations")
    args = parser.parse_args(argv)

    target = psample.models.many_well(32)
    options = {"loss": "kl"}
    if args.backward_smc:
        # Rough target draws: tempered SMC from N(0, s^2 I) (HMC moves), resampled.
        prior_scale = args.init_std
        logprior = lambda x: -0.5 * jnp.sum(x**2) / prior_scale**2
        smc = psample.smc.tempered_smc(logprior, lambda x: target.logdensity_fn(x) - logprior(x), mcmc="hmc",
                                   initial_sampler=lambda key, n: prior_scale * jax.random.normal(key, (n, 32)))  # fmt: skip
        population = psample.run_particles(smc, jax.random.key(11), args.backward_smc, progress=False)
        options = {"loss": "log_variance", "target_samples": population.resample(jax.random.key(12))[0]}
    lr = optax.cosine_decay_schedule(1e-3, args.iterations, alpha=0.1) if args.lr_decay else 1e-3
    sampler = psample.diffusion.train_sampler(
        target.logdensity_fn, 32, jax.random.key(0), method=args.method, num_steps=args.steps, batch_size=128,
        optimizer=optax.adam(lr), num_iterations=args.iterations, init_std=args.init_std,
        checkpoint=args.checkpoint, **options,
    )  # fmt: skip
    print(f"{sampler}: trained in {sampler.train_seconds:.0f} s, final loss {sampler.losses[-1]:.3f}")

    exact = target.exact["sample"](jax.random.key(1), 2000)
    result = sampler.sample(jax.random.key(2), args.particles, exact_samples=exact)
    truth = target.exact["log_Z"]
    print(f"log Z (importance weighted) = {result.log_Z_mean:.3f} ± {result.log_Z_se:.3f}   exact {truth:.4f}")
    print(f"ELBO = {result.elbo:.3f} <= log Z <= EUBO = {result.eubo:.3f};  weights' ESS = "
          f"{result.final_ess[0]:.0f} of {args.particles}")  # fmt: skip

    if result.final_ess[0] < 20:
        print("  (with so few effective particles the log Z and its standard error are unreliable: the "
              "estimate is dominated by its largest weights; train longer)")
    draws = result.resample(jax.random.key(3))[0]
    negative = float((draws[:, 0::2] < 0).mean())
    print(f"share of double-well coordinates in the left well: {negative:.3f} (exact {1 - target.exact['P(x_0>0)']:.3f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = np.meshgrid(np.linspace(-3, 3, 300), np.linspace(-3.5, 3.5, 300))
    log_pair = -(a**4) + 6 * a**2 + 0.5 * a - 0.5 * b**2
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(a, b, np.exp(log_pair - log_pair.max()), levels=20, cmap="Blues")
    ax.scatter(draws[:, 0], draws[:, 1], s=3, c="crimson", alpha=0.4, label=f"{args.method.upper()}, importance-resampled")
    ax.set_xlabel("$x_0$ (double well)")
    ax.set_ylabel("$x_1$ (Gaussian)")
    ax.set_title(f"many-well d=32: log Z {result.log_Z_mean:.2f} ± {result.log_Z_se:.2f} (exact {truth:.2f})", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
