"""Test configuration: float64 everywhere (several reference values need it), CPU only.

A run that selects no long statistical test (``slow``): ``make test``, ``make test-ci``, ``make
test-heavy``, compiles without LLVM's optimisations (``TEST_XLA_FLAGS``): its time is mostly the
compilation of small programs, which this roughly halves (LLVM's expensive passes off as well: a
few per cent more), and what it checks (statistics with MC tolerances, bit-for-bit equalities
between two runs of one configuration) does not depend on it. A run that selects the long
statistical tests compiles as users and benchmarks do, with XLA's defaults: a learned sampler's
training, for one, follows another floating-point path without them. Subprocesses that set their
own ``XLA_FLAGS`` add theirs to these (:func:`xla_flags`).

Every run keeps JAX's persistent compilation cache in a folder of its own, new for the run and
removed after it, shared by the pytest-xdist workers (:func:`pytest_configure`): many tests
build the same program anew (the same sampler on the same shapes, in a closure of their own),
which JAX's in-memory caches cannot see but the persistent cache (keyed by the program's text,
the compiler flags and the devices) does, so the program compiles once per run instead of once
per test. An executable read back from it is the one the compiler would make again, so no result
depends on it; nothing is kept between runs. ``PSAMPLE_TEST_JAX_CACHE=off`` turns it off.

The longest tests run first (:data:`LONG_FIRST`), which shortens a run spread over workers.
"""

import atexit
import os
import re
import shutil
import tempfile

TEST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ.setdefault("JAX_PLATFORMS", "cpu")


#: The markers a test may carry (pyproject.toml's ``markers``).
MARKERS = ("slow", "heavy", "ci")


def _selects_slow(markexpr: str) -> bool:
    """Whether the ``-m`` expression can select a test marked ``slow`` (whatever its other
    markers): ``not slow``, ``heavy``, ``ci`` or ``not slow and not heavy`` cannot, ``slow`` and
    ``slow or not slow`` can. An expression this cannot read counts as selecting them."""
    tokens = re.findall(r"\w+|[()]|\S", markexpr)
    if not tokens:
        return True
    if any(t not in ("and", "or", "not", "(", ")") and t not in MARKERS for t in tokens):
        return True
    others = [m for m in MARKERS if m != "slow"]
    for bits in range(2 ** len(others)):
        values = {"slow": True} | {m: bool(bits >> i & 1) for i, m in enumerate(others)}
        if eval(" ".join(str(values.get(t, t)) for t in tokens), {"__builtins__": {}}):  # booleans, and/or/not only
            return True
    return False


def pytest_configure(config):
    # Before any test module is imported or any computation runs (JAX reads XLA_FLAGS when
    # its CPU backend starts).
    if not _selects_slow(config.getoption("markexpr") or "") and TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
    # The run's compilation cache: the first process (pytest itself, or the pytest-xdist
    # controller) makes the folder and removes it at exit; its workers inherit the variable.
    if os.environ.get("PSAMPLE_TEST_JAX_CACHE") == "off":
        return
    if not os.environ.get("PSAMPLE_TEST_JAX_CACHE"):
        folder = tempfile.mkdtemp(prefix="psample-test-jax-cache-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["PSAMPLE_TEST_JAX_CACHE"] = folder
    jax.config.update("jax_compilation_cache_dir", os.environ["PSAMPLE_TEST_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.05)


#: The longest tests (subprocesses that start JAX and compile whole runs), moved to the front of
#: the run in this order, each module's tests kept in their order (a test picked out of its module
#: uses no module-scoped fixture). Longest first: pytest-xdist's ``worksteal`` hands the first
#: half of the list to one worker and the second half to the other, and a worker that runs out
#: steals from the end of the other's list, so the long tests start at once and the short ones
#: fill in at the end, instead of a long test starting last and leaving the other worker idle.
LONG_FIRST = (
    "tests/test_readme.py::test_readme_python_blocks_run[heavy]",
    "tests/test_readme.py::test_readme_python_blocks_run[heavy-readme]",
    "tests/mcmc/test_pncp_polar_slice.py::test_draws_match_the_exact_posterior",
    "tests/test_benchmarks_gpu.py::",
    "tests/runtime/test_particles_sharded.py::",
    # The other readers of the session fixture four_devices (one subprocess, run once for all):
    # next to the first, so that the worker running the subprocess reads them and the other
    # worker never waits for it.
    "tests/runtime/test_chains.py::test_chains_sharded_over_devices_match_one_device",
    "tests/runtime/test_chains.py::test_resume_restores_the_sharding_over_4_devices",
    "tests/runtime/test_particles.py::test_replicates_are_placed_over_devices_with_the_same_result",
    "tests/test_wheel.py::",
    "tests/runtime/test_particles_multiprocess.py::",
    "tests/runtime/test_multiprocess.py::",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(LONG_FIRST) if item.nodeid.startswith(prefix)), len(LONG_FIRST))

    items.sort(key=rank)  # stable: every other test keeps its place


def xla_flags(*flags: str) -> str:
    """``XLA_FLAGS`` for a test's subprocess: this run's test flags and ``flags``."""
    own = TEST_XLA_FLAGS if TEST_XLA_FLAGS in os.environ.get("XLA_FLAGS", "") else ""
    return " ".join(f for f in (own, *flags) if f)


import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402


def _bar_acting_at_update(n: int, act):
    """A stand-in for the driver's progress bar that calls ``act()`` once, at its ``n``-th update
    (counted over every bar of the run: warm-up, then draws)."""
    updates = []

    class Bar:
        def __init__(self, *args, **kwargs):
            pass

        def update(self, _):
            updates.append(1)
            if len(updates) == n:
                act()

        def set_postfix(self, *args, **kwargs):
            pass

        def close(self):
            pass

    return Bar


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """Make the runner's progress bar press Ctrl-C once, at its ``n``-th update.

    The bars (warm-up, then draws) are updated once per chunk, after that chunk is on the host
    and in the checkpoint; the driver handles a KeyboardInterrupt raised there like a real Ctrl-C.
    """
    import psample.runtime.driver

    def press():
        raise KeyboardInterrupt

    def install(n: int):
        monkeypatch.setattr(psample.runtime.driver, "_progress_bar", _bar_acting_at_update(n, press))

    return install


@pytest.fixture
def sigint_at_update(monkeypatch):
    """Send a real SIGINT to this process at the runner's ``n``-th progress-bar update.

    Unlike :func:`ctrl_c_after`, this goes through the driver's signal handler (the path of a
    single Ctrl-C), deterministically: ``os.kill`` of the own process runs the Python handler
    before it returns, so the flag is set at exactly that point of the run, whatever the load.
    """
    import signal

    import psample.runtime.driver

    def install(n: int):
        send = lambda: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731
        monkeypatch.setattr(psample.runtime.driver, "_progress_bar", _bar_acting_at_update(n, send))

    return install
