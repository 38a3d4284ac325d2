"""Bayesian logistic regression (NumPyro) on a real data set shipped with the package.

Model, with standardised features ``Z`` (zero mean, unit population standard deviation) and an
intercept column, ``A = [1, Z]`` of shape ``(n, p + 1)``::

    beta ~ N(0, prior_scale² I_{p+1}),     y_i ~ Bernoulli(sigmoid(A_i · beta)),

the set-up of the logistic-regression experiment of Schär, Habeck and Rudolf (2023) (they use
Covertype with prior scale 0.1; we ship a smaller data set). ``beta[0]`` is the intercept.

Data
----
``breast_cancer``: the Wisconsin Diagnostic Breast Cancer data (Street, Wolberg and Mangasarian
1993), 569 tumours, 30 real features, label 1 = benign (357), 0 = malignant (212). The file
``data/breast_cancer.csv`` is a verbatim copy of ``sklearn/datasets/data/breast_cancer.csv`` from
the scikit-learn 1.9.1 wheel (BSD-3-Clause, © the scikit-learn developers); the data originate
from the UCI Machine Learning Repository (doi:10.24432/C5DW2B, CC BY 4.0). See
``data/README.md``. It is read with NumPy; nothing is downloaded.

References
----------
.. [1] Schär, P., Habeck, M. and Rudolf, D. (2023). "Gibbsian Polar Slice Sampling".
   Proceedings of the 40th International Conference on Machine Learning, PMLR 202:30204-30223.
   arXiv:2302.03945.
.. [2] Street, W. N., Wolberg, W. H. and Mangasarian, O. L. (1993). "Nuclear feature extraction
   for breast tumor diagnosis". IS&T/SPIE Symposium on Electronic Imaging, vol. 1905, 861-870.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from psample.errors import ModelError
from psample.targets import Target, from_numpyro

from ._common import check_model_positive

__all__ = [
    "Dataset",
    "DATASETS",
    "BREAST_CANCER_FEATURES",
    "load_dataset",
    "logistic_regression_data",
    "logistic_regression_model",
    "logistic_regression",
]

_BREAST_CANCER_BASE = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)
#: Feature names in file order (scikit-learn's naming: mean, standard error, worst of each).
BREAST_CANCER_FEATURES = (
    tuple(f"mean {name}" for name in _BREAST_CANCER_BASE)
    + tuple(f"{name} error" for name in _BREAST_CANCER_BASE)
    + tuple(f"worst {name}" for name in _BREAST_CANCER_BASE)
)


class Dataset(NamedTuple):
    """A binary classification data set.

    Attributes
    ----------
    features
        Raw (unstandardised) features, shape ``(n, p)``.
    labels
        0/1 labels, shape ``(n,)``, integer.
    feature_names
        ``p`` names.
    label_names
        Names of label 0 and label 1.
    """

    features: np.ndarray
    labels: np.ndarray
    feature_names: tuple
    label_names: tuple


def _load_breast_cancer() -> Dataset:
    """Read ``data/breast_cancer.csv``.

    Format: a header ``n,p,name0,name1``, then ``n`` rows of ``p`` features and the 0/1 label.
    """
    path = resources.files(__package__) / "data" / "breast_cancer.csv"
    with resources.as_file(path) as file:
        with open(file, encoding="ascii") as handle:
            header = handle.readline().strip().split(",")
        table = np.loadtxt(file, delimiter=",", skiprows=1, dtype=np.float64)
    num_rows, num_features = int(header[0]), int(header[1])
    if table.shape != (num_rows, num_features + 1):
        raise ModelError(
            f"{path} holds a table of shape {table.shape}, its header announces "
            f"({num_rows}, {num_features + 1}); the packaged data file is damaged"
        )
    return Dataset(
        features=table[:, :-1],
        labels=table[:, -1].astype(np.int64),
        feature_names=BREAST_CANCER_FEATURES,
        label_names=tuple(header[2:4]),
    )


#: Known data sets: name -> loader.
DATASETS = {"breast_cancer": _load_breast_cancer}


def load_dataset(dataset: str = "breast_cancer") -> Dataset:
    """Load a packaged data set by name (see :data:`DATASETS`).

    Raises
    ------
    ModelError
        If ``dataset`` is not a known name; the message lists the known names.
    """
    if dataset not in DATASETS:
        raise ModelError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    return DATASETS[dataset]()


def logistic_regression_data(dataset: str = "breast_cancer") -> tuple[np.ndarray, np.ndarray]:
    """Design matrix ``A = [1, standardised features]`` ``(n, p + 1)`` and labels ``(n,)``."""
    data = load_dataset(dataset)
    features = data.features
    standardised = (features - features.mean(axis=0)) / features.std(axis=0)
    design = np.hstack([np.ones((features.shape[0], 1)), standardised])
    return design, data.labels


def logistic_regression_model(design, labels=None, prior_scale: float = 1.0):
    """NumPyro model of Bayesian logistic regression with an isotropic Gaussian prior.

    Parameters
    ----------
    design
        Design matrix ``(n, k)`` (include a column of ones for an intercept).
    labels
        0/1 observations ``(n,)``, or ``None`` to sample them.
    prior_scale
        Prior standard deviation of every coefficient.

    Sites: ``beta`` ``(k,)`` and the observed ``obs`` ``(n,)``.
    """
    num_rows, num_coefficients = jnp.shape(design)
    beta = numpyro.sample(
        "beta", dist.Normal(0.0, prior_scale).expand([num_coefficients]).to_event(1)
    )
    with numpyro.plate("data", num_rows):
        numpyro.sample("obs", dist.Bernoulli(logits=jnp.dot(design, beta)), obs=labels)


def logistic_regression(dataset: str = "breast_cancer", prior_scale: float = 1.0) -> Target:
    """Bayesian logistic regression posterior on a packaged data set.

    Parameters
    ----------
    dataset
        Name of a packaged data set (``"breast_cancer"``: ``n = 569``, ``p = 30``).
    prior_scale
        Prior standard deviation ``> 0`` of the intercept and every coefficient.

    Returns
    -------
    Target
        Position ``{"beta": (p + 1,)}`` (``beta[0]`` the intercept); chains start uniformly in
        ``(-2, 2)``. ``postprocess`` returns ``beta``. No posterior moment is known in closed
        form, so ``exact`` is empty. ``hints["polar_slice_w"] = prior_scale / 2``: the
        Laplace-approximation standard deviation of ``‖beta‖`` on ``breast_cancer`` is 0.060, 0.53
        and 5.9 for prior scales 0.1, 1 and 10.

    Raises
    ------
    ModelError
        If ``dataset`` is unknown or ``prior_scale`` is not a finite positive number.
    """
    prior_scale = check_model_positive("prior_scale", prior_scale)
    design, labels = logistic_regression_data(dataset)
    target = from_numpyro(logistic_regression_model, design, labels, prior_scale=prior_scale)
    return dataclasses.replace(
        target,
        name=f"logistic_regression(dataset={dataset!r}, prior_scale={prior_scale:g})",
        hints={"polar_slice_w": 0.5 * prior_scale},
    )
