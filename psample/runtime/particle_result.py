"""The result of :func:`psample.run_particles`: weighted populations and what is estimated from them.

:class:`ParticleResult` holds the final populations with their weights and the evidence
estimates, with weighted estimates and their Monte Carlo errors (on the constrained scale for
NumPyro targets), equal-weight resampling and the ArviZ DataTree, laid out as PyMC's
``sample_smc`` (chain = independent replicate, draws at equal weights).

References
----------
.. [1] Anthony Lee and Nick Whiteley, "Variance estimation in the particle filter",
   Biometrika 105(3), 609-625, 2018. arXiv:1509.00394.
.. [2] Hock Peng Chan and Tze Leung Lai, "A general theory of particle filters in hidden
   Markov models and some applications", Annals of Statistics 41(6), 2877-2904, 2013.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from psample.runtime import compiled
from psample.base import resampling_fn
from psample.errors import InvalidTuningError, UnreliableErrorWarning, check_positive_int
from psample.runtime.datatree import RunTree, attach, named_leaves

__all__ = ["ParticleResult"]


class ParticleResult(RunTree):
    """The result of :func:`run_particles`: an ArviZ ``xarray.DataTree`` of the final weighted
    populations and their history, with the weighted estimates and their errors.

    ArviZ ignores weights, so the groups it reads hold equal-weight draws: ``posterior`` is each
    replicate's population resampled deterministically from the run (:meth:`equal_weight_draws`
    with :attr:`draws_key`, a key derived from the run's ``rng_key``), ``chain`` = replicate;
    the weights, ``log_Z`` and the step history are in their own groups. The layout is
    :meth:`to_datatree`'s (PyMC's ``sample_smc``'s), which says what ArviZ's ESS and R-hat mean
    on these draws. A result without a :attr:`draws_key` has no ``posterior`` group.

    Attributes
    ----------
    particles
        Pytree of the final particles, leaves ``(replicate, particle, ...)`` (unconstrained).
    log_weights
        ``(replicate, particle)`` log-weights, normalised per replicate.
    log_Z
        ``(replicate,)`` log-normaliser estimates (the log evidence for tempered SMC).
    info
        The algorithm's info NamedTuple per step, leaves ``(replicate, step, ...)``; entries of
        steps a replicate did not take (it was done earlier) are NaN (floats), 0 or False.
    observables
        The ``observables`` group, ``(chain, step, ...)`` masked like ``info`` (``{}`` without).
    valid
        ``(replicate, step)`` bool: the replicate took that step.
    final_state
        The batched final state (host arrays).
    interrupted
        Ctrl-C stopped the run; everything here is from the last completed step.
    postprocess_fn
        ``particle -> dict`` of constrained named sites (deterministic sites included), or
        ``None``.
    resampling
        The algorithm's resampling scheme by name (``None`` if unknown).
    complete
        ``(replicate,)`` bool: the replicate reached the algorithm's target (tempered SMC:
        temperature 1). An incomplete replicate's particles and ``log_Z`` are those of an
        intermediate distribution.
    draws_key
        Key of the equal-weight draws of the ``posterior`` group (derived from the run's
        ``rng_key``), or ``None``.

    A ``ParticleResult()`` with no arguments is an empty node (what ``copy`` starts from).
    """

    #: The record, as the constructor takes it.
    FIELDS = ("particles", "log_weights", "log_Z", "info", "observables", "valid", "final_state", "interrupted",
              "postprocess_fn", "resampling", "complete", "draws_key")
    __slots__ = ("particles", "log_weights", "log_Z", "info", "_raw_observables", "valid", "final_state",
                 "interrupted", "postprocess_fn", "resampling", "complete", "draws_key")

    def __init__(
        self,
        particles: Any = None,
        log_weights: np.ndarray | None = None,
        log_Z: np.ndarray | None = None,
        info: Any = None,
        observables: dict | None = None,
        valid: np.ndarray | None = None,
        final_state: Any = None,
        interrupted: bool = False,
        postprocess_fn: Callable | None = None,
        resampling: str | None = None,
        complete: np.ndarray | None = None,
        draws_key: Any = None,
        *,
        dataset=None,
        children=None,
        name=None,
    ):
        super().__init__(dataset=dataset, children=children, name=name)
        self.particles, self.log_weights, self.log_Z, self.info = particles, log_weights, log_Z, info
        self._raw_observables = dict(observables or {})
        self.valid, self.final_state, self.interrupted = valid, final_state, interrupted
        self.postprocess_fn, self.resampling, self.complete, self.draws_key = (
            postprocess_fn, resampling, complete, draws_key)  # fmt: skip
        if particles is not None:
            attach(self, self._groups(draws_key))

    @property
    def observables(self):
        """The ``observables`` group (``{}`` when the run had none)."""
        return self["observables"] if "observables" in self.children else {}

    def _legacy_group(self, name: str, particles=None):
        """What psample 0.1's ``result.posterior(particles)`` returned (now :meth:`sites`)."""
        if name == "posterior":
            return self.sites(particles)
        return {k: v.values for k, v in self[name].data_vars.items()}

    @property
    def num_replicates(self) -> int:
        return int(self.log_weights.shape[0])

    @property
    def num_particles(self) -> int:
        return int(self.log_weights.shape[1])

    @property
    def num_steps(self) -> np.ndarray:
        """``(replicate,)`` steps each replicate took."""
        return self.valid.sum(axis=1)

    @property
    def ess(self) -> np.ndarray:
        """``(replicate, step)`` effective sample size after each step's reweighting."""
        return np.asarray(self.info.ess)

    @property
    def log_Z_mean(self) -> float:
        """Mean of the replicates' ``log_Z``."""
        return float(np.mean(self.log_Z))

    @property
    def log_Z_se(self) -> float:
        """Monte Carlo standard error of :attr:`log_Z_mean`.

        With several replicates: their standard deviation over ``sqrt(num_replicates)``. With
        one: :attr:`log_Z_se_single_run` of that replicate. :attr:`log_Z_se_method` says which.
        """
        if self.num_replicates > 1:
            return float(np.std(self.log_Z, ddof=1) / np.sqrt(self.num_replicates))
        self._warn_single_run("log_Z_se")
        return float(self.log_Z_se_single_run[0])

    @property
    def log_Z_se_single_run(self) -> np.ndarray:
        """``(replicate,)``: each replicate's own standard error of its ``log_Z``, from that run alone.

        Lee and Whiteley's (2018) estimator ``V`` of the relative variance ``Var(Z_hat)/Z^2``
        from the population's initial ancestors (Eve indices), reported as
        ``sqrt(log(1 + V))`` (the log-normal approximation); conservative (``V -> 1``) once
        every particle descends from one initial particle. NaN if the algorithm's state has no
        Eve indices.

        The estimator is valid for **multinomial** resampling, the default of
        :func:`psample.smc.tempered_smc` (the SMC tests hold its mean to the spread of
        ``log_Z`` over independent replicates). Systematic, stratified and residual resampling
        give offspring counts closer to their means than multinomial, which the estimator's
        collision correction does not know: it then comes out too small, by a factor that
        depends on the model, and a warning says so.
        """
        relative = self._lee_whiteley()
        if relative is None:
            return np.full(self.num_replicates, np.nan)
        return np.sqrt(np.log1p(np.maximum(relative, 0.0)))

    def _warn_single_run(self, what: str) -> None:
        # Without any resampling the estimator is plain importance sampling's, valid whatever
        # the scheme; the caveat is about the resampling scheme only.
        eve = self._eve()
        if self.resampling != "multinomial" and eve is not None and np.any(eve[1] > 0):
            warnings.warn(
                f"{what} of a single replicate uses a single-run estimator valid for multinomial "
                f"resampling; this run's algorithm resampled with {self.resampling!r}, where the "
                "estimate comes out too small. The spread of independent "
                "replicates is valid for every scheme: run_particles(..., num_replicates >= 2), or "
                "build the algorithm with multinomial resampling.",
                UnreliableErrorWarning,
                stacklevel=3,
            )

    @property
    def log_Z_se_method(self) -> str:
        """``"replicates"``, ``"lee-whiteley"`` (one replicate) or ``"unavailable"``."""
        if self.num_replicates > 1:
            return "replicates"
        return "lee-whiteley" if self._eve() is not None else "unavailable"

    def _eve(self):
        eve = getattr(self.final_state, "eve", None)
        count = getattr(self.final_state, "num_resampled", None)
        if eve is None or count is None:
            return None
        return np.asarray(eve), np.asarray(count)

    def _eve_sums(self, values: np.ndarray) -> np.ndarray:
        """``(replicate, ...)``: ``sum_k (sum_{i: E_i = k} values_i)^2`` per replicate."""
        eve, _ = self._eve()
        out = []
        for r in range(self.num_replicates):  # host-side, once per result
            sums = np.zeros((self.num_particles,) + values.shape[2:])
            np.add.at(sums, eve[r], values[r])
            out.append(np.sum(sums**2, axis=0))
        return np.stack(out)

    def _lee_whiteley(self):
        """``(replicate,)`` estimates of ``Var(Z_hat) / Z^2`` (Lee and Whiteley 2018)."""
        if self._eve() is None:
            return None
        _, count = self._eve()
        n = self.num_particles
        weights = np.exp(self.log_weights)
        same_eve = self._eve_sums(weights)
        return 1.0 - (n / (n - 1.0)) ** (count + 1.0) * (1.0 - same_eve)

    def _apply(self, fn):
        """``fn`` on every particle: leaves ``(replicate, particle, ...)``."""
        return jax.tree.map(np.asarray, self._mapped(fn)(self.particles))

    def _mapped(self, fn):
        """``jit(vmap(vmap(fn)))``; compiled once per target for its post-processing map
        (:mod:`psample.runtime.compiled`), afresh for any other function."""
        build = lambda: jax.jit(jax.vmap(jax.vmap(fn)))
        if fn is not None and fn is self.postprocess_fn:
            return compiled.cached(fn, ("particle_map",), build)
        return build()

    def weighted_mean(self, fn: Callable | None = None, *, unconstrained: bool = False):
        """Weighted mean of ``fn`` over the particles and its Monte Carlo standard error.

        Parameters
        ----------
        fn
            A jittable function of one particle returning an array (or a pytree of arrays).
            With a post-processing map (NumPyro targets) it receives the particle's
            **constrained** sites, deterministic sites included, as ``{site: value}`` (what
            NumPyro's ``get_samples()`` holds): ``lambda s: s["p"]`` is the mean of a Beta
            site ``p`` on its own scale. Default: every site (or the particle itself).
        unconstrained
            Give ``fn`` the unconstrained particle instead (the space the sampler moves in).
            Ignored without a post-processing map, where the two are the same.

        Returns
        -------
        mean, se
            Arrays shaped like ``fn``'s output. ``mean`` averages the replicates' weighted
            means; ``se`` is their standard deviation over ``sqrt(num_replicates)`` with several
            replicates, and with one the Chan and Lai (2013) estimator
            ``sqrt(sum_k (sum_{i: E_i = k} W_i (f_i - mean))^2)`` over the initial ancestors
            ``E_i`` (NaN without Eve indices). Like :attr:`log_Z_se_single_run` it is
            calibrated for multinomial resampling; with other schemes it may come out too
            small (a warning says the estimate assumes multinomial resampling).
        """
        if self.postprocess_fn is not None and not unconstrained:
            post = self.postprocess_fn
            values = self._apply(post if fn is None else (lambda z: fn(post(z))))
        else:
            values = self._apply(fn if fn is not None else (lambda x: x))
        weights = np.exp(self.log_weights)
        if self.num_replicates == 1:
            self._warn_single_run("weighted_mean's standard error")

        def one(v):
            v = np.asarray(v, dtype=np.float64)
            w = weights.reshape(weights.shape + (1,) * (v.ndim - 2))
            # A zero-weight particle contributes nothing, even where its value is NaN.
            means = np.sum(np.where(w > 0, w * v, 0.0), axis=1)
            if self.num_replicates > 1:
                return means.mean(0), means.std(0, ddof=1) / np.sqrt(self.num_replicates)
            if self._eve() is None:
                return means[0], np.full(means.shape[1:], np.nan)
            deviations = np.where(w > 0, w * (v - means[:, None]), 0.0)
            return means[0], np.sqrt(self._eve_sums(deviations)[0])

        pairs = jax.tree.map(one, values)
        is_pair = lambda x: isinstance(x, tuple)
        return (
            jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair),
            jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair),
        )

    def resample(self, rng_key, num: int | None = None, *, resampling: str = "systematic"):
        """Equal-weight draws from each replicate's weighted population.

        Parameters
        ----------
        rng_key
            A JAX PRNG key.
        num
            Draws per replicate (default: the number of particles).
        resampling
            A ``blackjax.smc.resampling`` scheme name.

        Returns
        -------
        Pytree with leaves ``(replicate, num, ...)``.
        """
        num = self.num_particles if num is None else check_positive_int("num", num)
        indices = self._resampled_indices(rng_key, num, resampling)
        rows = np.arange(self.num_replicates)[:, None]
        return jax.tree.map(lambda x: np.asarray(x)[rows, indices], self.particles)

    def _resampled_indices(self, rng_key, num: int, resampling: str = "systematic") -> np.ndarray:
        resample = resampling_fn(resampling)
        keys = jax.random.split(rng_key, self.num_replicates)
        return np.asarray(
            jax.vmap(lambda k, lw: resample(k, jnp.exp(lw), num))(keys, jnp.asarray(self.log_weights))
        )

    def equal_weight_draws(self, rng_key=None):
        """Each replicate's population at equal weights, in random order (the ``posterior`` of
        :meth:`to_datatree`).

        A replicate whose weights are already equal (tempered SMC resamples before its last
        moves) is kept as it is; the others are resampled (systematic) to as many draws as
        particles. The order is then shuffled, so that no draw's position says anything about
        its ancestry.

        Parameters
        ----------
        rng_key
            Key of the resampling and the shuffle; default: :attr:`draws_key`, derived from the
            run's ``rng_key`` (so the draws are reproducible from it).

        Returns
        -------
        Pytree with leaves ``(replicate, particle, ...)`` (unconstrained particles).
        """
        rng_key = self.draws_key if rng_key is None else rng_key
        if rng_key is None:
            raise InvalidTuningError(
                "rng_key: this result holds no draws_key (it was not made by run_particles); pass "
                "rng_key=jax.random.key(...), got rng_key=None"
            )
        resample_key, order_key = jax.random.split(rng_key)
        n = self.num_particles
        indices = self._resampled_indices(resample_key, n)
        uniform = np.ptp(self.log_weights, axis=1) <= 1e-6
        indices = np.where(uniform[:, None], np.arange(n), indices)
        order = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, n))(
            jax.random.split(order_key, self.num_replicates)))  # fmt: skip
        indices = np.take_along_axis(indices, order, axis=1)
        rows = np.arange(self.num_replicates)[:, None]
        return jax.tree.map(lambda x: np.asarray(x)[rows, indices], self.particles)

    def sites(self, particles=None) -> dict[str, np.ndarray]:
        """Particles as ``{site: (replicate, particle, ...)}``, constrained when possible.

        Default: the weighted final populations (:attr:`particles`). psample 0.1 called this
        ``posterior(particles)``; ``result.posterior`` is now the DataTree group.
        """
        particles = self.particles if particles is None else particles
        if self.postprocess_fn is not None:
            out = self._mapped(self.postprocess_fn)(particles)
            return {k: np.asarray(v) for k, v in out.items()}
        if isinstance(particles, dict):
            return {k: np.asarray(v) for k, v in particles.items()}
        return named_leaves(particles)

    def to_datatree(self, *, rng_key=None) -> xr.DataTree:
        """The ArviZ 1.x ``xarray.DataTree`` of the final populations and the step history.

        The layout is PyMC's ``sample_smc``'s, which SMC users know:

        - ``posterior``: each replicate's population **at equal weights**
          (:meth:`equal_weight_draws`: resampled unless already equal, shuffled), dims
          ``chain`` = independent replicate, ``draw``; constrained sites for NumPyro targets.
          ``az.summary`` and the plots read it as they read MCMC draws.
        - ``sample_stats``: ``log_marginal_likelihood`` ``(chain,)``, the replicates' ``log_Z``.
        - ``particles``: the weighted populations themselves, the sites ``(chain, particle,
          ...)`` and ``log_weight`` ``(chain, particle)``.
        - ``particle_steps``: every info field ``(chain, step)`` (``ess``, ``log_Z_increment``,
          ``is_resampled``, ``num_nonfinite``, ...), ``valid``; ``log_Z`` and ``complete``
          ``(chain,)``.
        - ``observables``: ``(chain, step, ...)`` if any.

        What ArviZ's diagnostics mean on these draws: the draws of a replicate are
        exchangeable, not a Markov chain. ESS along ``draw`` sees shuffled draws, so it reports
        about the number of draws (``replicates x particles``), an upper bound that ignores
        resampled copies and shared ancestors: it is **not** the information in the
        population, and the MCSE derived from it is too small. Use :meth:`weighted_mean` (the
        replicates' spread) for Monte Carlo errors. R-hat compares independent replicates: a
        value above 1.01 means that they disagree (a population missed a mode, or stopped
        before its target), which is worth knowing.

        Parameters
        ----------
        rng_key
            Key of the equal-weight draws; default: the result's :attr:`draws_key` (then these
            are the result's own groups, in a plain ``xarray.DataTree``).
        """
        if rng_key is None:
            if self.draws_key is None:
                self.equal_weight_draws()  # raises: no key to draw with
            groups = {name: node.to_dataset() for name, node in self.children.items()}
        else:
            groups = self._groups(rng_key)
        return xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})

    def _groups(self, rng_key) -> dict[str, xr.Dataset]:
        """The groups of :meth:`to_datatree`, with equal-weight draws from ``rng_key`` (none if ``None``)."""
        from arviz_base import dict_to_dataset

        groups = {}
        if rng_key is not None:
            groups["posterior"] = dict_to_dataset(self.sites(self.equal_weight_draws(rng_key)), inference_library=None)
        chains = np.arange(self.num_replicates)
        groups["sample_stats"] = xr.Dataset(
            {"log_marginal_likelihood": (("chain",), self.log_Z)}, coords={"chain": chains})  # fmt: skip
        weighted = {}
        for name, values in self.sites().items():
            values = np.asarray(values)
            dims = ("chain", "particle") + tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
            weighted[name] = (dims, values)
        weighted["log_weight"] = (("chain", "particle"), self.log_weights)
        groups["particles"] = xr.Dataset(weighted, coords={"chain": chains, "particle": np.arange(self.num_particles)})
        steps = {}
        for name, values in named_leaves(self.info, default="info").items():
            dims = ("chain", "step") + tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
            steps[name] = (dims, values)
        steps["valid"] = (("chain", "step"), self.valid)
        steps["log_Z"] = (("chain",), self.log_Z)
        if self.complete is not None:
            steps["complete"] = (("chain",), np.asarray(self.complete))
        coords = {"chain": chains, "step": np.arange(self.valid.shape[1])}
        groups["particle_steps"] = xr.Dataset(steps, coords=coords)
        if self._raw_observables:
            obs = {}
            for name, values in self._raw_observables.items():
                values = np.asarray(values)
                dims = ("chain", "step") + tuple(f"{name}_dim_{i}" for i in range(values.ndim - 2))
                obs[name] = (dims, values)
            groups["observables"] = xr.Dataset(obs, coords=coords)
        return groups

    def plot(self, path) -> None:
        """Write a figure of the ESS (as a fraction of the particles) and of the running log Z
        over the steps, one line per replicate (with a legend), to ``path`` (150 dpi; see
        :func:`psample.runtime.plotting.plot_particle_result`)."""
        from psample.runtime.plotting import plot_particle_result

        plot_particle_result(self, path)

    def __repr__(self) -> str:
        if self.particles is None:
            return super().__repr__()
        state = ", interrupted" if self.interrupted else ""
        if self.complete is not None and not np.all(self.complete):
            state += f", incomplete in {int(np.sum(~np.asarray(self.complete)))} replicate(s)"
        return (
            f"ParticleResult(replicates={self.num_replicates}, particles={self.num_particles}, "
            f"log_Z={self.log_Z_mean:.4f} ± {self.log_Z_se:.4f}{state})"
        )
