"""D-ADMMS over devices and processes: bit for bit the same draws on any layout.

Emulated CPU devices need ``XLA_FLAGS`` before JAX starts, and several processes need their own
``jax.distributed`` runtime: both run in subprocesses, which is the point of these tests.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import psample
from tests.conftest import xla_flags

# ----------------------------------------------------------------------------- devices

_DEVICE_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np, networkx as nx
jax.config.update("jax_enable_x64", True)
import psample
from jax.sharding import Mesh
from psample.errors import ShapeError, InvalidTuningError
assert jax.local_device_count() == 4
rng = np.random.default_rng(10)
X = rng.normal(size=(20, 50, 2)); y = X @ np.array([1.0, -2.0]) + 4 * rng.normal(size=(20, 50))
data = (jnp.asarray(X), jnp.asarray(y))
lp = lambda x: -0.5 * jnp.sum(x**2) / 10
ll = lambda x, s: -0.5 * jnp.sum((s[1] - s[0] @ x) ** 2) / 16
devices = np.array(jax.devices())
one, shards = Mesh(devices[:1], ("chains",)), Mesh(devices, ("shards",))
two = Mesh(devices[:2], ("shards",))
grid = Mesh(devices.reshape(2, 2), ("chains", "shards"))
obs = {"local": lambda s: s.local_positions, "dual": lambda s: s.duals}
def run(graph, prox, mesh, admm_mesh):
    alg = psample.admm(lp, ll, data, graph=graph, prox=prox, mesh=admm_mesh)
    return psample.sample(alg, jnp.zeros((4, 2)), jax.random.PRNGKey(3), 6, progress=False, mesh=mesh,
                          observables=obs, compute_convergence_checks=False)  # 6 draws: bits, not convergence
for graph, prox, meshes in GRAPHS:
    ref = run(graph, prox, one, None)
    for mesh in meshes:
        got = run(graph, prox, mesh, mesh)
        # Bit for bit: exact sums over agents, neighbour sums in a fixed order, per-chain shard
        # copies for the iterative prox. Only two diagnostics may round differently with fewer
        # chains per device: the quadratic prox's residual (computed on the shared shard) and the
        # consensus distance (a float reduction; seen 1 ulp apart on the ring with L-BFGS). The
        # draws, the agents' positions and the duals stay bit for bit.
        pairs = {"positions": (got.positions, ref.positions), **{k: (got.observables[k], ref.observables[k]) for k in obs},
                 **{k: (getattr(got.info, k), getattr(ref.info, k)) for k in got.info._fields}}
        for name, (a, b) in pairs.items():
            a, b = np.asarray(a), np.asarray(b)
            diagnostic = (name == "prox_residual" and prox == "quadratic") or name == "consensus_distance"
            if diagnostic and "chains" in mesh.axis_names:
                assert np.abs(a - b).max() < 1e-12
            else:
                assert np.array_equal(a, b), (str(graph), prox, name, np.abs(a - b).max())
        if mesh is grid:
            assert tuple(got.final_state.local_positions.sharding.spec) == ("chains", "shards")
try:
    psample.admm(lp, ll, (data[0][:18], data[1][:18]), mesh=shards)
    raise SystemExit("no error")
except ShapeError as e:
    assert "18 agents" in str(e)
try:
    psample.admm(lp, ll, data, mesh=jax.make_mesh((4,), ("shards",)))
    raise SystemExit("no error")
except InvalidTuningError as e:
    assert "Explicit" in str(e)
print("OK")
"""


def _run_devices(graphs):
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=4"), JAX_PLATFORMS="cpu")
    script = _DEVICE_SCRIPT.replace("GRAPHS", graphs)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


@pytest.mark.heavy
def test_agents_sharded_over_4_devices_match_one_device():
    """Bit for bit: the complete graph (exact sums) on 4 shards and on the 2x2 (chains x shards)
    mesh, a 3-regular graph (neighbour tables) on 2x2."""
    _run_devices('[("complete", "quadratic", (shards, grid)), (nx.random_regular_graph(3, 20, seed=1), "quadratic", (grid,))]')


@pytest.mark.slow
def test_iterative_prox_sharded_match_one_device():
    """Bit for bit: Newton on the complete graph (2 and 4 shards, 2x2), L-BFGS on the ring (2x2)."""
    _run_devices('[("complete", "newton", (two, shards, grid)), ("ring", "lbfgs", (grid,))]')


_PROCESS_SCRIPT = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
process, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process)
import jax.numpy as jnp, numpy as np, psample
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from psample.mcmc import admm
assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
rng = np.random.default_rng(10)
X = rng.normal(size=(20, 50, 2)); y = X @ np.array([1.0, -2.0]) + 4 * rng.normal(size=(20, 50))
asked = []
def loader(agents):  # stands for reading this process's files: it may only be asked for its own agents
    asked.append((agents.start, agents.stop))
    return X[agents], y[agents]
lp = lambda x: -0.5 * jnp.sum(x**2) / 10
ll = lambda x, s: -0.5 * jnp.sum((s[1] - s[0] @ x) ** 2) / 16
mesh = Mesh(np.array(jax.devices()), ("shards",))  # agents 0-9 on process 0, 10-19 on process 1
data = admm.load_shards(loader, 20, mesh)
assert sorted(asked) == [(10 * process, 10 * process + 5), (10 * process + 5, 10 * process + 10)], asked
assert not data[0].is_fully_addressable
alg = psample.admm(lp, ll, data, graph="complete", prox="quadratic", mesh=mesh)
trace = psample.sample(alg, np.zeros((2, 2)), jax.random.PRNGKey(3), 4, progress=False, mesh=mesh)
local = multihost_utils.process_allgather(trace.final_state.local_positions, tiled=True)
np.savez(out, positions=np.asarray(trace.positions), local=np.asarray(local))
"""


@pytest.mark.slow
def test_two_processes_joined_by_jax_distributed_match_one_process(tmp_path):
    """Two processes on localhost (2 CPU devices each, gloo collectives), each loading only its 10 agents.

    The complete graph (exact sums across the processes) matches the single-process run bit
    for bit: local samples and network averages.
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    script = tmp_path / "admm_process.py"
    script.write_text(_PROCESS_SCRIPT)
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=2"), JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i), port, str(tmp_path / f"out{i}.npz")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(2)
    ]
    # The single-process reference runs here while the two processes start.
    rng = np.random.default_rng(10)
    X = rng.normal(size=(20, 50, 2))
    y = X @ np.array([1.0, -2.0]) + 4 * rng.normal(size=(20, 50))
    alg = psample.admm(lambda x: -0.5 * jnp.sum(x**2) / 10, lambda x, s: -0.5 * jnp.sum((s[1] - s[0] @ x) ** 2) / 16,
                       (X, y), graph="complete", prox="quadratic")  # fmt: skip
    ref = psample.sample(alg, np.zeros((2, 2)), jax.random.PRNGKey(3), 4, progress=False)
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    for i in range(2):
        out = np.load(tmp_path / f"out{i}.npz")
        np.testing.assert_array_equal(out["local"], np.asarray(ref.final_state.local_positions))
        np.testing.assert_array_equal(out["positions"], np.asarray(ref.positions))

