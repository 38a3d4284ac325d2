"""Test configuration: float64 everywhere (several reference values need it), CPU only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """Make the runner's progress bar press Ctrl-C once, at its ``n``-th update.

    The bar is updated once per warm-up chunk and once per chunk of draws, after that chunk is
    on the host and in the checkpoint, which is exactly where a real Ctrl-C is handled.
    """
    import psample.run

    def install(n: int):
        pressed = []

        class Bar:
            def __init__(self, *args):
                self.updates = 0

            def update(self, _):
                self.updates += 1
                if self.updates == n and not pressed:
                    pressed.append(True)
                    raise KeyboardInterrupt

            def close(self):
                pass

        monkeypatch.setattr(psample.run, "_progress_bar", Bar)

    return install
