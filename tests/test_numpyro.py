"""psample samplers inside NumPyro's MCMC (psample/numpyro.py), with every chain_method.

The model has a constrained site and a deterministic one, and known posterior moments:
``loc ~ N(1, 1)`` (3-vector), ``scale ~ LogNormal(0, 1/2)``, ``shifted = loc + 10``, no data,
so the posterior is the prior: ``E[loc] = 1``, ``E[scale] = exp(1/8)``. Means are checked
within ``Z`` MCSEs (ArviZ's ``mcse_mean``; Bonferroni bound over this file's comparisons).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC
from scipy import stats

import psample
import psample.numpyro
from tests.conftest import xla_flags

Z = float(stats.norm.ppf(1.0 - 0.001 / (2 * 20)))
NUM_WARMUP, NUM_SAMPLES = 200, 400


def model():
    loc = numpyro.sample("loc", dist.Normal(1.0, 1.0).expand([3]))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("shifted", loc + 10.0)
    return loc, scale


def run(chain_method, num_chains=4, **kernel_kwargs):
    mcmc = MCMC(
        psample.numpyro.PolarSlice(model, **kernel_kwargs),
        num_warmup=NUM_WARMUP,
        num_samples=NUM_SAMPLES,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    return mcmc


@pytest.fixture(scope="module")
def vectorized():
    return run("vectorized")


def check_samples(mcmc, num_chains):
    grouped = mcmc.get_samples(group_by_chain=True)
    assert grouped["loc"].shape == (num_chains, NUM_SAMPLES, 3)
    assert grouped["scale"].shape == (num_chains, NUM_SAMPLES)
    flat = mcmc.get_samples()
    assert flat["loc"].shape == (num_chains * NUM_SAMPLES, 3)
    np.testing.assert_allclose(np.asarray(grouped["shifted"]), np.asarray(grouped["loc"]) + 10.0, rtol=1e-12)
    assert np.all(np.asarray(grouped["scale"]) > 0)  # constrained space
    import arviz as az

    tree = az.from_numpyro(mcmc)
    summary = az.summary(tree, var_names=["loc", "scale"], round_to="none")
    exact = {"loc[0]": 1.0, "loc[1]": 1.0, "loc[2]": 1.0, "scale": math.exp(0.125)}
    for name, value in exact.items():
        row = summary.loc[name]
        assert abs(row["mean"] - value) <= Z * row["mcse_mean"], (name, row["mean"], row["mcse_mean"])
        assert row["mcse_mean"] < 0.1
    assert summary["r_hat"].max() < 1.05
    return tree


@pytest.mark.heavy
def test_vectorized_chains_constrained_samples_and_arviz(vectorized, capsys):
    tree = check_samples(vectorized, 4)
    assert {"posterior"} <= set(tree.children)
    vectorized.print_summary()
    out = capsys.readouterr().out
    assert "loc[0]" in out and "scale" in out and "r_hat" in out
    # The adaptation pooled the 4 chains and tuned a scale for the 4 unconstrained coordinates.
    parameters = vectorized.last_state.inner.parameters
    assert np.asarray(parameters["center"]).shape == (4,)
    assert int(vectorized.last_state.i) == NUM_WARMUP + NUM_SAMPLES


@pytest.mark.heavy
def test_vectorized_draws_equal_psample_sample(vectorized):
    """Same key, same initial point: NumPyro's vectorized run makes psample.sample's draws."""
    init = {"loc": jnp.array([[0.5, 1.5, 1.0]] * 4) + jnp.arange(4.0)[:, None] * 0.1, "scale": jnp.full(4, 0.2)}
    mcmc = MCMC(psample.numpyro.PolarSlice(model, structure="dense"), num_warmup=50, num_samples=30, num_chains=4,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(3), init_params=init)
    numpyro_draws = mcmc.get_samples(group_by_chain=True)

    target = psample.from_numpyro(model)
    algorithm = psample.polar_slice(target.logdensity_fn, structure="dense")
    trace = psample.sample(algorithm, init, mcmc.last_state.rng_key[0], 30, num_warmup=50, target=target, progress=False)
    ours = {site: values.values for site, values in trace.posterior.data_vars.items()}
    for site in ("loc", "scale", "shifted"):
        np.testing.assert_allclose(np.asarray(numpyro_draws[site]), ours[site], rtol=1e-9, atol=1e-12)


@pytest.mark.heavy
def test_post_warmup_state_continues_without_warmup(vectorized):
    first = vectorized.get_samples()["loc"]
    vectorized.post_warmup_state = vectorized.last_state
    vectorized.run(vectorized.post_warmup_state.rng_key)
    second = vectorized.get_samples()["loc"]
    assert second.shape == first.shape
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    # No second warm-up: the step counter went on from the end of the first run.
    assert int(vectorized.last_state.i) == NUM_WARMUP + 2 * NUM_SAMPLES
    assert abs(float(np.mean(second)) - 1.0) < 0.3


@pytest.mark.heavy
def test_sequential_chains():
    check_samples(run("sequential", num_chains=2), 2)


def test_generic_kernel_with_potential_fn_and_no_adaptation():
    """kernel(factory) over a BlackJAX sampler, a potential_fn and array positions."""
    import blackjax

    RandomWalk = psample.numpyro.kernel(lambda logdensity_fn: blackjax.normal_random_walk(logdensity_fn, 0.8))
    assert RandomWalk.__name__.endswith("Kernel")
    mcmc = MCMC(RandomWalk(potential_fn=lambda z: 0.5 * jnp.sum((z - 2.0) ** 2)), num_warmup=100,
                num_samples=2000, num_chains=2, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(1), init_params=jnp.zeros((2, 2)))
    z = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert z.shape == (2, 2000, 2)
    import arviz as az

    mcse = float(np.max(az.mcse(z[..., 0], method="mean")))
    assert abs(z[..., 0].mean() - 2.0) <= Z * mcse


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        psample.numpyro.PolarSlice()
    with pytest.raises(TypeError, match="callable"):
        psample.numpyro.kernel(3)


PARALLEL_SCRIPT = textwrap.dedent(
    """
    import numpyro
    numpyro.set_host_device_count(4)
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np, numpyro.distributions as dist
    from numpyro.infer import MCMC
    import psample.numpyro
    assert jax.local_device_count() == 4

    def model():
        loc = numpyro.sample("loc", dist.Normal(1.0, 1.0).expand([3]))
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))

    mcmc = MCMC(psample.numpyro.PolarSlice(model), num_warmup=200, num_samples=400, num_chains=4,
                chain_method="parallel", progress_bar=False)
    mcmc.run(jax.random.key(0))
    s = mcmc.get_samples(group_by_chain=True)
    print("SHAPES", s["loc"].shape, s["scale"].shape, float(np.asarray(s["scale"]).min() > 0),
          round(float(np.mean(s["loc"])), 2))
    """
)


@pytest.mark.heavy
def test_parallel_chains_on_four_host_devices():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags())  # the script sets the device count
    out = subprocess.run([sys.executable, "-c", PARALLEL_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("SHAPES"))
    assert "(4, 400, 3) (4, 400) 1.0" in line, line
    mean = float(line.split()[-1])
    assert abs(mean - 1.0) < 0.3  # 4 x 400 draws of three N(1, 1) coordinates: MCSE about 0.03
