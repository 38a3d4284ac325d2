"""The chunk driver: the one Python loop every run goes through.

MINIMAL stand-in written on branch issue-10 so the particle runner can be built and tested
before the lead's driver (issue 9) lands; it has the same signature and contract and is
replaced by the lead's module on merge.
"""

from __future__ import annotations

import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DriveResult", "drive", "concatenate"]

#: Host memory one chunk of records may take, in bytes.
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: Wall time aimed at per chunk when a bar is shown, in seconds.
TARGET_CHUNK_SECONDS = 2.0


class DriveResult(NamedTuple):
    carry: Any
    records: list
    num_done: int
    interrupted: bool


def concatenate(records: list, axis: int = 0):
    """Concatenate the chunks' host records along ``axis``."""
    if len(records) == 1:
        return records[0]
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=axis), *records)


def drive(run_chunk, carry, start: int, stop: int | None, *, chunk_length: int | None = None,
          bytes_per_step: int = 0, axis: int = 0, until=None, progress: bool = True,
          desc: str = "sampling", unit: str = "step", on_chunk=None, postfix=None) -> DriveResult:
    from tqdm.auto import tqdm

    from psample.errors import RunError

    shown = progress and sys.stderr.isatty()
    length = chunk_length
    if length is None:
        length = max(1, DEFAULT_CHUNK_BYTES // bytes_per_step) if bytes_per_step else 64
        if stop is None:
            length = min(length, 64)
        if stop is not None:
            length = min(length, stop - start)
        if shown:
            length = min(length, 1)  # grown after the first chunk is timed
    total = None if stop is None else stop - start
    bar = tqdm(total=total, desc=desc, unit=unit, disable=not shown, leave=False)
    records, done, interrupted, timed = [], 0, False, not shown or chunk_length is not None
    try:
        while True:
            if stop is not None and start + done >= stop:
                break
            n = length if stop is None else min(length, stop - start - done)
            indices = jnp.arange(start + done, start + done + n, dtype=jnp.int32)
            t0 = time.perf_counter()
            try:
                new_carry, rec = run_chunk(carry, indices)
                rec = jax.device_get(rec)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                partial = DriveResult(carry, records, done, False)
                raise RunError(f"the run failed after {done} steps: {exc}", partial) from exc
            carry, done = new_carry, done + n
            records.append(rec)
            if not timed:
                timed = True
                per_step = (time.perf_counter() - t0) / n
                length = max(1, int(TARGET_CHUNK_SECONDS / max(per_step, 1e-9)))
                if bytes_per_step:
                    length = min(length, max(1, DEFAULT_CHUNK_BYTES // bytes_per_step))
            bar.update(n)
            if postfix is not None:
                bar.set_postfix(postfix(rec))
            if on_chunk is not None:
                on_chunk(carry, rec, done)
            if stop is None and until is not None and bool(until(carry)):
                break
    except KeyboardInterrupt:
        interrupted = True
        if not records:
            bar.close()
            raise
    finally:
        bar.close()
    return DriveResult(carry, records, done, interrupted)
