"""``psample evidence``: prints log Z ± its error, the exact value, and the resampled summary."""

import re

import pytest

from psample.cli import main


@pytest.mark.heavy
def test_evidence_on_the_conjugate_gaussian(capsys):
    status = main(["evidence", "--model", "conjugate_gaussian", "--particles", "200", "--replicates", "4",
                   "--mcmc", "rwm", "--mcmc-steps", "3", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    match = re.search(r"log Z = (-?\d+\.\d+) ± (\d+\.\d+) \(Monte Carlo se, replicates\); exact (-?\d+\.\d+)", out)
    assert match, out
    estimate, se, exact = map(float, match.groups())
    assert se < 0.2 and abs(estimate - exact) <= 4 * se + 1e-4
    assert "mu[0]" in out and "mean" in out and "r_hat" not in out and "ess" not in out.split("posterior")[1]


def test_evidence_refuses_a_bare_log_density(capsys):
    assert main(["evidence", "--model", "gaussian", "--no-progress"]) == 2
    assert "prior/likelihood split" in capsys.readouterr().err


def test_samplers_lists_tempered_smc(capsys):
    main(["samplers"])
    assert "tempered_smc" in capsys.readouterr().out
