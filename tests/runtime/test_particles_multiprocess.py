"""``psample.run_particles`` under ``jax.distributed``: two processes, one result.

Two local processes (2 emulated CPU devices each, gloo collectives) run the same script:
replicates over all four devices on ``"chains"`` (the default, no ``mesh=``), and one population
split over both processes on ``"particles"``. Each process gets the whole ParticleResult and it
equals the single-process run with the same key: bit for bit for the replicates (no sum crosses
a device), to 1e-9 for the split population (sums over the particle axis are reduced in another
order; its ancestors and resampling decisions are bit for bit).
"""

import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

import psample
from tests.conftest import xla_flags

_PROCESS_SCRIPT = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process)
import jax.numpy as jnp, numpy as np, psample
from jax.scipy.stats import norm
from jax.sharding import Mesh
assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
ALGORITHM
replicates = psample.run_particles(alg, jax.random.PRNGKey(3), 32, num_replicates=4, progress=False)
population = psample.run_particles(alg, jax.random.PRNGKey(3), 32, num_replicates=1, progress=False,
                                   mesh=Mesh(np.array(jax.devices()), ("particles",)))
np.savez(out, **{f"{label}_{k}": np.asarray(v) for label, r in (("replicates", replicates), ("population", population))
                 for k, v in (("particles", r.particles), ("log_Z", r.log_Z), ("eve", r.final_state.eve),
                              ("ess", r.info.ess), ("is_resampled", r.info.is_resampled))})
"""

_ALGORITHM = """
alg = psample.smc.tempered_smc(lambda x: jnp.sum(norm.logpdf(x)), lambda x: norm.logpdf(1.5, x[0] + x[1], 0.3),
                               initial_sampler=lambda k, n: jax.random.normal(k, (n, 2)), mcmc="rwm",
                               num_mcmc_steps=2, schedule=[0.0, 0.2, 0.5, 1.0], resample_ess=0.9)
"""


@pytest.mark.heavy
def test_two_processes_match_one_process(tmp_path):
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    script = tmp_path / "particles_process.py"
    script.write_text(_PROCESS_SCRIPT.replace("ALGORITHM", _ALGORITHM))
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=2"), JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i), port, str(tmp_path / f"out{i}.npz")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(2)
    ]
    # The single-process reference (one device) runs here while the two processes start.
    scope = {"jax": jax, "jnp": jnp, "norm": norm, "psample": psample}
    exec(_ALGORITHM, scope)
    alg = scope["alg"]
    ref = {
        "replicates": psample.run_particles(alg, jax.random.PRNGKey(3), 32, num_replicates=4, progress=False),
        "population": psample.run_particles(alg, jax.random.PRNGKey(3), 32, num_replicates=1, progress=False),
    }
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            proc.kill()
    assert ref["population"].info.is_resampled.any()
    for i in range(2):
        out = np.load(tmp_path / f"out{i}.npz")
        for label, r in ref.items():
            exact = label == "replicates"
            pairs = {"particles": r.particles, "log_Z": r.log_Z, "eve": r.final_state.eve, "ess": r.info.ess,
                     "is_resampled": r.info.is_resampled}  # fmt: skip
            for key, want in pairs.items():
                got, want = out[f"{label}_{key}"], np.asarray(want)
                if exact or key in ("eve", "is_resampled"):
                    np.testing.assert_array_equal(got, want, err_msg=f"process {i} {label} {key}")
                else:
                    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"process {i} {label} {key}")
