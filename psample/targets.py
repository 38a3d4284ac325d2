"""Targets: what a sampler samples.

A target is any JAX ``logdensity_fn(position) -> scalar`` over a pytree of unconstrained
arrays. :class:`Target` bundles such a function with what the runner and ArviZ need around
it: how to draw initial positions for many chains and how to map draws back to the
constrained, named sites a user declared. :func:`from_numpyro` builds one from a NumPyro
model through :func:`numpyro.infer.util.initialize_model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from psample.errors import DtypeError, ModelError, PsampleError, check_positive_int

__all__ = ["Target", "from_numpyro", "from_logdensity", "latent_gaussian", "LatentGaussian"]


def _identity_postprocess(positions):
    if isinstance(positions, dict):
        return dict(positions)
    return {"x": positions}


@dataclass(frozen=True)
class Target:
    """A log-density together with its initialisation and its map to named, constrained sites.

    Parameters
    ----------
    logdensity_fn
        ``position -> scalar``; ``position`` is a pytree of unconstrained arrays (for NumPyro
        models the dict of latent sites, as :func:`numpyro.infer.util.initialize_model` uses).
    init_fn
        ``(rng_key, num_chains) -> positions`` with a leading chain axis on every leaf.
    postprocess_fn
        ``position -> dict`` mapping one unconstrained position to constrained named sites
        (deterministic sites included). Defaults to the identity (a bare array is named ``x``).
    name
        Human-readable name, used in error messages and the CLI.
    exact
        Quantities known exactly about the target (``{"E[x_0]": 0.0, ...}``), for tests and
        examples. Keys are free-form.
    hints
        Suggested tuning values for samplers (``{"polar_slice_w": 5.0}``), used by the CLI.
    logprior_fn, loglikelihood_fn
        What tempering needs (:func:`psample.smc.tempered_smc`): ``position -> scalar`` log prior
        density in the unconstrained space (log-Jacobian of the constraining map included) and
        log-likelihood, with ``logprior_fn + loglikelihood_fn == logdensity_fn``; ``None`` when
        the target does not separate them.
    prior_sample_fn
        ``(rng_key, num) -> positions``: independent draws from the prior in the unconstrained
        space, leading axis ``(num, ...)`` on every leaf; ``None`` when unknown.
    pointwise_loglikelihood_fn
        ``sites -> {observed site: log-likelihood}``: one draw's constrained sites (what
        ``postprocess_fn`` returns) to the log-probability of each observation (batch shape of
        the site, event dims summed), as :func:`numpyro.infer.log_likelihood` gives it; the
        trace's ``log_likelihood`` group (``az.loo``, ``az.compare``). ``None``: no such group.
    observed_data, constant_data
        ``{name: array}`` for the DataTree's ``observed_data`` and ``constant_data`` groups.
    dims
        ``{site: [dim names]}`` of the non-sample axes of sites and data, as in
        :func:`arviz.from_numpyro`; sites not named get ArviZ's ``{site}_dim_{i}``.
    coords
        ``{dim: values}`` (default ``0..n-1``), as in :func:`arviz.from_numpyro`.
    latent_gaussian_fn
        ``(latent_sites=None) -> LatentGaussian``: :func:`latent_gaussian` of the NumPyro model
        this target wraps (``None`` sites: the hierarchical ``Normal`` sites, found), for
        :func:`psample.partially_noncentered_polar_slice`; ``None`` for other targets.
    """

    logdensity_fn: Callable[[Any], jax.Array]
    init_fn: Callable[[jax.Array, int], Any]
    postprocess_fn: Callable[[Any], dict] | None = None
    name: str = "target"
    exact: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)
    logprior_fn: Callable[[Any], jax.Array] | None = None
    loglikelihood_fn: Callable[[Any], jax.Array] | None = None
    prior_sample_fn: Callable[[jax.Array, int], Any] | None = None
    pointwise_loglikelihood_fn: Callable[[dict], dict] | None = None
    observed_data: dict | None = None
    constant_data: dict | None = None
    dims: dict | None = None
    coords: dict | None = None
    latent_gaussian_fn: Callable[..., Any] | None = None

    def initial_positions(self, rng_key: jax.Array, num_chains: int):
        """Draw initial positions for ``num_chains`` chains (leading axis ``(num_chains, ...)``)."""
        num_chains = check_positive_int("num_chains", num_chains)
        return self.init_fn(rng_key, num_chains)

    def postprocess(self, positions):
        """Map unconstrained draws with leading axes ``(chain, draw)`` to constrained named sites.

        Returns
        -------
        dict
            Site name -> array of shape ``(chain, draw, *site_shape)``.
        """
        fn = self.postprocess_fn or _identity_postprocess
        return jax.vmap(jax.vmap(fn))(positions)


def _model_name(model) -> str:
    return getattr(model, "__name__", None) or type(model).__name__


def observed_loglikelihood(model, args: tuple, kwargs: dict, z) -> jax.Array:
    """Sum of a NumPyro model's observed sites' log-probabilities (their ``scale`` applied) at
    the unconstrained latent values ``z``: the log-likelihood that tempering and data sharding
    separate from the prior."""
    import jax.numpy as jnp
    from numpyro import handlers
    from numpyro.infer.util import constrain_fn

    params = constrain_fn(model, args, kwargs, z)
    trace = handlers.trace(handlers.substitute(handlers.seed(model, 0), data=params)).get_trace(*args, **kwargs)
    total = jnp.zeros(())
    for site in trace.values():  # the model's sites, traced once
        if site["type"] == "sample" and site["is_observed"]:
            log_prob = site["fn"].log_prob(site["value"])
            if site.get("scale") is not None:
                log_prob = site["scale"] * log_prob
            total = total + jnp.sum(log_prob)
    return total


# Errors of a model that JAX cannot trace abstractly (Python control flow on a sampled value,
# ``float(x)``): such a model is initialised eagerly, op by op, as NumPyro does for one chain.
_TRACING_ERRORS = (jax.errors.JAXTypeError, jax.errors.JAXIndexError)


def _initialize_numpyro(model, args, kwargs, strategy, name):
    """NumPyro's :func:`~numpyro.infer.util.initialize_model` at key ``PRNGKey(0)``, raising
    :class:`ModelError` (naming the model) where it fails.

    The key is passed as a batch of one: the model's trace is the same (NumPyro traces it at the
    batch's first key), and the search for valid initial values (the potential and its gradient
    at up to 100 draws) runs as one compiled loop instead of eagerly, op by op, where each of the
    model's operations is compiled on its own.
    """
    from numpyro.infer.util import initialize_model

    key = jax.random.PRNGKey(0)
    try:
        try:
            return initialize_model(key[None], model, init_strategy=strategy, model_args=args, model_kwargs=kwargs)
        except _TRACING_ERRORS:
            return initialize_model(key, model, init_strategy=strategy, model_args=args, model_kwargs=kwargs)
    except Exception as exc:  # numpyro raises RuntimeError/ValueError/TypeError from user code
        raise ModelError(f"could not initialise NumPyro model {name!r}: {exc}") from exc


def _numpyro_init_fn(model, args, kwargs, strategy, name):
    """``init_fn(rng_key, num_chains)``: :func:`~numpyro.infer.util.initialize_model`'s initial
    values at ``jax.random.split(rng_key, num_chains)``, compiled once per number of chains
    (NumPyro's search is deterministic given the keys, so the values are its own)."""
    from jax.flatten_util import ravel_pytree
    from numpyro.infer.util import initialize_model
    from numpyro.util import not_jax_tracer

    def initialize(keys):
        return initialize_model(keys, model, init_strategy=strategy, model_args=args, model_kwargs=kwargs)

    def search(keys):
        param_info = initialize(keys).param_info
        grads = jax.vmap(lambda g: ravel_pytree(g)[0])(param_info.z_grad)
        # NumPyro's own test of a chain's initial values: finite potential and gradient.
        valid = jnp.isfinite(param_info.potential_energy) & jnp.all(jnp.isfinite(grads), axis=-1)
        return param_info.z, jnp.all(valid)

    compiled = jax.jit(search)
    traceable = [True]

    def init_fn(rng_key, num_chains):
        keys = jax.random.split(rng_key, num_chains)
        try:
            if traceable[0]:
                try:
                    z, valid = compiled(keys)
                except _TRACING_ERRORS:
                    traceable[0] = False
                else:
                    # Under a transformation (``jax.eval_shape``) NumPyro checks nothing either.
                    if not not_jax_tracer(valid) or bool(valid):
                        return z
                    # Not every chain has valid values: NumPyro's error and warnings.
            return initialize(keys).param_info.z
        except Exception as exc:
            raise ModelError(f"could not initialise NumPyro model {name!r}: {exc}") from exc

    return init_fn


def from_numpyro(model, *args, init_strategy=None, coords=None, dims=None, **kwargs) -> Target:
    """Wrap a NumPyro model as a :class:`Target` over its unconstrained latent sites.

    Parameters
    ----------
    model
        A NumPyro model (a Python callable using ``numpyro.sample``).
    *args, **kwargs
        Arguments passed to the model (data, hyper-parameters).
    init_strategy
        A NumPyro init strategy (default :func:`numpyro.infer.init_to_uniform`, radius 2).
    coords, dims
        As in :func:`arviz.from_numpyro`: ``{dim: values}`` and ``{site: [dim names]}`` of the
        results' DataTree. ``dims`` are inferred from the model's plates
        (``arviz_base.io_numpyro.infer_dims``: a site in ``numpyro.plate("school", 8)`` has
        dim ``school``); the ``dims`` given replace the inferred ones site by site (ArviZ's
        ``from_numpyro`` replaces all of them) and name data arguments too. A model whose own
        keyword is called ``coords`` or ``dims`` cannot receive it through this function.

    Returns
    -------
    Target
        ``logdensity_fn(z) = -potential_fn(z)`` (log joint plus log-Jacobian, unconstrained),
        ``initial_positions(key, C)`` as a dict of ``(C, *site_shape)`` arrays and
        ``postprocess`` returning constrained sites and deterministic sites. For tempering:
        ``loglikelihood_fn(z)``, the summed log-probability of the observed sites (scales and
        masks applied as NumPyro does), ``logprior_fn(z) = logdensity_fn(z) - loglikelihood_fn(z)``
        (prior of the latent sites plus the log-Jacobian, computed without the likelihood) and ``prior_sample_fn(key, n)``,
        prior draws of the latent sites (:class:`numpyro.infer.Predictive`) mapped to the
        unconstrained space. For ArviZ: ``pointwise_loglikelihood_fn`` (the observed sites'
        log-probabilities, :func:`numpyro.infer.log_likelihood`'s), ``observed_data`` (the
        observed sites' values), ``constant_data`` (the model's array arguments, named by its
        signature, that are not observed values), ``dims`` and ``coords``.

    Raises
    ------
    ModelError
        If :func:`numpyro.infer.util.initialize_model` fails; the message names the model.
    """
    from numpyro.infer import init_to_uniform

    name = _model_name(model)
    strategy = init_strategy or init_to_uniform
    info = _initialize_numpyro(model, args, kwargs, strategy, name)
    potential_fn = info.potential_fn

    def logdensity_fn(z):
        return -potential_fn(z)

    init_fn = _numpyro_init_fn(model, args, kwargs, strategy, name)

    loglikelihood_fn, logprior_fn, prior_sample_fn = _numpyro_tempering(model, args, kwargs, info)

    arviz = _numpyro_arviz(model, args, kwargs, info.model_trace, coords, dims)
    return Target(
        logdensity_fn=logdensity_fn,
        init_fn=init_fn,
        postprocess_fn=info.postprocess_fn,
        name=name,
        logprior_fn=logprior_fn,
        loglikelihood_fn=loglikelihood_fn,
        prior_sample_fn=prior_sample_fn,
        latent_gaussian_fn=lambda latent_sites=None: latent_gaussian(model, latent_sites, *args, **kwargs),
        **arviz,
    )


def _numpyro_arviz(model, args, kwargs, model_trace, coords, dims) -> dict:
    """The :class:`Target` fields ArviZ's groups need, as :func:`arviz.from_numpyro` builds them."""
    import inspect

    import numpy as np
    from arviz_base.io_numpyro import infer_dims
    from numpyro.infer import log_likelihood

    name = _model_name(model)
    observed = {
        site_name: np.asarray(site["value"])
        for site_name, site in model_trace.items()
        if site["type"] == "sample" and site["is_observed"]
    }
    constant = {}
    try:
        bound = inspect.signature(model).bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
    except (TypeError, ValueError):  # no signature (a callable object) or *args: name nothing
        arguments = {}
    for arg_name, value in arguments.items():
        if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) > 0:
            value = np.asarray(value)
            if not any(v.shape == value.shape and np.array_equal(v, value) for v in observed.values()):
                constant[arg_name] = value
    try:
        inferred = infer_dims(model, args, kwargs)
    except Exception:  # a model that cannot be traced abstractly: ArviZ's default names
        inferred = {}
    if dims is not None and not isinstance(dims, dict):
        raise ModelError(f"dims must be a dict {{site: [dim names]}}, got {dims!r}")
    if coords is not None and not isinstance(coords, dict):
        raise ModelError(f"coords must be a dict {{dim: values}}, got {coords!r}")
    all_dims = {**inferred, **{k: list(v) for k, v in (dims or {}).items()}}
    sizes = _dim_sizes(model_trace, all_dims, observed, constant)
    for dim, values in (coords or {}).items():
        if dim in sizes and len(values) != sizes[dim]:
            raise ModelError(
                f"coords[{dim!r}] has {len(values)} values but dim {dim!r} of model {name!r} has size {sizes[dim]}"
            )
    def pointwise(sites):
        batched = jax.tree.map(lambda v: v[None], sites)
        return jax.tree.map(lambda v: v[0], log_likelihood(model, batched, *args, **kwargs))

    return dict(
        pointwise_loglikelihood_fn=pointwise if observed else None, observed_data=observed or None, constant_data=constant or None,
        dims=all_dims or None, coords=dict(coords) if coords else None,
    )  # fmt: skip


