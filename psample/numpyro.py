"""psample samplers inside NumPyro's ``MCMC``: ``psample.numpyro.PolarSlice(model)`` and ``kernel(factory)``.

NumPyro users keep their habits::

    mcmc = numpyro.infer.MCMC(psample.numpyro.PolarSlice(model), num_warmup=1000,
                              num_samples=1000, num_chains=4, chain_method="vectorized")
    mcmc.run(jax.random.key(0), *model_args)
    mcmc.print_summary(); samples = mcmc.get_samples(); tree = az.from_numpyro(mcmc)

:func:`kernel` wraps any psample chain algorithm, given as a factory
``factory(logdensity_fn, **kwargs) -> SamplingAlgorithm``, as a
:class:`numpyro.infer.mcmc.MCMCKernel`. The model is initialised by
:func:`numpyro.infer.util.initialize_model`; the sampler runs on ``-potential_fn`` over the
unconstrained latent sites (``state.z``) and NumPyro's ``postprocess_fn`` returns constrained
sites with deterministic ones.

Chains. With ``chain_method="vectorized"`` NumPyro hands ``init`` a batch of keys and ``sample``
the batched state: the kernel runs its chains with ``jax.vmap`` itself (the contract
NumPyro's own HMC follows), and an adaptation pools them (cross-chain). With
``"sequential"`` and ``"parallel"`` each chain is a batch of one and adapts on its own.

Warm-up. When the algorithm has an adaptation of the step-wise form
(:class:`psample.base.StepwiseAdaptation`: ``init(positions, num_steps)`` /
``step(key, carry, num_steps)``, as
:func:`psample.mcmc.polar_slice_adaptation.polar_slice_adaptation` has), NumPyro's warm-up
steps are adaptation steps and the draws use the adapted parameters; ``adapt=False`` makes
warm-up plain burn-in. Keys follow :func:`psample.sample`: adaptation step ``t`` uses
``fold_in(adaptation_key(run_key), t)`` and step ``i`` after it ``fold_in(run_key, i)``, split
over the chains, where ``run_key`` is the key NumPyro gives the (first) chain
(``state.rng_key``, its first key when vectorized). A vectorized run therefore makes exactly
the draws of ``psample.sample(algorithm, init_params, state.rng_key[0], num_samples, num_warmup=...)``
(except that ``structure="auto"``'s final switch from a diagonal matrix to a vector, done
outside tracing in ``psample.sample``, is not made here: the same scale, another round-off).

Diagnostics. The kernel's state keeps the last step's statistics in ``stats`` and exposes each
as an attribute, and :attr:`PsampleKernel.default_fields` lists them, so ``MCMC`` collects them
and ``az.from_numpyro(mcmc)`` has a ``sample_stats``: ``potential_energy`` (ArviZ's ``lp``) and
the sampler's ``Info`` fields, renamed as NumPyro names them (:data:`NUMPYRO_NAMES`:
``diverging``, ``accept_prob``) and without trajectory internals
(:data:`psample.runtime.datatree.TRAJECTORY_FIELDS`); polar slice's ``num_evals``,
``num_nonfinite``, ... keep their names. ``mcmc.print_summary()`` prints the latent sites only
(NumPyro's ``exclude_deterministic=True``); ``print_summary(exclude_deterministic=False)`` adds
the deterministic ones.

Known limits. The sampler runs on the unconstrained latent sites that
:func:`numpyro.infer.util.initialize_model` returns. The names of the statistics are found when
the kernel is made, by tracing the sampler on a two-dimensional standard normal
(``jax.eval_shape``, nothing runs); a sampler that cannot be built there reports
``potential_energy`` only.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpyro  # noqa: F401  the package first: after `import arviz` (whose lazy loader registers numpyro),
# importing a submodule first leaves numpyro.infer without its submodules and az.from_numpyro fails
from numpyro.infer import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model
from numpyro.util import is_prng_key

from psample.base import provides_adaptation
from psample.mcmc.polar_slice import as_top_level_api as polar_slice
from psample.runtime.datatree import TRAJECTORY_FIELDS
from psample.runtime.warmup import adaptation_key

__all__ = ["PsampleKernelState", "PsampleKernel", "kernel", "PolarSlice", "NUMPYRO_NAMES"]

#: Sampler ``Info`` field -> the name NumPyro's own kernels give it (``az.from_numpyro`` then
#: renames ``accept_prob`` to ``acceptance_rate``); other fields keep their names.
NUMPYRO_NAMES = {"is_divergent": "diverging", "acceptance_rate": "accept_prob", "energy": "energy"}


def _stats(states, info) -> dict:
    """``{name: (chain,)}``: ``potential_energy`` and the Info fields in NumPyro's names."""
    out = {}
    logdensity = getattr(states, "logdensity", None)
    if logdensity is not None:
        out["potential_energy"] = -logdensity
    fields = info._asdict() if hasattr(info, "_asdict") else {}
    for name, value in fields.items():
        if name in TRAJECTORY_FIELDS or not hasattr(value, "shape") or isinstance(value, tuple):
            continue
        out[NUMPYRO_NAMES.get(name, name)] = value
    return out


