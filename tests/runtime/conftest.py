"""Fixtures of the runtime tests."""

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import xla_flags


class FourDevices:
    """The output of ``tests/runtime/four_devices.py`` (every check on 4 emulated devices)."""

    def __init__(self, completed: subprocess.CompletedProcess):
        self.completed = completed

    def assert_passed(self, name: str) -> None:
        out = self.completed
        assert f"{name} OK" in out.stdout.splitlines(), f"rc={out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="session")
def four_devices(request, tmp_path_factory) -> FourDevices:
    """Run the multi-device checks once, in one subprocess with 4 emulated CPU devices.

    Under pytest-xdist the first worker that needs it runs the script and the others read its
    output (pytest-xdist's recipe for a session fixture run once: a lock file in the folder all
    workers share), instead of once per worker: the script compiles many whole runs. The
    population checks run only when a collected ``heavy`` test reads this fixture (every worker
    collects the same tests, so all agree), which keeps them out of ``make test-fast``.
    """
    script = Path(__file__).with_name("four_devices.py")
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=4"), JAX_PLATFORMS="cpu")
    heavy = any(item.get_closest_marker("heavy") is not None and "four_devices" in getattr(item, "fixturenames", ())
                for item in request.session.items)  # fmt: skip
    selection = [] if heavy else ["sharded", "resume", "replicates"]

    def run() -> subprocess.CompletedProcess:
        scratch = tmp_path_factory.mktemp("four_devices")
        return subprocess.run([sys.executable, str(script), str(scratch), *selection], env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip

    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process
        return FourDevices(run())
    shared = tmp_path_factory.getbasetemp().parent / "four_devices.json"
    with open(shared.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.exists():
            done = run()
            shared.write_text(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}))
        saved = json.loads(shared.read_text())
    return FourDevices(subprocess.CompletedProcess(script, saved["returncode"], saved["stdout"], saved["stderr"]))
