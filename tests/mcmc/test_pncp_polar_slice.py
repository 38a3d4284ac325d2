"""Tests of psample.partially_noncentered_polar_slice (psample/mcmc/pncp_polar_slice.py).

Target: the dense Gaussian hierarchy of ``test_partial_noncentering.py`` as a NumPyro model
(``mu``, ``log_tau``, five latents ``h`` seen through a dense design), whose posterior moments a 1-d
quadrature over ``log_tau`` gives exactly. The sampler runs through ``psample.sample`` with its own
warm-up (the non-centred stage, then the fit(s)); its draws are in the model's own coordinates and
are checked against the exact moments (MCSE from independent chains, fixed seeds, Bonferroni
over the checks).
"""

from __future__ import annotations


import jax
import numpy as np
import pytest

import psample
from psample.errors import InvalidTuningError
from tests.mcmc.test_partial_noncentering import K, MIX, _numpyro_hierarchy, assert_moments_match_the_exact_posterior


@pytest.fixture(scope="module")
def model_target_latents():
    model = _numpyro_hierarchy()
    return model, psample.from_numpyro(model), psample.latent_gaussian(model, ["h"])


# the coordinatewise sweep (two fits, both hyperparameter paths of the warm-up) in CI's `make test-ci`
@pytest.mark.parametrize("hyper_move", [pytest.param("polar", marks=pytest.mark.heavy),
                                        pytest.param("coordinatewise", marks=[pytest.mark.heavy, pytest.mark.ci])])
def test_draws_match_the_exact_posterior(model_target_latents, hyper_move):
    _, target, latents = model_target_latents
    sampler = psample.partially_noncentered_polar_slice(target.logdensity_fn, latents, hyper_move=hyper_move, w=2.0)
    num_chains, num_draws = 16, 300
    positions = target.initial_positions(jax.random.key(1), num_chains)
    trace = psample.sample(sampler, positions, jax.random.key(2), num_draws, num_warmup=200, progress=False,
                           compute_convergence_checks=False)  # fmt: skip
    draws = trace.positions  # the model's unconstrained sites, (C, T, ...)
    columns = np.concatenate([np.asarray(draws["mu"])[..., None], np.asarray(draws["log_tau"])[..., None],
                              np.asarray(draws["h"])], axis=-1)  # (C, T, 2 + K): _exact_moments' order
    assert_moments_match_the_exact_posterior(columns, MIX)
    assert int(np.sum(np.asarray(trace.info.num_nonfinite))) == 0


@pytest.mark.heavy
def test_adapted_parameters_hold_the_fit_and_states_carry_the_models_logdensity(model_target_latents):
    _, target, latents = model_target_latents
    sampler = psample.partially_noncentered_polar_slice(target.logdensity_fn, latents)
    positions = target.initial_positions(jax.random.key(3), 4)
    (states, parameters), _ = sampler.adaptation.run(jax.random.key(4), positions, 40)
    assert parameters["curvature"].shape == (K, K)  # the dense design: a dense H
    assert parameters["linear"].shape == (K,)
    tuned = sampler.with_parameters(parameters)
    state, info = jax.jit(jax.vmap(tuned.step))(jax.random.split(jax.random.key(5), 4), states)
    np.testing.assert_allclose(state.logdensity, jax.vmap(target.logdensity_fn)(state.position), rtol=1e-9, atol=1e-9)
    assert np.all(np.asarray(info.num_evals) > 0)
    # init from the user's positions gives the same coordinates back
    again = jax.vmap(tuned.init)(state.position)
    for site in state.position:
        np.testing.assert_allclose(again.position[site], state.position[site], rtol=1e-9, atol=1e-12)


def test_bad_input_is_named(model_target_latents):
    _, target, latents = model_target_latents
    with pytest.raises(InvalidTuningError, match="hyper_move"):
        psample.partially_noncentered_polar_slice(target.logdensity_fn, latents, hyper_move="elliptical")
    with pytest.raises(InvalidTuningError, match="num_fits"):
        psample.partially_noncentered_polar_slice(target.logdensity_fn, latents, num_fits=3)
    with pytest.raises(InvalidTuningError, match="noncentered_fraction"):
        psample.partially_noncentered_polar_slice(target.logdensity_fn, latents, noncentered_fraction=1.0)
    with pytest.raises(InvalidTuningError, match="hyper_conditional_fn"):
        psample.partially_noncentered_polar_slice(target.logdensity_fn, latents._replace(hyper_conditional_fn=None),
                                                  hyper_move="coordinatewise")
    sampler = psample.partially_noncentered_polar_slice(target.logdensity_fn, latents)
    with pytest.raises(InvalidTuningError, match="at least 10 steps"):
        sampler.adaptation.run(jax.random.key(0), target.initial_positions(jax.random.key(1), 2), 15)


def test_the_hierarchical_latents_are_found(model_target_latents):
    import numpyro
    import numpyro.distributions as dist

    from psample.errors import ModelError

    model, target, latents = model_target_latents
    found = target.latent_gaussian_fn()  # psample.latent_gaussian(model) with the sites found: h
    np.testing.assert_array_equal(found.latent_indices, latents.latent_indices)
    np.testing.assert_array_equal(found.hyper_indices, latents.hyper_indices)

    def chain_of_latents():  # a's prior depends on (mu, tau), b's on a: a is the latent, b left to the rest
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        tau = numpyro.sample("tau", dist.HalfNormal(1.0))
        a = numpyro.sample("a", dist.Normal(mu, tau).expand([3]).to_event(1))
        numpyro.sample("b", dist.Normal(a, 1.0).to_event(1))

    chained = psample.latent_gaussian(chain_of_latents)
    assert len(chained.latent_indices) == 3 and len(chained.hyper_indices) == 5

    def flat():  # no prior depends on another site
        numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    with pytest.raises(ModelError, match="no latent Normal site whose location or scale depends"):
        psample.latent_gaussian(flat)
