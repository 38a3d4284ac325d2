"""ArviZ takes psample's results as they are (issue #25, points 1 and 2).

A Trace and a ParticleResult are xarray DataTrees: az.summary/ess/rhat/loo/compare/extract and
the plots read them directly; the groups are those az.from_numpyro makes on the same model
(plate dims, log_likelihood, observed_data); sample_stats speak ArviZ's names.
"""

import copy
import pickle
import warnings

import numpyro  # before arviz's lazy loader registers it (see psample.numpyro)
import arviz as az
import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import psample
import psample.numpyro
from psample.models.schools import eight_schools, eight_schools_model

# Whole runs compiled per module fixture: in CI's `make test-ci`, out of the fast developer loop.
pytestmark = [pytest.mark.heavy, pytest.mark.ci]

NUM_CHAINS, NUM_DRAWS = 4, 200


@pytest.fixture(scope="module")
def target():
    return eight_schools()


@pytest.fixture(scope="module")
def algorithm(target):
    return psample.polar_slice(target.logdensity_fn, w=10.0)  # one algorithm: compiled once


@pytest.fixture(scope="module")
def trace(target, algorithm):
    positions = target.initial_positions(jax.random.key(0), NUM_CHAINS)
    return psample.sample(algorithm, positions, jax.random.key(1), NUM_DRAWS, num_warmup=50, target=target,
                          progress=False, compute_convergence_checks=False)


@pytest.fixture(scope="module")
def other_trace(target, algorithm):
    positions = target.initial_positions(jax.random.key(2), NUM_CHAINS)
    return psample.sample(algorithm, positions, jax.random.key(3), NUM_DRAWS, num_warmup=50, target=target,
                          progress=False, compute_convergence_checks=False)


@pytest.fixture(scope="module")
def numpyro_mcmc():
    mcmc = numpyro.infer.MCMC(psample.numpyro.PolarSlice(eight_schools_model), num_warmup=20, num_samples=20,
                              num_chains=2, chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.key(0))
    return mcmc


@pytest.fixture(scope="module")
def particles():
    # Prior N(0, I), likelihood N(1 | x, I): the posterior is N(1/2, I/2) per coordinate.
    algorithm = psample.smc.tempered_smc(
        lambda x: -0.5 * jnp.sum(x**2), lambda x: -0.5 * jnp.sum((x - 1.0) ** 2),
        initial_sampler=lambda key, n: jax.random.normal(key, (n, 2)), mcmc="rwm", num_mcmc_steps=2,
    )  # fmt: skip
    return psample.run_particles(algorithm, jax.random.key(4), 256, num_replicates=4, progress=False)


def test_az_functions_take_a_trace_as_it_is(trace):
    assert isinstance(trace, xr.DataTree)
    plain = trace.to_datatree()
    assert type(plain) is xr.DataTree
    for fn in (az.ess, az.rhat):
        for name in ("mu", "tau", "theta"):
            np.testing.assert_array_equal(fn(trace)[name].values, fn(plain)[name].values)
    summary = az.summary(trace, round_to="none")
    assert list(summary.index[:2]) == ["mu", "tau"] and "theta[0]" in summary.index
    assert np.allclose(summary.loc["mu", "mean"], trace.posterior["mu"].values.mean())
    assert dict(az.extract(trace).sizes) == {"sample": NUM_CHAINS * NUM_DRAWS, "school": 8}


def test_loo_and_compare_work_on_traces(trace, other_trace):
    loo = az.loo(trace)
    assert loo.n_data_points == 8 and loo.n_samples == NUM_CHAINS * NUM_DRAWS
    assert np.isfinite(loo.elpd)
    table = az.compare({"a": trace, "b": other_trace})
    assert set(table.index) == {"a", "b"}
    # The same posterior sampled twice: the two elpd estimates agree within their standard errors.
    assert abs(table.loc["a", "elpd"] - table.loc["b", "elpd"]) < 2 * table["se"].max()