def _dim_sizes(model_trace, dims, observed, constant) -> dict:
    """``{dim: size}`` of the model's plates and of the named axes of its sites and data."""
    import numpy as np

    sizes = {}
    for site in model_trace.values():
        if site["type"] == "plate":
            sizes[site["name"]] = int(site["args"][0])
    values = {**{k: s["value"] for k, s in model_trace.items() if s["type"] in ("sample", "deterministic")},
              **observed, **constant}  # fmt: skip
    for site_name, names in dims.items():
        if site_name in values:
            shape = np.shape(values[site_name])
            for i, dim in enumerate(names[: len(shape)]):
                sizes.setdefault(dim, shape[i])
    return sizes


def _logprior_fn(model, args, kwargs, model_trace):
    """``z -> log prior + log-Jacobian`` at unconstrained ``z``: the potential of the model with its
    observed sites (those of ``model_trace``) hidden, so the likelihood is never evaluated."""
    from numpyro import handlers
    from numpyro.infer.util import potential_energy

    observed = [name for name, site in model_trace.items() if site["type"] == "sample" and site.get("is_observed")]
    prior_model = handlers.block(model, hide=observed)

    def logprior_fn(z):
        return -potential_energy(prior_model, args, kwargs, z)

    return logprior_fn


def _numpyro_tempering(model, args, kwargs, info):
    """``loglikelihood_fn(z)``, ``logprior_fn(z)`` and ``prior_sample_fn(key, n)`` of a NumPyro model.

    ``logprior_fn`` is the potential of the model with its observed sites hidden
    (:func:`numpyro.handlers.block`): the latent sites' log-probabilities plus the log-Jacobian
    (NumPyro's ``_<site>_log_det`` factors, which are not hidden), so it equals
    ``logdensity_fn - loglikelihood_fn`` without evaluating the likelihood (under ``jit`` the
    unused observation model is dropped): a conditional of the hyperparameters given centred
    latents costs the prior only.
    """
    from numpyro.infer import Predictive
    from numpyro.infer.util import unconstrain_fn

    latent = [
        name
        for name, site in info.model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    ]

    logprior_fn = _logprior_fn(model, args, kwargs, info.model_trace)

    def loglikelihood_fn(z):
        return observed_loglikelihood(model, args, kwargs, z)

    def prior_sample_fn(rng_key, num):
        draws = Predictive(model, num_samples=num, return_sites=latent)(rng_key, *args, **kwargs)
        return jax.vmap(lambda params: unconstrain_fn(model, args, kwargs, params))(draws)

    return loglikelihood_fn, logprior_fn, prior_sample_fn


