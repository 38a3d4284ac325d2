"""Where FKC's error on the annealed 40-mode mixture comes from: a study of step grids, weight
quadrature, resampling and particle numbers (exploratory; BENCHMARKS.md, FKC section).

Usage::

    python benchmarks/fkc_grid_study.py N=1024,K=100,kind=pow2 N=4096,K=400,rule=trap ...

Each config runs ``R = 8`` replicates of an FKC loop that is :func:`psample.smc.fkc_smc`'s kernel
(``log_weight_rate``, ``reweight``, ``resample_if``, the same Euler–Maruyama move) with options
the library does not offer: ``kind`` the time grid (``"uniform"``, ``"powR"``: equally spaced in
``t**(1/R)``, ``pow2`` being ``time_grid="quadratic"``; ``"logsigma"``: equally spaced in
``log sigma_t``), ``rule`` the weight quadrature (``"left"``: ``h G_t(x_t)``, the library's;
``"trap"``: ``h (G_t(x_t) + G_{t-h}(x_{t-h})) / 2``, no extra score evaluation; ``"none"``: no
weights and no resampling, the uncorrected SDE; ``"stein"``: the library's ``weights="stein"``
with a fraction ``lam`` (default 1) of its drift change moved into the weights, and its control
variate when ``cv=1`` (default) or the raw divergence estimate when ``cv=0``), ``order``
(``"hilbert"``: the particles sorted along a Hilbert curve before each systematic resampling),
``resample_ess`` (resample when the ESS falls below ``resample_ess * N``; ``1``, the default,
every step, as the library's ``resample_ess``),
``start`` (no resampling before that step), ``noise`` (``"standard"``, ``"tempered"`` or a number
``r``: ``c_t^2 = r g_t^2``, as in the library), ``mala`` (``m > 0``: after every step one MALA
move on the exact ``beta log q_t`` with step size ``m sigma_t^2 / beta``, which needs the
log-density that a score network does not give, and costs a second evaluation per step).
Printed per config: the mean over replicates of the mode TV, the TV of the replicates' averaged
histogram, the L2 (over modes) bias and standard deviation of the mode histogram (bias^2 =
|mean - exact|^2 - var / R), and the mean ESS / N.
"""
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import psample  # noqa: E402
import psample.models  # noqa: E402
from psample.smc.base import resample_if, resampling_fn, reweight  # noqa: E402
from psample.smc.fkc import log_weight_rate, noise_ratio, stein_divergence  # noqa: E402

VP = psample.diffusion.VP()
problem = psample.models.fkc_problem("forty_mode", VP)
model = problem.models[0]
beta = 3.0
means = model.at(problem.t_min).means
draws = problem.reference.sample(np.random.default_rng(0), 1_000_000)
near = np.argmin(((draws[:, None, :] - means) ** 2).sum(-1), axis=-1)
exact_hist = np.bincount(near, minlength=40) / draws.shape[0]


def grid(kind, K, t_min=1e-3):
    u = np.linspace(0, 1, K + 1)
    if kind == "uniform":
        return np.linspace(1.0, t_min, K + 1)
    if kind.startswith("pow"):
        rho = float(kind[3:])
        return (1 + u * (t_min ** (1 / rho) - 1)) ** rho
    if kind == "logsigma":
        s = np.exp(u * np.log(float(VP.sigma(t_min))))  # sigma_t from 1 to sigma(t_min)
        la = 0.5 * np.log1p(-np.minimum(s**2, 1 - 1e-16))  # log alpha_t, sigma^2 = 1 - alpha^2
        b0, b1 = VP.beta_min, VP.beta_max  # solve -la = t b0 / 2 + t^2 (b1 - b0) / 4
        a, b, c = (b1 - b0) / 4, b0 / 2, la
        t = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
        t[0], t[-1] = 1.0, t_min
        return t
    raise ValueError(kind)


