"""Checkpoints: every chunk of a run appended to a Zarr store, resumable bit for bit.

The store is an ArviZ DataTree (``xarray.open_datatree(path, engine="zarr")`` opens it):
``posterior``, ``sample_stats`` and ``observables`` grow along ``draw`` with every chunk.
Two more groups make it resumable: ``psample_raw`` (the draws as the sampler produced
them, so a resumed :class:`~psample.Trace` holds the whole run) and ``psample_state`` (the
batched sampler state, the key and the run plan). The state is written last, so a crash
while a chunk is written leaves the previous state in force; on resume every group is cut
back to the number of draws that state records.
"""

from __future__ import annotations

import base64
import pickle
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import CheckpointError
from psample.trace import Trace

__all__ = ["CheckpointWriter", "load_checkpoint", "Checkpoint"]

_STATE = "psample_state"
_RAW = "psample_raw"
_ARVIZ_GROUPS = ("posterior", "sample_stats", "observables")


def _encode(obj) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode("ascii")


def _decode(text: str):
    return pickle.loads(base64.b64decode(text.encode("ascii")))


def _key_to_host(rng_key):
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(rng_key)), str(jax.random.key_impl(rng_key))
    return np.asarray(rng_key), None


def _key_from_host(data, impl):
    data = jnp.asarray(data)
    return jax.random.wrap_key_data(data, impl=impl) if impl else data


def _dataset(arrays: dict, first_draw: int):
    import xarray as xr

    variables = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        dims = ("chain", "draw") + tuple(f"{name}_dim_{i}" for i in range(value.ndim - 2))
        variables[name] = (dims, value)
    num_chains, length = next(iter(arrays.values())).shape[:2]
    coords = {"chain": np.arange(num_chains), "draw": np.arange(first_draw, first_draw + length)}
    return xr.Dataset(variables, coords=coords)


@dataclass
class Checkpoint:
    """What a checkpoint holds, loaded back: enough to rebuild the trace and continue."""

    path: Path
    states: object
    rng_key: object
    plan: object
    draws_done: int
    records: tuple
    has_target: bool
    run_id: str
    parameters: object = None


class CheckpointWriter:
    """Appends chunks of a run to a Zarr store (see the module docstring)."""

    def __init__(self, path: Path, run_id: str):
        self.path = Path(path)
        self.run_id = run_id

    @classmethod
    def create(cls, path) -> "CheckpointWriter":
        """Start a new checkpoint at ``path``, which must not hold anything yet."""
        path = Path(path)
        if path.exists() and (path.is_file() or any(path.iterdir())):
            raise CheckpointError(
                f"checkpoint path {str(path)!r} already holds another run or other files; continue it "
                "with psample.resume(path, algorithm) or choose a new path"
            )
        return cls(path, uuid.uuid4().hex)

    @classmethod
    def reopen(cls, path, run_id: str) -> "CheckpointWriter":
        """Continue writing the checkpoint at ``path`` (used by :func:`psample.resume`)."""
        return cls(Path(path), run_id)

    def append(self, records, states, rng_key, plan, draws_done: int, target, parameters=None) -> None:
        """Append one chunk of ``records`` (chain, draw, ...) and save the state after it."""
        import zarr

        positions, info, logdensity, observables = records
        length = jax.tree.leaves(positions)[0].shape[1]
        first = draws_done - length
        mode_kwargs = {"mode": "a"} if first == 0 else {"mode": "a", "append_dim": "draw"}
        # The chunk as a Trace names its groups exactly as Trace.to_datatree() does.
        chunk = Trace(positions, info, logdensity, dict(observables), final_state=None, target=target)
        groups = {
            "posterior": chunk.posterior(),
            "sample_stats": chunk.sample_stats(),
            "observables": chunk.observables,
        }
        raw_leaves = jax.tree.leaves(records)
        groups[_RAW] = {f"leaf_{i}": leaf for i, leaf in enumerate(raw_leaves)}
        for group, arrays in groups.items():
            if arrays:
                _dataset(arrays, first).to_zarr(self.path, group=group, consolidated=False, **mode_kwargs)

        root = zarr.open_group(str(self.path), mode="a")
        state_group = root.require_group(_STATE)
        leaves = jax.device_get(jax.tree.leaves(states))
        for i, leaf in enumerate(leaves):
            _write_array(state_group, f"leaf_{i}", np.asarray(leaf))
        key_data, key_impl = _key_to_host(rng_key)
        _write_array(state_group, "rng_key", key_data)
        # Adapted parameters (psample/adaptation.py): a pytree, stored like the state.
        parameter_leaves = jax.device_get(jax.tree.leaves(parameters))
        for i, leaf in enumerate(parameter_leaves):
            _write_array(state_group, f"parameter_{i}", np.asarray(leaf))
        state_group.attrs.update(
            {
                "run_id": self.run_id,
                "draws_done": int(draws_done),
                "num_state_leaves": len(leaves),
                "state_treedef": _encode(jax.tree.structure(states)),
                "records_treedef": _encode(jax.tree.structure(records)),
                "key_impl": key_impl,
                "plan": _encode(plan),
                "has_target": target is not None,
                "parameters_treedef": None if parameters is None else _encode(jax.tree.structure(parameters)),
                "num_parameter_leaves": len(parameter_leaves),
            }
        )
        if parameters is not None:  # the DataTree's attributes, as Trace.to_datatree() sets them
            from psample.adaptation import parameters_to_attrs

            root.attrs.update(parameters_to_attrs(parameters))
        # Consolidated metadata lets xarray / ArviZ open the store quickly and without warnings.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(str(self.path))