def from_logdensity(logdensity_fn, initial_position, *, scale: float = 1.0, name: str = "target") -> Target:
    """A :class:`Target` for a plain JAX log-density, initialised around ``initial_position``.

    Chains start at ``initial_position + scale * N(0, I)`` (independently per chain).

    Raises
    ------
    DtypeError
        If ``logdensity_fn`` returns a complex value at ``initial_position`` (checked on the
        traced dtype, without evaluating it).
    """
    check_real_logdensity(logdensity_fn, initial_position, "logdensity_fn")
    flat, unravel = jax.flatten_util.ravel_pytree(initial_position)

    def init_fn(rng_key, num_chains):
        noise = jax.random.normal(rng_key, (num_chains,) + flat.shape, dtype=flat.dtype)
        return jax.vmap(unravel)(flat + scale * noise)

    return Target(logdensity_fn=logdensity_fn, init_fn=init_fn, name=name)


def check_real_logdensity(logdensity_fn, position, what: str = "logdensity_fn") -> None:
    """Refuse a log-density that returns a complex value (checked on its traced dtype, no evaluation).

    Casting it to the positions' real dtype would drop the imaginary part with nothing but
    NumPy's ``ComplexWarning``. ``position`` is one chain's position (arrays or
    ``jax.ShapeDtypeStruct`` s). A function that cannot be traced here is left to the sampler.

    Raises
    ------
    DtypeError
        Naming ``what`` and the dtype.
    """
    try:
        out = jax.eval_shape(logdensity_fn, position)
    except PsampleError:
        raise
    except Exception:  # not traceable abstractly (e.g. host code): the sampler's own checks apply
        return
    dtypes = {str(leaf.dtype) for leaf in jax.tree.leaves(out) if jnp.issubdtype(leaf.dtype, jnp.complexfloating)}
    if dtypes:
        raise DtypeError(_complex_message(what, ", ".join(sorted(dtypes))))


