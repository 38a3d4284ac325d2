"""The NumPyro bridge and plain log-density targets."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import psample
from psample.errors import ModelError


def regression(x, y=None):
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    noise = numpyro.sample("noise", dist.HalfNormal(1.0))
    numpyro.deterministic("twice_slope", 2 * slope)
    numpyro.sample("y", dist.Normal(slope * x, noise), obs=y)


X = jnp.linspace(-1, 1, 20)
Y = 0.7 * X + 0.1 * jnp.sin(7 * X)


def test_logdensity_is_the_unconstrained_log_joint():
    target = psample.from_numpyro(regression, X, y=Y)
    z = {"slope": jnp.array(0.3), "noise": jnp.array(-0.5)}  # noise is log-transformed
    noise = jnp.exp(z["noise"])
    log_joint, _ = log_density(regression, (X,), {"y": Y}, {"slope": z["slope"], "noise": noise})
    # log |d noise / d z| = z for the exp transform.
    np.testing.assert_allclose(target.logdensity_fn(z), log_joint + z["noise"], rtol=1e-10)
    assert target.name == "regression"


def test_logprior_is_the_prior_and_jacobian_without_the_likelihood():
    target = psample.from_numpyro(regression, X, y=Y)
    other_data = psample.from_numpyro(regression, X, y=-3.0 * Y)
    z = {"slope": jnp.array(0.3), "noise": jnp.array(-0.5)}
    prior = dist.Normal(0.0, 1.0).log_prob(0.3) + dist.HalfNormal(1.0).log_prob(jnp.exp(-0.5)) - 0.5
    np.testing.assert_allclose(target.logprior_fn(z), prior, rtol=1e-12)  # the exp transform's log-Jacobian kept
    np.testing.assert_allclose(target.logprior_fn(z), target.logdensity_fn(z) - target.loglikelihood_fn(z), rtol=1e-12)
    # the data do not reach it: computed from the model with its observed sites hidden
    assert float(other_data.logprior_fn(z)) == float(target.logprior_fn(z))
    assert float(other_data.logdensity_fn(z)) != float(target.logdensity_fn(z))


def test_initial_positions_have_a_chain_axis_and_are_distinct():
    target = psample.from_numpyro(regression, X, y=Y)
    positions = target.initial_positions(jax.random.PRNGKey(0), 5)
    assert positions["slope"].shape == (5,) and positions["noise"].shape == (5,)
    assert len(np.unique(np.asarray(positions["slope"]))) == 5
    assert np.all(np.isfinite(jax.vmap(target.logdensity_fn)(positions)))


def test_initial_positions_are_numpyros_own_compiled_once_per_number_of_chains():
    """init_fn runs NumPyro's initialize_model on split keys under one jit per number of chains:
    the values are NumPyro's (eager) ones, a second call compiles nothing, and under
    jax.eval_shape (a tracer key) it gives the shapes without checking the values."""
    from numpyro.infer import init_to_uniform
    from numpyro.infer.util import initialize_model

    target = psample.from_numpyro(regression, X, y=Y)
    key = jax.random.PRNGKey(3)
    expected = initialize_model(jax.random.split(key, 6), regression, init_strategy=init_to_uniform,
                                model_args=(X,), model_kwargs={"y": Y}).param_info.z
    got = target.init_fn(key, 6)
    for site in ("slope", "noise"):
        np.testing.assert_allclose(got[site], expected[site], rtol=1e-12)
    with jax.log_compiles():
        import logging

        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logging.getLogger("jax").addHandler(handler)
        try:
            again = target.init_fn(key, 6)
        finally:
            logging.getLogger("jax").removeHandler(handler)
    assert not [r for r in records if "Compiling" in r.getMessage() and "search" in r.getMessage()]
    np.testing.assert_array_equal(again["slope"], got["slope"])
    shapes = jax.eval_shape(lambda k: target.init_fn(k, 2), jax.random.key(0))
    assert shapes["slope"].shape == (2,) and shapes["noise"].shape == (2,)


GROUP = jnp.array([0, 1, 1, 2])


def group_model(group):
    """A model that reads a concrete value off its data with jnp (``int(jnp.max(group))``): it
    runs eagerly, but not traced inside a compiled loop."""
    num_groups = int(jnp.max(group)) + 1
    effect = numpyro.sample("effect", dist.Normal(jnp.zeros(num_groups), 1.0))
    numpyro.sample("y", dist.Normal(effect[group], 1.0), obs=jnp.full(group.shape, 0.5))


def test_a_model_that_needs_concrete_values_is_initialised_eagerly():
    target = psample.from_numpyro(group_model, GROUP)  # NumPyro's one-chain eager search
    z = {"effect": jnp.array([0.2, -0.1, 0.3])}
    expected = dist.Normal(0.0, 1.0).log_prob(z["effect"]).sum() + dist.Normal(z["effect"][GROUP], 1.0).log_prob(0.5).sum()
    np.testing.assert_allclose(target.logdensity_fn(z), expected, rtol=1e-12)
    assert target.postprocess({"effect": z["effect"][None, None]})["effect"].shape == (1, 1, 3)


def test_a_model_without_valid_initial_values_names_the_model():
    def impossible_model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.factor("never", jnp.where(x > 1e6, 0.0, -jnp.inf))

    with pytest.raises(ModelError, match="impossible_model.*valid initial parameters"):
        psample.from_numpyro(impossible_model)


def test_postprocess_constrains_and_adds_deterministic_sites():
    target = psample.from_numpyro(regression, X, y=Y)
    draws = {"slope": jnp.ones((2, 3)), "noise": jnp.full((2, 3), -1.0)}
    sites = target.postprocess(draws)
    assert set(sites) == {"slope", "noise", "twice_slope"}
    np.testing.assert_allclose(sites["noise"], np.exp(-1.0), rtol=1e-12)
    np.testing.assert_allclose(sites["twice_slope"], 2.0)
    assert sites["slope"].shape == (2, 3)


def simplex_and_correlation():
    p = numpyro.sample("p", dist.Dirichlet(jnp.ones(4)))
    L = numpyro.sample("L", dist.LKJCholesky(3, 2.0))
    b = numpyro.sample("b", dist.Beta(2.0, 3.0))
    numpyro.deterministic("q", jnp.log(p) * b + jnp.sum(L))


@pytest.mark.parametrize("model, args, kwargs", [
    (regression, (X,), {"y": Y}),
    pytest.param(simplex_and_correlation, (), {}, marks=pytest.mark.slow),  # many transforms to compile
])
def test_trace_posterior_is_postprocess_bit_for_bit_whatever_the_batch(model, args, kwargs, monkeypatch):
    """Trace.posterior maps postprocess_fn in padded batches of fixed sizes (compiled once for
    every run): the values are Target.postprocess's exactly, for runs shorter than a batch and
    runs of several batches (batch sizes 4 to 16 here, to keep the test small)."""
    import psample.runtime.trace
    from psample.runtime.trace import constrained

    monkeypatch.setattr(psample.runtime.trace, "POSTPROCESS_BATCH", (4, 16))
    target = psample.from_numpyro(model, *args, **kwargs)
    for num_chains, num_draws in [(4, 10)]:  # 3 batches of 16, the last padded
        flat = target.initial_positions(jax.random.PRNGKey(num_draws), num_chains * num_draws)
        positions = jax.tree.map(lambda x: 3.0 * x.reshape((num_chains, num_draws) + x.shape[1:]), flat)
        expected = target.postprocess(positions)
        trace = psample.Trace(positions=positions, info=None, logdensity=None, observables={}, final_state=None,
                              target=target)
        group = {site: values.values for site, values in trace.posterior.data_vars.items()}
        for got in (group, constrained(target, positions)):
            assert set(got) == set(expected)
            for site, values in expected.items():
                assert got[site].dtype == values.dtype and got[site].shape == values.shape
                np.testing.assert_array_equal(got[site], np.asarray(values))


def test_failing_model_names_the_model():
    def broken_model():
        numpyro.sample("x", dist.Normal(0.0, -1.0))  # invalid scale

    with pytest.raises(ModelError, match="broken_model"):
        numpyro.enable_validation(True)
        try:
            psample.from_numpyro(broken_model)
        finally:
            numpyro.enable_validation(False)


def test_num_chains_validated():
    target = psample.from_numpyro(regression, X, y=Y)
    with pytest.raises(psample.errors.InvalidTuningError, match="num_chains"):
        target.initial_positions(jax.random.PRNGKey(0), 0)


def test_from_logdensity_spreads_chains_around_a_point():
    target = psample.from_logdensity(lambda x: -jnp.sum(x**2), jnp.ones(3), scale=0.1)
    positions = target.initial_positions(jax.random.PRNGKey(0), 400)
    assert positions.shape == (400, 3)
    np.testing.assert_allclose(positions.mean(0), 1.0, atol=4 * 0.1 / 20)
    np.testing.assert_allclose(target.postprocess(positions[:, None])["x"], positions[:, None])


def _complex_logdensity(x):
    """A log-density gone complex (a log of a negative number in complex arithmetic)."""
    return jnp.log(jnp.asarray(-1.0 - jnp.sum(x**2), jnp.complex128))


def test_from_logdensity_refuses_a_complex_log_density():
    """Issue #23 point 9: the imaginary part used to be dropped with only a ComplexWarning."""
    from psample.errors import DtypeError

    with pytest.raises(DtypeError, match=r"logdensity_fn returns a complex value \(dtype complex128\)"):
        psample.from_logdensity(_complex_logdensity, jnp.zeros(3))
    psample.from_logdensity(lambda x: -0.5 * jnp.sum(x**2), jnp.zeros(3))  # real: accepted


def test_the_chain_runner_refuses_a_complex_log_density_before_any_step():
    """The runner's checks: a target's complex log-density, and a sampler (BlackJAX's random
    walk) whose initial state stores the complex value as it comes, are DtypeErrors naming the
    log-density and its dtype; before, both ran (the random walk compared complex values)."""
    import blackjax

    from psample.errors import DtypeError

    positions = jnp.ones((2, 3))
    target = psample.Target(_complex_logdensity, lambda key, n: jnp.ones((n, 3)), name="complex")
    real_sampler = psample.polar_slice(lambda x: -0.5 * jnp.sum(x**2))
    with pytest.raises(DtypeError, match=r"target 'complex' returns a complex value \(dtype complex128\)"):
        psample.sample(real_sampler, positions, jax.random.key(0), 5, target=target, progress=False)
    walk = blackjax.additive_step_random_walk(_complex_logdensity, blackjax.mcmc.random_walk.normal(0.5))
    with pytest.raises(DtypeError, match=r"log-density.*complex value \(dtype complex128\)"):
        psample.sample(walk, positions, jax.random.key(0), 5, progress=False)
