"""Checkpoints: Zarr store readable by ArviZ, bit-for-bit resume, crash recovery, errors."""

import blackjax
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import zarr

import psample
from psample.errors import CheckpointError


def logdensity(x):
    return -0.5 * jnp.sum(x**2)


OBSERVABLES = {"r2": lambda s: jnp.sum(s.position**2)}


@pytest.fixture(scope="module")
def alg():
    return blackjax.additive_step_random_walk.normal_random_walk(logdensity, 0.8)


@pytest.fixture(scope="module")
def x0():
    return jax.random.normal(jax.random.PRNGKey(1), (3, 2))


def sample(alg, x0, n, **kw):
    return psample.sample(alg, x0, jax.random.PRNGKey(5), n, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(alg, x0):
    return sample(alg, x0, 60, num_warmup=4, thin=2, observables=OBSERVABLES)


def test_store_opens_as_arviz_datatree(alg, x0, reference, tmp_path):
    path = tmp_path / "run.zarr"
    trace = sample(alg, x0, 60, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=25, checkpoint=path)
    np.testing.assert_array_equal(trace.positions, reference.positions)
    tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(tree["posterior"]["x"].values, reference.positions)
    np.testing.assert_array_equal(tree["observables"]["r2"].values, reference.observables["r2"])
    np.testing.assert_array_equal(tree["sample_stats"]["lp"].values, reference.logdensity)
    summary = psample.diagnostics.summary(tree)
    assert len(summary) == 2


def test_resume_is_bit_for_bit(alg, x0, reference, tmp_path):
    path = tmp_path / "run.zarr"
    first = sample(alg, x0, 20, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=8, checkpoint=path)
    assert first.num_draws == 20
    resumed = psample.resume(path, alg, 40, observables=OBSERVABLES, progress=False)
    assert resumed.num_draws == 60
    np.testing.assert_array_equal(resumed.positions, reference.positions)
    np.testing.assert_array_equal(resumed.observables["r2"], reference.observables["r2"])
    np.testing.assert_array_equal(resumed.info.is_accepted, reference.info.is_accepted)
    tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(tree["posterior"]["x"].values, reference.positions)


def test_interrupted_run_resumes_to_the_requested_length(alg, x0, reference, tmp_path, ctrl_c_after):
    path = tmp_path / "run.zarr"
    ctrl_c_after(3)  # the warm-up, then two chunks of draws
    trace = sample(alg, x0, 60, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=10, checkpoint=path)
    assert trace.interrupted and trace.num_draws == 20
    resumed = psample.resume(path, alg, observables=OBSERVABLES, progress=False)  # the remaining 40
    np.testing.assert_array_equal(resumed.positions, reference.positions)


def test_crash_while_writing_a_chunk_loses_only_that_chunk(alg, x0, reference, tmp_path):
    path = tmp_path / "run.zarr"
    sample(alg, x0, 20, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=10, checkpoint=path)
    # Simulate a crash after draws were appended but before the state was saved.
    junk = xr.Dataset(
        {"x": (("chain", "draw", "x_dim_0"), np.full((3, 5, 2), 99.0))},
        coords={"chain": np.arange(3), "draw": np.arange(20, 25)},
    )
    junk.to_zarr(path, group="posterior", mode="a", append_dim="draw", consolidated=False)
    resumed = psample.resume(path, alg, 40, observables=OBSERVABLES, progress=False)
    np.testing.assert_array_equal(resumed.positions, reference.positions)
    tree = xr.open_datatree(path, engine="zarr", consolidated=False)
    np.testing.assert_array_equal(tree["posterior"]["x"].values, reference.positions)


def test_path_holding_another_run_is_refused(alg, x0, tmp_path):
    path = tmp_path / "run.zarr"
    sample(alg, x0, 5, checkpoint=path)
    with pytest.raises(CheckpointError, match="already holds another run"):
        sample(alg, x0, 5, checkpoint=path)


def test_resume_errors(alg, x0, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        psample.resume(tmp_path / "missing.zarr", alg)
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(CheckpointError, match="not a psample checkpoint"):
        psample.resume(tmp_path / "other.zarr", alg)
    path = tmp_path / "run.zarr"
    sample(alg, x0, 5, observables=OBSERVABLES, checkpoint=path)
    with pytest.raises(CheckpointError, match="observables"):
        psample.resume(path, alg, 5)
    mala = blackjax.mala(logdensity, 0.1)
    with pytest.raises(CheckpointError, match="does not match this algorithm"):
        psample.resume(path, mala, 5, observables=OBSERVABLES)
    with pytest.raises(psample.errors.InvalidTuningError, match="already holds all 5 draws"):
        psample.resume(path, alg, observables=OBSERVABLES)


def test_target_runs_store_constrained_sites_and_need_the_target(tmp_path):
    import numpyro
    import numpyro.distributions as dist

    def model():
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))

    target = psample.from_numpyro(model)
    alg = blackjax.additive_step_random_walk.normal_random_walk(target.logdensity_fn, 0.5)
    x0 = target.initial_positions(jax.random.PRNGKey(0), 2)
    path = tmp_path / "run.zarr"
    trace = psample.sample(alg, x0, jax.random.PRNGKey(1), 10, target=target, checkpoint=path, progress=False)
    tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_allclose(tree["posterior"]["scale"].values, np.exp(trace.positions["scale"]), rtol=1e-12)
    with pytest.raises(CheckpointError, match="pass target="):
        psample.resume(path, alg, 5)


def test_resume_with_another_target_names_both(tmp_path):
    import numpyro
    import numpyro.distributions as dist

    def scale_model():
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))

    def location_model():
        numpyro.sample("loc", dist.Normal(0.0, 1.0), sample_shape=(3,))

    target = psample.from_numpyro(scale_model)
    alg = blackjax.additive_step_random_walk.normal_random_walk(target.logdensity_fn, 0.5)
    x0 = target.initial_positions(jax.random.PRNGKey(0), 2)
    path = tmp_path / "run.zarr"
    psample.sample(alg, x0, jax.random.PRNGKey(1), 10, target=target, checkpoint=path, progress=False)
    with pytest.raises(CheckpointError, match="'scale_model', resume got target 'location_model'"):
        psample.resume(path, alg, 5, target=psample.from_numpyro(location_model), progress=False)
    renamed = dataclasses.replace(psample.from_numpyro(location_model), name="scale_model")
    with pytest.raises(CheckpointError, match="do not match target"):
        psample.resume(path, alg, 5, target=renamed, progress=False)
