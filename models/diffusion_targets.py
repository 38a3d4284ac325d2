"""Targets of the diffusion-sampler benchmarks, each with its exact log Z and an exact sampler.

The standard unnormalised-density benchmarks of the diffusion-sampler literature (Sendera et
al. [1], §5 and their code ``GFNOrg/gfn-diffusion``; the 40-mode mixture from FAB [2]):

- :func:`gmm25`: 25 Gaussians on the grid ``{-10, -5, 0, 5, 10}^2``, covariance ``0.3 I``,
  equal weights; normalised (``log Z = 0``).
- :func:`gmm40`: 40 Gaussians with means uniform on ``[-40, 40]^2`` (psample's own fixed draw,
  shipped in ``data/gmm40_means.csv``: FAB's torch-seeded means cannot be reproduced in JAX),
  per-coordinate standard deviation ``softplus(1) = 1.3133``, equal weights; ``log Z = 0``.
- :func:`many_well`: ``d = 32``, 16 independent pairs ``(x_{2i}, x_{2i+1})`` with log-density
  ``-x^4 + 6 x^2 + x / 2 - y^2 / 2`` (unnormalised). Per pair
  ``Z = ∫ e^{-x^4 + 6x^2 + x/2} dx · √(2π) = 11784.50927 · √(2π)`` (quadrature when the target is
  built), so ``log Z = 164.6957`` for ``d = 32``; ``2^16`` modes.
- Neal's funnel ``d = 10`` with ``x_0 ~ N(0, 3²)`` is :func:`psample.models.neal_funnel` (its
  ``exact`` holds ``log_Z`` and ``sample`` too).

``exact`` convention (as the rest of the zoo, plus two keys every target here has):
``exact["log_Z"]`` (float, the log normaliser of ``logdensity_fn``) and ``exact["sample"]``, a
function ``(rng_key, num) -> (num, d)`` array of independent exact draws (host NumPy, for
references: EUBO, W2/MMD, mode coverage). Mixtures also hold ``means`` ``(K, d)`` and the other
keys of :func:`psample.models.gaussian_mixture`; the many-well holds per-pair moments
``E[x_0]``, ``Var[x_0]``, ``P(x_0>0)`` (1-D quadrature) and ``mean``/``var`` ``(d,)``.

References
----------
.. [1] Marcin Sendera, Minsu Kim, Sarthak Mittal, Pablo Lemos, Luca Scimeca, Jarrid
   Rector-Brooks, Alexandre Adam, Yoshua Bengio and Nikolay Malkin, "Improved off-policy training
   of diffusion samplers", NeurIPS 2024. arXiv:2402.05098.
.. [2] Laurence I. Midgley, Vincent Stimper, Gregor N. C. Simm, Bernhard Schölkopf and José
   Miguel Hernández-Lobato, "Flow annealed importance sampling bootstrap", ICLR 2023.
   arXiv:2208.01893.
"""

from __future__ import annotations

import math
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from psample.targets import Target

from ._common import check_dimension, flat_target
from .mixtures import gaussian_mixture

__all__ = ["gmm25", "gmm40", "many_well", "GMM40_MEANS", "MANY_WELL_PAIR_LOG_Z", "mixture_sampler"]

#: Standard deviation of each coordinate of the 40-mode mixture's components: softplus(1).
GMM40_STD = math.log1p(math.e)


def _load_gmm40_means() -> np.ndarray:
    path = resources.files(__package__) / "data" / "gmm40_means.csv"
    with path.open() as handle:
        return np.loadtxt(handle, delimiter=",", comments="#")


#: The 40 fixed means ``(40, 2)`` of :func:`gmm40` (``data/gmm40_means.csv``).
GMM40_MEANS = _load_gmm40_means()


def _seed(rng_key) -> np.random.Generator:
    """A NumPy generator seeded by a JAX key (exact samplers run on the host)."""
    bits = np.asarray(jax.random.bits(rng_key, (4,), dtype=jnp.uint32), dtype=np.uint64)
    return np.random.default_rng([int(b) for b in bits])


def mixture_sampler(weights, means, covs):
    """``(rng_key, num) -> (num, d)`` exact draws from ``Σ_k w_k N(μ_k, Σ_k)`` (``covs`` ``(K, d, d)``)."""
    weights, means, covs = np.asarray(weights), np.asarray(means), np.asarray(covs)
    chols = np.linalg.cholesky(covs)

    def sample(rng_key, num: int) -> np.ndarray:
        rng = _seed(rng_key)
        components = rng.choice(len(weights), size=int(num), p=weights)
        noise = rng.standard_normal((int(num), means.shape[1]))
        return means[components] + np.einsum("nij,nj->ni", chols[components], noise)

    return sample


def _mixture_target(means, variance: float, name: str) -> Target:
    k = means.shape[0]
    target = gaussian_mixture(np.full(k, 1.0 / k), means, np.full(k, variance), name=name)
    exact = target.exact
    exact["log_Z"] = 0.0
    exact["sample"] = mixture_sampler(exact["weights"], exact["means"], exact["covs"])
    return target


def gmm25() -> Target:
    """The 25-mode Gaussian mixture in ``d = 2`` (modes on ``{-10, -5, 0, 5, 10}^2``, covariance
    ``0.3 I``, equal weights), normalised: ``exact["log_Z"] = 0``, ``exact["sample"]``, and the
    mixture keys of :func:`psample.models.gaussian_mixture` (``means`` ``(25, 2)``, ``mean``,
    ``cov``, the exact smoothed densities and scores)."""
    grid = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
    means = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    return _mixture_target(means, 0.3, "gmm25")


