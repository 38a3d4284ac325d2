"""Neal's funnel: a scale hierarchy whose neck defeats fixed-step samplers.

``x_0 ~ N(0, 3²)`` and ``x_i | x_0 ~ N(0, e^{x_0})`` for ``i = 1, ..., d-1`` (0-based indices;
the papers call the first coordinate ``x_1``). The marginal of ``x_0`` is exactly ``N(0, 9)``,
so its mean, standard deviation and extreme quantiles (``±3 Φ⁻¹(0.999) ≈ ±9.2707``) are the
reference values of the funnel experiment in Schär, Habeck and Rudolf (2023) (``d = 10``,
polar slice window ``w = 5``).

References
----------
.. [1] Neal, R. M. (2003). "Slice sampling". *The Annals of Statistics* 31(3), 705-767.
.. [2] Schär, P., Habeck, M. and Rudolf, D. (2023). "Gibbsian Polar Slice Sampling".
   Proceedings of the 40th International Conference on Machine Learning, PMLR 202:30204-30223.
   arXiv:2302.03945.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy import stats

from psample.targets import Target

from ._common import check_dimension, flat_target, quantile_entries

__all__ = ["neal_funnel"]

#: Standard deviation of the funnel's scale coordinate ``x_0``.
FUNNEL_SCALE_SD = 3.0


def _sampler(d: int):
    def sample(rng_key, num: int) -> np.ndarray:
        import jax

        x0 = FUNNEL_SCALE_SD * np.asarray(jax.random.normal(rng_key, (int(num), 1)))
        rest = np.asarray(jax.random.normal(jax.random.fold_in(rng_key, 1), (int(num), d - 1)))
        return np.concatenate([x0, np.exp(0.5 * x0) * rest], axis=1)

    return sample


def neal_funnel(d: int = 10) -> Target:
    """Neal's funnel in ``d`` dimensions.

    ``log ρ(x) = -x_0² / 18 - Σ_{i≥1} (x_i² e^{-x_0} + x_0) / 2`` (up to a constant).

    Parameters
    ----------
    d
        Dimension, ``>= 2`` (one scale coordinate and at least one funnel coordinate; the paper
        uses ``d = 10``).

    Returns
    -------
    Target
        Over ``x`` of shape ``(d,)``; chains start at ``N(0, I)``. ``exact`` holds ``mean``
        ``(d,)`` (zeros), ``var`` ``(d,)`` (``9`` then ``E[e^{x_0}] = e^{9/2}``), ``E[x_0]``,
        ``Var[x_0]``, ``sd[x_0]``, ``q{p}[x_0] = 3 Φ⁻¹(p)``, ``E[x_1]``, ``Var[x_1]``, ``log_Z`` (the log normaliser of
        ``logdensity_fn``) and ``sample``, a function ``(rng_key, num) -> (num, d)`` of exact
        draws (NumPy).
        ``hints["polar_slice_w"] = 5``, the paper's value.

    Raises
    ------
    ModelError
        If ``d < 2``.
    """
    d = check_dimension(d, minimum=2)
    inv_var_0 = 1.0 / FUNNEL_SCALE_SD**2
    num_funnel = d - 1

    def logdensity_fn(x):
        x0, rest = x[0], x[1:]
        return -0.5 * (inv_var_0 * x0**2 + jnp.exp(-x0) * jnp.sum(rest**2) + num_funnel * x0)

    scale_marginal = stats.norm(0.0, FUNNEL_SCALE_SD)
    funnel_var = float(stats.lognorm(s=FUNNEL_SCALE_SD).mean())  # E[e^{x_0}], x_0 ~ N(0, 9)
    exact = {
        "mean": np.zeros(d),
        "var": np.concatenate([[FUNNEL_SCALE_SD**2], np.full(num_funnel, funnel_var)]),
        "E[x_0]": 0.0,
        "Var[x_0]": FUNNEL_SCALE_SD**2,
        "sd[x_0]": FUNNEL_SCALE_SD,
        **quantile_entries("x_0", scale_marginal.ppf),
        "E[x_1]": 0.0,
        "Var[x_1]": funnel_var,
        # log ∫ ρ = log √(2π·9) + (d-1)/2 log 2π: each x_i integrates to √(2π e^{x_0}), which the
        # -x_0/2 terms cancel.
        "log_Z": 0.5 * np.log(2 * np.pi * FUNNEL_SCALE_SD**2) + 0.5 * num_funnel * np.log(2 * np.pi),
        "sample": _sampler(d),
    }
    return flat_target(
        logdensity_fn,
        d,
        init_scale=1.0,
        name=f"funnel(d={d})",
        exact=exact,
        hints={"polar_slice_w": 5.0},
    )
