"""Hierarchical posteriors of inference-gym, as NumPyro models in the gym's own (centred) form.

Three posteriors of inference-gym (Sountsov, Radul and contributors, 2020) whose difficulty is a
scale hyperparameter that sets the local scale of many latents (funnel geometry):

- :func:`stochastic_volatility_model` / :func:`stochastic_volatility`: the gym's
  ``StochasticVolatilitySP500Small`` (the last 100 mean-adjusted daily returns of the S&P 500,
  ``d = 103``)::

      persistence_of_volatility ~ 2 Beta(20, 1.5) - 1
      mean_log_volatility ~ Cauchy(0, 5)
      white_noise_shock_scale ~ HalfCauchy(2)
      log_volatility[0] ~ N(mean, scale / sqrt(1 - persistence²))
      log_volatility[t] ~ N(mean + persistence (log_volatility[t-1] - mean), scale)
      returns[t] ~ N(0, exp(log_volatility[t] / 2))

  The persistence is the site ``persistence_beta`` (``Beta(20, 1.5)``) mapped to the
  deterministic site ``persistence_of_volatility``. The log-volatility path is one site
  ``log_volatility`` ``(100,)`` with the AR(1) chain's joint Gaussian law
  (:func:`ar1_scale_tril` gives its Cholesky factor in closed form): the same density as the
  gym's one site per time step, and non-centred by :func:`psample.noncentered` into the
  innovations.
- :func:`radon_model` / :func:`radon`: the gym's ``RadonContextualEffectsMinnesota`` (919 houses,
  85 counties, ``d = 91``), uniform priors on the scales as in the original Stan model::

      county_effect_mean ~ N(0, 1);  county_effect_scale ~ U(0, 100)
      county_effect[c] ~ N(county_effect_mean, county_effect_scale)
      weight ~ N(0, 1)^3;  log_radon_scale ~ U(0, 100)
      log_radon[i] ~ N(weight_0 log_uranium_i + weight_1 floor_i + weight_2 floor_by_county_i
                        + county_effect[county_i], log_radon_scale)

- :func:`sparse_logistic_regression_model` / :func:`german_credit_sparse`: the gym's
  ``GermanCreditNumericSparseLogisticRegression`` (1,000 applicants, 24 features and a bias,
  ``d = 51``), a horseshoe-like sparsity prior written non-centred by the gym itself::

      global_scale ~ Gamma(0.5, 0.5);  local_scales ~ Gamma(0.5, 0.5)^25
      unscaled_weights ~ N(0, 1)^25
      label[j] ~ Bernoulli(logit = [features_j, 1] @ (unscaled_weights * local_scales * global_scale))

  The scales' unconstrained coordinates are their logs (the gym's ``positive_constraint_fn="exp"``).
  The data: ``german_credit_numeric.csv`` (UCI Statlog, numeric version), with the gym's
  preprocessing (features standardised with the population standard deviation; label
  ``class - 1``, 1 = bad credit, as the gym's reversal of TFDS's coding gives).

The first two are written centred, as the gym writes them; :func:`psample.targets.noncentered` gives the
non-centred form of the same posterior. The data ship with the package (``data/``):
``sp500_closing_prices_last101.csv`` (the last 101 closing prices of the gym's
``internal/datasets/sp500_closing_prices.py``, Apache-2.0) and ``radon_minnesota.csv`` (Gelman and
Hill's radon data for Minnesota, read with the gym's preprocessing: floors above 1 dropped,
activities <= 0 set to 0.1, logs, counties in sorted-name order, the county mean floor as the
contextual effect). The gym's ground truth (posterior means and standard deviations by long NUTS
runs) lives in the gym's ``targets/ground_truth`` modules; ``benchmarks/hierarchical.py`` reads it
from there. ``Target.exact`` is empty: nothing is known in closed form.

Limits: the gym's parameterisation of these models is matched site by site (the log-densities
differ from the gym's by a constant; ``benchmarks/hierarchical.py --check`` verifies it where
inference-gym is installed); the unconstrained spaces differ only in the bijectors NumPyro picks
(the same supports).

References
----------
.. [1] Pavel Sountsov, Alexey Radul and contributors, "Inference Gym", 2020,
   https://pypi.org/project/inference_gym.
.. [2] Andrew Gelman and Jennifer Hill, *Data Analysis Using Regression and Multilevel/Hierarchical
   Models*, Cambridge University Press, 2007 (the radon data).
.. [3] Stan Development Team, *Stan User's Guide*, "Stochastic volatility models".
"""

from __future__ import annotations

import csv
from importlib import resources

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from psample.targets import Target, from_numpyro

__all__ = [
    "sp500_small_returns",
    "ar1_scale_tril",
    "stochastic_volatility_model",
    "stochastic_volatility",
    "radon_minnesota_data",
    "radon_model",
    "radon",
    "german_credit_numeric_data",
    "sparse_logistic_regression_model",
    "sparse_logistic_regression_centered_model",
    "german_credit_sparse",
]


