"""A NumPyro model split over data shards for D-ADMMS (:func:`sharded_numpyro_model`).

The model's observed sites must factorise over the observations (an ``obs=`` site in a plate
over the sharded arguments). The split gives the log-prior of the latent sites in NumPyro's
unconstrained space (the log-Jacobian of the constraining map included), the log-likelihood of
one shard, the sharded data, and :func:`psample.from_numpyro` of the model on the pooled data
(initial positions, ``postprocess`` to constrained sites, a reference posterior). Every
evaluation costs one shard's data, never the pooled data's.

Limits: the model is traced on the first shard to find its observed sites; a model whose
structure depends on the data's values is not supported.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from psample.errors import ShapeError, check_positive_int
from psample.mcmc.admm.data import shard

__all__ = ["ShardedModel", "sharded_numpyro_model"]


class ShardedModel(NamedTuple):
    """A NumPyro model split for :func:`~psample.mcmc.admm.kernel.as_top_level_api` by :func:`sharded_numpyro_model`.

    logprior_fn
        ``z -> scalar``: log-prior of the latent sites in NumPyro's unconstrained space, the
        log-Jacobian of the constraining map included.
    loglik_fn
        ``(z, shard) -> scalar``: summed log-probability of the observed sites on one shard.
    data
        ``{name: (N, n / N, ...)}``: the sharded data arguments.
    target
        :func:`psample.from_numpyro` of the model on the pooled data: initial positions,
        ``postprocess`` to constrained sites, and the full posterior for a reference run.
    """

    logprior_fn: Callable
    loglik_fn: Callable
    data: dict
    target: object


def sharded_numpyro_model(model, num_agents: int, sharded: dict, **kwargs) -> ShardedModel:
    """Split a NumPyro model with observed sites over ``num_agents`` data shards.

    Parameters
    ----------
    model
        A NumPyro model whose likelihood is a product over observations (an ``obs=`` site in a
        plate over the sharded arguments).
    num_agents
        Number of shards; it must divide the number of observations (no padding).
    sharded
        ``{argument name: array}``: model keyword arguments with a leading observation axis
        (e.g. ``{"X": X, "y": y}``), split into equal shards along it.
    **kwargs
        Other (unsharded) keyword arguments of the model.

    Raises
    ------
    ShapeError
        If the sharded arrays disagree on the number of observations or ``num_agents`` does not
        divide it.
    ModelError
        If the model cannot be initialised or has no observed site.
    """
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    from psample.errors import ModelError
    from psample.targets import from_numpyro, observed_loglikelihood

    num_agents = check_positive_int("num_agents", num_agents)
    if not isinstance(sharded, dict) or not sharded:
        raise ShapeError(f"sharded must be a non-empty dict of arrays with an observation axis, got {sharded!r}")
    sizes = {name: np.shape(value)[0] if np.ndim(value) else None for name, value in sharded.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ShapeError(f"the sharded arguments disagree on the number of observations: {sizes}")
    data = {name: shard(value, num_agents, name=name) for name, value in sharded.items()}
    first = {name: value[0] for name, value in data.items()}
    try:
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(**kwargs, **first)
    except Exception as exc:  # user code raises anything
        raise ModelError(f"could not run model {getattr(model, '__name__', model)!r} on one shard: {exc}") from exc
    if not any(site["type"] == "sample" and site["is_observed"] for site in trace.values()):
        raise ModelError(f"model {getattr(model, '__name__', model)!r} has no observed (obs=) site to shard")
    target = from_numpyro(model, **kwargs, **{name: jnp.asarray(v) for name, v in sharded.items()})

    def loglik_fn(z, shard_data):
        return observed_loglikelihood(model, (), {**kwargs, **shard_data}, z)

    # The log-prior (with the log-Jacobian) is the log joint on one shard minus that shard's
    # log-likelihood: one shard's cost per call, not the pooled data's.
    first_kwargs = {**kwargs, **first}

    def logprior_fn(z):
        return -potential_energy(model, (), first_kwargs, z) - loglik_fn(z, first)

    return ShardedModel(logprior_fn, loglik_fn, data, target)
