"""Dense, low-rank or diagonal: the scale forms of the polar slice adaptation, side by side.

For each target, every form runs the same warm-up adaptation (``psample.mcmc.polar_slice_adaptation``,
8 chains) and then ``psample.polar_slice`` with the adapted parameters fixed, in one jitted
``lax.scan`` compiled before it is timed. Reported: the form the adaptation chose, its ``w``,
the adaptation's wall time (compilation included), evaluations per step, ArviZ bulk ESS of the
statistic, ESS per second of sampling, and the statistic's mean.

Targets (``python benchmarks/polar_slice_structures.py gauss|cauchy|funnel``):

- ``gauss``: ``models.ill_conditioned_gaussian(100, 1000)`` (rotated, κ = 1000) shifted to the
  mean ``linspace(-5, 5, 100)``; statistic: the projection on the widest eigenvector
  (exact mean ``u_1 · m``).
- ``cauchy``: ``models.cauchy(100)``; statistic ``log ‖x‖`` (exact mean 2.9327).
- ``funnel``: ``models.neal_funnel(10)``; statistic ``x_0`` (exact mean 0).
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402

import psample  # noqa: E402
from psample import models  # noqa: E402
from psample.mcmc.polar_slice_adaptation import polar_slice_adaptation  # noqa: E402


def run(ld, x0, stat, structure, n=2000, warm=1000, key=0):
    ad = polar_slice_adaptation(ld, structure=structure)
    t0 = time.time()
    (st, par), info = ad.run(jax.random.key(key), x0, warm)
    jax.block_until_ready(st)
    ta = time.time() - t0
    alg = psample.polar_slice(ld, **par)
    C = x0.shape[0]

    def one(s, k):
        s, i = jax.vmap(alg.step)(jax.random.split(k, C), s)
        return s, (jax.vmap(stat)(s.position), i.num_evals)

    f = jax.jit(lambda s, ks: jax.lax.scan(one, s, ks))
    ks = jax.random.split(jax.random.key(key + 1), n)
    compiled = f.lower(st, ks).compile()
    t0 = time.time()
    _, (v, e) = jax.block_until_ready(compiled(st, ks))
    ts = time.time() - t0
    v = np.asarray(v).T
    ess = float(az.ess(v, method="bulk"))
    kind = type(par["scale"]).__name__ if isinstance(par["scale"], tuple) else np.shape(par["scale"])
    print(f"  {structure:9s} kind={kind} w={float(par['w']):.3g} adapt {ta:.1f}s evals {float(e.mean()):.2f} "
          f"ess {ess:.0f} ess/s {ess / ts:.0f} mean {v.mean():.3f}", flush=True)


def main(which):
    print(f"command: python benchmarks/polar_slice_structures.py {which}; 8 chains, 1,000 adaptation steps, "
          f"2,000 (gauss) or 5,000 draws per chain, float64", flush=True)
    C = 8
    if which == "gauss":
        t = models.ill_conditioned_gaussian(100, 1000.0)
        m = jnp.linspace(-5, 5, 100)
        ld = lambda x: t.logdensity_fn(x - m)  # noqa: E731
        x0 = m + 2 * jax.random.normal(jax.random.key(5), (C, 100))
        u = jnp.asarray(t.exact["eigenvectors"][:, 0])
        print(f"  exact mean of the statistic {float(u @ m):.3f}")
        for s in ["auto", "dense", "low_rank", "diagonal"]:
            run(ld, x0, lambda x: x @ u, s)
    if which == "cauchy":
        t = models.cauchy(100)
        x0 = t.initial_positions(jax.random.key(3), C)
        for s in ["auto", "dense"]:
            run(t.logdensity_fn, x0, lambda x: jnp.log(jnp.linalg.norm(x)), s, n=5000)
    if which == "funnel":
        t = models.neal_funnel(10)
        x0 = t.initial_positions(jax.random.key(3), C)
        for s in ["auto", "diagonal", "dense"]:
            run(t.logdensity_fn, x0, lambda x: x[0], s, n=5000)


if __name__ == "__main__":
    for which in sys.argv[1:] or ["gauss", "cauchy", "funnel"]:
        main(which)
