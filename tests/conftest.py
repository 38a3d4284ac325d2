"""Test configuration: float64 everywhere (several reference values need it), CPU only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """Make the runner's progress bar press Ctrl-C once, at its ``n``-th update.

    The bars (warm-up, then draws) are updated once per chunk, after that chunk is on the host
    and in the checkpoint; the driver handles a KeyboardInterrupt raised there like a real Ctrl-C.
    """
    import psample.driver

    def install(n: int):
        pressed = []

        updates = []  # counted over every bar of the run (warm-up, then draws)

        class Bar:
            def __init__(self, *args):
                pass

            def update(self, _):
                updates.append(1)
                if len(updates) == n and not pressed:
                    pressed.append(True)
                    raise KeyboardInterrupt

            def set_postfix(self, *args, **kwargs):
                pass

            def close(self):
                pass

        monkeypatch.setattr(psample.driver, "_progress_bar", Bar)

    return install


@pytest.fixture
def sigint_at_update(monkeypatch):
    """Send a real SIGINT to this process at the runner's ``n``-th progress-bar update.

    Unlike :func:`ctrl_c_after`, this goes through the driver's signal handler (the path of a
    single Ctrl-C), deterministically: ``os.kill`` of the own process runs the Python handler
    before it returns, so the flag is set at exactly that point of the run, whatever the load.
    """
    import signal

    import psample.driver

    def install(n: int):
        updates = []

        class Bar:
            def __init__(self, *args, **kwargs):
                pass

            def update(self, _):
                updates.append(1)
                if len(updates) == n:
                    os.kill(os.getpid(), signal.SIGINT)

            def set_postfix(self, *args, **kwargs):
                pass

            def close(self):
                pass

        monkeypatch.setattr(psample.driver, "_progress_bar", Bar)

    return install