def _mala_move(key, x, t, step_size):
    """One MALA move per particle on ``beta log q_t`` (exact log-density of the mixture)."""
    value_and_grad = jax.vmap(jax.value_and_grad(lambda y: beta * model.logdensity(t, y)))
    k_prop, k_acc = jax.random.split(key)
    value, grad = value_and_grad(x)
    proposal = x + step_size * grad + jnp.sqrt(2 * step_size) * jax.random.normal(k_prop, x.shape)
    value_p, grad_p = value_and_grad(proposal)
    forward = -jnp.sum((proposal - x - step_size * grad) ** 2, -1) / (4 * step_size)
    backward = -jnp.sum((x - proposal - step_size * grad_p) ** 2, -1) / (4 * step_size)
    accept = jnp.log(jax.random.uniform(k_acc, (x.shape[0],))) < value_p - value + backward - forward
    return jnp.where(accept[:, None], proposal, x)


def hilbert_index(x, bits=15):
    """``(N,)`` position of each 2-D point of ``x`` ``(N, 2)`` along a Hilbert curve over the
    points' bounding box (``2^bits`` cells a side): nearby points get nearby indices."""
    lo, hi = x.min(0), x.max(0)
    n = 1 << bits
    cells = jnp.clip(((x - lo) / (hi - lo + 1e-300) * (n - 1)).astype(jnp.int64), 0, n - 1)

    def body(i, carry):  # the classic xy -> d loop, one bit per iteration, vectorised
        xi, yi, d = carry
        s = jnp.int64(1) << (bits - 1 - i)
        rx, ry = ((xi & s) > 0).astype(jnp.int64), ((yi & s) > 0).astype(jnp.int64)
        d = d + s * s * ((3 * rx) ^ ry)
        flip = (ry == 0) & (rx == 1)
        xf, yf = jnp.where(flip, n - 1 - xi, xi), jnp.where(flip, n - 1 - yi, yi)
        swap = ry == 0
        return jnp.where(swap, yf, xf), jnp.where(swap, xf, yf), d

    return jax.lax.fori_loop(0, bits, body, (cells[:, 0], cells[:, 1], jnp.zeros(x.shape[0], jnp.int64)))[2]


def _hilbert_sorted(x, others, new):
    """Reorder the particles (and what travels with them) along the Hilbert curve."""
    perm = jnp.argsort(hilbert_index(x))
    return x[perm], tuple(o[perm] for o in others), new._replace(log_weights=new.log_weights[perm])


