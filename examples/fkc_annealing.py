"""
Feynman–Kac correctors: anneal, compose, guide
==============================================

Feynman–Kac correctors on a trained score network: anneal, compose, guide.

1. **Train** a small score network (MLP, optax Adam) by denoising score matching on draws from
   a 2-D four-mode mixture (corners ``±1.5``, std 0.4, weights 0.1/0.2/0.3/0.4), VP schedule.
2. **Anneal** the trained model to ``beta = 3`` with :func:`psample.smc.fkc_anneal`; the exact
   target ``q_0^3`` is a mixture (:func:`psample.models.mixture_power`), drawn next to it, with
   the uncorrected annealed SDE for comparison (it gets the mode weights wrong).
3. **Compose** two analytic mixtures as a product of experts (:func:`psample.smc.fkc_product`)
   and apply **guidance** at ``w = 3`` (:func:`psample.smc.fkc_guidance`), each beside its exact
   density.

Writes ``fkc_annealing.png`` (or ``--out``). About a minute on two CPU cores with the defaults.

    python examples/fkc_annealing.py [--train-steps 3000] [--particles 4096] [--weights score|stein]
                                     [--out fkc_annealing.png]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import psample  # noqa: E402
import psample.models  # noqa: E402
from psample.diffusion import VP  # noqa: E402
from psample.cli.fkc import uncorrected  # noqa: E402

SCHEDULE = VP()
T_MIN = 1e-3


def init_mlp(key, sizes):
    params = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        params.append((jax.random.normal(k, (n_in, n_out)) * np.sqrt(2.0 / n_in), jnp.zeros(n_out)))
    return params


def mlp(params, h):
    for w, b in params[:-1]:
        h = jax.nn.silu(h @ w + b)
    w, b = params[-1]
    return h @ w + b


def features(t, x):
    # Time as Fourier features of log(sigma_t): the network sees the noise level directly.
    s = jnp.log(SCHEDULE.sigma(t))
    freqs = jnp.array([1.0, 2.0, 4.0, 8.0])
    return jnp.concatenate([x, jnp.sin(freqs * s), jnp.cos(freqs * s)], axis=-1)


def network_score(params):
    """``s(t, x) = -eps_hat(t, x) / sigma_t`` (noise-prediction parametrisation)."""

    def score(t, x):
        return psample.schedules.score_from_noise(SCHEDULE, t, mlp(params, features(t, x)))

    return score


def train(data_model, key, steps, batch=512):
    params = init_mlp(key, [2 + 8, 128, 128, 128, 2])
    opt = optax.adam(optax.cosine_decay_schedule(2e-3, steps))
    state = opt.init(params)

    def loss(params, key):
        k1, k2, k3 = jax.random.split(key, 3)
        x0 = data_model.sample(k1, batch)
        t = jax.random.uniform(k2, (batch, 1), minval=T_MIN, maxval=1.0)
        eps = jax.random.normal(k3, x0.shape)
        xt = SCHEDULE.alpha(t) * x0 + SCHEDULE.sigma(t) * eps
        return jnp.mean(jnp.sum((mlp(params, jax.vmap(features)(t[:, 0], xt)) - eps) ** 2, axis=1))

    @jax.jit
    def update(params, state, key):
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    def body(carry, key):
        params, state = carry
        params, state, value = update(params, state, key)
        return (params, state), value

    (params, _), losses = jax.lax.scan(body, (params, state), jax.random.split(key, steps))
    return params, losses


def density_panel(ax, mixture, lim, title):
    xs, ys = np.meshgrid(np.linspace(-lim, lim, 200), np.linspace(-lim, lim, 200))
    ax.contourf(xs, ys, np.exp(mixture.logdensity(np.stack([xs, ys], -1))), levels=30, cmap="viridis")
    ax.set_title(title, fontsize=9)


def hist_panel(ax, draws, lim, title):
    ax.hist2d(draws[:, 0], draws[:, 1], bins=100, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
    ax.set_title(title, fontsize=9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--particles", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=500, help="FKC Euler-Maruyama steps")
    parser.add_argument("--weights", default="score", choices=["score", "stein"], help="FKC weights for the annealing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="fkc_annealing.png")
    args = parser.parse_args(argv)
    key = jax.random.key(args.seed)
    k_train, k_anneal, k_plain, k_prod, k_guid, k_res = jax.random.split(key, 6)

    corners = [[-1.5, -1.5], [-1.5, 1.5], [1.5, -1.5], [1.5, 1.5]]
    data_model = psample.models.diffusion_mixture([0.1, 0.2, 0.3, 0.4], corners, np.full(4, 0.16), SCHEDULE)
    params, losses = train(data_model, k_train, args.train_steps)
    print(f"trained the score network: {args.train_steps} Adam steps, loss {float(losses[:100].mean()):.3f} -> "
          f"{float(losses[-100:].mean()):.3f}")  # fmt: skip
    score = network_score(params)

    beta = 3
    anneal = psample.smc.fkc_anneal(score, beta, schedule=SCHEDULE, num_steps=args.steps, shape=(2,),
                                    weights=args.weights)  # fmt: skip
    annealed = psample.run_particles(anneal, k_anneal, args.particles, num_replicates=1, progress=False)
    plain_alg = psample.smc.fkc_smc([score], [beta], schedule=SCHEDULE, num_steps=args.steps, shape=(2,),
                                resample_ess=0.5, start_resampling_step=args.steps)  # fmt: skip
    plain = psample.run_particles(plain_alg, k_plain, args.particles, progress=False)
    exact_annealed = psample.models.mixture_power(data_model.mixture, beta)

    product_problem = psample.models.fkc_problem("product", SCHEDULE)
    q1, q2 = product_problem.models
    product = psample.run_particles(
        psample.smc.fkc_product(q1.score, q2.score, schedule=SCHEDULE, num_steps=args.steps),
        k_prod, args.particles, progress=False,
    )  # fmt: skip
    naive_product = psample.run_particles(uncorrected(product_problem, num_steps=args.steps), k_prod, args.particles,
                                          progress=False)  # fmt: skip

    guidance_problem = psample.models.fkc_problem("guidance", SCHEDULE)
    uncond, cond = guidance_problem.models
    guided = psample.run_particles(
        psample.smc.fkc_guidance(uncond.score, cond.score, 3.0, schedule=SCHEDULE, num_steps=args.steps),
        k_guid, args.particles, progress=False,
    )  # fmt: skip
    naive_cfg = psample.run_particles(uncorrected(guidance_problem, num_steps=args.steps), k_guid, args.particles,
                                      progress=False)  # fmt: skip

    keys = jax.random.split(k_res, 3)
    draws = [np.asarray(r.resample(k))[0] for r, k in zip((annealed, product, guided), keys)]
    fig, axes = plt.subplots(3, 3, figsize=(12, 11))
    lim = 3.0
    density_panel(axes[0, 0], exact_annealed, lim, f"exact q_0^{beta} (normalised)")
    hist_panel(axes[0, 1], draws[0], lim, f"FKC anneal, trained network, beta={beta}")
    hist_panel(axes[0, 2], np.asarray(plain.particles)[0], lim, "uncorrected annealed SDE")
    density_panel(axes[1, 0], product_problem.reference, 4.0, "exact product q1 q2")
    hist_panel(axes[1, 1], draws[1], 4.0, "FKC product of experts")
    hist_panel(axes[1, 2], np.asarray(naive_product.particles)[0], 4.0, "naive product (summed scores)")
    grid, density = guidance_problem.exact["grid"], guidance_problem.exact["density"]
    sel = (grid > -3) & (grid < 3)
    bins = np.linspace(-3, 3, 121)
    axes[2, 0].plot(grid[sel], density[sel], "k")
    axes[2, 0].set_title("exact guided target, w = 3", fontsize=9)
    for ax, x, title in ((axes[2, 1], draws[2][:, 0], "FKC guidance"),
                         (axes[2, 2], np.asarray(naive_cfg.particles)[0, :, 0], "naive CFG")):  # fmt: skip
        ax.hist(x, bins=bins, density=True, alpha=0.6)
        ax.plot(grid[sel], density[sel], "k", lw=1)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")

    # Mode weights of the annealed trained model against the exact q_0^3.
    exact_w = np.array([exact_annealed.weights[np.argmin(((exact_annealed.means - np.array(c)) ** 2).sum(1))]
                        for c in corners])  # fmt: skip
    for label, x, w in (("FKC", np.asarray(annealed.particles)[0], np.exp(annealed.log_weights[0])),
                        ("uncorrected", np.asarray(plain.particles)[0], None)):  # fmt: skip
        nearest = np.argmin(((x[:, None] - np.array(corners)) ** 2).sum(-1), axis=1)
        hist = np.bincount(nearest, weights=w, minlength=4)
        print(f"{label:12s} mode weights {np.round(hist / hist.sum(), 3)}  exact {np.round(exact_w, 3)}")


if __name__ == "__main__":
    main()
