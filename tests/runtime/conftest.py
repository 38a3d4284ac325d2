"""Fixtures of the runtime tests."""

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
def four_devices(tmp_path_factory) -> FourDevices:
    """Run every multi-device check once, in one subprocess with 4 emulated CPU devices."""
    script = Path(__file__).with_name("four_devices.py")
    env = dict(os.environ, XLA_FLAGS=xla_flags("--xla_force_host_platform_device_count=4"), JAX_PLATFORMS="cpu")
    scratch = tmp_path_factory.mktemp("four_devices")
    return FourDevices(
        subprocess.run([sys.executable, str(script), str(scratch)], env=env, capture_output=True, text=True, timeout=600)
    )
