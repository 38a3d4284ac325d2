"""``psample graph``: the command runs end to end, its estimate matches the exact value, and bad
input fails fast with a message naming the argument."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from psample.cli import main
from psample.errors import NetworkError
from psample.graphs import exact
from psample.cli.graph import load_network
from psample.graphs.motif import Motif
from psample.models import graphs as zoo


@pytest.mark.heavy
def test_graph_command_macc_with_plot(tmp_path, capsys):
    """Smoke test through the console entry point: MACC of the 3-path on Les Misérables
    (weighted), printed with its MCSE and the exact value, plus the heat-map PNG."""
    plot = tmp_path / "macc.png"
    status = main(["graph", "--network", "lesmis", "--weighted", "--motif", "path3", "--chains", "200",
                   "--draws", "300", "--seed", "3", "--plot", str(plot), "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "network lesmis: 77 nodes, 254 edges (weighted)" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The printed (0, 2) entry agrees with the exact MACC within 4 of its printed MCSE.
    row = next(line for line in out.splitlines() if re.match(r"\s+0 \d", line))
    value, se = map(float, row.split()[3].split("±"))
    truth = exact.path_macc(zoo.les_miserables(weighted=True), 3)[0, 2]
    assert 0 < se < truth / 10
    assert abs(value - truth) <= 4 * se
    z = float(re.search(r"max \|estimate - exact\| / MCSE = ([0-9.]+)", out).group(1))
    assert z < 4.5


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--network", "nowhere"], "--network"),
        (["--network", "karate", "--motif", "cycle3"], "tree"),
        (["--network", "karate", "--motif", "hexagon"], "motif"),
        (["--network", "karate", "--chains", "1"], "--chains"),
        (["--network", "karate", "--draws", "0"], "--draws"),
        (["--network", "karate", "--steps", "0"], "--steps"),  # the old name, quoted as given
        (["--network", "karate", "--warmup", "-1"], "--warmup"),
        (["--network", "karate", "--steps", "5", "--draws", "5"], "pass --draws only"),
        (["--network", "karate", "--observable", "density", "--plot", "x.png"], "--plot"),
        (["--network", "karate", "--plot", "x.pdf"], "--plot"),
        (["--network", "karate", "--plot", "/proc/nowhere/x.png"], "--plot '/proc/nowhere/x.png' cannot be written"),
        (["--network", "karate", "--motif", "star4", "--observable", "chd"], "edge"),
    ],
)
def test_graph_command_rejects_bad_input(argv, message, capsys):
    assert main(["graph", *argv]) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


def test_edgelist_file_largest_component(tmp_path):
    path = tmp_path / "net.edgelist"
    path.write_text("# a triangle with weights, and a separate edge\n"
                    "a b 2.0\nb c 1.0\nc a 4\n\nx y 1\n")
    graph, description = load_network(str(path))
    assert graph.number_of_nodes() == 3 and graph.number_of_edges() == 3
    assert "2 nodes in other components dropped" in description
    weights = sorted(w for _, _, w in graph.edges(data="weight"))
    np.testing.assert_allclose(weights, [0.25, 0.5, 1.0])  # scaled to (0, 1]
    path.write_text("a b c d\n")
    with pytest.raises(NetworkError, match="net.edgelist:1"):
        load_network(str(path))


@pytest.mark.heavy
def test_edgelist_without_weights_runs(tmp_path, capsys):
    path = tmp_path / "cycle.edgelist"
    path.write_text("".join(f"{i} {(i + 1) % 7}\n" for i in range(7)) + "0 3\n")
    status = main(["graph", "--network", str(path), "--observable", "density", "--motif", "star3",
                   "--chains", "50", "--draws", "50", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0 and "t(F, G) =" in out and "exact (tree DP)" in out


@pytest.mark.heavy
def test_graph_command_density_goes_through_hom_density(capsys):
    """``--observable density`` prints the one-call estimate (hom_density: its checks and its
    tail diagnostic) next to the exact tree density."""
    status = main(["graph", "--network", "karate", "--motif", "star3", "--observable", "density",
                   "--chains", "50", "--draws", "40", "--seed", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert status == 0, out
    value, se, truth = map(float, re.search(r"t\(F, G\) = (\S+) ± (\S+)\s+exact \(tree DP\) (\S+)", out).groups())
    assert truth == pytest.approx(exact.tree_hom_density(zoo.karate(), Motif.star(3)), rel=1e-5)  # printed to 6 digits
    # 5 SE (not 4): with 50 chains the batch-means SE is itself uncertain by about 10%.
    assert 0 < se and abs(value - truth) <= 5 * se


def test_old_flags_steps_and_burn_in_still_work(monkeypatch, capsys):
    """``--steps`` / ``--burn-in`` (psample 0.1) run as ``--draws`` / ``--warmup``, with a note on
    stderr; checked on the arguments the run receives (a stand-in stops it there)."""
    import psample.graphs.estimate as estimate

    seen = []

    class Stop(Exception):
        pass

    def record(network, motif, observables, rng_key, **kwargs):
        seen.append((np.asarray(jax.random.key_data(rng_key)), kwargs))
        raise Stop

    monkeypatch.setattr(estimate, "run_observables", record)
    for flags in (["--draws", "60", "--warmup", "7"], ["--steps", "60", "--burn-in", "7"]):
        with pytest.raises(Stop):
            main(["graph", "--network", "karate", "--chains", "9", "--seed", "2", *flags])
    err = capsys.readouterr().err
    assert "--steps is deprecated, use --draws" in err and "--burn-in is deprecated, use --warmup" in err
    (new_key, new), (old_key, old) = seen
    np.testing.assert_array_equal(new_key, old_key)
    np.testing.assert_array_equal(new_key, jax.random.PRNGKey(2))  # --seed 2: psample 0.1's key
    assert new == old == dict(num_chains=9, num_draws=60, num_warmup=7, sampler="pivot", progress=True)
