"""Every sampler ``psample samplers`` lists runs from the command it prints (issue #25, point 4),
and ``psample admm`` refuses what it cannot shard before any work.

Each listed command runs in-process (``main``) with tiny sizes appended (:data:`TINY`): the
check is that it runs to the end and prints its results, not their accuracy (the samplers'
own tests check that).
"""

import shlex

import pytest

from psample.cli import main
from psample.cli.commands import SAMPLER_COMMANDS

#: Options appended to a listed command so that it runs in seconds: by subcommand, then sampler.
TINY = {
    "run": ["--chains", "2", "--draws", "20", "--warmup", "0"],
    "logconcave_chain": ["--chains", "2", "--draws", "3"],
    "partially_noncentered_polar_slice": ["--chains", "2", "--draws", "20", "--warmup", "30"],  # its two stages
    "admm": ["--chains", "2", "--draws", "20", "--warmup", "0"],
    "tempered_smc": ["--model", "conjugate_gaussian", "--particles", "50", "--replicates", "2", "--mcmc", "rwm",
                     "--mcmc-steps", "1"],
    "reverse_diffusion": ["--particles", "20", "--replicates", "2", "--steps", "4", "--score-samples", "4"],
    "dds": ["--particles", "20", "--replicates", "2", "--steps", "4", "--iterations", "4", "--batch-size", "8"],
    "pis": ["--particles", "20", "--replicates", "2", "--steps", "4", "--iterations", "4", "--batch-size", "8"],
    "graph": ["--chains", "8", "--draws", "20", "--warmup", "5"],
    "fkc": ["--particles", "50", "--replicates", "2", "--steps", "10"],
}  # fmt: skip

#: What each command prints once it has run.
PRINTS = {"run": "(done)", "admm": "(done)", "evidence": "log Z = ", "graph": "", "fkc": ""}


def test_samplers_prints_the_command_of_every_sampler(capsys):
    assert main(["samplers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["sampler", "command", "description"]
    assert [line.split()[0] for line in lines[1:]] == list(SAMPLER_COMMANDS)
    for line, (name, entry) in zip(lines[1:], SAMPLER_COMMANDS.items()):
        assert entry.command in line and entry.command.startswith("psample ")
    assert {"polar_slice", "admm", "tempered_smc", "reverse_diffusion", "dds", "pis", "glauber", "pivot",
            "fkc"} <= set(SAMPLER_COMMANDS)  # fmt: skip


def test_every_listed_command_parses():
    """The cheap half of the end-to-end test below: each command (with its tiny sizes) is one the
    parser accepts, so a renamed option fails here in a second."""
    from psample.cli.commands import _build_parser

    for name, entry in SAMPLER_COMMANDS.items():
        argv = shlex.split(entry.command)[1:]
        args = _build_parser().parse_args(argv + TINY.get(name, TINY.get(argv[0], [])))
        assert args.command == argv[0]


#: Listed commands another CLI test already runs end to end in the default suite (``run`` on the
#: default sampler, ``evidence``, ``graph`` with the pivot chain, ``fkc --demo anneal``, ``admm`` on
#: a user's model): here only in the slow suite, to keep CI's time down.
RUN_ELSEWHERE = {"polar_slice", "tempered_smc", "pivot", "fkc", "admm"}


@pytest.mark.heavy
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in RUN_ELSEWHERE else name for name in SAMPLER_COMMANDS
])  # fmt: skip
def test_every_listed_command_runs(capsys, name):
    argv = shlex.split(SAMPLER_COMMANDS[name].command)[1:]
    argv += TINY.get(name, TINY.get(argv[0], [])) + ["--no-progress"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert PRINTS[argv[0]] in captured.out, captured.out


def test_the_old_table_of_other_samplers_warns_and_still_works():
    import psample.cli.commands

    with pytest.warns(DeprecationWarning, match="OTHER_SAMPLERS is replaced by .*SAMPLER_COMMANDS"):
        table = psample.cli.commands.OTHER_SAMPLERS
    assert "admm" in table and "pivot" in table and isinstance(table["fkc"], str)


@pytest.mark.parametrize("argv, message", [
    (["--model", "eight_schools"], "model 'eight_schools' has no data-shard form; `psample admm` takes "
                                   "linear_regression, logistic_regression"),
    (["--model", "logistic_regression", "--agents", "4"], "--agents 4 does not divide the 569 observations"),
    (["--agents", "7"], "agents that do: 2, 5, 10, 25, 50"),
    (["--rows", "60"], "--rows 60: the data has 50 rows"),
    (["--shard", "design,nope"], "'nope' not in the data (its keys: design, y)"),
])  # fmt: skip
def test_admm_refuses_what_it_cannot_shard(capsys, argv, message):
    assert main(["admm", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("psample: error: ") and message in err, err


@pytest.mark.heavy
def test_admm_on_the_users_model_and_csv_data(capsys, tmp_path):
    (tmp_path / "model.py").write_text(
        "import numpyro, numpyro.distributions as dist\n"
        "def line(x, y=None):\n"
        "    b = numpyro.sample('b', dist.Normal(0.0, 1.0).expand([2]).to_event(1))\n"
        "    with numpyro.plate('n', x.shape[0]):\n"
        "        numpyro.sample('y', dist.Normal(b[0] + b[1] * x, 0.5), obs=y)\n"
    )
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{i},{0.5 * i - 1}\n" for i in range(8)))
    code = main(["admm", "--model", f"{tmp_path}/model.py:line", "--data", str(tmp_path / "data.csv"),
                 "--agents", "4", "--chains", "2", "--draws", "20", "--warmup", "0", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("line: admm, 4 agents x 2 rows, ring graph") and "b[1]" in out
