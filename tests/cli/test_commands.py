"""The ``psample`` command line (``psample run``, ``models``, ``samplers``) and the README's examples.

Every command runs in-process through ``main([...])``; a real process is started only where the
process is the point (``python -m psample.cli``, a kill, a pipe closed by its reader).
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from psample.cli import main
from psample.cli.run import SAMPLERS

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module", autouse=True)
def one_algorithm_per_model():
    """Every ``psample run`` of this module on one model and sampler reuses one algorithm object,
    so the runtime's cache of compiled functions (kept per algorithm) serves the later runs: the
    runs of the gaussian model without warm-up (2 chains, thin 1) compile their draws once. (An
    adapted run samples with a new algorithm, ``with_parameters``, and compiles its own draws.)

    The algorithm built for the first target of a model is the one ``run`` would build for any
    later one (same model, same parameters), so the draws are those of a fresh build.
    """
    import psample.cli.run

    built = {}
    patch = pytest.MonkeyPatch()
    for name, entry in psample.cli.run.SAMPLERS.items():

        def build(target, _name=name, _build=entry.build):
            key = (_name, target.name)
            if key not in built:
                built[key] = _build(target)
            return built[key]

        patch.setitem(psample.cli.run.SAMPLERS, name, entry._replace(build=build))
    yield
    patch.undo()


def test_models_and_samplers_list_one_line_each(capsys):
    import psample.models

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(psample.models.describe())
    assert main(["samplers"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()[1:]]  # after the header
    assert names[: len(SAMPLERS)] == list(SAMPLERS) and "pivot" in names and "glauber" in names


@pytest.mark.heavy
def test_run_prints_an_arviz_summary_and_writes_a_plot(capsys, tmp_path):
    plot = tmp_path / "trace.png"
    code = main(
        ["run", "--model", "gaussian", "--chains", "2", "--draws", "200", "--warmup", "0",
         "--no-progress", "--plot", str(plot)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"mean\s+sd\s+eti89_lb\s+eti89_ub\s+ess_bulk\s+ess_tail\s+r_hat", out)
    assert "2 chains x 200 draws (done)" in out
    assert plot.stat().st_size > 10_000
    assert (tmp_path / "trace_rank.png").stat().st_size > 10_000


@pytest.mark.heavy
def test_run_writes_a_checkpoint(capsys, tmp_path):
    import xarray as xr

    path = tmp_path / "run.zarr"
    assert main(["run", "--chains", "2", "--draws", "30", "--warmup", "0", "--no-progress",
                 "--checkpoint", str(path)]) == 0
    tree = xr.open_datatree(path, engine="zarr")
    assert set(tree["posterior"].data_vars) >= {"mu", "tau", "theta"}
    assert tree["posterior"].sizes["draw"] == 30


def test_run_reports_interruption(capsys, ctrl_c_after):
    ctrl_c_after(2)  # the one-draw probe, then one chunk of draws (chunks are sized in time)
    code = main(["run", "--model", "gaussian", "--chains", "2", "--draws", "100", "--warmup", "0",
                 "--no-progress"])
    out = capsys.readouterr().out
    assert code == 130
    assert "(interrupted)" in out and "draws per chain kept" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--model", "nope"], "nope"),
        (["run", "--sampler", "nope"], "unknown sampler 'nope'"),
        (["run", "--draws", "0"], "num_draws"),
    ],
)
def test_bad_arguments_give_a_clear_error(capsys, argv, message):
    assert main(argv + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_console_script_entry_point():
    """``python -m psample.cli`` is a real process: the one test of the module entry point."""
    out = subprocess.run([sys.executable, "-m", "psample.cli", "samplers"], capture_output=True, text=True)
    assert out.returncode == 0 and "polar_slice" in out.stdout


def test_the_installed_script_calls_main():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "psample"]
    assert script.value == "psample.cli:main" and script.load() is main


@pytest.mark.parametrize("name, new", [
    ("SAMPLERS", "psample.cli.run"),
    ("check_plot_path", "psample.cli.common"),
    ("check_writable_file", "psample.cli.common"),
    ("PLOT_FORMATS", "psample.cli.common"),
])  # fmt: skip
def test_names_of_the_old_cli_module_warn_and_still_work(name, new):
    """psample 0.1's ``psample.cli`` module exported these; for one release they still work."""
    import importlib

    import psample.cli

    with pytest.warns(DeprecationWarning, match=rf"psample\.cli\.{name} moved to {re.escape(new)}\.{name}"):
        value = getattr(psample.cli, name)
    assert value is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError, match="nope"):
        psample.cli.nope  # noqa: B018


