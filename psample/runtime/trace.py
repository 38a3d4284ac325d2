"""Traces: the draws of a run, as the ArviZ ``xarray.DataTree`` they are.

A :class:`Trace` is an ``xarray.DataTree`` (as PyMC's ``sample`` returns one): every ``az.*``
function takes it as it is (``az.summary(trace)``, ``az.loo(trace)``, ``az.plot_trace_dist(trace)``).
Its groups are built once, when the run ends (:mod:`psample.runtime.datatree` says what each
holds); the run's raw record stays in attributes: host (NumPy) arrays with leading axes
``(chain, draw)``. It knows nothing of the sampler that produced it: ``positions`` is whatever
pytree the sampler's state carries as its position, ``info`` whatever NamedTuple its ``step``
returns.

Limits: ``trace.copy()`` and pickling keep the run record (pickling drops a target's local
functions, ``trace.target`` is then ``None``); selections (``trace.isel(draw=...)``,
``trace.sel(...)``) are plain ``xarray.DataTree`` s, without a record that would no longer match
them; ``trace.to_datatree()`` gives the groups in a plain ``xarray.DataTree``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
import xarray as xr

from psample.runtime.datatree import RunTree, attach, batched_map, build_groups, named_leaves, sample_stats_arrays

__all__ = ["Trace", "Draw", "named_leaves", "constrained", "NONFINITE_FIELD"]

#: The ``Info`` field in which a sampler counts the log-density evaluations of a step that
#: returned NaN or +inf (psample's convention; ``PolarSliceInfo`` has it). The runner warns when it is
#: positive anywhere, and it lands in ``sample_stats`` like every other info field.
NONFINITE_FIELD = "num_nonfinite"


#: The batch sizes :func:`constrained` maps a target's ``postprocess_fn`` over: powers of two
#: from the first to the second. A run's draws are processed in batches of these sizes only
#: (the last one padded), so the operations JAX compiles for them are reused from run to run
#: instead of being compiled again for every new number of chains x draws.
POSTPROCESS_BATCH = (64, 4096)


def constrained(target, positions) -> dict[str, np.ndarray]:
    """``target.postprocess(positions)`` as NumPy arrays, at a bounded compilation cost.

    Parameters
    ----------
    target : psample.Target
        Its ``postprocess_fn`` maps one unconstrained position to ``{site: value}``.
    positions : pytree
        Leaves ``(chain, draw, ...)``.

    Returns
    -------
    dict
        ``{site: (chain, draw, *site_shape)}``, the values ``target.postprocess`` gives: the
        function is applied draw by draw (``jax.vmap``) to the same inputs, in batches of
        :data:`POSTPROCESS_BATCH` sizes padded with copies of the last draw, which are dropped.
    """
    lead = jax.tree.leaves(positions)[0].shape[:2]
    if getattr(target, "postprocess_fn", None) is None or 0 in lead:
        return {k: np.asarray(v) for k, v in target.postprocess(positions).items()}
    return batched_map(target.postprocess_fn, positions, lead, batch_sizes=POSTPROCESS_BATCH, jit=False)


class Draw(NamedTuple):
    """What the runner records at each kept draw; leaves have leading axes ``(chain, draw)``.

    position
        The state's ``position`` (the draw).
    info
        The sampler's ``Info`` of the step that made the draw (the last step of a thinned block).
    logdensity
        The state's ``logdensity``, or ``None`` if the state has none.
    observables
        ``{name: value}`` of the run's observables.
    """

    position: Any
    info: Any
    logdensity: Any
    observables: dict


class Trace(RunTree):
    """The result of :func:`psample.sample`: an ArviZ ``xarray.DataTree`` with the run's record.

    Its groups are built once, when the trace is made (:mod:`psample.runtime.datatree`):

    posterior
        ``(chain, draw, ...)`` draws: the target's constrained sites (deterministic ones
        included), with the dims and coordinates of its NumPyro plates and its ``dims``/``coords``;
        without a target the position's leaves (``x`` for a bare array).
    sample_stats
        The sampler's ``Info`` in ArviZ's names (``lp``, ``diverging``, ``acceptance_rate``,
        ``n_steps``, ``tree_depth``, ``energy`` where the algorithm has them; its own fields such
        as ``num_evals``, ``num_nonfinite`` otherwise); no trajectory internals.
    log_likelihood
        Pointwise log-likelihood of each observation (targets from :func:`psample.from_numpyro`
        with observed sites), unless ``log_likelihood=False``.
    observed_data, constant_data
        The target's data (no sample dims).
    observables
        ``(chain, draw, ...)`` values of the run's observables, if any.

    Attributes
    ----------
    positions
        Pytree of unconstrained draws, each leaf of shape ``(chain, draw, ...)``.
    info
        The sampler's ``Info`` NamedTuple at each kept draw (the last step of each thinned
        block), leaves ``(chain, draw, ...)``.
    logdensity
        ``(chain, draw)`` log-density of each draw where the sampler's state records one, else
        ``None``.
    observables
        The ``observables`` group (``trace.observables["name"]``), or ``{}`` without observables.
    final_state
        The batched sampler state after the last completed draw (leading chain axis); pass it
        back to continue sampling.
    target
        The :class:`psample.Target` used to name and constrain draws, or ``None``.
    interrupted
        ``True`` if the run stopped early (Ctrl-C); the draws kept are those completed.
    num_steps
        Sampler steps taken so far, warm-up included.
    parameters
        The parameters the warm-up adaptation chose (``{"w", "center", "scale"}`` for polar
        slice), or ``None`` if the run did not adapt (:mod:`psample.runtime.warmup`).

    Parameters
    ----------
    log_likelihood
        Build the ``log_likelihood`` group when the target can (default ``True``: ``az.loo`` and
        ``az.compare`` work at once). It costs one evaluation of the observed sites per draw,
        jitted and vmapped; ``False`` skips it. A ``Trace()`` with no arguments is an empty node
        (what ``copy`` starts from).
    """

    #: The run's record, as the constructor takes it.
    FIELDS = ("positions", "info", "logdensity", "observables", "final_state", "target", "interrupted",
              "num_steps", "num_warmup", "thin", "parameters")
    __slots__ = ("positions", "info", "logdensity", "_raw_observables", "final_state", "target", "interrupted",
                 "num_steps", "num_warmup", "thin", "parameters")

    def __init__(
        self,
        positions: Any = None,
        info: Any = None,
        logdensity: np.ndarray | None = None,
        observables: dict | None = None,
        final_state: Any = None,
        target: Any = None,
        interrupted: bool = False,
        num_steps: int = 0,
        num_warmup: int = 0,
        thin: int = 1,
        parameters: Any = None,
        *,
        log_likelihood: bool = True,
        dataset=None,
        children=None,
        name=None,
    ):
        super().__init__(dataset=dataset, children=children, name=name)
        self.positions, self.info, self.logdensity = positions, info, logdensity
        self._raw_observables = dict(observables or {})
        self.final_state, self.target, self.interrupted = final_state, target, interrupted
        self.num_steps, self.num_warmup, self.thin, self.parameters = num_steps, num_warmup, thin, parameters
        if positions is not None:
            self._build(log_likelihood)

    def _build(self, log_likelihood: bool) -> None:
        from psample.runtime.warmup import parameters_to_attrs

        target = self.target
        posterior = self._posterior_arrays()
        groups = {
            "posterior": posterior,
            "sample_stats": sample_stats_arrays(self.info, self.logdensity),
        }
        pointwise = getattr(target, "pointwise_loglikelihood_fn", None)
        if log_likelihood and pointwise is not None and self.num_chains * self.num_draws > 0:
            groups["log_likelihood"] = batched_map(
                pointwise, posterior, (self.num_chains, self.num_draws), owner=pointwise, key="log_likelihood"
            )  # fmt: skip
        groups["observables"] = {k: np.asarray(v) for k, v in self._raw_observables.items()}
        groups["observed_data"] = dict(getattr(target, "observed_data", None) or {})
        groups["constant_data"] = dict(getattr(target, "constant_data", None) or {})
        datasets = build_groups(groups, dims=getattr(target, "dims", None), coords=getattr(target, "coords", None))
        attach(self, datasets)
        self.attrs.update(parameters_to_attrs(self.parameters))

    def _posterior_arrays(self) -> dict[str, np.ndarray]:
        if self.target is not None:
            return constrained(self.target, self.positions)
        return named_leaves(self.positions)

    @classmethod
    def from_draws(cls, draws: Draw, **kwargs) -> "Trace":
        """A trace holding ``draws`` (a :class:`Draw` of host arrays); ``kwargs`` set the other fields."""
        return cls(
            positions=draws.position,
            info=draws.info,
            logdensity=draws.logdensity,
            observables=dict(draws.observables),
            **kwargs,
        )

    @property
    def observables(self):
        """The ``observables`` group (``{}`` when the run had none)."""
        return self["observables"] if "observables" in self.children else {}

    @property
    def num_chains(self) -> int:
        return int(jax.tree.leaves(self.positions)[0].shape[0])

    @property
    def num_draws(self) -> int:
        return int(jax.tree.leaves(self.positions)[0].shape[1])

    @property
    def nonfinite_steps(self) -> np.ndarray | None:
        """``(chain,)`` number of recorded steps with at least one NaN or +inf log-density evaluation.

        ``None`` when the sampler's ``Info`` has no ``num_nonfinite`` field.
        """
        counts = getattr(self.info, NONFINITE_FIELD, None)
        if counts is None:
            return None
        return (np.asarray(counts) > 0).sum(axis=1)

    def _legacy_group(self, name: str) -> dict[str, np.ndarray]:
        """What psample 0.1's ``trace.posterior()`` / ``trace.sample_stats()`` returned."""
        return {k: v.values for k, v in self[name].data_vars.items()}

    def to_datatree(self) -> xr.DataTree:
        """The same groups in a plain ``xarray.DataTree`` (no run record attached).

        Returns
        -------
        xarray.DataTree
            ``posterior``, ``sample_stats`` and, where they apply, ``log_likelihood``,
            ``observed_data``, ``constant_data``, ``observables``; every sampled variable has
            dims ``(chain, draw, ...)``.
        """
        tree = xr.DataTree.from_dict({f"/{name}": node.to_dataset() for name, node in self.children.items()})
        tree.attrs.update(self.attrs)
        return tree

    def __repr__(self) -> str:
        if self.positions is None:
            return super().__repr__()
        state = ", interrupted" if self.interrupted else ""
        return f"Trace(chains={self.num_chains}, draws={self.num_draws}{state}; groups: {', '.join(self.children)})"
