"""Checkpoints: every chunk of a run appended to a Zarr store, locked, checksummed, resumable.

The store is an ArviZ DataTree (``xarray.open_datatree(path, engine="zarr")`` opens it):
``posterior``, ``sample_stats`` and ``observables`` grow along ``draw`` with every chunk.
Two more groups make it resumable: ``psample_raw`` (the draws as the sampler produced them,
so a resumed :class:`~psample.Trace` holds the whole run) and ``psample_state`` (the batched
sampler state, the key, the run plan and the bookkeeping below).

What makes it safe:

* **Created before any work.** ``sample(..., checkpoint=path)`` creates the store and writes
  the initial state at once, so an unwritable path fails before sampling and a run interrupted
  in its first chunk still leaves a store ``resume`` can start from.
* **Locked.** The writer holds an exclusive ``flock`` on the store's directory for the whole
  run (and ``resume`` while it runs), so two processes can never write one store.
* **Crash-consistent.** A chunk's draws are appended first; the state is then written to the
  slot not in use (``state_a``/``state_b``); the attributes naming the live slot, the draws
  done and the checksums are written last. A crash at any point leaves the previous attributes
  in force, and loading cuts every group back to the draws they record.
* **Checksummed.** The attributes keep a CRC-32 of every array written: the draws (per array,
  and per chunk over all arrays), the state, the adapted parameters and the random key; the
  ``chain`` and ``draw`` coordinates must read back as ``0, 1, ...``. Zarr reads a deleted
  chunk file back as fill values and fails to decode a truncated one; loading recomputes the
  checksums and refuses a store that does not match (or cannot be read) with
  :class:`~psample.errors.CheckpointError`, naming the arrays and the first damaged chunk.

Several processes (``jax.distributed``)
---------------------------------------
A run of several processes writes **one store, by process 0**, holding every chain. Why one
store and not one per process with a manifest:

* the chunk driver already gathers every chunk's draws on every process (the returned
  :class:`~psample.Trace` holds them whole), so process 0 has what the store needs; only the
  sampler state is gathered in addition, once per chunk;
* the store stays one ordinary ArviZ DataTree, opened like a one-process store, with the same
  checksums, commit point and crash consistency, and no manifest that could disagree with its
  parts;
* only process 0 needs the path: the others never open it (no shared file system is needed),
  and on resume process 0 reads and verifies the store and sends it to the others
  (:func:`psample.runtime.sharding.broadcast_object`).

The cost: the state crosses the network once per chunk, and process 0's disk takes every write.

**Lock.** Process 0 alone takes the ``flock``, so the sibling processes of one run are never
refused, and a second, independent run (another ``jax.distributed`` job, or one process) is:
its process 0 finds the store locked and every one of its processes raises the same
:class:`~psample.errors.CheckpointError`. Every write is agreed: when process 0 cannot write
(disk full, say), every process raises, none waits for it.

**Topology.** The store records the number of processes and of devices per process; a resume
must run in the same topology (same count of processes and of devices per process), and is
refused otherwise with an error naming both. A one-process store written before this record
existed reads as one process.

**Ctrl-C** stops every process after the same chunk (:mod:`psample.runtime.driver`), so the
store holds exactly the chunks every process reports.
"""

from __future__ import annotations

import base64
import fcntl
import os
import pickle
import uuid
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from psample.errors import CheckpointError
from psample.runtime import sharding
from psample.runtime.datatree import named_leaves, sample_stats_arrays
from psample.runtime.trace import constrained

__all__ = ["CheckpointWriter", "load_checkpoint", "Checkpoint"]

_STATE = "psample_state"
_RAW = "psample_raw"
_DATA_GROUPS = ("posterior", "sample_stats", "observables", _RAW)


def _encode(obj) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode("ascii")


def _decode(text: str):
    return pickle.loads(base64.b64decode(text.encode("ascii")))


