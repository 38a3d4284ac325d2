"""``benchmarks/gpu.py --size small`` runs on a CPU and prints every family's row with a finite
ratio, so the GPU check cannot rot while CI has no GPU (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import xla_flags

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("runner", "polar_slice", "tempered_smc", "fkc", "diffusion", "graphs", "admm")


@pytest.mark.heavy
def test_gpu_benchmark_small_runs_every_family(tmp_path):
    out = tmp_path / "rows.json"
    env = dict(os.environ, XLA_FLAGS=xla_flags(), PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--size", "small", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {row["family"]: row for row in report["rows"]}
    assert tuple(rows) == FAMILIES
    assert report["size"] == "small" and report["device"].endswith("(cpu)")
    has_nnetwork = importlib.util.find_spec("NNetwork") is not None
    for family, row in rows.items():
        assert row["error"] == "", (family, row["error"])
        assert math.isfinite(row["psample"]) and row["psample"] > 0, family
        if family == "graphs" and not has_nnetwork:
            assert "not installed" in row["peer_name"] and math.isnan(row["ratio"])
            continue
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, (family, row)
    # The printed table: a header, one line per family naming the device, and the total time.
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| family | workload | unit | psample | peer | peer rate | ratio psample / peer | device")
    assert [line.split(" | ")[0][2:] for line in table[1:]] == list(FAMILIES)
    assert all("cpu" in line for line in table[1:])
    assert "total " in proc.stdout and "command: python benchmarks/gpu.py --size small" in proc.stdout
