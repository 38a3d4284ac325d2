"""The diffusion-sampler benchmark targets: exact log Z (quadrature) and exact draws (moments).

Sample checks use 4 standard errors of the mean of n independent exact draws
(``sd / sqrt(n)``, with the exact sd); normalisers are checked by Riemann sums on grids fine
enough that their error is far below the tolerance.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from psample import models
from psample.errors import ModelError


def grid_log_integral(logdensity_fn, lo, hi, num):
    xs = np.linspace(lo, hi, num)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    values = np.asarray(jax.jit(jax.vmap(logdensity_fn))(jnp.asarray(grid)))
    h = xs[1] - xs[0]
    return float(np.log(np.sum(np.exp(values)) * h * h))


def test_many_well_log_z_and_exact_draws():
    target = models.many_well()
    assert target.exact["log_Z"] == pytest.approx(164.6957, abs=1e-4)
    # One pair by 2-D quadrature: the per-pair normaliser is exact["log_Z"] / 16.
    pair = models.many_well(2)
    assert grid_log_integral(pair.logdensity_fn, -6, 6, 1201) == pytest.approx(target.exact["log_Z"] / 16, abs=1e-6)
    n = 20_000
    draws = target.exact["sample"](jax.random.key(0), n)
    assert draws.shape == (n, 32)
    wells, gauss = draws[:, 0::2].ravel(), draws[:, 1::2].ravel()
    m = wells.size
    assert abs(wells.mean() - target.exact["E[x_0]"]) < 4 * math.sqrt(target.exact["Var[x_0]"] / m)
    p = target.exact["P(x_0>0)"]
    assert abs((wells > 0).mean() - p) < 4 * math.sqrt(p * (1 - p) / m)
    assert abs(gauss.var() - 1.0) < 4 * math.sqrt(2.0 / m)
    assert target.exact["E[x_0]"] == pytest.approx(1.1880, abs=1e-4)
    assert target.exact["Var[x_0]"] == pytest.approx(1.5486, abs=1e-4)
    with pytest.raises(ModelError, match="even"):
        models.many_well(3)


@pytest.mark.parametrize("name, half_width, num", [("gmm25", 14.0, 801), ("gmm40", 47.0, 941)])
def test_mixtures_are_normalised_and_sampled_exactly(name, half_width, num):
    target = getattr(models, name)()
    assert target.exact["log_Z"] == 0.0
    assert grid_log_integral(target.logdensity_fn, -half_width, half_width, num) == pytest.approx(0.0, abs=1e-6)
    means = target.exact["means"]
    n = 20_000
    draws = target.exact["sample"](jax.random.key(1), n)
    nearest = np.argmin(((draws[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    share = np.bincount(nearest, minlength=len(means)) / n
    k = len(means)
    assert np.all(np.abs(share - 1 / k) < 4 * math.sqrt((1 / k) * (1 - 1 / k) / n))
    sd = np.sqrt(target.exact["var"])
    assert np.all(np.abs(draws.mean(0) - target.exact["mean"]) < 4 * sd / math.sqrt(n))


def test_gmm_layouts():
    grid = models.gmm25().exact["means"]
    assert sorted(set(grid[:, 0])) == [-10, -5, 0, 5, 10] and grid.shape == (25, 2)
    means = models.gmm40().exact["means"]
    assert means.shape == (40, 2) and np.all(np.abs(means) <= 40)
    np.testing.assert_allclose(models.gmm40().exact["covs"][0], np.eye(2) * math.log1p(math.e) ** 2)


def test_funnel_log_z_and_exact_draws():
    # d = 2 by quadrature on x_1 = 12 e^{x_0/2} u, u in [-1, 1] (x_1's spread grows with x_0;
    # 12 sd either side), |x_0| <= 24 (8 sd); the Jacobian is 12 e^{x_0/2}.
    two = models.neal_funnel(2)
    x0 = np.linspace(-24, 24, 2401)[:, None]
    u = np.linspace(-1, 1, 801)[None, :]
    half = 12 * np.exp(x0 / 2)
    points = np.stack(np.broadcast_arrays(x0, half * u), axis=-1).reshape(-1, 2)
    values = np.exp(np.asarray(jax.jit(jax.vmap(two.logdensity_fn))(jnp.asarray(points)))).reshape(2401, 801)
    total = np.sum(values * half) * (u[0, 1] - u[0, 0]) * (x0[1, 0] - x0[0, 0])
    assert math.log(total) == pytest.approx(two.exact["log_Z"], abs=1e-6)
    ten = models.neal_funnel(10)
    assert ten.exact["log_Z"] == pytest.approx(0.5 * math.log(18 * math.pi) + 4.5 * math.log(2 * math.pi))
    draws = ten.exact["sample"](jax.random.key(2), 20_000)
    assert abs(draws[:, 0].mean()) < 4 * 3 / math.sqrt(20_000)
    assert abs(draws[:, 0].var() - 9.0) < 4 * 9 * math.sqrt(2 / 20_000)


def test_targets_are_exported():
    for name in ("gmm25", "gmm40", "many_well"):
        assert name in models.__all__
    assert models.many_well().exact["num_modes"] == 2**16
