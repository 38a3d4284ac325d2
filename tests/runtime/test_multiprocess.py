"""The chain runner under ``jax.distributed``: two local processes (gloo collectives) as two hosts.

Two processes with 2 emulated CPU devices each run the same script: ``psample.sample`` spreads
8 chains over the 4 devices of both, and every process gets the whole trace, equal bit for bit
to one process with 4 devices; a checkpointed run stopped by a Ctrl-C in process 0 (at a chunk
boundary both agree on) and resumed equals the uninterrupted run, in a store written by
process 0 alone; a store locked by another run is refused on both processes, and a resume in
another topology is refused naming both. All of it in one launch of the processes (JAX starts
and compiles once), next to the one-process reference.
"""

import fcntl
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import xla_flags

_SCRIPT = r"""
import json, os, signal, sys
import jax
jax.config.update("jax_enable_x64", True)
mode, out = sys.argv[1], sys.argv[2]
if mode == "worker":
    process, port = int(sys.argv[3]), sys.argv[4]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process)
    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
else:
    process = 0
    assert jax.process_count() == 1 and len(jax.devices()) == 4
import blackjax, jax.numpy as jnp, numpy as np, psample
from psample.errors import CheckpointError
from psample.runtime import driver

alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.8)
x0 = np.asarray(jax.random.normal(jax.random.PRNGKey(42), (8, 3)))
key = jax.random.PRNGKey(7)
kw = dict(progress=False, chunk_size=5, compute_convergence_checks=False)
trace = psample.sample(alg, x0, key, 20, **kw)
assert len(trace.final_state.position.sharding.device_set) == 4
result = {"positions": np.asarray(trace.positions), "accepted": np.asarray(trace.info.is_accepted)}
report = {}
if mode == "worker":
    class Bar:  # process 0 presses Ctrl-C when its second chunk is reported
        updates = 0
        def __init__(self, *args, **kwargs): pass
        def update(self, n):
            Bar.updates += 1
            if process == 0 and Bar.updates == 2:
                os.kill(os.getpid(), signal.SIGINT)
        def set_postfix(self, *args, **kwargs): pass
        def close(self): pass
    shown = driver._progress_bar
    driver._progress_bar = lambda *args, **kwargs: Bar()
    path = os.path.join(out, "run.zarr") if process == 0 else os.path.join(out, "elsewhere", "run.zarr")
    stopped = psample.sample(alg, x0, key, 20, checkpoint=path, **dict(kw, progress=True))
    driver._progress_bar = shown
    report["stopped"] = [bool(stopped.interrupted), int(stopped.num_draws)]
    result["stopped"] = np.asarray(stopped.positions)
    resumed = psample.resume(path, alg, progress=False, compute_convergence_checks=False)
    result["resumed"] = np.asarray(resumed.positions)
    report["follower_wrote"] = os.path.exists(os.path.join(out, "elsewhere"))
    for call in ("sample", "resume"):  # a store another run holds locked (the test's process)
        try:
            if call == "sample":
                psample.sample(alg, x0, key, 20, checkpoint=os.path.join(out, "locked"), **kw)
            else:
                psample.resume(os.path.join(out, "locked"), alg, progress=False)
            report[call + "_locked"] = "not refused"
        except CheckpointError as exc:
            report[call + "_locked"] = str(exc)
np.savez(os.path.join(out, f"{mode}{process}.npz"), **result)
with open(os.path.join(out, f"{mode}{process}.json"), "w") as f:
    json.dump(report, f)
"""


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return str(sock.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch the two processes and the one-process reference (4 devices) at once; wait for all."""
    out = tmp_path_factory.mktemp("multiprocess")
    script = out / "script.py"
    script.write_text(_SCRIPT)
    locked = out / "locked"
    locked.mkdir()
    lock = os.open(locked, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds this store
    port = _free_port()
    env = lambda devices: dict(  # noqa: E731
        os.environ, XLA_FLAGS=xla_flags(f"--xla_force_host_platform_device_count={devices}"), JAX_PLATFORMS="cpu"
    )
    commands = [[str(script), "worker", str(out), str(i), port] for i in range(2)]
    procs = [subprocess.Popen([sys.executable, *c], env=env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]  # fmt: skip
    procs.append(subprocess.Popen([sys.executable, str(script), "reference", str(out)], env=env(4),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-4000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        os.close(lock)
    return out


def _load(out, name):
    npz = np.load(out / f"{name}.npz")
    report = json.loads((out / f"{name}.json").read_text())
    return npz, report


@pytest.mark.heavy
def test_two_processes_hold_the_one_process_draws(runs):
    """8 chains over 2 processes x 2 devices: each process holds all draws, equal bit for bit
    to one process with 4 devices."""
    ref, _ = _load(runs, "reference0")
    assert ref["positions"].shape == (8, 20, 3)
    for i in range(2):
        out, _ = _load(runs, f"worker{i}")
        np.testing.assert_array_equal(out["positions"], ref["positions"])
        np.testing.assert_array_equal(out["accepted"], ref["accepted"])


@pytest.mark.heavy
def test_ctrl_c_in_one_process_stops_both_and_the_checkpoint_resumes_bit_for_bit(runs):
    """Process 0's Ctrl-C (after its 2nd chunk) stops both after the same chunk; the store,
    written by process 0 alone, resumes on both to the uninterrupted draws."""
    from psample.runtime.checkpoint import load_checkpoint

    ref, _ = _load(runs, "reference0")
    reports = [_load(runs, f"worker{i}") for i in range(2)]
    stopped = [report["stopped"] for _, report in reports]
    assert stopped[0] == stopped[1] and stopped[0][0] is True and 0 < stopped[0][1] < 20, stopped
    num_done = stopped[0][1]
    assert num_done % 5 == 0  # whole chunks
    for out, report in reports:
        np.testing.assert_array_equal(out["stopped"], ref["positions"][:, :num_done])
        np.testing.assert_array_equal(out["resumed"], ref["positions"])
        assert report["follower_wrote"] is False  # process 1's path was never created
    saved = load_checkpoint(runs / "run.zarr")  # checksums verified
    assert saved.draws_done == 20 and saved.topology == {"processes": 2, "devices_per_process": 2}
    np.testing.assert_array_equal(np.asarray(saved.records.position), ref["positions"])


@pytest.mark.heavy
def test_a_store_locked_by_another_run_is_refused_on_every_process(runs):
    for i in range(2):
        _, report = _load(runs, f"worker{i}")
        for call in ("sample", "resume"):
            assert "is in use by another process" in report[f"{call}_locked"], report


@pytest.mark.heavy
def test_resume_in_another_topology_names_both(runs, tmp_path):
    """The two-process store cannot be resumed by one process."""
    import shutil

    import blackjax
    import jax.numpy as jnp

    import psample
    from psample.errors import CheckpointError

    path = tmp_path / "copy.zarr"
    shutil.copytree(runs / "run.zarr", path)
    alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.8)
    with pytest.raises(CheckpointError, match=r"written by 2 processes x 2 devices .* runs on 1 process"):
        psample.resume(path, alg, 5, progress=False)
