"""One particle population split over 4 emulated CPU devices (``mesh=`` with a ``"particles"`` axis).

Tempered SMC (adaptive and fixed schedule), FKC and reverse diffusion run on one device and on
4 (``("particles",)`` and ``("chains", "particles")`` meshes) with the same key. Resampling is
global (the cumulative weights and the ancestor gather span the devices), so the populations
must match the one-device run: the ancestor indices (``eve``) and the resampling decisions bit
for bit, the floating-point values to a tight tolerance. They are not always bit for bit: the
sums over the particle axis (log-sum-exp of the weights for log Z and the ESS, the weighted
moments that tune the mutation kernel, the tempering bisection's conditional ESS) are reduced
per device and then across devices, in another order than on one device (differences of a few
ulps, which then propagate through the moves).

Emulated devices need ``XLA_FLAGS`` before JAX starts: the checks run in one subprocess.
"""

import os
import subprocess
import sys

import pytest

from tests.conftest import xla_flags

_SCRIPT = r"""
import traceback
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp, numpy as np, psample
from jax.scipy.stats import norm
from jax.sharding import Mesh
from psample.diffusion import VP, reverse_diffusion
from psample.errors import InvalidTuningError, ShapeError
from psample.models import fkc_problem

assert jax.local_device_count() == 4
devices = np.array(jax.devices())
ONE = Mesh(devices[:1], ("particles",))
MESHES = {"particles4": Mesh(devices, ("particles",)), "chains2xparticles2": Mesh(devices.reshape(2, 2), ("chains", "particles"))}

prior = lambda x: jnp.sum(norm.logpdf(x))
loglik = lambda x: norm.logpdf(1.5, x[0] + x[1], 0.3)
sampler = lambda k, n: jax.random.normal(k, (n, 2))
problem = fkc_problem("product", VP())
ALGORITHMS = {
    "tempered_adaptive": psample.smc.tempered_smc(prior, loglik, initial_sampler=sampler, mcmc="rwm", num_mcmc_steps=2,
                                                  target_ess=0.5, resampling="systematic"),
    "tempered_fixed_hmc": psample.smc.tempered_smc(prior, loglik, initial_sampler=sampler, mcmc="hmc", num_mcmc_steps=1,
                                                   schedule=[0.0, 0.3, 1.0], resample_ess=0.9),
    "fkc": psample.smc.fkc_smc([m.score for m in problem.models], problem.exponents,
                               schedule=problem.models[0].schedule, num_steps=6, t_min=problem.t_min),
    "reverse_diffusion": reverse_diffusion(lambda x: -0.5 * jnp.sum((x - jnp.array([1.0, -1.0])) ** 2), dim=2,
                                           schedule=VP(), num_steps=5, num_score_samples=4),
}
N, R = 64, 2

def compare(name, alg):
    run = lambda mesh: psample.run_particles(alg, jax.random.PRNGKey(5), N, num_replicates=R, progress=False, mesh=mesh)
    ref = run(ONE)
    assert ref.info.is_resampled.any(), "the check must cover a resampling step"
    for label, mesh in MESHES.items():
        got = run(mesh)
        assert got.info.ess.shape == ref.info.ess.shape, (label, got.info.ess.shape, ref.info.ess.shape)
        np.testing.assert_array_equal(got.final_state.eve, ref.final_state.eve, err_msg=label)
        np.testing.assert_array_equal(got.info.is_resampled, ref.info.is_resampled, err_msg=label)
        for field in ("particles", "log_weights", "log_Z"):
            a, b = np.asarray(getattr(got, field)), np.asarray(getattr(ref, field))
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"{label} {field}")
        for field in ref.info._fields:
            a, b = np.asarray(getattr(got.info, field)), np.asarray(getattr(ref.info, field))
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"{label} info.{field}")
        print(name, label, "max |particles diff|", float(np.abs(np.asarray(got.particles) - np.asarray(ref.particles)).max()))

def errors():
    alg = ALGORITHMS["tempered_fixed_hmc"]
    try:
        psample.run_particles(alg, jax.random.PRNGKey(0), 66, progress=False, mesh=MESHES["particles4"])
        raise AssertionError("no error")
    except ShapeError as e:
        assert "66 particles" in str(e) and "'particles'" in str(e), e
    try:
        psample.run_particles(alg, jax.random.PRNGKey(0), 64, progress=False, mesh=Mesh(devices, ("shards",)))
        raise AssertionError("no error")
    except InvalidTuningError as e:
        assert "shards" in str(e), e
    # An Explicit mesh from jax.make_mesh is accepted (rebuilt with Auto axes on the same devices).
    got = psample.run_particles(alg, jax.random.PRNGKey(0), 64, progress=False, mesh=jax.make_mesh((4,), ("particles",)))
    assert np.isfinite(got.log_Z).all()

CHECKS = {name: (lambda name=name, alg=alg: compare(name, alg)) for name, alg in ALGORITHMS.items()}
CHECKS["errors"] = errors
for name, fn in CHECKS.items():
    try:
        fn()
    except Exception:
        traceback.print_exc()
        print(f"{name} FAILED", flush=True)
    else:
        print(f"{name} OK", flush=True)
"""


@pytest.fixture(scope="module")
def four_device_run():
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=4"), JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)


def _assert_passed(run, name):
    assert f"{name} OK" in run.stdout.splitlines(), f"rc={run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["tempered_adaptive", "tempered_fixed_hmc", "fkc", "reverse_diffusion"])
def test_population_on_4_devices_matches_one_device(four_device_run, name):
    """Same key: the same ancestors and resampling decisions, values within 1e-9 (reduction order)."""
    _assert_passed(four_device_run, name)


@pytest.mark.heavy
def test_population_mesh_errors(four_device_run):
    """Particles not divisible by the axis, a foreign axis: clear errors before any work."""
    _assert_passed(four_device_run, "errors")


def test_population_mesh_validation_on_one_device():
    """Cheap checks of the placement rules (no run): the axis names agree between the sampler
    floor and the runtime, one-device meshes place nothing, bad meshes are refused."""
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from psample.errors import InvalidTuningError
    from psample.runtime import sharding
    from psample.smc import base as smc_base

    assert smc_base.PARTICLE_AXIS == sharding.PARTICLE_AXIS == "particles"
    one = np.array(jax.devices()[:1])
    assert sharding.population_mesh(3, 65, Mesh(one, ("particles",))) is None
    assert sharding.population_mesh(3, 65, Mesh(one, ("shards",))) is None
    with pytest.raises(InvalidTuningError, match="Mesh"):
        sharding.population_mesh(2, 64, "particles")
    shapes = {"particles": jax.ShapeDtypeStruct((2, 64, 3), np.float64), "log_Z": jax.ShapeDtypeStruct((2,), np.float64)}
    specs = sharding.population_shardings(shapes, Mesh(one.reshape(1, 1), ("chains", "particles")), 64)
    assert tuple(specs["particles"].spec) == ("chains", "particles")
    assert tuple(specs["log_Z"].spec) == ("chains",)