def _write_array(group, name: str, data: np.ndarray) -> None:
    dims = [f"{name}_dim_{i}" for i in range(data.ndim)]
    group.create_array(name, data=data, overwrite=True, dimension_names=dims)


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :class:`CheckpointWriter`, cut back to its last saved state."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
    try:
        # Read the real metadata: consolidated metadata may predate a chunk cut short by a crash.
        root = zarr.open_group(str(path), mode="a", use_consolidated=False)
        state_group = root[_STATE]
        attrs = dict(state_group.attrs)
        draws_done = int(attrs["draws_done"])
    except (KeyError, FileNotFoundError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a psample checkpoint (no saved state): {exc}") from None

    # A crash between appending draws and saving the state leaves extra draws: drop them.
    for group in (*_ARVIZ_GROUPS, _RAW):
        if group not in root:
            continue
        for name, array in root[group].arrays():
            if name == "draw" and array.shape[0] > draws_done:
                array.resize((draws_done,))
            elif array.ndim >= 2 and array.shape[1] > draws_done:
                array.resize((array.shape[0], draws_done) + array.shape[2:])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))

    leaves = [np.asarray(state_group[f"leaf_{i}"][...]) for i in range(attrs["num_state_leaves"])]
    states = jax.tree.unflatten(_decode(attrs["state_treedef"]), [jnp.asarray(x) for x in leaves])
    raw = root[_RAW]
    raw_names = sorted((name for name, _ in raw.arrays() if name.startswith("leaf_")), key=lambda s: int(s[5:]))
    records = jax.tree.unflatten(
        _decode(attrs["records_treedef"]), [np.asarray(raw[name][...]) for name in raw_names]
    )
    rng_key = _key_from_host(state_group["rng_key"][...], attrs["key_impl"])
    parameters = None
    if attrs.get("parameters_treedef"):
        parameter_leaves = [np.asarray(state_group[f"parameter_{i}"][...]) for i in range(attrs["num_parameter_leaves"])]
        parameters = jax.tree.unflatten(_decode(attrs["parameters_treedef"]), parameter_leaves)
    return Checkpoint(
        path=path,
        states=states,
        rng_key=rng_key,
        plan=_decode(attrs["plan"]),
        draws_done=draws_done,
        records=records,
        has_target=bool(attrs["has_target"]),
        run_id=str(attrs["run_id"]),
        parameters=parameters,
    )
