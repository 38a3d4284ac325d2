"""Every multi-device check of the runtime tests, run in one process with 4 emulated CPU devices.

Devices are fixed when JAX starts, so the tests run this script once in a subprocess
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, fixture ``four_devices`` in
``tests/runtime/conftest.py``) and each test reads the line its check printed: ``<name> OK``.
A failing check prints its traceback and the script goes on with the next one.

Usage: ``python tests/runtime/four_devices.py SCRATCH_DIRECTORY``.
"""

import sys
import traceback
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


@check
def sharded(scratch: Path):
    """The chain axis is sharded over the devices and the draws are unchanged."""
    alg = rmh()
    sharded = psample.sample(alg, X0, jax.random.PRNGKey(7), 30, progress=False)
    assert len(sharded.final_state.position.sharding.device_set) == 4
    single = psample.sample(alg, X0, jax.random.PRNGKey(7), 30, progress=False, devices=jax.local_devices()[:1])
    np.testing.assert_allclose(sharded.positions, single.positions, rtol=0, atol=1e-12)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("chains",))
    on_two = psample.sample(alg, X0, jax.random.PRNGKey(7), 30, progress=False, mesh=mesh)
    assert len(on_two.final_state.position.sharding.device_set) == 2
    np.testing.assert_allclose(on_two.positions, single.positions, rtol=0, atol=1e-12)


@check
def resume(scratch: Path):
    """A checkpointed run resumes on the same 4 devices, bit for bit."""
    alg = rmh()
    path = str(scratch / "run.zarr")
    full = psample.sample(alg, X0, jax.random.PRNGKey(7), 40, progress=False)
    first = psample.sample(alg, X0, jax.random.PRNGKey(7), 20, progress=False, checkpoint=path)
    assert len(first.final_state.position.sharding.device_set) == 4
    resumed = psample.resume(path, alg, 20, progress=False)
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


if __name__ == "__main__":
    assert jax.local_device_count() == 4, jax.local_devices()
    scratch = Path(sys.argv[1])
    for name, fn in CHECKS.items():
        try:
            fn(scratch)
        except Exception:
            traceback.print_exc()
            print(f"{name} FAILED", flush=True)
        else:
            print(f"{name} OK", flush=True)
