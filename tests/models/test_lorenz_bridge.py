"""The convection Lorenz bridge (inference-gym's ``ConvectionLorenzBridgeUnknownScales``) as a NumPyro model."""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density

from psample.errors import ModelError
from psample.models import lorenz_bridge as lb
from psample.targets import from_numpyro, noncentered

# The 92-site model built and compared with the gym's: in CI's `make test-ci`, out of the fast developer loop.
pytestmark = [pytest.mark.heavy, pytest.mark.ci]

DATA = lb.convection_lorenz_bridge_data()
NAMES = lb.state_site_names(30)
#: a short bridge (6 steps, the middle two missing) for the identities, which hold at any length
SHORT = {"observed_values": DATA["observed_values"][:6], "observation_mask": np.array([1, 1, 0, 0, 1, 1], bool),
         "step_size": 0.02}
SHORT_NAMES = lb.state_site_names(6)


@pytest.fixture(scope="module")
def centred():
    """The model as the gym writes it, on the gym's data."""
    return lb.convection_lorenz_bridge()


@pytest.fixture(scope="module")
def short():
    """The short bridge as written and its non-centred rewrite by ``psample.noncentered``."""
    return from_numpyro(lb.lorenz_bridge_model, **SHORT), from_numpyro(noncentered(lb.lorenz_bridge_model), **SHORT)


def one(target, seed):
    return jax.tree.map(lambda a: a[0], target.initial_positions(jax.random.key(seed), 1))


def sites_of(target, position):
    sites = target.postprocess(jax.tree.map(lambda a: a[None, None], position))
    return {k: np.asarray(v)[0, 0] for k, v in sites.items()}


def test_data_are_the_gyms_thirty_steps_with_the_middle_ten_missing():
    values, mask = DATA["observed_values"], DATA["observation_mask"]
    assert values.shape == mask.shape == (30,) and values.dtype == np.float64
    np.testing.assert_array_equal(np.flatnonzero(~mask), np.arange(10, 20))
    assert values[0] == np.float32(-0.2761459) and values[29] == np.float32(6.26647)  # the gym's float32 numbers
    assert DATA["step_size"] == 0.02
    data_dir = pathlib.Path(lb.__file__).parent / "data"
    digest = hashlib.sha256((data_dir / "convection_lorenz_bridge.csv").read_bytes()).hexdigest()
    assert digest in (data_dir / "README.md").read_text()  # the file is the one the README describes


def test_sites_shapes_and_finite_logdensity_at_numpyros_init(centred):
    assert centred.name == "convection_lorenz_bridge_unknown_scales" and centred.hints["polar_slice_w"] > 0
    positions = centred.initial_positions(jax.random.key(0), 2)
    assert set(positions) == {"innovation_scale", "observation_scale", *NAMES}
    assert sum(np.prod(v.shape[1:], dtype=int) for v in positions.values()) == 92
    logp = np.asarray(jax.jit(jax.vmap(centred.logdensity_fn))(positions))
    assert logp.shape == (2,) and np.all(np.isfinite(logp))
    sites = centred.postprocess(jax.tree.map(lambda a: a[None], positions))
    assert sites["latents"].shape == (1, 2, 30, 3) and sites["innovation_scale"].shape == (1, 2)
    np.testing.assert_array_equal(np.asarray(sites["latents"])[0, :, 7], np.asarray(sites[NAMES[7]])[0])
    assert np.all(np.asarray(sites["observation_scale"]) > 0)