def _complex_message(what: str, dtype) -> str:
    return (
        f"{what} returns a complex value (dtype {dtype}): a log-density must be real. Find where it "
        "turns complex (e.g. jnp.log or a power of a complex or negative input), or return "
        "jnp.real(...) if the imaginary part is round-off"
    )


# --- automatic non-centring (issue #28) ---------------------------------------------------------


def _base_distribution(fn, masked: bool = False):
    """``fn`` without its batching wrappers (``expand``, ``to_event``; ``mask`` too if ``masked``)."""
    import numpyro.distributions as dist

    wrappers = (dist.ExpandedDistribution, dist.Independent) + ((dist.MaskedDistribution,) if masked else ())
    while isinstance(fn, wrappers):
        fn = fn.base_dist
    return fn


def noncentered(model, sites=None):
    """The same NumPyro model with its location-scale latent sites non-centred.

    Every latent (not observed) site whose distribution is a ``Normal``, ``StudentT``, ``Cauchy``
    or ``Laplace`` (possibly batched by ``expand``, ``to_event`` or a plate) is rewritten by
    :class:`numpyro.infer.reparam.LocScaleReparam` with ``centered=0``:
    ``x = loc + scale · x_decentered``, ``x_decentered`` drawn from the standard form; a
    ``MultivariateNormal`` site (not batched) becomes ``x = loc + L x_decentered`` with ``L`` its
    ``scale_tril`` and ``x_decentered ~ N(0, I)`` (e.g. a latent AR(1) series driven by its
    innovations). The model
    defines the same distribution on its original sites, which stay in its trace as deterministic
    sites (so ``Target.postprocess`` and the DataTree's ``posterior`` hold them, beside the new
    ``<name>_decentered`` sites); only the geometry the sampler sees changes. Where a scale
    hyperparameter sets the local scale of many latents (hierarchical models: the funnel), the
    non-centred geometry is the easy one (Papaspiliopoulos, Roberts and Sköld 2007); with strong
    data per group the centred one can be easier, so this is an option, not a default.

    Parameters
    ----------
    model
        A NumPyro model (a callable).
    sites
        Names of the sites to non-centre; default every eligible latent site.

    Returns
    -------
    callable
        The reparameterised model, to pass to :func:`from_numpyro` with the same arguments.

    References
    ----------
    Omiros Papaspiliopoulos, Gareth O. Roberts and Martin Sköld, "A general framework for the
    parametrization of hierarchical models", Statistical Science 22(1), 59-73, 2007. Maria I.
    Gorinova, Dave Moore and Matthew D. Hoffman, "Automatic reparameterisation of probabilistic
    programs", ICML 2020 (``LocScaleReparam``).
    """
    import numpyro.distributions as dist
    from numpyro.handlers import reparam
    from numpyro.infer.reparam import LocScaleReparam

    if not callable(model):
        raise TypeError(f"noncentered(model): model must be a NumPyro model (a callable), got {type(model).__name__}")
    wanted = None if sites is None else set(sites)
    families = (dist.Normal, dist.StudentT, dist.Cauchy, dist.Laplace)

    def config(site):
        if site["type"] != "sample" or site.get("is_observed") or site["name"].endswith("_decentered"):
            return None
        if wanted is not None and site["name"] not in wanted:
            return None
        if isinstance(site["fn"], dist.MultivariateNormal):
            return _MultivariateNormalDecentering()
        return LocScaleReparam(centered=0) if isinstance(_base_distribution(site["fn"], masked=True), families) else None

    return reparam(model, config=config)


