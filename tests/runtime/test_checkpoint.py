"""Checkpoints: Zarr store readable by ArviZ, bit-for-bit resume, crash recovery, errors."""

import dataclasses
from typing import NamedTuple
import subprocess
import sys
import textwrap

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import zarr

import psample
from psample.runtime.checkpoint import load_checkpoint
from psample.errors import CheckpointError


def logdensity(x):
    return -0.5 * jnp.sum(x**2)


OBSERVABLES = {"r2": lambda s: jnp.sum(s.position**2)}


@pytest.fixture(scope="module")
def alg():
    return blackjax.additive_step_random_walk.normal_random_walk(logdensity, 0.8)


@pytest.fixture(scope="module")
def x0():
    return jax.random.normal(jax.random.PRNGKey(1), (3, 2))


def sample(alg, x0, n, **kw):
    return psample.sample(alg, x0, jax.random.PRNGKey(5), n, progress=False, **kw)


@pytest.fixture(scope="module")
def reference(alg, x0):
    return sample(alg, x0, 60, num_warmup=4, thin=2, observables=OBSERVABLES)


@pytest.mark.heavy
def test_store_opens_as_arviz_datatree(alg, x0, reference, tmp_path):
    path = tmp_path / "run.zarr"
    trace = sample(alg, x0, 60, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=10, checkpoint=path)
    np.testing.assert_array_equal(trace.positions, reference.positions)
    tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(tree["posterior"]["x"].values, reference.positions)
    np.testing.assert_array_equal(tree["observables"]["r2"].values, reference.observables["r2"])
    np.testing.assert_array_equal(tree["sample_stats"]["lp"].values, reference.logdensity)
    summary = psample.diagnostics.summary(tree)
    assert len(summary) == 2


def test_resume_is_bit_for_bit(alg, x0, reference, tmp_path):
    path = tmp_path / "run.zarr"
    first = sample(alg, x0, 20, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=8, checkpoint=path)
    assert first.num_draws == 20
    resumed = psample.resume(path, alg, 40, observables=OBSERVABLES, progress=False)
    assert resumed.num_draws == 60
    np.testing.assert_array_equal(resumed.positions, reference.positions)
    np.testing.assert_array_equal(resumed.observables["r2"], reference.observables["r2"])
    np.testing.assert_array_equal(resumed.info.is_accepted, reference.info.is_accepted)
    tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(tree["posterior"]["x"].values, reference.positions)


def test_interrupted_run_resumes_to_the_requested_length(alg, x0, reference, tmp_path, ctrl_c_after):
    path = tmp_path / "run.zarr"
    ctrl_c_after(3)  # the warm-up, then two chunks of draws
    trace = sample(alg, x0, 60, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=10, checkpoint=path)
    assert trace.interrupted and trace.num_draws == 20
    resumed = psample.resume(path, alg, observables=OBSERVABLES, progress=False)  # the remaining 40
    np.testing.assert_array_equal(resumed.positions, reference.positions)


def test_crash_while_writing_a_chunk_loses_only_that_chunk(alg, x0, reference, tmp_path):
    path = tmp_path / "run.zarr"
    sample(alg, x0, 20, num_warmup=4, thin=2, observables=OBSERVABLES, chunk_size=10, checkpoint=path)
    # Simulate a crash after draws were appended but before the state was saved.
    junk = xr.Dataset(
        {"x": (("chain", "draw", "x_dim_0"), np.full((3, 5, 2), 99.0))},
        coords={"chain": np.arange(3), "draw": np.arange(20, 25)},
    )
    junk.to_zarr(path, group="posterior", mode="a", append_dim="draw", consolidated=False)
    resumed = psample.resume(path, alg, 40, observables=OBSERVABLES, progress=False)
    np.testing.assert_array_equal(resumed.positions, reference.positions)
    tree = xr.open_datatree(path, engine="zarr", consolidated=False)
    np.testing.assert_array_equal(tree["posterior"]["x"].values, reference.positions)


def test_path_holding_another_run_is_refused(alg, x0, tmp_path):
    path = tmp_path / "run.zarr"
    sample(alg, x0, 5, checkpoint=path)
    with pytest.raises(CheckpointError, match="already holds another run"):
        sample(alg, x0, 5, checkpoint=path)


