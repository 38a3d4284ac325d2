"""Every multi-device check of the runtime tests, run in one process with 4 emulated CPU devices.

Chains sharded over devices and resumed there (``test_chains.py``), particle replicates placed
over devices (``test_particles.py``), and one particle population split over the devices
(``test_particles_sharded.py``, whose docstring says what is compared and to which tolerance).

Devices are fixed when JAX starts, so the tests run this script once in a subprocess
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, fixture ``four_devices`` in
``tests/runtime/conftest.py``) and each test reads the line its check printed: ``<name> OK``.
A failing check prints its traceback and the script goes on with the next one.

Usage: ``python tests/runtime/four_devices.py SCRATCH_DIRECTORY [CHECK ...]`` (default: every
check; the fixture leaves out the population checks when no ``heavy`` test reads them).
"""

import sys
import traceback
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import psample  # noqa: E402

CHECKS = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def rmh():
    return blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.8)


X0 = jax.random.normal(jax.random.PRNGKey(42), (8, 3))
#: One algorithm and one chunk size for the chain checks, so that the runs on the same devices
#: reuse one compiled chunk function (the runner's cache is per algorithm and shapes).
ALG, CHUNK = rmh(), 10


@check
def sharded(scratch: Path):
    """The chain axis is sharded over the devices and the draws are unchanged."""
    run = dict(progress=False, chunk_size=CHUNK, compute_convergence_checks=False)
    sharded = psample.sample(ALG, X0, jax.random.PRNGKey(7), 30, **run)
    assert len(sharded.final_state.position.sharding.device_set) == 4
    one = jax.sharding.Mesh(np.array(jax.local_devices()[:1]), ("chains",))
    single = psample.sample(ALG, X0, jax.random.PRNGKey(7), 30, mesh=one, **run)
    np.testing.assert_allclose(sharded.positions, single.positions, rtol=0, atol=1e-12)
    # The old keyword devices= still works for one release, with its DeprecationWarning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = psample.sample(ALG, X0, jax.random.PRNGKey(7), 30, devices=jax.local_devices()[:1], **run)
    assert any(w.category is DeprecationWarning and "devices=" in str(w.message) for w in caught), caught
    np.testing.assert_array_equal(old.positions, single.positions)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("chains",))
    on_two = psample.sample(ALG, X0, jax.random.PRNGKey(7), 30, mesh=mesh, **run)
    assert len(on_two.final_state.position.sharding.device_set) == 2
    np.testing.assert_allclose(on_two.positions, single.positions, rtol=0, atol=1e-12)


@check
def resume(scratch: Path):
    """A checkpointed run resumes on the same 4 devices, bit for bit."""
    path = str(scratch / "run.zarr")
    run = dict(progress=False, compute_convergence_checks=False)
    full = psample.sample(ALG, X0, jax.random.PRNGKey(7), 40, chunk_size=CHUNK, **run)
    first = psample.sample(ALG, X0, jax.random.PRNGKey(7), 20, chunk_size=CHUNK, checkpoint=path, **run)
    assert len(first.final_state.position.sharding.device_set) == 4
    resumed = psample.resume(path, ALG, 20, **run)
    assert len(resumed.final_state.position.sharding.device_set) == 4, resumed.final_state.position.sharding
    np.testing.assert_array_equal(resumed.positions, full.positions)


@check
def replicates(scratch: Path):
    """Particle replicates placed over the devices give the one-device result."""
    from jax.scipy.stats import norm

    from psample.runtime import sharding

    alg = psample.smc.tempered_smc(
        lambda x: jnp.sum(norm.logpdf(x)), lambda x: norm.logpdf(1.0, x[0] + x[1], 1.0),
        initial_sampler=lambda k, n: jax.random.normal(k, (n, 2)), mcmc="rwm", num_mcmc_steps=2,
        schedule=[0.0, 0.5, 1.0],
    )  # fmt: skip
    assert sharding.chain_mesh(4) is not None and sharding.chain_mesh(3) is None
    sharded = psample.run_particles(alg, jax.random.PRNGKey(0), 32, num_replicates=4, progress=False)
    original = sharding.chain_mesh
    sharding.chain_mesh = lambda n, *args: None  # one device
    try:
        single = psample.run_particles(alg, jax.random.PRNGKey(0), 32, num_replicates=4, progress=False)
    finally:
        sharding.chain_mesh = original
    np.testing.assert_allclose(sharded.log_Z, single.log_Z, rtol=1e-12)
    np.testing.assert_allclose(sharded.particles, single.particles, rtol=1e-12)


# --- One particle population split over the devices (tests/runtime/test_particles_sharded.py) ---
# Every algorithm is compared on the ("particles",) mesh; the ("chains", "particles") mesh, where
# the runner also splits the replicates, is generic in the algorithm (the algorithms' reductions
# see the same "particles" axis on both meshes), so it is compared on the adaptive tempered SMC
# (the most cross-device reductions: the bisection's conditional ESS, systematic resampling).
from jax.scipy.stats import norm  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from psample.diffusion import VP, reverse_diffusion  # noqa: E402
from psample.errors import InvalidTuningError, ShapeError  # noqa: E402
from psample.models import fkc_problem  # noqa: E402

devices = np.array(jax.devices())
ONE = Mesh(devices[:1], ("particles",))
MESHES = {"particles4": Mesh(devices, ("particles",)), "chains2xparticles2": Mesh(devices.reshape(2, 2), ("chains", "particles"))}


def prior(x):
    return jnp.sum(norm.logpdf(x))


def loglik(x):
    return norm.logpdf(1.5, x[0] + x[1], 0.3)


def sampler(k, n):
    return jax.random.normal(k, (n, 2))


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


def compare(name, alg, meshes=("particles4",)):
    run = lambda mesh: psample.run_particles(alg, jax.random.PRNGKey(5), N, num_replicates=R, progress=False, mesh=mesh)
    ref = run(ONE)
    assert ref.info.is_resampled.any(), "the check must cover a resampling step"
    for label in meshes:
        got = run(MESHES[label])
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


def population_errors():
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
    # An Explicit mesh from jax.make_mesh is accepted (rebuilt with Auto axes on the same devices):
    # the run of compare("tempered_fixed_hmc") on that mesh, whose compiled functions it reuses.
    got = psample.run_particles(alg, jax.random.PRNGKey(5), N, num_replicates=R, progress=False,
                                mesh=jax.make_mesh((4,), ("particles",)))
    ref = psample.run_particles(alg, jax.random.PRNGKey(5), N, num_replicates=R, progress=False, mesh=MESHES["particles4"])
    np.testing.assert_array_equal(got.log_Z, ref.log_Z)


for _name, _meshes in (("tempered_adaptive", ("particles4", "chains2xparticles2")), ("tempered_fixed_hmc", ("particles4",)),
                       ("fkc", ("particles4",)), ("reverse_diffusion", ("particles4",))):  # fmt: skip
    CHECKS[f"population_{_name}"] = lambda scratch, name=_name, meshes=_meshes: compare(name, ALGORITHMS[name], meshes)
CHECKS["population_errors"] = lambda scratch: population_errors()


if __name__ == "__main__":
    assert jax.local_device_count() == 4, jax.local_devices()
    scratch = Path(sys.argv[1])
    selected = sys.argv[2:] or list(CHECKS)
    for name, fn in CHECKS.items():
        if name not in selected:
            continue
        try:
            fn(scratch)
        except Exception:
            traceback.print_exc()
            print(f"{name} FAILED", flush=True)
        else:
            print(f"{name} OK", flush=True)