def _MultivariateNormalDecentering():
    """``x = loc + L z``, ``z ~ N(0, I)``: the non-centred form of a ``MultivariateNormal`` site."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.reparam import Reparam

    class MultivariateNormalDecentering(Reparam):
        def __call__(self, name, fn, obs):
            if obs is not None:
                raise ModelError(f"noncentered: site {name!r} is observed; only latent sites are non-centred")
            standard = dist.Normal(jnp.zeros_like(fn.loc), 1.0).to_event(1)
            z = numpyro.sample(f"{name}_decentered", standard)
            return None, fn.loc + jnp.einsum("...ij,...j->...i", fn.scale_tril, z)

    return MultivariateNormalDecentering()


__all__ += ["noncentered"]


class LatentGaussian(NamedTuple):
    """Where a model's Gaussian latents sit in a flat position, and their prior given the rest.

    hyper_indices
        Flat indices (``ravel_pytree`` of the unconstrained sites, as :func:`from_numpyro`'s
        ``logdensity_fn`` reads them) of every other unconstrained site, ``(d - k,)``.
    latent_indices
        Flat indices of the latent sites' entries, ``(k,)``.
    loc_scale
        ``v -> (m, s)``: the latents' prior location and standard deviation, ``(k,)`` each, as
        functions of the other sites' unconstrained values ``v`` (in ``hyper_indices`` order).
    unravel
        ``flat (d,) -> {site: unconstrained value}``.
    hyper_conditional_fn
        ``flat (d,) -> scalar``: the log-density of the hyperparameters given the latents, up to
        a term constant in the hyperparameters, for a move of the hyperparameters with the latents
        fixed (:func:`psample.interweaved_polar_slice`'s centred move). Where the likelihood does
        not depend on the hyperparameters given the latents (``likelihood_free``) it is the
        model's prior (``logprior_fn`` of :func:`from_numpyro`'s target: no likelihood
        evaluation); otherwise the model's whole log-density.
    likelihood_free
        Whether the observed sites' log-probability has a zero gradient with respect to the
        hyperparameters (checked at two points, with the latents fixed), ``bool``.
    """

    hyper_indices: Any
    latent_indices: Any
    loc_scale: Callable
    unravel: Callable
    hyper_conditional_fn: Callable
    likelihood_free: bool


def _normal_priors(model, args, kwargs, unravel, flat_position, names) -> dict:
    """``{site: (loc, scale)}`` of the named ``Normal`` sites at a flat unconstrained position,
    each broadcast to the site's shape and flattened."""
    from numpyro.handlers import seed, substitute, trace
    from numpyro.infer.util import constrain_fn

    params = constrain_fn(model, args, kwargs, unravel(flat_position))
    sites = trace(substitute(seed(model, 0), data=params)).get_trace(*args, **kwargs)
    priors = {}
    for name in names:
        fn, shape = _base_distribution(sites[name]["fn"]), jnp.shape(sites[name]["value"])
        priors[name] = (jnp.broadcast_to(fn.loc, shape).ravel(), jnp.broadcast_to(fn.scale, shape).ravel())
    return priors