def test_the_path_maps_are_inverse_and_match_the_noncentred_model(short):
    """psample.noncentered drives the path by its Euler-Maruyama innovations, as the maps do."""
    _, rewritten = short
    z = one(rewritten, 5)
    sites = sites_of(rewritten, z)
    innovations = jnp.stack([z[f"{n}_decentered"] for n in SHORT_NAMES])
    path = lb.euler_maruyama_path(innovations, sites["innovation_scale"])
    np.testing.assert_allclose(np.asarray(path), sites["latents"], rtol=1e-10, atol=1e-10)
    back = lb.euler_maruyama_innovations(path, sites["innovation_scale"])
    np.testing.assert_allclose(np.asarray(back), np.asarray(innovations), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("seed", [1, 2])
def test_noncentred_density_is_the_centred_one_times_the_jacobian(short, seed):
    """log p_nc(z) = log p_c(path(z)) + 3 (T - 1) log(sqrt(h) innovation_scale) (the scales: the same
    log coordinates in both)."""
    centred, rewritten = short
    z = one(rewritten, seed)
    sites = sites_of(rewritten, z)
    x = {"innovation_scale": z["innovation_scale"], "observation_scale": z["observation_scale"],
         **{n: jnp.asarray(sites["latents"][t]) for t, n in enumerate(SHORT_NAMES)}}  # fmt: skip
    jacobian = 3 * 5 * np.log(np.sqrt(0.02) * sites["innovation_scale"])
    expected = float(centred.logdensity_fn(x)) + jacobian
    np.testing.assert_allclose(float(rewritten.logdensity_fn(z)), expected, rtol=1e-10)


def test_bad_data_raise_model_errors_naming_the_argument():
    with pytest.raises(ModelError, match="observation_mask"):
        log_density(lb.lorenz_bridge_model, (), {**DATA, "observation_mask": DATA["observation_mask"][:5]}, {})
    with pytest.raises(ModelError, match="observed_values must be finite"):
        log_density(lb.lorenz_bridge_model, (), {**DATA, "observation_mask": np.ones(30, bool)}, {})
    with pytest.raises(ModelError, match="step_size"):
        log_density(lb.lorenz_bridge_model, (), {**DATA, "step_size": 0.0}, {})


@pytest.mark.skipif(importlib.util.find_spec("inference_gym") is None, reason="inference-gym (bench extra) not installed")
def test_data_and_logjoint_are_the_gyms_up_to_one_constant():
    """The shipped data are the gym's, and the log-joint minus the gym's ``unnormalized_log_prob`` (its
    ``LorenzSystemUnknownScales`` on the short bridge: the model is the same at any length) is one
    constant at random points (the gym computes in float32: a relative tolerance of 1e-5).
    ``benchmarks/hierarchical.py --cases lorenz --check`` compares the full 30-step target."""
    from inference_gym import using_jax as gym
    from inference_gym.internal.datasets import convection_lorenz_bridge as gym_data

    np.testing.assert_array_equal(DATA["observed_values"], gym_data.OBSERVED_VALUES.astype(np.float64))
    assert DATA["step_size"] == gym_data.STEP_SIZE and gym_data.OBSERVATION_INDEX == 0
    observed = np.where(SHORT["observation_mask"], SHORT["observed_values"], np.nan).astype(np.float32)
    gym_target = gym.targets.LorenzSystemUnknownScales(
        observed_values=observed, observation_mask=SHORT["observation_mask"], observation_index=0,
        step_size=np.float32(0.02))
    rng = np.random.default_rng(0)
    differences, logps = [], []
    for _ in range(3):
        scales = np.exp(rng.normal(-1.0, 1.0, 2)).astype(np.float32).astype(np.float64)
        latents = rng.normal(0.0, 1.0, (6, 3)).astype(np.float32).astype(np.float64)  # representable in float32
        value = {"innovation_scale": scales[0], "observation_scale": scales[1],
                 **{n: latents[t] for t, n in enumerate(SHORT_NAMES)}}  # fmt: skip
        ours = float(log_density(lb.lorenz_bridge_model, (), SHORT, value)[0])
        theirs = float(gym_target.unnormalized_log_prob(type(gym_target.dtype)(
            *[jnp.asarray(v, jnp.float32) for v in (scales[0], scales[1], *latents)])))
        differences.append(ours - theirs)
        logps.append(ours)
    assert np.ptp(differences) < 1e-5 * max(abs(v) for v in logps) + 1e-9, (differences, logps)