def test_resume_errors(alg, x0, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        psample.resume(tmp_path / "missing.zarr", alg)
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(CheckpointError, match="not a psample checkpoint"):
        psample.resume(tmp_path / "other.zarr", alg)
    path = tmp_path / "run.zarr"
    sample(alg, x0, 5, observables=OBSERVABLES, checkpoint=path)
    with pytest.raises(CheckpointError, match="observables"):
        psample.resume(path, alg, 5)
    mala = blackjax.mala(logdensity, 0.1)
    with pytest.raises(CheckpointError, match="does not match this algorithm"):
        psample.resume(path, mala, 5, observables=OBSERVABLES)
    with pytest.raises(psample.errors.InvalidTuningError, match="already holds all 5 draws"):
        psample.resume(path, alg, observables=OBSERVABLES)


def test_target_runs_store_constrained_sites_and_need_the_target(tmp_path):
    import numpyro
    import numpyro.distributions as dist

    def model():
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))

    target = psample.from_numpyro(model)
    alg = blackjax.additive_step_random_walk.normal_random_walk(target.logdensity_fn, 0.5)
    x0 = target.initial_positions(jax.random.PRNGKey(0), 2)
    path = tmp_path / "run.zarr"
    trace = psample.sample(alg, x0, jax.random.PRNGKey(1), 10, target=target, checkpoint=path, progress=False)
    tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_allclose(tree["posterior"]["scale"].values, np.exp(trace.positions["scale"]), rtol=1e-12)
    with pytest.raises(CheckpointError, match="pass target="):
        psample.resume(path, alg, 5)


@pytest.mark.heavy
def test_resume_with_another_target_names_both(tmp_path):
    import numpyro
    import numpyro.distributions as dist

    def scale_model():
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))

    def location_model():
        numpyro.sample("loc", dist.Normal(0.0, 1.0), sample_shape=(3,))

    target = psample.from_numpyro(scale_model)
    alg = blackjax.additive_step_random_walk.normal_random_walk(target.logdensity_fn, 0.5)
    x0 = target.initial_positions(jax.random.PRNGKey(0), 2)
    path = tmp_path / "run.zarr"
    psample.sample(alg, x0, jax.random.PRNGKey(1), 10, target=target, checkpoint=path, progress=False)
    with pytest.raises(CheckpointError, match="'scale_model', resume got target 'location_model'"):
        psample.resume(path, alg, 5, target=psample.from_numpyro(location_model), progress=False)
    renamed = dataclasses.replace(psample.from_numpyro(location_model), name="scale_model")
    with pytest.raises(CheckpointError, match="do not match target"):
        psample.resume(path, alg, 5, target=renamed, progress=False)


# ----------------------------------------------------------------------------- safety (issue 9)


def test_ctrl_c_leaves_the_checkpoint_holding_exactly_the_returned_draws(alg, x0, tmp_path, ctrl_c_after):
    path = tmp_path / "run.zarr"
    ctrl_c_after(3)  # the warm-up, then two chunks of draws
    trace = sample(alg, x0, 60, num_warmup=4, thin=2, chunk_size=10, checkpoint=path)
    saved = load_checkpoint(path)
    assert trace.interrupted and saved.draws_done == trace.num_draws == 20
    np.testing.assert_array_equal(saved.records.position, trace.positions)
    assert xr.open_datatree(path, engine="zarr")["posterior"].sizes["draw"] == 20


def test_the_store_exists_and_resumes_before_the_first_chunk(alg, x0, reference, tmp_path):
    """The store is created with the initial state, so a run stopped in its first chunk resumes."""
    from psample.runtime.checkpoint import CheckpointWriter
    from psample.runtime.plan import RunPlan

    path = tmp_path / "run.zarr"
    states = jax.vmap(alg.init)(x0)
    plan = RunPlan(3, 4, 2, 60, 0)
    CheckpointWriter.create(path, plan=plan, states=states, rng_key=jax.random.PRNGKey(5), target=None,
                            observable_names=list(OBSERVABLES)).close()
    resumed = psample.resume(path, alg, observables=OBSERVABLES, progress=False, chunk_size=10)
    np.testing.assert_array_equal(resumed.positions, reference.positions)


@pytest.mark.parametrize("where", ["proc", "under_a_file"])
def test_unwritable_checkpoint_path_fails_before_sampling(alg, x0, tmp_path, where):
    path = "/proc/psample-run.zarr" if where == "proc" else tmp_path / "file" / "run.zarr"
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(CheckpointError, match="cannot create the checkpoint"):
        sample(alg, x0, 10**7, checkpoint=path)  # would run for minutes if it started


def test_a_store_in_use_is_locked(alg, x0, tmp_path):
    from psample.runtime.checkpoint import CheckpointWriter
    from psample.runtime.plan import RunPlan

    path = tmp_path / "run.zarr"
    states = jax.vmap(alg.init)(x0)
    writer = CheckpointWriter.create(path, plan=RunPlan(3, 0, 1, 10, 0), states=states,
                                     rng_key=jax.random.PRNGKey(5), target=None)
    with pytest.raises(CheckpointError, match="in use by another process"):
        psample.resume(path, alg, progress=False)
    with pytest.raises(CheckpointError, match="in use by another process"):
        sample(alg, x0, 5, checkpoint=path)
    writer.close()
    assert psample.resume(path, alg, progress=False).num_draws == 10