def _crc(array, running: int = 0) -> int:
    return zlib.crc32(np.ascontiguousarray(array).tobytes(), running)


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
        dims = ("chain", "draw") + tuple(f"{name}_dim_{i}" for i in range(value.ndim - 2))
        variables[name] = (dims, value)
    num_chains, length = next(iter(arrays.values())).shape[:2]
    coords = {"chain": np.arange(num_chains), "draw": np.arange(first_draw, first_draw + length)}
    return xr.Dataset(variables, coords=coords)


#: Bytes per Zarr chunk file along ``draw``. The store's chunk shape is fixed when a group is
#: created, independently of the run's chunk lengths (a first one-draw chunk would otherwise
#: make every later draw a file of its own).
_ZARR_CHUNK_BYTES = 4 * 2**20


def _encoding(arrays: dict) -> dict:
    """Zarr chunk shapes for a new group: whole chains and trailing axes, ~4 MiB along draws."""
    encoding = {}
    for name, value in arrays.items():
        per_draw = max(1, value.nbytes // max(1, value.shape[1]))
        draws = max(1, _ZARR_CHUNK_BYTES // per_draw)
        encoding[name] = {"chunks": (value.shape[0], draws) + value.shape[2:]}
    encoding["draw"] = {"chunks": (_ZARR_CHUNK_BYTES // 8,)}
    return encoding


def _chunk_groups(records, target) -> dict[str, dict[str, np.ndarray]]:
    """The arrays one chunk adds to each group (the chunk as a Trace names them as
    :meth:`Trace.to_datatree` does)."""
    posterior = constrained(target, records.position) if target is not None else named_leaves(records.position)
    groups = {
        "posterior": posterior,
        "sample_stats": sample_stats_arrays(records.info, records.logdensity),
        "observables": records.observables,
        _RAW: {f"leaf_{i}": leaf for i, leaf in enumerate(jax.tree.leaves(records))},
    }
    return {g: {k: np.asarray(v) for k, v in arrays.items()} for g, arrays in groups.items() if arrays}


def _write_array(group, name: str, data: np.ndarray) -> None:
    dims = [f"{name}_dim_{i}" for i in range(data.ndim)]
    group.create_array(name, data=data, overwrite=True, dimension_names=dims)


def _consolidate(path: Path) -> None:
    """Consolidated metadata lets xarray / ArviZ open the store quickly and without warnings."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path))


@dataclass
class Checkpoint:
    """What a checkpoint holds, loaded back: enough to rebuild the trace and continue."""

    path: Path
    states: object
    rng_key: object
    plan: object
    draws_done: int
    steps_done: int
    records: object  # a psample.runtime.trace.Draw of host arrays, or None before the first draw
    observable_names: list
    has_target: bool
    target_name: str | None
    run_id: str
    placement: dict | None
    parameters: object = None  # the adapted parameters (psample.runtime.warmup), or None
    adapting: bool = False  # ``states`` is a warm-up adaptation's carry (psample.runtime.warmup.warmup)
    topology: dict | None = None  # psample.runtime.sharding.topology() of the run; None: one process


def _first_process(action, path):
    """``action()`` where the store is (process 0; :func:`psample.runtime.sharding.on_first_process`)."""
    return sharding.on_first_process(action, f"could not write the checkpoint {str(path)!r}")


class CheckpointWriter:
    """Writes one run's chunks to a Zarr store it holds locked (see the module docstring)."""

    def __init__(self, path: Path, lock_fd: int | None, writes: bool = True):
        self.path = Path(path)
        self._lock_fd = lock_fd
        #: False on processes other than 0 of a multi-process run: they gather, process 0 writes.
        self.writes = writes
        self.steps_done = 0
        self.target = None  # names the ArviZ groups' sites; set by create, and by resume

    # -- opening

    @classmethod
    def _locked(cls, path: Path, *, create: bool) -> "CheckpointWriter":
        try:
            if create:
                path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            if create:
                raise CheckpointError(f"cannot create the checkpoint at {str(path)!r}: {exc.strerror or exc}") from None
            raise CheckpointError(f"checkpoint path {str(path)!r} cannot be opened: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointError(
                f"checkpoint {str(path)!r} is in use by another process (a run or a resume is writing "
                "it); wait for it to finish or choose another path"
            ) from None
        return cls(path, fd)

    @classmethod
    def create(cls, path, *, plan, states, rng_key, target, placement=None, observable_names=()) -> "CheckpointWriter":
        """Create and lock a new store at ``path`` and save the initial state in it.

        Under ``jax.distributed`` every process calls this; process 0 creates and locks the
        store, the others get a writer that only takes part in the gathers.
        """
        path = Path(path)
        states = sharding.to_host(states)  # several processes: every process takes part
        writer = _first_process(
            lambda: cls._create_here(path, plan, states, rng_key, target, placement, observable_names), path
        )
        if writer is None:
            writer = cls(path, None, writes=False)
            writer.target = target
        return writer

    @classmethod
    def _create_here(cls, path: Path, plan, states, rng_key, target, placement, observable_names) -> "CheckpointWriter":
        import zarr

        if path.is_file():
            raise CheckpointError(f"checkpoint path {str(path)!r} is a file: choose a directory path (run.zarr)")
        writer = cls._locked(path, create=True)
        try:
            if any(path.iterdir()):
                raise CheckpointError(
                    f"checkpoint path {str(path)!r} already holds another run or other files; continue it "
                    "with psample.resume(path, algorithm) or choose a new path"
                )
            root = zarr.open_group(str(path), mode="a")
            state_group = root.require_group(_STATE)
            key_data, key_impl = _key_to_host(rng_key)
            _write_array(state_group, "rng_key", key_data)
            state_group.attrs.update(
                {
                    "rng_key_crc": _crc(key_data),
                    "run_id": uuid.uuid4().hex,
                    "plan": _encode(plan),
                    "state_treedef": _encode(jax.tree.structure(states)),
                    "key_impl": key_impl,
                    "has_target": target is not None,
                    "target_name": None if target is None else str(target.name),
                    "observables": sorted(observable_names),
                    "placement": placement,
                    "topology": sharding.topology(),
                    "checksums": {},
                    "chunk_lengths": [],
                    "chunk_crcs": [],
                }
            )
            writer.target = target
            writer._store_state(jax.tree.leaves(states), steps_done=0, draws_done=0)
        except OSError as exc:
            writer.close()
            raise CheckpointError(f"cannot write the checkpoint at {str(path)!r}: {exc.strerror or exc}") from None
        except BaseException:
            writer.close()
            raise
        return writer

    @classmethod
    def reopen(cls, path) -> "CheckpointWriter":
        """Lock an existing store to continue it (used by :func:`psample.resume`).

        Under ``jax.distributed`` every process calls this; process 0 locks the store.
        """
        path = Path(path)

        def here():
            if not path.is_dir():
                raise CheckpointError(f"checkpoint path {str(path)!r} does not exist")
            return cls._locked(path, create=False)

        writer = _first_process(here, path)
        return writer if writer is not None else cls(path, None, writes=False)

    def close(self) -> None:
        """Release the lock (the store stays as written)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __del__(self):
        self.close()

    def remove(self) -> None:
        """Release the lock and delete the store (a run refused right after :meth:`create`)."""
        import shutil

        self.close()
        if self.writes:
            shutil.rmtree(self.path)

    def _agreed(self, action) -> None:
        """``action()`` where the store is written (process 0), agreed by every process."""
        _first_process(lambda: action() if self.writes else None, self.path)

    # -- writing

    def _state_group(self):
        import zarr

        return zarr.open_group(str(self.path), mode="a", use_consolidated=False)[_STATE]

    def _write_state(self, states, *, steps_done: int, draws_done: int, extra_attrs=None) -> None:
        """Write ``states`` to the free slot, then flip the attributes to it (the commit point)."""
        leaves = jax.tree.leaves(sharding.to_host(states))  # every process takes part in the gather
        self._agreed(lambda: self._store_state(leaves, steps_done=steps_done, draws_done=draws_done,
                                               extra_attrs=extra_attrs))  # fmt: skip

    def _store_state(self, leaves, *, steps_done: int, draws_done: int, extra_attrs=None) -> None:
        """:meth:`_write_state` of host ``leaves``, on the process that writes."""
        group = self._state_group()
        attrs = dict(group.attrs)
        slot = "b" if attrs.get("state_slot") == "a" else "a"
        leaves = [np.asarray(leaf) for leaf in leaves]
        for i, leaf in enumerate(leaves):
            _write_array(group, f"state_{slot}_{i}", leaf)
        attrs.update(extra_attrs or {})
        attrs.update(
            {
                "state_slot": slot,
                "num_state_leaves": len(leaves),
                "state_crcs": [_crc(leaf) for leaf in leaves],
                "steps_done": int(steps_done),
                "draws_done": int(draws_done),
            }
        )
        group.attrs.update(attrs)
        self.steps_done = int(steps_done)
        _consolidate(self.path)

    def save_adapted(self, states, parameters, steps_done: int) -> None:
        """Save the adapted ``parameters`` (a pytree of arrays) and the states after warm-up.

        They go to the state group like the state (with checksums), and to the store's
        attributes as :meth:`Trace.to_datatree` names them.
        """
        from psample.runtime.warmup import parameters_to_attrs

        parameters = sharding.to_host(parameters)
        state_leaves = jax.tree.leaves(sharding.to_host(states))
        treedef = _encode(jax.tree.structure(states))
        self._agreed(lambda: self._store_adapted(parameters, state_leaves, treedef, steps_done, parameters_to_attrs))

    def _store_adapted(self, parameters, state_leaves, state_treedef, steps_done, parameters_to_attrs) -> None:
        group = self._state_group()
        leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(parameters)]
        for i, leaf in enumerate(leaves):
            _write_array(group, f"parameter_{i}", leaf)
        group.attrs.update(
            {
                "parameters_treedef": _encode(jax.tree.structure(parameters)),
                "parameter_crcs": [_crc(leaf) for leaf in leaves],
            }
        )
        import zarr

        zarr.open_group(str(self.path), mode="a", use_consolidated=False).attrs.update(parameters_to_attrs(parameters))
        self._store_state(
            state_leaves, steps_done=steps_done, draws_done=0,
            extra_attrs={"state_treedef": state_treedef, "adapting": False},
        )  # fmt: skip

    def save_adaptation(self, carry, steps_done: int) -> None:
        """Save a warm-up adaptation's ``carry`` after ``steps_done`` steps in place of the state.

        It takes the state's slots, checksums and commit point; :meth:`load` returns it as
        ``states`` with ``adapting=True`` until :meth:`save_adapted` replaces it.
        """
        self._write_state(
            carry, steps_done=steps_done, draws_done=0,
            extra_attrs={"state_treedef": _encode(jax.tree.structure(carry)), "adapting": True},
        )  # fmt: skip

    def save_warmup(self, states, steps_done: int) -> None:
        """Save the state after ``steps_done`` warm-up steps."""
        self._write_state(states, steps_done=steps_done, draws_done=0)

    def append(self, records, states, draws_done: int) -> None:
        """Append one chunk of ``records`` (a Draw with leaves ``(chain, draw, ...)``, on the host
        and whole on every process), then save the state."""
        state_leaves = jax.tree.leaves(sharding.to_host(states))
        self._agreed(lambda: self._store_chunk(records, state_leaves, draws_done))

    def _store_chunk(self, records, state_leaves, draws_done: int) -> None:
        attrs = dict(self._state_group().attrs)
        plan = _decode(attrs["plan"])
        length = jax.tree.leaves(records.position)[0].shape[1]
        first = draws_done - length
        mode_kwargs = {"mode": "a"} if first == 0 else {"mode": "a", "append_dim": "draw"}
        checksums = dict(attrs["checksums"])
        written = {}
        for group, arrays in _chunk_groups(records, self.target).items():
            encoding = {} if first else _encoding(arrays)
            _dataset(arrays, first).to_zarr(
                self.path, group=group, consolidated=False, encoding=encoding, **mode_kwargs
            )
            written.update({f"{group}/{name}": value for name, value in arrays.items()})
        chunk_crc = 0
        for key in sorted(written):
            checksums[key] = _crc(written[key], checksums.get(key, 0))
            chunk_crc = _crc(written[key], chunk_crc)
        extra = {
            "checksums": checksums,
            "chunk_lengths": list(attrs["chunk_lengths"]) + [int(length)],
            "chunk_crcs": list(attrs["chunk_crcs"]) + [chunk_crc],
        }
        if "records_treedef" not in attrs:
            extra["records_treedef"] = _encode(jax.tree.structure(records))
        self._store_state(state_leaves, steps_done=plan.step_index(draws_done), draws_done=draws_done, extra_attrs=extra)

    def extend(self, plan, placement) -> None:
        """Record a resumed run's new plan and device placement."""
        self._agreed(
            lambda: self._state_group().attrs.update(
                {"plan": _encode(plan), "placement": placement, "topology": sharding.topology()}
            )
        )

    def load_everywhere(self) -> Checkpoint:
        """:meth:`load` on process 0, sent to every process (in one process: :meth:`load`).

        A collective under ``jax.distributed``: process 0 reads and verifies the store, the
        others receive it (they need not see the path).
        """
        if not sharding.is_multiprocess():
            return self.load()

        def portable():
            saved = self.load()
            from dataclasses import replace

            return replace(saved, states=jax.device_get(saved.states), rng_key=_key_to_host(saved.rng_key))

        saved = sharding.broadcast_object(_first_process(portable, self.path))
        from dataclasses import replace

        return replace(saved, states=jax.tree.map(jnp.asarray, saved.states), rng_key=_key_from_host(*saved.rng_key))

    # -- reading

    def load(self) -> Checkpoint:
        """Read the store back, cut to its last committed state, after verifying the checksums."""
        import zarr

        path = self.path
        try:
            # Real metadata: consolidated metadata may predate a chunk cut short by a crash.
            root = zarr.open_group(str(path), mode="a", use_consolidated=False)
            attrs = dict(root[_STATE].attrs)
            draws_done, steps_done = int(attrs["draws_done"]), int(attrs["steps_done"])
        except (KeyError, FileNotFoundError, ValueError) as exc:
            raise CheckpointError(f"{str(path)!r} is not a psample checkpoint (no saved state): {exc}") from None
        self.steps_done = steps_done
        arrays = _read_cut_back(root, draws_done, path)
        _verify(arrays, attrs, draws_done, path)
        _consolidate(path)

        state_group = root[_STATE]
        slot = attrs["state_slot"]
        leaves = [
            _read_verified(state_group, f"state_{slot}_{i}", crc, path, "the saved sampler state")
            for i, crc in enumerate(attrs["state_crcs"])
        ]
        if len(leaves) != attrs["num_state_leaves"]:
            raise CheckpointError(f"checkpoint {str(path)!r} is damaged: its state has no checksum for every array")
        states = jax.tree.unflatten(_decode(attrs["state_treedef"]), [jnp.asarray(x) for x in leaves])
        parameters = None
        if attrs.get("parameters_treedef"):
            values = [
                _read_verified(state_group, f"parameter_{i}", crc, path, "the adapted parameters")
                for i, crc in enumerate(attrs["parameter_crcs"])
            ]
            parameters = jax.tree.unflatten(_decode(attrs["parameters_treedef"]), values)
        # Stores written before the key had a checksum are read as they are.
        key_data = _read_verified(state_group, "rng_key", attrs.get("rng_key_crc"), path, "the run's random key")
        records = None
        if draws_done:
            raw = sorted((k for k in arrays if k.startswith(_RAW + "/")), key=lambda k: int(k.rsplit("_", 1)[1]))
            records = jax.tree.unflatten(_decode(attrs["records_treedef"]), [arrays[k] for k in raw])
        return Checkpoint(
            path=path,
            states=states,
            rng_key=_key_from_host(key_data, attrs["key_impl"]),
            plan=_decode(attrs["plan"]),
            draws_done=draws_done,
            steps_done=steps_done,
            records=records,
            observable_names=list(attrs.get("observables", [])),
            has_target=bool(attrs["has_target"]),
            target_name=attrs.get("target_name"),
            run_id=str(attrs["run_id"]),
            placement=attrs.get("placement"),
            parameters=parameters,
            adapting=bool(attrs.get("adapting", False)),
            topology=attrs.get("topology"),
        )


def _read_verified(group, name: str, crc, path: Path, what: str) -> np.ndarray:
    """Read array ``name`` of ``group`` and compare it with its checksum ``crc`` (``None``: none kept).

    Zarr reads a missing chunk file back as fill values and fails to decode a truncated or
    altered one; both are refused here as damage, naming ``what``.
    """
    try:
        value = np.asarray(group[name][...])
    except Exception as exc:  # a missing array's metadata, or a chunk file that fails to decode
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: {what} (psample_state/{name}) cannot be read "
            f"({type(exc).__name__}: {exc}); it cannot be resumed"
        ) from None
    if crc is not None and _crc(value) != crc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: {what} (psample_state/{name}) differs from what was "
            "written (a chunk file is missing, truncated or altered); it cannot be resumed"
        )
    return value


def _read_cut_back(root, draws_done: int, path: Path) -> dict[str, np.ndarray]:
    """Every data array, cut back to ``draws_done`` draws (a crash may have left more)."""
    out = {}
    for group in _DATA_GROUPS:
        if group not in root:
            continue
        for name, array in root[group].arrays():
            if name == "draw" and array.shape[0] > draws_done:
                array.resize((draws_done,))
            elif name != "chain" and array.ndim >= 2 and array.shape[1] > draws_done:
                array.resize((array.shape[0], draws_done) + array.shape[2:])
            try:
                value = np.asarray(array[...])
            except Exception as exc:  # a truncated chunk file fails to decode
                raise CheckpointError(
                    f"checkpoint {str(path)!r} is damaged: {group}/{name} cannot be read ({exc}); "
                    "a chunk file is truncated"
                ) from None
            if name in ("chain", "draw"):
                # The coordinates are 0, 1, ... by construction: that is their checksum.
                if not np.array_equal(value, np.arange(value.shape[0])):
                    raise CheckpointError(
                        f"checkpoint {str(path)!r} is damaged: the {name!r} coordinate of {group} is not "
                        f"0, 1, ..., {value.shape[0] - 1} (a chunk file is missing or altered)"
                    )
                continue
            out[f"{group}/{name}"] = value
    return out


def _verify(arrays: dict, attrs: dict, draws_done: int, path: Path) -> None:
    """Compare the arrays with the checksums written with them; name what does not match."""
    expected = attrs["checksums"]
    missing = sorted(k for k in expected if k not in arrays)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is damaged: arrays {missing} are missing")
    lengths = list(attrs["chunk_lengths"])
    # A crash after the data but before the attributes leaves the attributes of the previous chunk.
    if sum(lengths) != draws_done:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is inconsistent: its chunks hold {sum(lengths)} draws, its state {draws_done}"
        )
    bounds = np.cumsum([0] + lengths)
    running = {k: 0 for k in expected}
    first_bad_chunk = None
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        chunk_crc = 0
        for key in sorted(expected):
            piece = arrays[key][:, a:b]
            running[key] = _crc(piece, running[key])
            chunk_crc = _crc(piece, chunk_crc)
        if first_bad_chunk is None and chunk_crc != attrs["chunk_crcs"][j]:
            first_bad_chunk = j
    bad = sorted(k for k in expected if running[k] != expected[k])
    if bad or first_bad_chunk is not None:
        j = first_bad_chunk if first_bad_chunk is not None else 0
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: {', '.join(bad)} differ from what was written, from "
            f"draw {int(bounds[j])} on (chunk {j + 1} of {len(lengths)}): a chunk file is missing or "
            "truncated, and zarr would read it back as fill values. The store cannot be resumed faithfully"
        )


def load_checkpoint(path) -> Checkpoint:
    """Read (and verify) a checkpoint written by :class:`CheckpointWriter`, cut back to its last state."""
    writer = CheckpointWriter.reopen(path)
    try:
        return writer.load()
    finally:
        writer.close()
