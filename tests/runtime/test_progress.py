"""Progress bars (psample/runtime/progress.py): where they show, what they say, what stays.

In-process tests give the driver a standard error that says it is a terminal (or not); the
rate and the time left are checked on tqdm's own clock, replaced by a fake one (no wall-clock
timing). The heavy tests run the real thing: a script whose standard error is a pseudo-terminal
(and then a pipe), and the quickstart notebook executed in a real Jupyter kernel (nbclient).
"""

import io
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import types
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tqdm.std

import psample
from psample.base import ParticleAlgorithm
from psample.runtime import progress
from psample.runtime.driver import drive

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "notebooks" / "quickstart.ipynb"


class Terminal(io.StringIO):
    """A standard error that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def stderr(monkeypatch):
    """``stderr(tty)``: replace ``sys.stderr`` with a buffer, a terminal or not; returns it."""

    def install(tty: bool):
        buffer = Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        return buffer

    return install


@jax.jit
def count(carry, indices):
    """A chunk function: carry + 1 per step."""
    return jax.lax.scan(lambda c, i: (c + 1, i), carry, indices)


def lines(text: str) -> list[str]:
    """The bar's states as drawn (tqdm redraws a line after a carriage return)."""
    return [part.strip() for part in re.split(r"[\r\n]", text) if part.strip()]


# -- where a bar shows ---------------------------------------------------------------------------


def test_a_bar_shows_on_a_terminal_not_in_a_pipe_nor_when_switched_off(stderr):
    stderr(tty=True)
    assert progress.shows_progress(True) and not progress.shows_progress(False)
    stderr(tty=False)
    assert not progress.shows_progress(True)


def test_a_bar_shows_in_a_jupyter_kernel_though_stderr_is_no_terminal(stderr, monkeypatch):
    stderr(tty=False)
    kernel_shell = types.SimpleNamespace(kernel=object(), config={})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel_shell))
    assert progress.in_notebook() and progress.shows_progress(True)
    configured = types.SimpleNamespace(config={"IPKernelApp": {}})  # a shell without .kernel
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: configured))
    assert progress.in_notebook()
    terminal_ipython = types.SimpleNamespace(config={"TerminalInteractiveShell": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: terminal_ipython))
    assert not progress.in_notebook() and not progress.shows_progress(True)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not progress.in_notebook()


