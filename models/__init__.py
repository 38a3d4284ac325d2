"""A zoo of targets with what is known exactly about them (imported as ``psample.models``).

Every factory returns a :class:`psample.Target`: a JAX log-density, an initialiser giving
positions with a leading chain axis, a post-processing map to named sites, a ``name``, an
``exact`` dict of quantities known in closed form (computed with NumPy/SciPy when the target
is built) and sampler ``hints`` (``{"polar_slice_w": ...}``).

Plain log-densities on a flat vector ``x`` of shape ``(d,)`` (post-processed to ``{"x": ...}``):
:func:`isotropic_gaussian`, :func:`ill_conditioned_gaussian`, :func:`hyperplane_disk`,
:func:`student_t`, :func:`cauchy`, :func:`neal_funnel`. NumPyro models wrapped with
:func:`psample.from_numpyro` (position: dict of unconstrained sites): :func:`eight_schools`
(raw model :func:`eight_schools_model`), :func:`logistic_regression` (raw model
:func:`logistic_regression_model`, data shipped in ``data/``).

Keys of ``Target.exact`` (indices are 0-based; only the keys that exist for a target are set):

- ``"mean"``, ``"var"``: arrays ``(d,)``; ``"cov"``: ``(d, d)`` where the covariance is dense.
- ``"E[x_0]"``, ``"Var[x_0]"``, ``"sd[x_0]"``, ``"E[x_1]"``, ``"Var[x_1]"``, ``"Cov[x_0,x_1]"``,
  ``"Var[sum x]"``: scalars.
- ``"E[|x|^2]"``, ``"E[|x|]"``, ``"median[|x|]"``, ``"E[log|x|]"``, ``"Var[log|x|]"``: the
  Euclidean norm ``‖x‖``; ``"P(|x|>median[|x|], x_0>0)"``.
- ``"q{p}[|x|]"``, ``"q{p}[x_0]"``: exact ``p``-quantiles for ``p`` in :data:`QUANTILE_LEVELS`
  (e.g. ``"q0.001[x_0]"``).
- Eight schools (constrained sites, by quadrature): ``"E[mu]"``, ``"Var[mu]"``, ``"E[tau]"``,
  ``"Var[tau]"``, ``"E[log tau]"``, ``"Var[log tau]"``, ``"median[tau]"``, ``"q{p}[tau]"``,
  ``"E[theta]"``/``"Var[theta]"`` ``(8,)``, ``"E[theta_0]"``, ``"Var[theta_0]"``.

Gaussian mixtures with exact smoothed log-densities and scores ``∇ log p_s`` (for walk-jump
sampling, :mod:`psample.models.mixtures`): :func:`gaussian_mixture`, :func:`two_mode_mixture`,
:func:`smoothed_gaussian_mixture`, :func:`smoothed_gaussian`; their ``exact`` also holds the
callables ``"smoothed_logdensity"`` and ``"smoothed_score"`` ``(y, s)``.

Diffusion score models with exact noised scores and log-densities (VP and VE), for Feynman–Kac
correctors (:mod:`psample.models.score_models`): :func:`diffusion_mixture`,
:func:`forty_mode_mixture`, the exact mixture algebra :func:`mixture_product` /
:func:`mixture_power`, and the FKC problems with their references, :func:`fkc_problem`.

Models with exact evidence (``exact["log_Z"]``, for tempered SMC): :func:`conjugate_gaussian`,
:func:`linear_regression`, :func:`student_t_regression` (quadrature), and
:func:`eight_schools_log_evidence`.

Diffusion-sampler benchmark targets with exact ``log_Z`` and exact draws (``exact["sample"]``),
:mod:`psample.models.diffusion_targets`: :func:`gmm25`, :func:`gmm40`, :func:`many_well` (and
:func:`neal_funnel`); registered as ``gmm25``, ``gmm40``, ``many_well`` and ``funnel``.

Models by name (for the CLI): :data:`MODELS`, :func:`get`, :func:`describe`.

This package defines targets only; it never imports a sampler.
"""

from . import graphs
from ._common import QUANTILE_LEVELS
from .diffusion_targets import gmm25, gmm40, many_well
from .evidence import (
    conjugate_gaussian,
    conjugate_gaussian_model,
    eight_schools_log_evidence,
    linear_regression,
    linear_regression_data,
    linear_regression_model,
    student_t_regression,
    student_t_regression_model,
)
from .funnel import neal_funnel
from .gaussians import hyperplane_disk, ill_conditioned_gaussian, isotropic_gaussian
from .heavy_tailed import cauchy, student_t
from . import hierarchical
from .hierarchical import german_credit_sparse, radon, stochastic_volatility
from . import lorenz_bridge
from .lorenz_bridge import convection_lorenz_bridge
from .mixtures import (
    SmoothedDensity,
    gaussian_mixture,
    smoothed_gaussian,
    smoothed_gaussian_mixture,
    two_mode_mixture,
)
from .registry import MODELS, describe, get
from .regression import (
    DATASETS,
    load_dataset,
    logistic_regression,
    logistic_regression_data,
    logistic_regression_model,
)
from .score_models import (
    FKC_PROBLEMS,
    DiffusionMixture,
    FKCProblem,
    Mixture,
    diffusion_mixture,
    fkc_problem,
    forty_mode_mixture,
    mixture_power,
    mixture_product,
)
from .schools import (
    EIGHT_SCHOOLS_SIGMA,
    EIGHT_SCHOOLS_Y,
    eight_schools,
    eight_schools_model,
    eight_schools_posterior,
)

__all__ = [
    "QUANTILE_LEVELS",
    "hierarchical",
    "radon",
    "stochastic_volatility",
    "german_credit_sparse",
    "lorenz_bridge",
    "convection_lorenz_bridge",
    "isotropic_gaussian",
    "ill_conditioned_gaussian",
    "hyperplane_disk",
    "student_t",
    "cauchy",
    "neal_funnel",
    "eight_schools",
    "eight_schools_model",
    "eight_schools_posterior",
    "EIGHT_SCHOOLS_Y",
    "EIGHT_SCHOOLS_SIGMA",
    "logistic_regression",
    "logistic_regression_model",
    "logistic_regression_data",
    "load_dataset",
    "DATASETS",
    "MODELS",
    "get",
    "describe",
    "graphs",
    "gaussian_mixture",
    "two_mode_mixture",
    "smoothed_gaussian_mixture",
    "smoothed_gaussian",
    "SmoothedDensity",
    "conjugate_gaussian",
    "conjugate_gaussian_model",
    "linear_regression",
    "linear_regression_model",
    "linear_regression_data",
    "student_t_regression",
    "student_t_regression_model",
    "eight_schools_log_evidence",
    "Mixture",
    "DiffusionMixture",
    "diffusion_mixture",
    "forty_mode_mixture",
    "mixture_product",
    "mixture_power",
    "FKCProblem",
    "FKC_PROBLEMS",
    "fkc_problem",
    "gmm25",
    "gmm40",
    "many_well",
]
