"""The wheel installs clean: built without a warning, installed (not editable) in a fresh venv,
where ``psample run`` works and a model of ``psample.models`` reads its shipped data.

The build copies the package's files to a scratch folder first (a build in the repository would
leave ``build/`` there, and a stale ``build/lib`` could carry deleted modules into later wheels).
The fresh venv gets the wheel with ``--no-deps``; jax and the other dependencies come from this
test's own environment through a plain path line in a ``.pth`` file of the fresh venv. A plain
path line does not process that folder's own ``.pth`` files, so the editable install of psample
there stays inactive, which the test checks (``psample.__file__`` is inside the fresh venv).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import xla_flags

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.heavy

#: What a wheel is built from (tracked sources only, no build leftovers).
SOURCES = ("pyproject.toml", "README.md", "psample", "models", "diagnostics")

SCRIPT = """
import sys
from pathlib import Path

import psample, psample.models
from psample.models.regression import load_dataset

venv = Path(sys.argv[1]).resolve()
for module in (psample, psample.models):
    assert venv in Path(module.__file__).resolve().parents, f"{module.__name__} from {module.__file__}, not {venv}"
import jax, numpy as np

data = load_dataset("breast_cancer")  # psample/models/data/breast_cancer.csv, from the wheel
target = psample.models.get("logistic_regression")
position = jax.tree.map(lambda a: a[0], target.initial_positions(jax.random.key(0), 1))
assert np.isfinite(float(target.logdensity_fn(position)))
print("data", data.features.shape, "file", psample.__file__)
"""


def _run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} exited with {result.returncode}:\n{output}"
    return output


def test_wheel_installs_in_a_fresh_venv_and_runs(tmp_path):
    pytest.importorskip("setuptools", minversion="77", reason="--no-build-isolation builds with this venv's setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)

    # 1. The wheel, built without a warning.
    dist = tmp_path / "dist"
    # (without PYTHONDONTWRITEBYTECODE, which makes distutils print "warning: byte-compiling is disabled")
    build_env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
                  "-v", "-w", str(dist), str(source)], env=build_env)  # fmt: skip
    warning_lines = [line for line in build.splitlines() if "warning" in line.lower()]
    assert not warning_lines, "the build warns:\n" + "\n".join(warning_lines)
    (wheel,) = dist.glob("psample-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("psample/models/data/breast_cancer.csv", "psample/models/data/gmm40_means.csv",
                   "psample/diagnostics/__init__.py", "psample/cli/commands.py"):  # fmt: skip
        assert needed in names, f"{needed} is not in the wheel"

    # 2. A fresh venv, the wheel installed in it (not editable), dependencies from this venv.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    fresh_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    (fresh_site / "_psample_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    work = tmp_path / "work"
    work.mkdir()

    # 3. The console script and a zoo model with its shipped data, from the fresh venv.
    out = _run([str(venv / "bin" / "psample"), "run", "--chains", "2", "--draws", "50", "--warmup", "20",
                "--no-progress"], cwd=work, env=env)  # fmt: skip
    assert "mu" in out and "tau" in out, out  # the eight-schools summary
    out = _run([str(python), "-c", SCRIPT, str(venv)], cwd=work, env=env)
    assert "data (569, 30)" in out, out