def test_notebook_detection_never_imports_ipython(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not progress.in_notebook()
    assert "IPython" not in sys.modules


def test_only_process_zero_shows_a_bar(stderr, monkeypatch):
    stderr(tty=True)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert not progress.shows_progress(True)
    buffer = stderr(tty=True)
    drive(count, jnp.asarray(0), 0, 5, desc="sampling", unit="draw")
    assert buffer.getvalue() == ""


# -- what it says --------------------------------------------------------------------------------


def test_rate_and_time_left_leave_out_the_compilation(stderr, monkeypatch):
    """Compiling for 50 s, then 10 draws a second: the time left is that of 10 draws a second."""
    buffer = stderr(tty=True)
    now = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    bar = progress.progress_bar(100, True, "sampling", "draw")
    assert lines(buffer.getvalue())[-1].endswith("0/100 [00:00<?, ?draw/s, compiling]")
    now[0] = 50.0  # the first chunk (one draw) returns after its compilation
    bar.update(1)
    assert lines(buffer.getvalue())[-1].endswith("1/100 [00:50<?, ?draw/s]")  # no rate yet, no 0.02 draw/s
    now[0] = 51.0
    bar.leave_out(1.0)  # a chunk of a new length compiled for a second
    now[0] = 53.0
    bar.update(20)  # 20 draws in 2 s of running
    assert bar.format_dict["rate"] == pytest.approx(10.0)
    assert lines(buffer.getvalue())[-1].endswith("21/100 [00:53<00:07, 10.00draw/s]")
    now[0] = 60.0
    bar.update(79)  # 99 draws in 9 s of running
    now[0] = 70.0  # the rate is that of the run as of its last chunk, not of the time since
    bar.close()
    last = lines(buffer.getvalue())[-1]
    assert last.endswith("100/100 [01:10<00:00, 11.00draw/s]"), last
    assert buffer.getvalue().endswith("\n")  # the last line stays


def test_the_driver_bar_stays_with_the_total_and_rate(stderr):
    buffer = stderr(tty=True)
    result = drive(count, jnp.asarray(0), 0, 50, desc="sampling", unit="draw")
    assert int(result.carry) == 50
    shown = lines(buffer.getvalue())
    assert any(line.endswith("compiling]") for line in shown)
    assert re.fullmatch(r"sampling: 100%\|#+\| 50/50 \[\d\d:\d\d<00:00, [\d.]+k?draw/s\]", shown[-1]), shown[-1]
    assert buffer.getvalue().endswith("]\n")


def test_no_bar_in_a_pipe(stderr):
    buffer = stderr(tty=False)
    drive(count, jnp.asarray(0), 0, 20, desc="sampling", unit="draw")
    assert buffer.getvalue() == ""


class _State(NamedTuple):
    particles: jax.Array
    log_weights: jax.Array
    log_Z: jax.Array
    temperature: jax.Array


class _Info(NamedTuple):
    ess: jax.Array
    log_Z_increment: jax.Array
    is_resampled: jax.Array


def _init(rng_key, num_particles):
    n = num_particles
    return _State(jnp.zeros((n, 1)), jnp.full((n,), -jnp.log(n)), jnp.zeros(()), jnp.zeros(()))


def _step(rng_key, state):
    n = state.log_weights.shape[0]
    info = _Info(jnp.asarray(float(n)), jnp.zeros(()), jnp.asarray(False))
    return state._replace(temperature=jnp.minimum(state.temperature + 0.3, 1.0)), info


#: An until-done particle algorithm whose temperature goes 0.3, 0.6, 0.9, 1.0: four steps.
TEMPERING = ParticleAlgorithm(init=_init, step=_step, is_done=lambda s: s.temperature >= 1.0)


def test_until_done_particle_runs_show_their_temperature_from_0_to_1(stderr):
    buffer = stderr(tty=True)
    # Chunks of 3 steps: the second one holds one real step and two no-ops after the end.
    result = psample.run_particles(TEMPERING, jax.random.key(0), 8, num_replicates=2, chunk_length=3)
    np.testing.assert_array_equal(result.final_state.temperature, 1.0)
    shown = lines(buffer.getvalue())
    assert shown[0].startswith("temperature:   0%") and shown[0].endswith("0.000/1 [00:00, compiling]")
    assert any("| 0.900/1 [" in line and "steps=3" in line for line in shown), shown
    assert re.fullmatch(r"temperature: 100%\|#+\| 1\.000/1 \[\d\d:\d\d, steps=4, ess=8\]", shown[-1]), shown[-1]
    assert "step/s" not in buffer.getvalue() and buffer.getvalue().endswith("\n")


# -- the real thing: a terminal, a pipe, a notebook ----------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    from psample.runtime.driver import drive

    @jax.jit
    def count(carry, indices):
        return jax.lax.scan(lambda c, i: (c + 1, i), carry, indices)

    drive(count, jnp.asarray(0), 0, 50, desc="sampling", unit="draw")
    print("done", flush=True)
    """
)


@pytest.mark.heavy
def test_a_real_terminal_shows_the_bar_and_keeps_its_last_line_a_pipe_does_not():
    import fcntl
    import pty
    import struct
    import termios

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=secondary, env=env)  # fmt: skip
        os.close(secondary)
        received = b""
        while True:
            try:
                data = os.read(main, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not data:
                break
            received += data
        assert process.wait(timeout=120) == 0 and process.stdout.read() == b"done\n"
    finally:
        os.close(main)
    text = received.decode()
    assert "compiling" in text
    assert re.search(r"sampling: 100%\|\S+\| 50/50 \[[^\]]*draw/s\]\r?\n", text), text  # stays, with a newline
    piped = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, env=env, timeout=120, check=True)
    assert piped.stdout == b"done\n" and b"sampling" not in piped.stderr


@pytest.fixture
def kernel_name(tmp_path, monkeypatch):
    """A Jupyter kernelspec running this interpreter (this environment's psample), found through
    ``JUPYTER_PATH`` in a temporary folder (nothing written to the user's home)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / "psample-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "psample test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    return "psample-test"


@pytest.mark.heavy
def test_the_quickstart_notebook_shows_a_progress_widget_that_stays(kernel_name, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    pytest.importorskip("ipywidgets")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, kernel_name=kernel_name, timeout=300, store_widget_state=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    sample_cell = next(c for c in notebook.cells if "psample.sample(" in c.source)
    widgets = [o for o in sample_cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, sample_cell.outputs  # a progress widget, not a text bar nor nothing
    assert not [o for o in sample_cell.outputs if o.output_type == "error"]
    state = notebook.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    models = [(m["model_name"], m["state"]) for m in state.values()]
    texts = [s.get("value", "").replace("\u2007", " ") for name, s in models if name == "HTMLModel"]
    # The last line stays: the bar full and green (a closed bar with leave=False is hidden).
    assert any(re.fullmatch(r"300/300 \[\d\d:\d\d&lt;00:00, [\d.]+k?draw/s\]", t.strip()) for t in texts), texts
    bars = [s for name, s in models if name == "FloatProgressModel"]
    assert any(s["value"] == s["max"] == 300 and s["bar_style"] == "success" for s in bars), bars
    assert not [s for name, s in models if name == "LayoutModel" and s.get("visibility") == "hidden"]
    summary_cell = notebook.cells[-1]
    assert "mu" in summary_cell.outputs[0]["data"]["text/plain"]