class _KernelState(NamedTuple):
    i: Any
    z: Any
    inner: Any
    rng_key: Any
    stats: Any = None


class PsampleKernelState(_KernelState):
    """State of a psample kernel inside NumPyro's ``MCMC``.

    i
        Steps taken (warm-up included), int scalar.
    z
        Unconstrained latent sites (dict), with a leading chain axis under
        ``chain_method="vectorized"`` (NumPyro's ``sample_field``).
    inner
        The sampler's batched states (leading chain axis), or while the algorithm adapts, its
        adaptation carry (which holds the states and the parameters).
    rng_key
        The run key: one key, or under ``chain_method="vectorized"`` the chains' batch of keys
        (NumPyro's convention, which ``MCMC.run`` replaces on a continued run) whose first is the
        run key. Step ``i`` uses ``fold_in(run_key, i)``.
    stats
        ``{name: (chain,) or ()}``: the last step's statistics (``potential_energy`` and the
        sampler's ``Info`` fields in NumPyro's names), each also an attribute of the state
        (``state.potential_energy``), which is how ``MCMC`` collects them.
    """

    __slots__ = ()

    def __getattr__(self, name):
        stats = tuple.__getitem__(self, 4)
        if isinstance(stats, dict) and name in stats:
            return stats[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _batched(tree):
    return jax.tree.map(lambda a: jnp.asarray(a)[None], tree)


def _unbatched(tree):
    return jax.tree.map(lambda a: a[0], tree)


def _states_of(inner, adapting: bool):
    return inner.states if adapting else inner


class PsampleKernel(MCMCKernel):
    """A psample chain algorithm as a NumPyro ``MCMCKernel`` (see the module docstring).

    Parameters
    ----------
    model
        A NumPyro model; or give ``potential_fn`` (then pass ``init_params`` to ``MCMC.run``).
    potential_fn
        ``z -> -log density`` over unconstrained values.
    adapt
        Adapt during NumPyro's warm-up when the algorithm can (default).
    init_strategy
        NumPyro init strategy for the model's initial point.
    **algorithm_kwargs
        Passed to the factory (e.g. ``w=``, ``structure=`` for polar slice).
    """

    sample_field = "z"
    _factory: Callable = None

    def __init__(self, model=None, potential_fn=None, *, adapt: bool = True, init_strategy=init_to_uniform,
                 **algorithm_kwargs):
        if (model is None) == (potential_fn is None):
            raise ValueError("pass exactly one of model= or potential_fn=")
        self._model = model
        self._potential_fn = potential_fn
        self._adapt = adapt
        self._init_strategy = init_strategy
        self._algorithm_kwargs = algorithm_kwargs
        self._postprocess = None
        self._sample_fn = None
        self._algorithm = None
        self._adapting = False
        self._num_warmup = 0
        self._vectorized = False
        self._stat_names = self._find_stat_names()

    def _find_stat_names(self) -> tuple:
        """The names in the state's ``stats``, from the sampler traced on a 2-d standard normal."""
        try:
            algorithm = type(self)._factory(lambda z: -0.5 * jnp.sum(z**2), **self._algorithm_kwargs)

            def one_step():
                states = jax.vmap(algorithm.init)(jnp.zeros((1, 2)))
                states, info = jax.vmap(algorithm.step)(jax.random.split(jax.random.key(0), 1), states)
                return _stats(states, info)

            return tuple(jax.eval_shape(one_step))
        except Exception:  # a sampler that needs more than a 2-d position: the potential energy only
            return ("potential_energy",)

    @property
    def default_fields(self):
        return (self.sample_field,) + self._stat_names

    @property
    def model(self):
        return self._model

    @property
    def algorithm(self):
        """The psample algorithm built by the last ``init`` (``None`` before)."""
        return self._algorithm

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess is None:
            return lambda z: z
        return self._postprocess

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs={}):
        vectorized = not is_prng_key(rng_key)
        if self._model is not None:
            info = initialize_model(
                rng_key, self._model, init_strategy=self._init_strategy, model_args=model_args,
                model_kwargs=model_kwargs,
            )
            potential_fn, self._postprocess = info.potential_fn, info.postprocess_fn
            if init_params is None:
                init_params = info.param_info.z
        else:
            if init_params is None:
                raise ValueError("init_params must be given with potential_fn")
            potential_fn = self._potential_fn
        if hasattr(init_params, "z"):  # a numpyro ParamInfo
            init_params = init_params.z

        def logdensity_fn(z):
            return -potential_fn(z)

        algorithm = type(self)._factory(logdensity_fn, **self._algorithm_kwargs)
        positions = init_params if vectorized else _batched(init_params)
        adaptation = getattr(algorithm, "adaptation", None)
        adapting = (
            self._adapt and num_warmup > 0 and provides_adaptation(algorithm)
            and callable(getattr(adaptation, "step", None)) and callable(getattr(adaptation, "init", None))
        )
        if adapting:
            inner = adaptation.init(positions, num_warmup)
        else:
            inner = jax.vmap(algorithm.init)(positions)
        self._algorithm, self._adapting, self._num_warmup, self._vectorized = algorithm, adapting, num_warmup, vectorized
        self._sample_fn = self.sample
        states = _states_of(inner, adapting)
        z = states.position
        stats = self._initial_stats(algorithm, states, vectorized)
        return PsampleKernelState(jnp.asarray(0), z if vectorized else _unbatched(z), inner, rng_key, stats)

    def _initial_stats(self, algorithm, states, vectorized):
        """Statistics of the right shapes before the first step (zeros; ``potential_energy`` exact)."""
        shapes = jax.eval_shape(lambda s: _stats(s, jax.vmap(algorithm.step)(
            jax.random.split(jax.random.key(0), jax.tree.leaves(s.position)[0].shape[0]), s)[1]), states)  # fmt: skip
        stats = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items() if k in self._stat_names}
        if "potential_energy" in stats:
            stats["potential_energy"] = -states.logdensity
        for name in self._stat_names:  # a name the real target's sampler lacks: NaN rather than a KeyError
            stats.setdefault(name, jnp.full(jax.tree.leaves(states.position)[0].shape[:1], jnp.nan))
        return stats if vectorized else _unbatched(stats)

    def sample(self, state, model_args, model_kwargs):
        algorithm, adapting, num_warmup = self._algorithm, self._adapting, self._num_warmup
        i, _, inner, rng_key = state[:4]
        run_key = rng_key[0] if self._vectorized else rng_key
        num_chains = jax.tree.leaves(_states_of(inner, adapting).position)[0].shape[0]

        def draw(carry):
            if adapting:
                sampler = algorithm.with_parameters(carry.parameters)
                states = carry.states
            else:
                sampler, states = algorithm, carry
            keys = jax.random.split(jax.random.fold_in(run_key, i), num_chains)
            states, info = jax.vmap(sampler.step)(keys, states)
            stats = _stats(states, info)
            stats = {k: stats[k] if k in stats else previous[k] for k in previous}
            return (carry._replace(states=states) if adapting else states), stats

        previous = state.stats if self._vectorized else _batched(state.stats)
        if adapting:
            def warm(carry):
                key = jax.random.fold_in(adaptation_key(run_key), i)
                carry = algorithm.adaptation.step(key, carry, num_warmup)[0]
                logdensity = getattr(carry.states, "logdensity", None)
                stats = dict(previous)
                if logdensity is not None and "potential_energy" in stats:
                    stats["potential_energy"] = -logdensity
                return carry, stats

            inner, stats = jax.lax.cond(i < num_warmup, warm, draw, inner)
        else:
            inner, stats = draw(inner)
        z = _states_of(inner, adapting).position
        unbatch = (lambda t: t) if self._vectorized else _unbatched
        return PsampleKernelState(i + 1, unbatch(z), inner, rng_key, unbatch(stats))

    def get_diagnostics_str(self, state):
        return ""


