"""The user's own NumPyro model on the command line: ``--model FILE.py:FUNCTION --data ...``.

The data rules (json, csv, npz) and every refusal run without sampling; one short run per data
format (``heavy``; the json one also in CI, ``ci``) checks that ``psample run`` and ``psample evidence`` sample the model.
"""

import json
import re
import textwrap

import numpy as np
import pytest

from psample.cli import main
from psample.cli.user_model import load_data

MODEL = textwrap.dedent('''
    import numpyro
    import numpyro.distributions as dist


    def regression(x, y=None, prior_sd=1.0):
        b = numpyro.sample("b", dist.Normal(0.0, prior_sd).expand([2]).to_event(1))
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("y", dist.Normal(b[0] + b[1] * x, 0.5), obs=y)


    def broken(x, y=None):
        raise RuntimeError("the model's own failure")


    def positive(x, y=None):
        rate = numpyro.sample("rate", dist.HalfNormal(1.0))
        with numpyro.plate("n", x.shape[0]):
            numpyro.sample("y", dist.Exponential(rate), obs=y)
''')

X = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
Y = [0.1, 1.1, 1.9, 3.2, 3.9, 5.1]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "data.json").write_text(json.dumps({"x": X, "y": Y, "prior_sd": 2.0}))
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{int(a)},{b}\n" for a, b in zip(X, Y)))
    np.savez(tmp_path / "data.npz", x=np.asarray(X), y=np.asarray(Y))
    (tmp_path / "negative.json").write_text(json.dumps({"x": X, "y": [-v - 1 for v in Y]}))
    (tmp_path / "extra.json").write_text(json.dumps({"x": X, "y": Y, "z": [1], "w": 2}))
    return tmp_path


def test_the_data_rules(files):
    from_json = load_data(str(files / "data.json"))
    assert from_json["prior_sd"] == 2.0 and from_json["y"].dtype == np.float64
    from_csv = load_data(str(files / "data.csv"))
    assert from_csv["x"].dtype.kind == "i" and from_csv["y"].dtype == np.float64  # integer-looking -> int
    np.testing.assert_array_equal(from_csv["x"], X)
    np.testing.assert_array_equal(from_csv["y"], Y)
    from_npz = load_data(str(files / "data.npz"))
    assert sorted(from_npz) == ["x", "y"]
    np.testing.assert_array_equal(from_npz["y"], Y)
    (files / "gaps.csv").write_text("a,b\n1,\n2,0.5\n")
    gaps = load_data(str(files / "gaps.csv"))
    assert gaps["a"].dtype.kind == "i" and np.isnan(gaps["b"][0]) and gaps["b"][1] == 0.5


@pytest.mark.parametrize("model, data, message", [
    ("missing.py:regression", None, r"model file '.*missing\.py' not found"),
    ("model.py:nope", None, r"has no function 'nope' \(functions defined there: broken, positive, regression\)"),
    ("model.py:regression", "extra.json", r"the data has key\(s\) 'z', 'w' that the model does not take; "
                                          r"it takes: x, y, prior_sd"),
    ("model.py:broken", "data.json#", r"model 'broken' fails at its initial point: RuntimeError: the model's own"),
    ("model.py:positive", "negative.json", r"the log-density of model 'positive' is not finite at its initial point"),
    ("model.py:regression", "missing.json", r"--data '.*missing\.json': file not found"),
    ("model.py:regression", "data.txt", r"--data '.*data\.txt': the file name must end in \.json, \.npz, \.csv"),
])  # fmt: skip
@pytest.mark.parametrize("command", ["run", "evidence"])
def test_a_bad_model_or_data_is_one_line_and_exit_status_2(capsys, files, command, model, data, message):
    argv = [command, "--model", str(files / model), "--no-progress"]
    if data is not None:
        data = data.rstrip("#")
        if data == "data.json":  # `broken` takes no prior_sd
            (files / "plain.json").write_text(json.dumps({"x": X, "y": Y}))
            data = "plain.json"
        argv += ["--data", str(files / data)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("psample: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_a_bad_csv_column_and_data_for_a_built_in_model(capsys, files):
    (files / "words.csv").write_text("x,y\n1,a\n2,b\n")
    assert main(["run", "--model", str(files / "model.py:regression"), "--data", str(files / "words.csv")]) == 2
    assert "column 'y' is not numeric (value 'a')" in capsys.readouterr().err
    assert main(["run", "--model", "gaussian", "--data", str(files / "data.json")]) == 2
    assert "--data is for a model of your own" in capsys.readouterr().err


@pytest.mark.heavy
@pytest.mark.parametrize("data", [
    pytest.param("data.json", marks=pytest.mark.ci),  # in CI (make test-ci): the command line on a user's model
    # The readers of the other formats are checked fast (test_the_data_rules); end to end only in
    # the slow suite, to keep CI's time down.
    pytest.param("data.csv", marks=pytest.mark.slow),
    pytest.param("data.npz", marks=pytest.mark.slow),
])  # fmt: skip
def test_run_samples_the_users_model_with_each_data_format(capsys, files, data):
    code = main(["run", "--model", str(files / "model.py:regression"), "--data", str(files / data), "--chains", "2",
                 "--draws", "50", "--warmup", "50", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("regression: polar_slice, 2 chains x 50 draws (done)")
    slope = float(re.search(r"b\[1\]\s+(-?\d+\.\d+)", out).group(1))
    assert 0.7 < slope < 1.3, out  # least squares: 1.0, posterior sd about 0.06


@pytest.mark.heavy
def test_evidence_of_the_users_model(capsys, files):
    code = main(["evidence", "--model", str(files / "model.py:regression"), "--data", str(files / "data.csv"),
                 "--particles", "100", "--replicates", "2", "--mcmc", "rwm", "--mcmc-steps", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("regression: tempered SMC (rwm moves), 2 replicates x 100 particles")
    assert re.search(r"log Z = -?\d+\.\d+ ± \d+\.\d+", out) and "b[1]" in out