def run(N, K, R, kind="uniform", rule="left", resample_ess=1.0, seed=0, noise="standard", start=0, mala=0.0,
        order="none", lam=1.0, cv=1):
    times = jnp.asarray(grid(kind, K))
    rs = resampling_fn("systematic")
    score = jax.vmap(model.score, (None, 0))
    def one(key):
        k0, key = jax.random.split(key)
        x = jax.random.normal(k0, (N, 2)) / np.sqrt(beta)
        lw = jnp.full((N,), -jnp.log(N))
        s = score(times[0], x)
        G = log_weight_rate(VP, times[0], [s], [beta], 2)
        def body(carry, j):
            x, lw, s, G, key = carry
            key, kr, kn = jax.random.split(key, 3)
            t, tn = times[j], times[j + 1]
            h = t - tn
            if rule == "stein":  # the library's weights="stein" with a fraction lam of its drift change
                g2 = VP.g2(t)
                c2 = g2 * noise_ratio(noise, beta)
                eps = jax.random.normal(kn, x.shape)
                drift = -VP.drift_coef(t) * x + 0.5 * (g2 + c2) * beta * s - lam * 0.5 * g2 * (beta - 1) * s
                x_new = x + h * drift + jnp.sqrt(c2 * h) * eps
                s_new = score(tn, x_new)
                if cv:
                    divergence = stein_divergence(eps, s, s_new, jnp.sqrt(c2 * h))
                else:
                    divergence = jnp.sum(eps * (s_new - s), -1) / jnp.sqrt(c2 * h)
                rate = ((beta - 1) * VP.divergence(t, 2) - lam * 0.5 * g2 * (beta - 1) * divergence
                        + (1 - lam) * 0.5 * g2 * beta * (beta - 1) * jnp.sum(s * s, -1))  # fmt: skip
                new = reweight(lw, h * rate)
                do = (j >= start) & new.ess_below(resample_ess)
                if order == "hilbert":
                    x_new, (s_new,), new = _hilbert_sorted(x_new, (s_new,), new)
                (x_new, s_new), lw2, _ = resample_if(kr, do, (x_new, s_new), new.log_weights,
                                                     jnp.zeros(N, jnp.int32), rs)  # fmt: skip
                return (x_new, lw2, s_new, G, key), new.ess
            inc = {"left": h * G, "trap": 0.5 * h * G, "none": 0.0 * G}[rule]
            new = reweight(lw, inc)
            do = (j >= start) & (rule != "none") & new.ess_below(resample_ess)
            if order == "hilbert":
                x, (s, G), new = _hilbert_sorted(x, (s, G), new)
            (x, s, G), lw2, _ = resample_if(kr, do, (x, s, G), new.log_weights, jnp.zeros(N, jnp.int32), rs)
            g2 = VP.g2(t)
            c2 = g2 * noise_ratio(noise, beta)
            eps = jax.random.normal(kn, x.shape)
            x = x + h * (-VP.drift_coef(t) * x + 0.5 * (g2 + c2) * beta * s) + jnp.sqrt(c2 * h) * eps
            if mala > 0:
                x = _mala_move(jax.random.fold_in(kn, 7), x, tn, mala * VP.sigma(tn) ** 2 / beta)
            s = score(tn, x)
            Gn = log_weight_rate(VP, tn, [s], [beta], 2)
            if rule == "trap":
                lw2 = reweight(lw2, 0.5 * h * Gn).log_weights
            return (x, lw2, s, Gn, key), new.ess
        (x, lw, s, G, _), ess = jax.lax.scan(body, (x, lw, s, G, key), jnp.arange(K))
        return x, lw, ess
    f = jax.jit(jax.vmap(one))
    x, lw, ess = f(jax.random.split(jax.random.key(seed), R))
    x, w = np.asarray(x), np.exp(np.asarray(lw))
    nearest = np.argmin(((x[..., None, :] - means) ** 2).sum(-1), axis=-1)
    hists = np.stack([np.bincount(nearest[r], weights=w[r], minlength=40) for r in range(R)])
    tv = 0.5 * np.abs(hists - exact_hist).sum(1)
    tvm = 0.5 * np.abs(hists.mean(0) - exact_hist).sum()
    # L2 decomposition per mode: bias^2 = |mean - exact|^2 - var/R
    var = hists.var(0, ddof=1).sum()
    b2 = ((hists.mean(0) - exact_hist) ** 2).sum() - var / R
    return tv.mean(), tvm, np.sqrt(max(b2, 0)), np.sqrt(var), float(np.asarray(ess).mean() / N)

def _parse(text):
    """``"N=1024,K=100,kind=pow2"`` -> keyword arguments of :func:`run`."""
    out = {}
    for item in text.split(","):
        key, value = item.split("=")
        if key in ("N", "K", "start", "seed", "cv"):
            value = int(value)
        elif key in ("mala", "lam") or (key == "noise" and value not in ("standard", "tempered")):
            value = float(value)
        out[key] = value
    return out


if __name__ == "__main__":
    R = 8
    for cfg in map(_parse, sys.argv[1:]):
        t0 = time.time()
        out = run(R=R, **cfg)
        line = "TV %.3f  TVmean %.3f  L2bias %.3f  L2sd %.3f  ess %.2f" % out
        print(cfg, line, "(%.0fs)" % (time.time() - t0), flush=True)
