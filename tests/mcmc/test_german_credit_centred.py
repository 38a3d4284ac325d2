"""The centred German credit model defines the gym's posterior (models/hierarchical.py).

``sparse_logistic_regression_centered_model`` samples ``weights ~ Normal(0, local * global)`` in
place of ``unscaled_weights ~ Normal(0, 1)``: its joint density in ``(local, global, weights)``
must equal the gym-form model's density at ``unscaled = weights / (local * global)`` times the
Jacobian ``|∂unscaled/∂weights| = Π 1 / (local_j * global)``, at any point (deterministic check).
"""

from __future__ import annotations

import numpy as np
from numpyro.infer.util import log_density

from psample.models import hierarchical


def test_centred_joint_is_the_gym_joint_times_the_jacobian():
    rng = np.random.default_rng(0)
    data = hierarchical.german_credit_numeric_data()
    features, labels = data["features"][:200], data["labels"][:200]
    k = features.shape[1] + 1
    for _ in range(3):
        local = rng.gamma(0.5, 2.0, size=k) + 0.05
        global_scale = float(rng.gamma(0.5, 2.0) + 0.05)
        weights = rng.normal(size=k) * 0.3
        centred, trace = log_density(
            hierarchical.sparse_logistic_regression_centered_model, (features, labels), {},
            {"local_scales": local, "global_scale": global_scale, "weights": weights},
        )  # fmt: skip
        unscaled = weights / (local * global_scale)
        gym_form, _ = log_density(
            hierarchical.sparse_logistic_regression_model, (features, labels), {},
            {"local_scales": local, "global_scale": global_scale, "unscaled_weights": unscaled},
        )  # fmt: skip
        np.testing.assert_allclose(float(centred), float(gym_form) - np.sum(np.log(local * global_scale)), rtol=1e-10)
        np.testing.assert_allclose(trace["unscaled_weights"]["value"], unscaled, rtol=1e-12)
