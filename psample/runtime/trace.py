"""Traces: the draws of a run, and their conversion to an ArviZ DataTree.

A :class:`Trace` holds host (NumPy) arrays with leading axes ``(chain, draw)``. It knows
nothing of the sampler that produced it: ``positions`` is whatever pytree the sampler's
state carries as its position, ``info`` whatever NamedTuple its ``step`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["Trace", "Draw", "named_leaves", "constrained", "NONFINITE_FIELD"]

#: The ``Info`` field in which a sampler counts the log-density evaluations of a step that
#: returned NaN or +inf (psample's convention; ``PolarSliceInfo`` has it). The runner warns when it is
#: positive anywhere, and it lands in ``sample_stats`` like every other info field.
NONFINITE_FIELD = "num_nonfinite"


def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def named_leaves(tree, default: str = "x") -> dict[str, np.ndarray]:
    """Flatten a pytree into ``{name: leaf}`` with readable names.

    Dict keys and NamedTuple fields become names (nested ones joined by ``.``); a bare array is
    called ``default``.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in leaves:
        name = ".".join(_key_name(p) for p in path) or default
        out[name] = np.asarray(leaf)
    return out


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
    leaves, treedef = jax.tree.flatten(positions)
    leaves = [np.asarray(leaf) for leaf in leaves]
    total = int(np.prod(lead))
    flat = [leaf.reshape((total,) + leaf.shape[2:]) for leaf in leaves]
    smallest, largest = POSTPROCESS_BATCH
    batch = min(largest, max(smallest, 1 << max(0, total - 1).bit_length()))
    mapped = jax.vmap(target.postprocess_fn)
    parts = []
    for start in range(0, total, batch):
        stop = min(start + batch, total)
        chunk = [leaf[start:stop] for leaf in flat]
        if stop - start < batch:  # pad with the last draw, dropped below
            chunk = [np.concatenate([x, np.repeat(x[-1:], batch - (stop - start), axis=0)]) for x in chunk]
        out = mapped(jax.tree.unflatten(treedef, chunk))
        parts.append({k: np.asarray(v)[: stop - start] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]).reshape(lead + parts[0][k].shape[1:]) for k in parts[0]}


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


@dataclass
class Trace:
    """The result of :func:`psample.sample`.

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
        ``{name: (chain, draw, ...)}`` values of the observables evaluated inside the scan.
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
    """

    positions: Any
    info: Any
    logdensity: np.ndarray | None
    observables: dict
    final_state: Any
    target: Any = None
    interrupted: bool = False
    num_steps: int = 0
    num_warmup: int = 0
    thin: int = 1
    parameters: Any = None

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

    def posterior(self) -> dict[str, np.ndarray]:
        """Draws as ``{site: (chain, draw, ...)}``: constrained NumPyro sites when a target is set."""
        if self.target is not None:
            return constrained(self.target, self.positions)
        return named_leaves(self.positions)

    def sample_stats(self) -> dict[str, np.ndarray]:
        """Per-draw sampler statistics, named after the ``Info`` fields (``lp`` = log-density)."""
        stats = named_leaves(self.info, default="info") if self.info is not None else {}
        if self.logdensity is not None:
            stats["lp"] = np.asarray(self.logdensity)
        return stats

    def to_datatree(self):
        """The ArviZ 1.x ``xarray.DataTree``: ``posterior``, ``sample_stats`` and ``observables``.

        Returns
        -------
        xarray.DataTree
            Every variable has dims ``(chain, draw, ...)``.
        """
        import arviz as az

        groups = {"posterior": self.posterior(), "sample_stats": self.sample_stats()}
        if self.observables:
            groups["observables"] = {k: np.asarray(v) for k, v in self.observables.items()}
        from psample.runtime.warmup import parameters_to_attrs

        tree = az.from_dict(groups)
        tree.attrs.update(parameters_to_attrs(self.parameters))
        return tree

    def __repr__(self) -> str:
        state = ", interrupted" if self.interrupted else ""
        return f"Trace(chains={self.num_chains}, draws={self.num_draws}{state})"