def _data_path(name: str):
    return resources.files("psample.models.data").joinpath(name)


def sp500_small_returns() -> np.ndarray:
    """The gym's ``sp500_returns(num_points=100)``: price differences minus their mean, ``(100,)``."""
    with _data_path("sp500_closing_prices_last101.csv").open() as f:
        prices = np.array([float(line) for line in f if line.strip() and not line.startswith("#")])
    returns = np.diff(prices)
    return returns - returns.mean()


def ar1_scale_tril(num_timesteps: int, persistence, noise_scale):
    """Cholesky factor ``(T, T)`` of the stationary AR(1) covariance, in closed form.

    ``x = mean + L z`` with ``z ~ N(0, I)`` is the AR(1) series driven by the innovations ``z``:
    ``L[t, s] = noise_scale · persistence^(t-s)`` for ``1 <= s <= t`` and
    ``L[t, 0] = persistence^t · noise_scale / sqrt(1 - persistence²)``.
    """
    t = jnp.arange(num_timesteps)
    lag = t[:, None] - t[None, :]
    # persistence^lag for a negative persistence too (a float power of a negative base is NaN)
    sign = jnp.where((persistence < 0) & (lag % 2 == 1), -1.0, 1.0)
    powers = jnp.where(lag >= 0, sign * jnp.abs(persistence) ** jnp.maximum(lag, 0).astype(float), 0.0)
    first = jnp.where(t == 0, 1.0 / jnp.sqrt((1.0 - persistence) * (1.0 + persistence)), 1.0)
    return noise_scale * powers * first[None, :]


def stochastic_volatility_model(centered_returns):
    """The gym's stochastic volatility model: the centred AR(1) log-volatility as one vector site.

    ``log_volatility ~ MultivariateNormal(mean, L Lᵀ)`` with ``L`` the AR(1) Cholesky factor
    (:func:`ar1_scale_tril`): the same density and coordinates as the gym's one site per step,
    in one site (a NumPyro model with a site per step, or a ``scan``, takes minutes to trace).
    """
    num_timesteps = len(centered_returns)
    # 2 Beta(20, 1.5) - 1 as a Beta site and a deterministic one: NumPyro's TransformedDistribution
    # of an affine map reports a wrong support to init_to_uniform; the logit of the Beta site is
    # the gym's own unconstrained coordinate (its Sigmoid(-1, 1) bijector).
    beta = numpyro.sample("persistence_beta", dist.Beta(20.0, 1.5))
    persistence = numpyro.deterministic("persistence_of_volatility", 2.0 * beta - 1.0)
    mean = numpyro.sample("mean_log_volatility", dist.Cauchy(0.0, 5.0))
    noise_scale = numpyro.sample("white_noise_shock_scale", dist.HalfCauchy(2.0))
    log_volatility = numpyro.sample(
        "log_volatility",
        dist.MultivariateNormal(
            jnp.full(num_timesteps, mean), scale_tril=ar1_scale_tril(num_timesteps, persistence, noise_scale)
        ),
    )
    numpyro.sample("returns", dist.Normal(0.0, jnp.exp(log_volatility / 2.0)), obs=jnp.asarray(centered_returns))


def stochastic_volatility() -> Target:
    """:func:`stochastic_volatility_model` on :func:`sp500_small_returns` (``d = 103``), centred."""
    target = from_numpyro(stochastic_volatility_model, sp500_small_returns())
    return _named(target, "stochastic_volatility_sp500_small", w=10.0)


def radon_minnesota_data() -> dict:
    """The gym's ``radon_minnesota()`` training data from ``data/radon_minnesota.csv``.

    Returns ``{"num_counties": 85, "log_uranium", "floor", "county", "floor_by_county",
    "log_radon"}``, arrays of 919 houses.
    """
    with _data_path("radon_minnesota.csv").open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    floor = np.array([int(r["floor"]) for r in rows], dtype=np.int32)
    keep = floor <= 1
    radon_val = np.array([float(r["activity"]) for r in rows])[keep]
    counties = np.array([r["county"].strip() for r in rows])[keep]
    uranium = np.array([float(r["Uppm"]) for r in rows])[keep]
    floor = floor[keep]
    radon_val[radon_val <= 0.0] = 0.1
    unique, county = np.unique(counties, return_inverse=True)
    floor_by_county = np.array([floor[county == i].mean() for i in range(unique.size)])
    return dict(
        num_counties=int(unique.size),
        log_uranium=np.log(uranium),
        floor=floor,
        county=county.astype(np.int32),
        floor_by_county=floor_by_county[county],
        log_radon=np.log(radon_val),
    )