@pytest.mark.heavy
def test_a_second_process_cannot_write_the_same_store(alg, x0, tmp_path):
    """Another process holds the store (as a running sample would): this one is refused."""
    path = tmp_path / "run.zarr"
    script = textwrap.dedent(
        f"""
        import sys, time, jax
        jax.config.update("jax_enable_x64", True)
        import blackjax, jax.numpy as jnp
        from psample.runtime.checkpoint import CheckpointWriter
        from psample.runtime.plan import RunPlan
        alg = blackjax.additive_step_random_walk.normal_random_walk(lambda x: -0.5 * jnp.sum(x**2), 0.8)
        states = jax.vmap(alg.init)(jnp.ones((3, 2)))
        w = CheckpointWriter.create({str(path)!r}, plan=RunPlan(3, 0, 1, 10, 0), states=states,
                                    rng_key=jax.random.PRNGKey(0), target=None)
        print("locked", flush=True)
        sys.stdin.readline()
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match="in use by another process"):
            psample.resume(path, alg, progress=False)
    finally:
        holder.communicate("\n", timeout=60)
    assert psample.resume(path, alg, progress=False).num_draws == 10


@pytest.mark.heavy
@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_chunk_file_is_refused_and_named(alg, x0, tmp_path, damage):
    path = tmp_path / "run.zarr"
    sample(alg, x0, 40, chunk_size=10, observables=OBSERVABLES, checkpoint=path)
    chunk_files = sorted(p for p in (path / "posterior" / "x").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert chunk_files
    if damage == "delete":
        chunk_files[-1].unlink()
    else:
        chunk_files[-1].write_bytes(chunk_files[-1].read_bytes()[:5])
    with pytest.raises(CheckpointError, match=r"damaged: .*posterior/x"):
        psample.resume(path, alg, 10, observables=OBSERVABLES, progress=False)


def test_a_damaged_state_is_refused(alg, x0, tmp_path):
    path = tmp_path / "run.zarr"
    sample(alg, x0, 20, chunk_size=10, checkpoint=path)
    slot = zarr.open_group(str(path), mode="r")["psample_state"].attrs["state_slot"]
    state_dir = path / "psample_state" / f"state_{slot}_0"
    for chunk in (p for p in state_dir.rglob("*") if p.is_file() and p.name != "zarr.json"):
        chunk.unlink()
    with pytest.raises(CheckpointError, match=r"the saved sampler state \(psample_state/state_.*\) differs"):
        psample.resume(path, alg, 10, progress=False)


# ----------------------------------------------------------------------------- every array checked (issue 23)


def _damage(path, array: str, how: str):
    files = sorted(p for p in (path / array).rglob("*") if p.is_file() and p.name != "zarr.json")
    assert files, array
    if how == "delete":
        files[-1].unlink()
    elif how == "truncate":
        files[-1].write_bytes(files[-1].read_bytes()[:5])
    else:  # flip one bit of the compressed chunk
        data = bytearray(files[-1].read_bytes())
        data[-1] ^= 1
        files[-1].write_bytes(bytes(data))


@pytest.mark.parametrize(
    "array, named, how",
    [
        ("psample_state/rng_key", "the run's random key", "delete"),
        ("psample_state/rng_key", "the run's random key", "truncate"),
        ("psample_state/rng_key", "the run's random key", "flip"),
        ("posterior/draw", "'draw' coordinate", "delete"),
        ("posterior/draw", "posterior/draw cannot be read", "truncate"),
        ("psample_state/state_{slot}_0", "the saved sampler state", "truncate"),
        ("psample_state/state_{slot}_0", "the saved sampler state", "flip"),
    ],
)
def test_every_damaged_array_is_refused_with_a_checkpoint_error(alg, x0, tmp_path, array, named, how):
    """A missing key used to resume with other draws in silence, a truncated one raised Zstd's
    RuntimeError: every array of the store is checked and damage is a CheckpointError."""
    path = tmp_path / "run.zarr"
    sample(alg, x0, 20, chunk_size=10, checkpoint=path, compute_convergence_checks=False)
    slot = zarr.open_group(str(path), mode="r")["psample_state"].attrs["state_slot"]
    _damage(path, array.format(slot=slot), how)
    with pytest.raises(CheckpointError, match=f"damaged: .*{named}"):
        psample.resume(path, alg, 10, progress=False)


# ----------------------------------------------------------------------------- interrupted anywhere (issue 23)


class _ScaleCarry(NamedTuple):
    states: object  # the chains' RMH states: the carry has no .position of its own
    log_scale: jax.Array


def _adaptive_rmh(logdensity_fn):
    """A random walk whose step size a step-wise adaptation tunes towards 40% acceptance."""
    from psample.base import AdaptiveSamplingAlgorithm

    def build(scale):
        rmh = blackjax.additive_step_random_walk.normal_random_walk(logdensity_fn, scale)

        def init(positions, num_steps):
            return _ScaleCarry(jax.vmap(rmh.init)(positions), jnp.log(jnp.asarray(scale, float)))

        def step(key, carry, num_steps):
            walk = blackjax.additive_step_random_walk.normal_random_walk(logdensity_fn, jnp.exp(carry.log_scale))
            keys = jax.random.split(key, jax.tree.leaves(carry.states)[0].shape[0])
            states, info = jax.vmap(walk.step)(keys, carry.states)
            return _ScaleCarry(states, carry.log_scale + (info.acceptance_rate.mean() - 0.4) / 4), info

        def final(carry):
            return carry.states, {"scale": jnp.exp(carry.log_scale)}

        def run(key, positions, num_steps):
            carry = init(positions, num_steps)
            carry = jax.lax.fori_loop(0, num_steps, lambda t, c: step(jax.random.fold_in(key, t), c, num_steps)[0],
                                      carry)
            return final(carry), None

        adaptation = type("Adaptation", (), {"init": staticmethod(init), "step": staticmethod(step),
                                             "final": staticmethod(final), "run": staticmethod(run)})()
        return AdaptiveSamplingAlgorithm(rmh.init, rmh.step, adaptation, lambda p: build(p["scale"]))

    return build(0.3)


@pytest.fixture(scope="module")
def target_and_adaptive():
    target = psample.from_logdensity(logdensity, jnp.zeros(2))
    return target, _adaptive_rmh(target.logdensity_fn)


@pytest.fixture(scope="module")
def uninterrupted(target_and_adaptive, x0):
    """``uninterrupted(adapt)``: the uninterrupted run of the interrupted-anywhere tests, made once."""
    target, algorithm = target_and_adaptive
    runs = {}

    def get(adapt: bool):
        if adapt not in runs:
            runs[adapt] = sample(algorithm, x0, 30, num_warmup=20, target=target, adapt=adapt, chunk_size=5,
                                 compute_convergence_checks=False)
        return runs[adapt]

    return get


@pytest.mark.heavy
@pytest.mark.parametrize(
    "where, adapt, presses",
    [
        ("adaptation", True, 2),  # the 2nd adaptation chunk
        ("burn-in", False, 2),  # the 2nd burn-in chunk
        ("draws", True, 5),  # 4 adaptation chunks, then the 1st chunk of draws
    ],
)
def test_a_run_interrupted_anywhere_resumes_bit_for_bit(target_and_adaptive, uninterrupted, x0, tmp_path,
                                                        ctrl_c_after, where, adapt, presses):
    """Ctrl-C during the warm-up (adaptation or burn-in) or the draws of a run with a target:
    resume(path, algorithm, target=target) finishes it with exactly the uninterrupted run's draws.
    (A checkpoint stopped during adaptation used to be refused: its carry was checked as positions.)"""
    target, algorithm = target_and_adaptive
    kwargs = dict(num_warmup=20, target=target, adapt=adapt, chunk_size=5, compute_convergence_checks=False)
    whole = uninterrupted(adapt)
    path = tmp_path / "run.zarr"
    ctrl_c_after(presses)
    stopped = psample.sample(algorithm, x0, jax.random.PRNGKey(5), 30, progress=True, checkpoint=path, **kwargs)
    assert stopped.interrupted
    assert (stopped.num_draws == 0) == (where != "draws") and stopped.num_steps == (10 if where != "draws" else 25)
    resumed = psample.resume(path, algorithm, target=target, progress=False, compute_convergence_checks=False)
    assert not resumed.interrupted and resumed.num_draws == 30
    np.testing.assert_array_equal(resumed.positions, whole.positions)
    if adapt:
        np.testing.assert_array_equal(resumed.parameters["scale"], whole.parameters["scale"])


def test_a_plan_pickled_under_its_former_module_still_loads():
    """Checkpoints store the run plan pickled; stores written when RunPlan lived in
    psample.runtime.chains name that module, which still provides it."""
    import pickle

    from psample.runtime.plan import RunPlan

    plan = RunPlan(3, 4, 2, 60, 0, True)
    old = pickle.dumps(plan, protocol=0).replace(b"psample.runtime.plan", b"psample.runtime.chains")
    assert b"psample.runtime.chains" in old
    restored = pickle.loads(old)
    assert type(restored) is RunPlan and restored == plan