def test_check_writable_file_leaves_no_file_behind(tmp_path):
    from psample.cli.common import check_writable_file, suffixed
    from psample.errors import InvalidTuningError

    path = tmp_path / "out.zarr"
    check_writable_file(str(path), "--checkpoint")
    assert not path.exists()
    path.write_text("kept")
    check_writable_file(str(path), "--checkpoint")
    assert path.read_text() == "kept"
    with pytest.raises(InvalidTuningError, match=r"--checkpoint '.*missing/x' cannot be written"):
        check_writable_file(str(tmp_path / "missing" / "x"), "--checkpoint")
    assert suffixed("a/trace.svg", "_rank") == "a/trace_rank.svg" and suffixed("trace", "_rank") == "trace_rank.png"


@pytest.mark.slow
def test_readme_quick_start_runs_and_converges():
    """The README's quick start, as written, samples eight schools to r_hat < 1.05."""
    code = re.search(r"## Quick start\s+```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace = {}
    exec(compile(code.replace("print(", "summary = ("), "README", "exec"), namespace)
    summary = namespace["summary"]
    assert {"mu", "tau"} <= set(summary.index) and "theta[0]" in summary.index
    assert (summary["r_hat"].astype(float) < 1.05).all()


@pytest.mark.slow
def test_default_run_converges_on_eight_schools(capsys):
    """`psample run` (what `make run` calls): eight schools, polar slice, every r_hat < 1.01."""
    assert main(["run", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("eight_schools: polar_slice, 4 chains x 1000 draws (done)")
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    names = [row[0] for row in rows]
    assert {"mu", "tau", "theta[0]", "theta[7]"} <= set(names)
    r_hats = [float(row[7]) for row in rows]
    assert max(r_hats) < 1.01, out


@pytest.mark.slow
def test_readme_graph_example_matches_the_exact_macc():
    """The README's network example: MACC of the 4-path on karate within 5 MCSE of exact."""
    import numpy as np

    code = re.search(
        r"## Graph homomorphisms and network observables\s+```python\n(.*?)```", README.read_text(), re.S
    ).group(1)
    namespace = {}
    exec(compile(code.replace("print(", "shown = ("), "README", "exec"), namespace)
    macc, exact = namespace["macc"], namespace["exact"]
    assert macc.estimate.shape == exact.shape == (4, 4)
    assert np.all(np.abs(macc.estimate - exact) <= 5 * macc.mcse + 1e-12)
    assert macc.mcse.max() < 0.01


def test_an_unwritable_plot_path_fails_before_sampling(capsys):
    code = main(["run", "--model", "gaussian", "--draws", "100000000", "--no-progress", "--plot", "/proc/x.png"])
    assert code == 2
    assert "--plot '/proc/x.png' cannot be written" in capsys.readouterr().err


# ----------------------------------------------------------------------------- signals (issue 9)


def _start_long_run(path):
    """The default `psample run` (eight schools) with 2,000,000 draws, checkpointing to ``path``."""
    argv = [sys.executable, "-m", "psample.cli", "run", "--draws", "2000000", "--checkpoint", str(path)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_draws(path, at_least: int, timeout: float = 240.0) -> int:
    """Poll the checkpoint's committed draw count (a reader may see a half-written file: retry)."""
    import time

    import zarr

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done = int(zarr.open_group(str(path), mode="r", use_consolidated=False)["psample_state"].attrs["draws_done"])
            if done >= at_least:
                return done
        except Exception:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the run did not reach {at_least} draws in {timeout} s")


@pytest.mark.slow
def test_ctrl_c_stops_a_long_run_with_trace_and_checkpoint_equal(tmp_path):
    import signal

    from psample.runtime.checkpoint import load_checkpoint

    path = tmp_path / "run.zarr"
    proc = _start_long_run(path)
    try:
        _wait_for_draws(path, 2)  # past the one-draw probe: time-bounded chunks are running
        proc.send_signal(signal.SIGINT)
        header = proc.stdout.readline()
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    # How fast it answers is checked in-process without a clock (test_driver.py); here, that
    # the trace reported and the checkpoint hold the same draws.
    match = re.search(r"4 chains x (\d+) draws \(interrupted\)", header)
    assert match, header + err[-2000:]
    assert proc.returncode == 130
    assert int(match.group(1)) == load_checkpoint(path).draws_done > 0


@pytest.mark.slow
def test_a_killed_run_resumes_bit_for_bit(tmp_path):
    import signal

    path = tmp_path / "run.zarr"
    proc = _start_long_run(path)
    try:
        _wait_for_draws(path, 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    # The check runs in a process of its own: the killed run was float32 (as `psample run` runs),
    # while this test session runs float64 (tests/conftest.py).
    check = f"""
import jax, numpy as np, psample, psample.models
from psample.runtime.checkpoint import load_checkpoint
from psample.cli.run import SAMPLERS
target = psample.models.get("eight_schools")
alg = SAMPLERS["polar_slice"].build(target)
init_key, run_key = jax.random.split(jax.random.PRNGKey(0))
saved = load_checkpoint({str(path)!r}).draws_done
resumed = psample.resume({str(path)!r}, alg, 50, target=target, progress=False)
reference = psample.sample(alg, target.initial_positions(init_key, 4), run_key, saved + 50,
                           num_warmup=500, target=target, progress=False)
assert resumed.num_draws == saved + 50
jax.tree.map(np.testing.assert_array_equal, resumed.positions, reference.positions)
print("OK", saved)
"""
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK")


def test_a_second_ctrl_c_skips_the_summary(capsys, monkeypatch, ctrl_c_after):
    import psample.diagnostics

    def interrupted_summary(*args, **kwargs):
        raise KeyboardInterrupt

    ctrl_c_after(2)  # the one-draw probe, then one chunk of draws (chunks are sized in time)
    monkeypatch.setattr(psample.diagnostics, "summary", interrupted_summary)
    code = main(["run", "--model", "gaussian", "--chains", "2", "--draws", "100", "--warmup", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 130
    assert "(interrupted)" in captured.out and "summary skipped" in captured.err


# ----------------------------------------------------------------------------- issue 23


def test_a_plot_format_matplotlib_cannot_write_fails_before_sampling(capsys):
    code = main(["run", "--model", "gaussian", "--draws", "100000000", "--no-progress", "--plot", "t.xyz"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--plot 't.xyz'" in err and ".png" in err and "got .xyz" in err


@pytest.mark.parametrize("command", [
    ["evidence", "--model", "eight_schools", "--particles", "100000000"],
    ["fkc", "--demo", "anneal", "--particles", "100000000"],
])  # fmt: skip
def test_evidence_and_fkc_check_their_plot_path_before_any_work(capsys, command):
    """Both used to run the whole method, then fail in matplotlib on the file name."""
    assert main(command + ["--no-progress", "--plot", "t.xyz"]) == 2
    assert "--plot 't.xyz'" in capsys.readouterr().err


@pytest.mark.heavy
def test_ctrl_c_during_warm_up_without_a_bar_keeps_the_steps_done(capsys, ctrl_c_after):
    """--no-progress used to run the whole warm-up as one chunk: a Ctrl-C dropped it and the
    process waited for it to finish before it could exit. Chunks are sized in time now, so the
    stop comes after the one-step probe."""
    ctrl_c_after(1)
    code = main(["run", "--model", "gaussian", "--chains", "2", "--draws", "10", "--warmup", "200", "--no-progress"])
    assert code == 130
    assert "interrupted during warm-up after 1 of 200 steps" in capsys.readouterr().err


def test_a_run_that_has_not_converged_says_so_with_the_commands_options(capsys):
    # 30 draws from overdispersed starts, no warm-up: the chains have not met yet.
    assert main(["run", "--model", "gaussian", "--chains", "2", "--draws", "30", "--warmup", "0", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("psample: warning: the chains have not converged (2 chains x 30 draws)") == 1
    assert "R-hat > 1.01" in err and "--draws" in err and "num_draws" not in err


def test_a_long_run_is_summarised_on_every_kth_draw(capsys, monkeypatch):
    import psample.cli.run

    monkeypatch.setattr(psample.cli.run, "SUMMARY_VALUES", 2 * 10 * 50)  # 2 chains x 10 sites x 50 draws
    assert main(["run", "--model", "gaussian", "--chains", "2", "--draws", "200", "--warmup", "0",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "summary of every 4th draw (50 per chain), to keep it fast" in out
    assert re.search(r"x\[9\]\s+-?\d", out)


class _ClosedPipe:
    """sys.stdout of a reader that went away (`psample run | head`, or Ctrl-C on the pipeline)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_after_ctrl_c_reports_what_was_kept_on_stderr(capsys, monkeypatch, ctrl_c_after):
    ctrl_c_after(1)  # the first chunk of draws (the one-draw probe)
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    code = main(["run", "--model", "gaussian", "--chains", "2", "--draws", "100", "--warmup", "0",
                 "--no-progress"])
    assert code == 130
    assert re.search(r"psample: stdout was closed \(broken pipe\): 2 chains x \d+ draws kept", capsys.readouterr().err)


@pytest.mark.slow
def test_a_pipe_closed_by_the_reader_ends_without_a_traceback():
    argv = [sys.executable, "-m", "psample.cli", "run", "--model", "gaussian", "--chains", "2", "--draws", "20",
            "--warmup", "0", "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "stdout was closed (broken pipe): 2 chains x 20 draws kept" in err
