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

Emulated devices need ``XLA_FLAGS`` before JAX starts: the checks run in one subprocess, with
every other 4-device check of the runtime tests (``tests/runtime/four_devices.py``). Every
algorithm is compared on a ``("particles",)`` mesh; the ``("chains", "particles")`` mesh, where
the runner also splits the replicates over devices, on the adaptive tempered SMC (the placement
of replicates is the runner's, not the algorithm's).
"""

import pytest


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["tempered_adaptive", "tempered_fixed_hmc", "fkc", "reverse_diffusion"])
def test_population_on_4_devices_matches_one_device(four_devices, name):
    """Same key: the same ancestors and resampling decisions, values within 1e-9 (reduction order)."""
    four_devices.assert_passed(f"population_{name}")


@pytest.mark.heavy
def test_population_mesh_errors(four_devices):
    """Particles not divisible by the axis, a foreign axis: clear errors before any work."""
    four_devices.assert_passed("population_errors")


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