def _hierarchical_normal_sites(model, args, kwargs, model_trace, latent_names, unravel, layout) -> list:
    """The latent ``Normal`` sites whose location or scale depends on other sites, but not on one another.

    Probed at two points of the unconstrained space: a site whose prior moves when every
    coordinate moves depends on some site; of those, one whose prior moves when only those sites
    move depends on another of them (a chain of latents) and is left to the hyperparameters.
    """
    import numpy as np
    import numpyro.distributions as dist

    from psample.errors import ModelError

    candidates = [n for n in latent_names if isinstance(_base_distribution(model_trace[n]["fn"]), dist.Normal)]

    def prior_of(position):
        return _normal_priors(model, args, kwargs, unravel, position, candidates)

    def moved(a, b):
        return {n for n in candidates if not (np.allclose(a[n][0], b[n][0]) and np.allclose(a[n][1], b[n][1]))}

    probe = jnp.linspace(-0.3, 0.7, sum(np.asarray(index).size for index in layout.values()))
    at_probe = prior_of(probe)
    depends = moved(at_probe, prior_of(probe + 0.37))  # every coordinate moved
    dependent = [n for n in candidates if n in depends]
    dependent_idx = np.concatenate([np.asarray(layout[n]).ravel() for n in dependent]) if dependent else []
    chained = moved(at_probe, prior_of(probe.at[jnp.asarray(dependent_idx, int)].add(1.0)))
    names = [n for n in dependent if n not in chained]
    if not names:
        raise ModelError("latent_gaussian: the model has no latent Normal site whose location or scale depends on "
                         f"other sites (latent sites: {latent_names}); name the sites to use")
    return names


