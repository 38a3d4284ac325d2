"""Models with exact evidence: each exact log Z checked by an independent route."""

import numpy as np
from scipy import integrate, stats

import psample.models as models
from psample.models.evidence import _student_t_log_evidence


def _bayes_identity(target, position, posterior_logpdf):
    """log Z = log p(y | x) + log p(x) - log p(x | y), at any x (constrained = unconstrained here)."""
    joint = float(target.loglikelihood_fn(position) + target.logprior_fn(position))
    return joint - posterior_logpdf


def test_linear_regression_evidence_by_bayes_identity():
    target = models.linear_regression()
    exact = target.exact
    for beta in (np.zeros(3), exact["mean"] + 0.3):
        post = stats.multivariate_normal(exact["mean"], exact["cov"]).logpdf(beta)
        np.testing.assert_allclose(_bayes_identity(target, {"beta": beta}, post), exact["log_Z"], rtol=1e-10)


def test_conjugate_gaussian_evidence_by_bayes_identity():
    target = models.conjugate_gaussian()
    mu = np.array([0.7, 1.3])
    post = stats.norm(target.exact["mean"], np.sqrt(target.exact["var"])).logpdf(mu).sum()
    np.testing.assert_allclose(_bayes_identity(target, {"mu": mu}, post), target.exact["log_Z"], rtol=1e-10)


def test_student_t_quadrature_converged():
    target = models.student_t_regression()

    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    design = np.column_stack([np.ones(40), x])
    y = 1.0 - 2.0 * x + 0.5 * rng.standard_t(2.0, size=40)
    y[::5] += 15.0
    fine = _student_t_log_evidence(design, y, 5.0, 2.0, 0.5, 1601)
    np.testing.assert_allclose(target.exact["log_Z"], fine, atol=1e-6)
    # The model's likelihood is the one integrated.
    beta = np.array([0.5, -1.5])
    expected = stats.t.logpdf(y, 2.0, loc=design @ beta, scale=0.5).sum()
    np.testing.assert_allclose(float(target.loglikelihood_fn({"beta": beta})), expected, rtol=1e-10)


def test_eight_schools_evidence_by_quad_in_tau():
    y, sigma = models.EIGHT_SCHOOLS_Y, models.EIGHT_SCHOOLS_SIGMA

    def integrand(tau):
        cov = np.diag(sigma**2 + tau**2) + 25.0
        return stats.multivariate_normal(np.zeros(8), cov).pdf(y) * stats.halfcauchy(scale=5).pdf(tau)

    value = sum(integrate.quad(integrand, a, b, limit=200)[0] for a, b in [(0, 10), (10, 100), (100, np.inf)])
    np.testing.assert_allclose(models.eight_schools_log_evidence(), np.log(value), atol=1e-6)
