"""What ArviZ reads of a psample result: the groups of :class:`psample.Trace` and
:class:`psample.ParticleResult`, which *are* ``xarray.DataTree`` s.

Every ``az.*`` function takes a ``DataTree`` (``arviz_base.convert_to_datatree`` returns one as
it is; it has no registry for other types), so psample's results are ``DataTree`` subclasses,
as PyMC's ``sample`` returns one: ``az.summary(trace)``, ``az.loo(trace)``,
``az.plot_trace_dist(trace)`` read the groups built here once, when the result is made.

Contract
--------
- ``posterior``: draws ``(chain, draw, ...)``, constrained NumPyro sites (deterministic ones
  included) named and dimensioned as :func:`arviz.from_numpyro` names them: a site inside
  ``numpyro.plate("school", 8)`` has the dim ``school`` (``arviz_base.io_numpyro.infer_dims``),
  coordinates ``0..n-1`` unless the target's ``coords`` give others.
- ``sample_stats``: one table, :data:`SAMPLE_STATS_NAMES`, renames the sampler's ``Info``
  fields to ArviZ's names where the algorithm has the quantity (``diverging``,
  ``acceptance_rate``, ``n_steps``, ``tree_depth``, ``energy``; the state's log-density is
  ``lp``); the per-step trajectory internals (:data:`TRAJECTORY_FIELDS`: momenta, proposals,
  trajectory end states, and any field that is itself a pytree of arrays) are left out. Every
  other field keeps its name (polar slice's ``num_evals``, ``num_nonfinite``, ...).
- ``log_likelihood``: pointwise (one value per observation, event dims summed as NumPyro's
  ``log_prob`` does), for targets that carry a ``pointwise_loglikelihood_fn`` (NumPyro models
  with observed sites), evaluated in jitted, vmapped batches of draws.
- ``observed_data`` and ``constant_data``: the target's, without sample dims.

References
----------
.. [1] ArviZ's InferenceData schema, https://python.arviz.org/en/latest/schema/schema.html
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np
import xarray as xr

from psample.errors import user_stacklevel

__all__ = [
    "RunTree",
    "SAMPLE_STATS_NAMES",
    "TRAJECTORY_FIELDS",
    "sample_stats_arrays",
    "named_leaves",
    "Group",
    "build_groups",
    "batched_map",
]

#: Sampler ``Info`` field -> ArviZ's ``sample_stats`` name (BlackJAX's HMC/NUTS/MALA names on
#: the left). Fields not listed keep their own name.
SAMPLE_STATS_NAMES = {
    "is_divergent": "diverging",
    "acceptance_rate": "acceptance_rate",
    "acceptance_probability": "acceptance_rate",
    "num_integration_steps": "n_steps",
    "num_trajectory_expansions": "tree_depth",
    "energy": "energy",
    "logdensity": "lp",
}

#: ``Info`` fields that are per-step trajectory internals, never put in ``sample_stats``
#: (BlackJAX's HMC/NUTS momentum, proposal and trajectory end states, elliptical slice's
#: momentum). A field holding a pytree (a NamedTuple of arrays) is left out too.
TRAJECTORY_FIELDS = frozenset({
    "momentum", "proposal", "trajectory_leftmost_state", "trajectory_rightmost_state",
})


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


def sample_stats_arrays(info, logdensity=None) -> dict[str, np.ndarray]:
    """The ``sample_stats`` of a chain run: ``info``'s fields in ArviZ's names, plus ``lp``.

    Parameters
    ----------
    info : NamedTuple or None
        The sampler's ``Info`` at each kept draw, leaves ``(chain, draw, ...)``.
    logdensity : array or None
        ``(chain, draw)`` log-density of each draw (the state's), recorded as ``lp``.

    Returns
    -------
    dict
        ``{name: (chain, draw, ...)}``: fields renamed by :data:`SAMPLE_STATS_NAMES`, those of
        :data:`TRAJECTORY_FIELDS` and pytree-valued ones left out. A bare array ``info`` is
        called ``info``.
    """
    stats = {}
    if info is not None:
        fields = info._asdict() if hasattr(info, "_asdict") else (info if isinstance(info, dict) else None)
        if fields is None:
            stats.update(named_leaves(info, default="info"))
        else:
            for name, value in fields.items():
                if name in TRAJECTORY_FIELDS or value is None:
                    continue
                if not hasattr(value, "shape") or isinstance(value, tuple):
                    continue  # a pytree of arrays (a NamedTuple state): trajectory internals
                stats[SAMPLE_STATS_NAMES.get(name, name)] = np.asarray(value)
    if logdensity is not None:
        stats["lp"] = np.asarray(logdensity)
    return stats


class Group(xr.DataTree):
    """A group of a psample result (``trace.posterior``, ``trace.sample_stats``).

    It is an ordinary ``xarray.DataTree`` node; calling it (``trace.posterior()``, psample
    0.1's method) still works for one release, with a ``DeprecationWarning``.
    """

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        owner = self.parent
        path = f"{type(owner).__name__.lower()}.{self.name}" if owner is not None else str(self.name)
        warnings.warn(
            f"{path}() is deprecated: {path} is now the DataTree group ArviZ reads; use "
            f"{path}['name'].values (or {{k: v.values for k, v in {path}.data_vars.items()}}) "
            "(removed in the next release)",
            DeprecationWarning,
            stacklevel=user_stacklevel(),
        )
        legacy = getattr(owner, "_legacy_group", None)
        if legacy is not None:
            return legacy(self.name, *args, **kwargs)
        return {k: v.values for k, v in self.data_vars.items()}


def batched_map(fn, tree, lead: tuple, *, owner=None, key=None, batch_sizes=(64, 4096), jit=True):
    """``fn`` (one draw -> pytree) over the ``lead`` axes of ``tree``, vmapped (and jitted).

    Draws go through ``jit(vmap(fn))`` (``vmap(fn)`` with ``jit=False``: the values ``fn`` gives
    op by op) in batches whose size is a power of two between ``batch_sizes`` (the last one
    padded with copies of its last draw, which are dropped), so one compiled function serves
    runs of any length. It is cached under ``(owner, key)`` (:mod:`psample.runtime.compiled`)
    when ``owner`` is given.

    Returns
    -------
    Pytree of NumPy arrays with leading axes ``lead``.
    """
    from psample.runtime import compiled

    leaves, treedef = jax.tree.flatten(tree)
    leaves = [np.asarray(leaf) for leaf in leaves]
    total = int(np.prod(lead))
    flat = [leaf.reshape((total,) + leaf.shape[len(lead):]) for leaf in leaves]
    smallest, largest = batch_sizes
    batch = min(largest, max(smallest, 1 << max(0, total - 1).bit_length()))
    build = lambda: jax.jit(jax.vmap(fn)) if jit else jax.vmap(fn)  # noqa: E731
    mapped = build() if owner is None else compiled.cached(owner, (key, batch), build)
    parts = []
    for start in range(0, total, batch):  # host loop over batches of draws, not over draws
        stop = min(start + batch, total)
        chunk = [leaf[start:stop] for leaf in flat]
        if stop - start < batch:
            chunk = [np.concatenate([x, np.repeat(x[-1:], batch - (stop - start), axis=0)]) for x in chunk]
        out = mapped(jax.tree.unflatten(treedef, chunk))
        parts.append(jax.tree.map(lambda v, n=stop - start: np.asarray(v)[:n], out))
    joined = jax.tree.map(lambda *xs: np.concatenate(xs), *parts)
    return jax.tree.map(lambda v: v.reshape(tuple(lead) + v.shape[1:]), joined)


def _dims_for(arrays: dict, dims: dict | None, sample_ndim: int) -> dict:
    """``dims`` restricted to the variables of ``arrays`` whose rank they fit (ArviZ names the rest)."""
    out = {}
    for name, value in arrays.items():
        names = list((dims or {}).get(name, ()))
        ndim = np.ndim(value) - sample_ndim
        if names and len(names) <= ndim:
            out[name] = names
    return out


def build_groups(groups: dict[str, dict], *, dims=None, coords=None, skip_event_dims=("log_likelihood",)) -> dict[str, xr.Dataset]:
    """``{group: Dataset}`` from ``{group: {name: array}}``, named as ArviZ's converters name them.

    Groups ending in ``_data`` have no sample dims; the others ``(chain, draw)``. ``dims`` and
    ``coords`` are as in :func:`arviz.from_dict`.
    """
    from arviz_base import dict_to_dataset

    out = {}
    for group, arrays in groups.items():
        if not arrays:
            continue
        sample_dims = [] if group.endswith("_data") else ["chain", "draw"]
        group_dims = _dims_for(arrays, dims, len(sample_dims))
        used = {d for names in group_dims.values() for d in names} | set(sample_dims)
        group_coords = {k: v for k, v in (coords or {}).items() if k in used}
        out[group] = dict_to_dataset(
            arrays, sample_dims=sample_dims, dims=group_dims, coords=group_coords,
            skip_event_dims=group in skip_event_dims, inference_library=None, check_conventions=False,
        )  # fmt: skip
    return out


def attach(tree: xr.DataTree, datasets: dict[str, Any]) -> None:
    """Make every ``{name: Dataset}`` a :class:`Group` child of ``tree``."""
    tree.children = {**tree.children, **{name: Group(ds) for name, ds in datasets.items()}}


def picklable_state(obj, state, names=("target", "postprocess_fn")):
    """``obj.__getstate__()``'s ``state`` with the functions in ``names`` that cannot be pickled
    (closures of a NumPyro target) set to ``None``: a pickled result keeps its groups and its
    record, not those functions."""
    import pickle

    slots = state[1] if isinstance(state, tuple) else None
    if slots is None:
        return state
    for name in names:
        if slots.get(name) is not None:
            try:
                pickle.dumps(slots[name])
            except Exception:  # a local function: not picklable by design
                slots[name] = None
    return state


class RunTree(xr.DataTree):
    """The base of psample's results: an ``xarray.DataTree`` whose subclasses keep the run's
    record (positions, info, final state, ...) as ``__slots__`` attributes beside the groups.

    Copies (``copy``, ``deepcopy``) keep the record; selections (``isel``, ``sel``, made through
    :meth:`from_dict`) give a plain ``DataTree``, since a selection no longer matches the record;
    pickling keeps the record except the functions that cannot be pickled.
    """

    __slots__ = ()

    def _copy_node(self, inherit: bool, deep: bool = False, memo=None):
        new = super()._copy_node(inherit=inherit, deep=deep, memo=memo)
        for cls in type(self).__mro__:
            if cls is RunTree:
                break
            for name in cls.__dict__.get("__slots__", ()):
                object.__setattr__(new, name, getattr(self, name, None))
        return new

    @classmethod
    def from_dict(cls, *args, **kwargs) -> xr.DataTree:
        """``xarray.DataTree.from_dict``: a plain ``DataTree`` (selections such as ``isel`` and
        ``sel`` are made through it, and have no run record)."""
        return xr.DataTree.from_dict(*args, **kwargs)

    def __getstate__(self):
        return picklable_state(self, super().__getstate__())