def gmm40() -> Target:
    """The 40-mode Gaussian mixture in ``d = 2`` (means :data:`GMM40_MEANS`, per-coordinate
    standard deviation ``softplus(1)``, equal weights), normalised; ``exact`` as :func:`gmm25`."""
    return _mixture_target(GMM40_MEANS, GMM40_STD**2, "gmm40")


def _double_well_unnormalised(x):
    return np.exp(-(x**4) + 6.0 * x**2 + 0.5 * x)


def _pair_quadrature():
    z, _ = integrate.quad(_double_well_unnormalised, -np.inf, np.inf, epsabs=0.0, epsrel=1e-13)
    mean = integrate.quad(lambda x: x * _double_well_unnormalised(x), -10, 10, epsrel=1e-13)[0] / z
    second = integrate.quad(lambda x: x * x * _double_well_unnormalised(x), -10, 10, epsrel=1e-13)[0] / z
    positive = integrate.quad(_double_well_unnormalised, 0, 10, epsrel=1e-13)[0] / z
    return z, mean, second - mean**2, positive


_PAIR_Z, _PAIR_MEAN, _PAIR_VAR, _PAIR_POSITIVE = _pair_quadrature()
#: log of one pair's normaliser, ``log(11784.50927 √(2π))``.
MANY_WELL_PAIR_LOG_Z = math.log(_PAIR_Z) + 0.5 * math.log(2 * math.pi)

# Rejection envelope of the double-well coordinate: 0.2 N(-1.7, 0.5²) + 0.8 N(1.7, 0.5²) times
# ENVELOPE_CONSTANT dominates the normalised density (max ratio 2.59 on a fine grid; checked
# again when the module loads).
_ENVELOPE = ((0.2, -1.7, 0.5), (0.8, 1.7, 0.5))
_ENVELOPE_CONSTANT = 3.0


def _envelope_pdf(x):
    return sum(w * stats.norm.pdf(x, m, s) for w, m, s in _ENVELOPE)


_grid = np.linspace(-6.0, 6.0, 20001)
assert np.max(_double_well_unnormalised(_grid) / _PAIR_Z / _envelope_pdf(_grid)) < _ENVELOPE_CONSTANT


def _double_well_draws(rng: np.random.Generator, num: int) -> np.ndarray:
    out = np.empty(0)
    while out.size < num:
        n = 2 * (num - out.size) + 64
        left = rng.random(n) < _ENVELOPE[0][0]
        x = np.where(left, rng.normal(-1.7, 0.5, n), rng.normal(1.7, 0.5, n))
        accept = rng.random(n) * _ENVELOPE_CONSTANT * _envelope_pdf(x) < _double_well_unnormalised(x) / _PAIR_Z
        out = np.concatenate([out, x[accept]])
    return out[:num]


def many_well(d: int = 32) -> Target:
    """The many-well target: ``d/2`` independent double-well/Gaussian pairs.

    ``log γ(x) = Σ_i (-x_{2i}^4 + 6 x_{2i}^2 + x_{2i}/2 - x_{2i+1}^2 / 2)`` (unnormalised).

    Parameters
    ----------
    d
        Even dimension ``>= 2`` (the benchmark uses 32).

    Returns
    -------
    Target
        Over ``x`` of shape ``(d,)``; chains start at ``N(0, I)``. ``exact``: ``log_Z``
        (``164.6957`` at ``d = 32``), ``sample`` (exact draws: the double-well coordinates by
        rejection from a two-Gaussian envelope, the others ``N(0, 1)``), ``E[x_0] = 1.1880``,
        ``Var[x_0] = 1.5486``, ``P(x_0>0) = 0.8443`` (every even coordinate; 1-D quadrature),
        ``E[x_1] = 0``, ``Var[x_1] = 1``, ``mean`` and ``var`` ``(d,)``, ``num_modes = 2^(d/2)``.
    """
    d = check_dimension(d, minimum=2)
    if d % 2:
        from psample.errors import ModelError

        raise ModelError(f"d must be even (pairs of coordinates), got {d!r}")
    num_pairs = d // 2

    def logdensity_fn(x):
        pairs = x.reshape(num_pairs, 2)
        a, b = pairs[:, 0], pairs[:, 1]
        return jnp.sum(-(a**4) + 6.0 * a**2 + 0.5 * a - 0.5 * b**2)

    def sample(rng_key, num: int) -> np.ndarray:
        rng = _seed(rng_key)
        out = rng.standard_normal((int(num), num_pairs, 2))
        out[:, :, 0] = _double_well_draws(rng, int(num) * num_pairs).reshape(int(num), num_pairs)
        return out.reshape(int(num), d)

    mean = np.tile([_PAIR_MEAN, 0.0], num_pairs)
    var = np.tile([_PAIR_VAR, 1.0], num_pairs)
    exact = {
        "log_Z": num_pairs * MANY_WELL_PAIR_LOG_Z,
        "sample": sample,
        "mean": mean,
        "var": var,
        "E[x_0]": _PAIR_MEAN,
        "Var[x_0]": _PAIR_VAR,
        "P(x_0>0)": _PAIR_POSITIVE,
        "E[x_1]": 0.0,
        "Var[x_1]": 1.0,
        "num_modes": 2**num_pairs,
    }
    return flat_target(logdensity_fn, d, init_scale=1.0, name=f"many_well(d={d})", exact=exact,
                       hints={"polar_slice_w": 4.0})  # fmt: skip