def test_copy_pickle_select_and_store(trace, tmp_path):
    copied = trace.copy()
    assert type(copied) is psample.Trace and copied.target is trace.target and copied.num_draws == NUM_DRAWS
    assert copy.deepcopy(trace).num_chains == NUM_CHAINS
    restored = pickle.loads(pickle.dumps(trace))
    assert type(restored) is psample.Trace and restored.target is None  # NumPyro closures are not pickled
    np.testing.assert_array_equal(restored.posterior["theta"].values, trace.posterior["theta"].values)
    first = trace.isel(draw=slice(0, 10))
    assert type(first) is xr.DataTree and first.posterior.sizes["draw"] == 10  # a selection has no run record
    assert trace.sel(chain=[0, 1]).posterior.sizes["chain"] == 2
    trace.to_zarr(tmp_path / "t.zarr")
    back = xr.open_datatree(tmp_path / "t.zarr", engine="zarr")
    np.testing.assert_array_equal(back["posterior"]["mu"].values, trace.posterior["mu"].values)


def test_a_plot_draws_from_a_trace(trace, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    collection = az.plot_trace_dist(trace, var_names=["mu"], backend="matplotlib")
    collection.savefig(tmp_path / "mu.png")
    plt.close("all")
    assert (tmp_path / "mu.png").stat().st_size > 0


def test_plate_dims_and_coords_are_az_from_numpyro_s(trace, numpyro_mcmc):
    reference = az.from_numpyro(numpyro_mcmc, log_likelihood=True)
    for group in ("posterior", "log_likelihood", "observed_data"):
        ours, theirs = trace[group], reference[group]
        assert set(ours.data_vars) == set(theirs.data_vars), group
        for name in theirs.data_vars:
            assert ours[name].dims == theirs[name].dims, (group, name)
        assert "school" in ours["theta"].dims if group == "posterior" else "school" in ours["obs"].dims
        np.testing.assert_array_equal(ours["school"].values, theirs["school"].values)
    np.testing.assert_array_equal(trace.observed_data["obs"].values, reference.observed_data["obs"].values)
    assert "sigma" in trace.constant_data  # the model's array argument that is not observed


def test_coords_and_dims_given_to_from_numpyro(algorithm):
    names = [f"school {i}" for i in range(8)]
    target = psample.from_numpyro(eight_schools_model, coords={"school": names}, dims={"sigma": ["school"]})
    trace = psample.sample(algorithm, target.initial_positions(jax.random.key(0), 2),
                           jax.random.key(1), 5, target=target, progress=False, compute_convergence_checks=False)
    assert list(trace.posterior["school"].values) == names
    assert trace.constant_data["sigma"].dims == ("school",)
    with pytest.raises(psample.errors.ModelError, match=r"coords\['school'\] has 3 values .* size 8"):
        psample.from_numpyro(eight_schools_model, coords={"school": ["a", "b", "c"]})


def test_log_likelihood_is_numpyro_s_on_the_same_draws(trace):
    draws = {name: jnp.asarray(values.values) for name, values in trace.posterior.data_vars.items()}
    expected = numpyro.infer.log_likelihood(eight_schools_model, draws, batch_ndims=2)["obs"]
    np.testing.assert_allclose(trace.log_likelihood["obs"].values, np.asarray(expected), rtol=1e-10)
    assert trace.log_likelihood["obs"].dims == ("chain", "draw", "school")


def test_log_likelihood_can_be_skipped(target, algorithm):
    trace = psample.sample(algorithm, target.initial_positions(jax.random.key(0), 2),
                           jax.random.key(1), 5, target=target, progress=False, compute_convergence_checks=False,
                           log_likelihood=False)
    assert "log_likelihood" not in trace.children and "observed_data" in trace.children


def gaussian(x):
    return -0.5 * jnp.sum(x**2 / jnp.array([1.0, 100.0]))


def test_nuts_sample_stats_have_arviz_names_and_no_trajectory():
    algorithm = psample.window_adaptation(blackjax.nuts, gaussian)
    positions = jax.random.normal(jax.random.key(0), (2, 2))
    trace = psample.sample(algorithm, positions, jax.random.key(1), 20, num_warmup=100,
                           progress=False, compute_convergence_checks=False)
    stats = set(trace.sample_stats.data_vars)
    assert {"lp", "diverging", "acceptance_rate", "n_steps", "tree_depth", "energy"} <= stats
    assert not any("trajectory" in s or "momentum" in s or "logdensity_grad" in s for s in stats), stats
    assert trace.sample_stats["diverging"].dtype == bool
    np.testing.assert_array_equal(trace.sample_stats["lp"].values, trace.logdensity)
    # Each chain adapted on its own: one step size per chain, in the trace and its attributes.
    assert np.shape(trace.parameters["step_size"]) == (2,) and len(trace.attrs["adapted.step_size"]) == 2
    assert np.all(np.asarray(trace.parameters["step_size"]) > 0)
    # The adapted diagonal inverse mass matrix follows the variances (1, 100): its ratio is far
    # above the identity's 1 (a loose bound: 100 warm-up steps).
    matrix = np.asarray(trace.parameters["inverse_mass_matrix"])
    assert matrix.shape == (2, 2) and np.all(matrix[:, 1] / matrix[:, 0] > 5)


def test_burn_in_of_a_blackjax_kernel_says_what_happens():
    mala = blackjax.mala(gaussian, step_size=0.1)
    positions = jnp.zeros((2, 2))
    run = dict(progress=False, compute_convergence_checks=False)
    with pytest.warns(UserWarning, match=r"plain burn-in.*psample\.window_adaptation") as caught:
        psample.sample(mala, positions, jax.random.key(1), 3, num_warmup=3, **run)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        psample.sample(mala, positions, jax.random.key(1), 3, num_warmup=3, adapt=False, **run)


def test_old_method_calls_warn_and_return_the_old_dicts(trace, particles):
    with pytest.warns(DeprecationWarning, match=r"trace\.posterior\(\) is deprecated"):
        posterior = trace.posterior()
    assert set(posterior) == {"mu", "tau", "theta", "theta_tilde"}
    np.testing.assert_array_equal(posterior["mu"], trace.posterior["mu"].values)
    with pytest.warns(DeprecationWarning, match=r"sample_stats\(\) is deprecated"):
        assert "num_evals" in trace.sample_stats()
    with pytest.warns(DeprecationWarning, match=r"particleresult\.posterior\(\) is deprecated"):
        weighted = particles.posterior()
    np.testing.assert_array_equal(weighted["x"], particles.sites()["x"])
    assert weighted["x"].shape == (4, 256, 2)


def test_az_functions_take_a_particle_result(particles):
    assert isinstance(particles, xr.DataTree)
    assert particles.posterior["x"].shape == (4, 256, 2)
    np.testing.assert_array_equal(particles.posterior["x"].values, particles.to_datatree().posterior["x"].values)
    summary = az.summary(particles, round_to="none")
    assert len(summary) == 2 and np.all(summary["r_hat"] < 1.05)
    # The equal-weight draws estimate the weighted mean (1/2 for this Gaussian posterior).
    mean, se = particles.weighted_mean()
    se_draws = summary["sd"].values / np.sqrt(4 * 256)
    assert np.all(np.abs(summary["mean"].values - 0.5) < 5 * np.hypot(se, se_draws))
    assert float(az.ess(particles)["x"].min()) > 0
    assert particles.sample_stats["log_marginal_likelihood"].shape == (4,)
    assert type(particles.copy()) is type(particles) and particles.copy().num_particles == 256
    assert type(pickle.loads(pickle.dumps(particles))) is type(particles)


def test_polar_slice_in_numpyro_mcmc_has_sample_stats(numpyro_mcmc):
    tree = az.from_numpyro(numpyro_mcmc)
    stats = set(tree.sample_stats.data_vars)
    assert {"lp", "num_evals", "num_nonfinite"} <= stats
    assert tree.sample_stats["lp"].shape == (2, 20)
    assert np.all(tree.sample_stats["num_evals"].values >= 1)
    # lp is the log-density of each draw (NumPyro's -potential_energy at the unconstrained sites).
    z = numpyro_mcmc.get_samples(group_by_chain=True)
    from numpyro.infer.util import potential_energy, unconstrain_fn

    first = {k: v[0, 0] for k, v in z.items() if k != "theta"}
    expected = -potential_energy(eight_schools_model, (), {}, unconstrain_fn(eight_schools_model, (), {}, first))
    np.testing.assert_allclose(tree.sample_stats["lp"].values[0, 0], expected, rtol=1e-8)