def radon_model(num_counties, log_uranium, floor, county, floor_by_county, log_radon):
    """The gym's radon model with contextual effects (centred county effects, uniform scales)."""
    county_effect_mean = numpyro.sample("county_effect_mean", dist.Normal(0.0, 1.0))
    county_effect_scale = numpyro.sample("county_effect_scale", dist.Uniform(0.0, 100.0))
    with numpyro.plate("counties", num_counties):
        county_effect = numpyro.sample("county_effect", dist.Normal(county_effect_mean, county_effect_scale))
    weight = numpyro.sample("weight", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    log_radon_scale = numpyro.sample("log_radon_scale", dist.Uniform(0.0, 100.0))
    loc = (
        weight[0] * log_uranium + weight[1] * floor + weight[2] * floor_by_county + county_effect[county]
    )
    with numpyro.plate("houses", len(log_radon)):
        numpyro.sample("log_radon", dist.Normal(loc, log_radon_scale), obs=log_radon)


def radon() -> Target:
    """:func:`radon_model` on :func:`radon_minnesota_data` (``d = 91``), centred."""
    target = from_numpyro(radon_model, **radon_minnesota_data())
    return _named(target, "radon_contextual_effects_minnesota", w=10.0)


def _named(target: Target, name: str, w: float) -> Target:
    import dataclasses

    return dataclasses.replace(target, name=name, hints={**target.hints, "polar_slice_w": w})


def german_credit_numeric_data() -> dict:
    """The gym's ``data.german_credit_numeric()`` (all 1,000 rows for training), from the shipped CSV.

    Returns ``{"features": (1000, 24) float64, "labels": (1000,) int32}``: features standardised
    column-wise (mean 0, ``np.std`` 1, as the gym's ``_normalize_zero_mean_one_std``), labels
    ``class - 1`` (the file's classes 1 = good, 2 = bad).
    """
    with _data_path("german_credit_numeric.csv").open() as f:
        rows = [line for line in f if line.strip() and not line.startswith("#")]
    table = np.array([[float(x) for x in line.split(",")] for line in rows])
    features = table[:, :24]
    features = (features - features.mean(0, keepdims=True)) / features.std(0, keepdims=True)
    return {"features": features, "labels": (table[:, 24] - 1).astype(np.int32)}


def sparse_logistic_regression_model(features, labels=None):
    """The gym's ``SparseLogisticRegression``: Gamma(0.5, 0.5) global and local scales, bias appended.

    Sites ``unscaled_weights`` ``(K + 1,)``, ``local_scales`` ``(K + 1,)``, ``global_scale`` ``()``
    for ``features`` ``(n, K)``; ``labels`` ``(n,)`` in {0, 1} (``None``: prior predictive).
    """
    features = jnp.asarray(features)
    design = jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1)
    num_features = design.shape[1]
    unscaled = numpyro.sample("unscaled_weights", dist.Normal(0.0, 1.0).expand([num_features]).to_event(1))
    local = numpyro.sample("local_scales", dist.Gamma(0.5, 0.5).expand([num_features]).to_event(1))
    global_scale = numpyro.sample("global_scale", dist.Gamma(0.5, 0.5))
    logits = design @ (unscaled * local * global_scale)
    numpyro.sample("labels", dist.Bernoulli(logits=logits).to_event(1), obs=labels)


def sparse_logistic_regression_centered_model(features, labels=None):
    """:func:`sparse_logistic_regression_model` with the weights centred: the same posterior.

    ``weights ~ Normal(0, local_scales * global_scale)`` is sampled in place of
    ``unscaled_weights ~ Normal(0, 1)``, and ``unscaled_weights = weights / (local_scales *
    global_scale)`` is recorded as a deterministic site, so the joint law of the gym's sites
    (``unscaled_weights``, ``local_scales``, ``global_scale``) is unchanged (the Normal's
    ``1 / scale`` is the Jacobian of the change of variables). With 1,000 observations the data
    pin the weights down, and the centred geometry is the easier one (Papaspiliopoulos, Roberts
    and Sköld 2007): the gym's non-centred product ``unscaled * local * global`` puts every
    weight on a hyperbolic ridge.
    """
    features = jnp.asarray(features)
    design = jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1)
    num_features = design.shape[1]
    local = numpyro.sample("local_scales", dist.Gamma(0.5, 0.5).expand([num_features]).to_event(1))
    global_scale = numpyro.sample("global_scale", dist.Gamma(0.5, 0.5))
    weights = numpyro.sample("weights", dist.Normal(0.0, local * global_scale).to_event(1))
    numpyro.deterministic("unscaled_weights", weights / (local * global_scale))
    numpyro.sample("labels", dist.Bernoulli(logits=design @ weights).to_event(1), obs=labels)


def german_credit_sparse() -> Target:
    """The gym's ``GermanCreditNumericSparseLogisticRegression`` as a :class:`psample.Target` (``d = 51``)."""
    target = from_numpyro(sparse_logistic_regression_model, **german_credit_numeric_data())
    return _named(target, "german_credit_numeric_sparse_logistic_regression", w=10.0)