def latent_gaussian(model, latent_sites=None, *args, **kwargs) -> LatentGaussian:
    """The flat layout and prior ``N(m(v), diag s(v)²)`` of a NumPyro model's Normal latent sites.

    What :func:`psample.fit_partial_noncentering` needs from a model (with
    ``jax.flatten_util.ravel_pytree`` of :func:`from_numpyro`'s positions): each named site must
    be a latent ``Normal`` site (possibly batched by ``expand``, ``to_event`` or a plate) whose
    location and scale depend on the other sites only, not on the named ones (checked at one
    point).

    Parameters
    ----------
    model
        A NumPyro model, written centred (the latents drawn from ``Normal(loc, scale)``).
    latent_sites
        Names of the latent sites; ``None``: every latent ``Normal`` site whose location or scale
        depends on other sites but not on another such site (found by probing the model at two
        points).
    *args, **kwargs
        The model's arguments, as for :func:`from_numpyro`.

    Returns
    -------
    LatentGaussian

    Raises
    ------
    ModelError
        If a site is missing, observed, not a ``Normal``, or its location or scale depends on
        the latent sites.
    """
    import numpy as np
    import numpyro.distributions as dist
    from numpyro.handlers import seed, trace
    from numpyro.infer.util import potential_energy, unconstrain_fn

    model_trace = trace(seed(model, 0)).get_trace(*args, **kwargs)
    latent_names = [n for n, s in model_trace.items() if s["type"] == "sample" and not s.get("is_observed")]
    # the unconstrained layout, as from_numpyro's positions hold it (a simplex site has one entry
    # fewer unconstrained than constrained, for example)
    example = unconstrain_fn(model, args, kwargs, {n: model_trace[n]["value"] for n in latent_names})
    flat, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.result_type(float)), example))
    layout = unravel(jnp.arange(flat.shape[0]))
    if latent_sites is None:
        names = _hierarchical_normal_sites(model, args, kwargs, model_trace, latent_names, unravel, layout)
    else:
        names = [latent_sites] if isinstance(latent_sites, str) else list(latent_sites)
    for name in names:
        site = model_trace.get(name)
        if site is None or site["type"] != "sample" or site.get("is_observed"):
            raise ModelError(f"latent_gaussian: {name!r} is not a latent sample site of the model "
                             f"(latent sites: {latent_names})")
        if not isinstance(_base_distribution(site["fn"]), dist.Normal):
            raise ModelError(f"latent_gaussian: site {name!r} is a {type(site['fn']).__name__}, not a Normal")
    latent_idx = np.concatenate([np.asarray(layout[n]).ravel() for n in names]).astype(int)
    hyper_idx = np.setdiff1d(np.arange(flat.shape[0]), latent_idx)

    def loc_scale_at(flat_position):
        priors = _normal_priors(model, args, kwargs, unravel, flat_position, names)
        return jnp.concatenate([priors[n][0] for n in names]), jnp.concatenate([priors[n][1] for n in names])

    def loc_scale(v):
        return loc_scale_at(jnp.zeros(flat.shape[0], v.dtype).at[hyper_idx].set(v))

    # the prior of the latents must not depend on the latents themselves
    probe = jnp.linspace(-0.3, 0.7, flat.shape[0])
    m1, s1 = loc_scale_at(probe)
    m2, s2 = loc_scale_at(probe.at[latent_idx].add(1.0))
    if not (bool(jnp.allclose(m1, m2)) and bool(jnp.allclose(s1, s2))):
        raise ModelError(f"latent_gaussian: the location or scale of {names} depends on the sites themselves; "
                         "name the sites whose prior depends on the other sites only")

    def loglikelihood(flat_position):
        return observed_loglikelihood(model, args, kwargs, unravel(flat_position))

    # given the latents, a likelihood that sees the hyperparameters only through them is a constant
    try:
        gradients = [jax.grad(loglikelihood)(point)[hyper_idx] for point in (probe, 0.5 - probe)]
        likelihood_free = all(bool(jnp.all(g == 0.0)) for g in gradients)
    except Exception:  # not differentiable (e.g. integer ops): keep the whole log-density, always right
        likelihood_free = False
    logprior = _logprior_fn(model, args, kwargs, model_trace)

    def hyper_conditional_fn(flat_position):
        if likelihood_free:
            return logprior(unravel(flat_position))
        return -potential_energy(model, args, kwargs, unravel(flat_position))

    return LatentGaussian(hyper_idx, latent_idx, loc_scale, unravel, hyper_conditional_fn, likelihood_free)