def kernel(factory: Callable, *, name: str | None = None) -> type:
    """Wrap a psample chain algorithm as a NumPyro ``MCMCKernel`` class.

    Parameters
    ----------
    factory
        ``factory(logdensity_fn, **kwargs) -> SamplingAlgorithm`` (a psample or BlackJAX
        top-level constructor, e.g. ``psample.polar_slice``).
    name
        Class name (default derived from the factory).

    Returns
    -------
    type
        A :class:`PsampleKernel` subclass: ``Kernel(model, **kwargs)`` or
        ``Kernel(potential_fn=..., **kwargs)``.

    Examples
    --------
    .. code::

        Slice = psample.numpyro.kernel(psample.polar_slice)
        mcmc = numpyro.infer.MCMC(Slice(model, w=2.0), num_warmup=500, num_samples=1000)
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable (logdensity_fn, **kwargs) -> algorithm, got {factory!r}")
    label = name or "".join(part.title() for part in getattr(factory, "__name__", "Psample").split("_")) + "Kernel"
    namespace = {"_factory": staticmethod(factory), "__doc__": PsampleKernel.__doc__, "__module__": __name__}
    return type(label, (PsampleKernel,), namespace)


#: Gibbsian polar slice sampling as a NumPyro kernel, adapting during warm-up:
#: ``PolarSlice(model, w=..., structure=..., adapt=True)``.
PolarSlice = kernel(polar_slice, name="PolarSlice")
