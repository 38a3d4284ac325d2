"""Models by name, for the command line and for scripts that pick a target from a string.

``MODELS`` maps a name to a factory whose every parameter has a default (the paper's setting
where there is one), so ``get(name)`` always builds a target and ``get(name, d=50)`` overrides a
default.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable

from psample.errors import ModelError
from psample.targets import Target

from .diffusion_targets import gmm25, gmm40, many_well
from .evidence import conjugate_gaussian, linear_regression, student_t_regression
from .funnel import neal_funnel
from .gaussians import hyperplane_disk, ill_conditioned_gaussian, isotropic_gaussian
from .heavy_tailed import cauchy, student_t
from .hierarchical import german_credit_sparse, radon, stochastic_volatility
from .lorenz_bridge import convection_lorenz_bridge
from .mixtures import two_mode_mixture
from .regression import logistic_regression
from .schools import eight_schools

__all__ = ["MODELS", "get", "describe"]

# name -> (factory with defaults for every parameter, one-line description)
_ENTRIES: dict[str, tuple[Callable[..., Target], str]] = {
    "eight_schools": (
        functools.partial(eight_schools, centered=False),
        "Eight schools hierarchical model, non-centred (NumPyro; mu, tau, theta)",
    ),
    "eight_schools_centered": (
        functools.partial(eight_schools, centered=True),
        "Eight schools hierarchical model, centred: a tau-theta funnel (NumPyro)",
    ),
    "gaussian": (
        functools.partial(isotropic_gaussian, d=10, scale=1.0),
        "Isotropic Gaussian N(0, scale^2 I_d), d=10",
    ),
    "ill_conditioned_gaussian": (
        functools.partial(ill_conditioned_gaussian, d=10, condition_number=100.0),
        "Rotated Gaussian with log-spaced variances in [1/kappa, 1], d=10, kappa=100",
    ),
    "hyperplane_disk": (
        functools.partial(hyperplane_disk, d=200),
        "Hyperplane disk log p = -|x|^2 - (sum x)^2, d=200 (Schaer et al. 2023)",
    ),
    "student_t": (
        functools.partial(student_t, d=10, df=3.0),
        "Multivariate Student-t, d=10, df=3; radius law |x|^2/d ~ F(d, df)",
    ),
    "cauchy": (
        functools.partial(cauchy, d=100),
        "Multivariate standard Cauchy, d=100 (Schaer et al. 2023)",
    ),
    "funnel": (
        functools.partial(neal_funnel, d=10),
        "Neal's funnel, x_0 ~ N(0, 9), x_i | x_0 ~ N(0, e^x_0), d=10 (log Z, exact draws)",
    ),
    "gmm25": (
        gmm25,
        "25 Gaussians on the grid {-10,...,10}^2, cov 0.3 I, d=2 (log Z, exact draws)",
    ),
    "gmm40": (
        gmm40,
        "40 Gaussians, means uniform on [-40, 40]^2, sd 1.313, d=2 (FAB benchmark; log Z, exact draws)",
    ),
    "many_well": (
        many_well,
        "Many-well, 16 pairs -x^4 + 6x^2 + x/2 - y^2/2, d=32, 2^16 modes (log Z = 164.6957, exact draws)",
    ),
    "two_mode_mixture": (
        functools.partial(two_mode_mixture, d=32),
        "Two Gaussians at +-1 (cov 0.05 I), weights 2:1, d=32; exact smoothed scores",
    ),
    "logistic_regression": (
        functools.partial(logistic_regression, dataset="breast_cancer", prior_scale=1.0),
        "Bayesian logistic regression on Wisconsin breast cancer (569 x 30 + intercept, NumPyro)",
    ),
    "conjugate_gaussian": (
        conjugate_gaussian,
        "Gaussian mean, conjugate prior, d=2, n=20 (NumPyro; exact evidence and posterior)",
    ),
    "linear_regression": (
        linear_regression,
        "Bayesian linear regression, known noise, n=50, p=3 (NumPyro; exact evidence and posterior)",
    ),
    "student_t_regression": (
        student_t_regression,
        "Robust regression with Student-t noise and outliers, p=2 (NumPyro; evidence by quadrature)",
    ),
    "radon": (
        radon,
        "Minnesota radon, county intercepts and scales, centred as inference-gym writes it, d=91 (NumPyro)",
    ),
    "german_credit_sparse": (
        german_credit_sparse,
        "Sparse logistic regression on German credit (global and local Gamma scales), inference-gym's, d=51 (NumPyro)",
    ),
    "stochastic_volatility": (
        stochastic_volatility,
        "Stochastic volatility on the last 100 S&P 500 returns, inference-gym's SV SP500 small, d=103 (NumPyro)",
    ),
    "convection_lorenz_bridge": (
        convection_lorenz_bridge,
        "Convection Lorenz bridge, unknown innovation and observation scales, inference-gym's, d=92 (NumPyro)",
    ),
}

#: Model name -> factory (keyword arguments override the defaults). ``"eight_schools"`` is the default model.
MODELS: dict[str, Callable[..., Target]] = {name: entry[0] for name, entry in _ENTRIES.items()}


def _parameters(factory) -> str:
    return ", ".join(
        f"{p.name}={p.default!r}" if p.default is not inspect.Parameter.empty else p.name
        for p in inspect.signature(factory).parameters.values()
    )


def get(name: str, **kwargs) -> Target:
    """Build the model registered as ``name``, with ``kwargs`` overriding its defaults.

    Raises
    ------
    ModelError
        If ``name`` is unknown (the message lists the known names), if ``kwargs`` names a
        parameter the model does not take (the message lists its parameters), or if a value is
        out of range.
    """
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    factory = MODELS[name]
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError:
        raise ModelError(
            f"model {name!r} takes parameters ({_parameters(factory)}), got {kwargs!r}"
        ) from None
    return factory(**kwargs)


def describe() -> dict[str, str]:
    """Model name -> one-line description, in registry order."""
    return {name: entry[1] for name, entry in _ENTRIES.items()}
