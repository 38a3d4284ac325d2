"""Every public entry point speaks one vocabulary (README "One vocabulary", DESIGN.md §10).

Checked on the signatures, so a new entry point or a new keyword that breaks the table fails
here: the key is called ``rng_key`` and sits right after what defines the run; counts use the
shared names; progress is on by default; particle methods spell resampling one way; runs return
the runner's result type.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import psample

#: entry point -> (the parameters before rng_key, the return type's name or None for a constructor)
RUNS = {
    "psample.sample": (["algorithm", "initial_positions"], "Trace"),
    "psample.run_particles": (["algorithm"], "ParticleResult"),
    "psample.logconcave_chain_samples": (["initial_positions"], "Trace"),
    "psample.runtime.observables.time_averages": (["algorithm", "initial_positions"], "TimeAverages"),
    "psample.diffusion.train_sampler": (["logdensity_fn", "dim"], "TrainedSampler"),
    "psample.diffusion.TrainedSampler.sample": (["self"], "SamplerResult"),
    "psample.graphs.macc": (["network", "k"], "Estimate"),
    "psample.graphs.hom_density": (["network", "motif"], "Estimate"),
    "psample.graphs.conditional_density": (["network", "motif_F", "motif_H"], "Estimate"),
    "psample.graphs.chd_profile": (["network", "motif_F", "motif_H"], "Estimate"),
    "psample.graphs.sample_patches": (["network", "k"], "Patches"),
    "psample.graphs.run_observables": (["network", "motif", "observables"], "ObservableRun"),
}

#: particle-method constructors: resampling is ``resampling`` (scheme) + ``resample_ess`` (threshold)
PARTICLE_METHODS = ["psample.smc.tempered_smc", "psample.smc.fkc_smc", "psample.diffusion.reverse_diffusion"]
#: constructors that pass their keyword options on to one above (checked for retired names only)
FORWARDING = ["psample.smc.fkc_anneal", "psample.smc.fkc_product", "psample.smc.fkc_guidance"]

#: names the vocabulary replaced; they may survive one release only behind a DeprecationWarning,
#: never as documented parameters.
RETIRED = {"key", "seed", "burn_in", "num_samples", "resampler", "ess_threshold", "resample", "return_trace"}


def resolve(path: str):
    """The object at ``path``, attribute by attribute (importing submodules only when needed)."""
    parts = path.split(".")
    obj, prefix = importlib.import_module(parts[0]), parts[0]
    for name in parts[1:]:
        prefix = f"{prefix}.{name}"
        obj = getattr(obj, name) if hasattr(obj, name) else importlib.import_module(prefix)
    return obj


def documented_parameters(fn) -> list[inspect.Parameter]:
    """The signature's named parameters (``*args``/``**kwargs`` left out)."""
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p for p in inspect.signature(fn).parameters.values() if p.kind not in kinds]


@pytest.mark.parametrize("path", sorted(RUNS))
def test_the_key_is_rng_key_right_after_what_defines_the_run(path):
    before, _ = RUNS[path]
    params = documented_parameters(resolve(path))
    names = [p.name for p in params]
    assert names[: len(before)] == before, f"{path}: leading parameters {names[:len(before)]}, expected {before}"
    key = params[len(before)]
    assert key.name == "rng_key", f"{path}: parameter {len(before)} is {key.name!r}, expected rng_key"
    assert key.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, f"{path}: rng_key must be positional"


@pytest.mark.parametrize("path", sorted(RUNS) + PARTICLE_METHODS + FORWARDING)
def test_no_retired_names_and_progress_on_by_default(path):
    for p in documented_parameters(resolve(path)):
        if p.name in RETIRED:
            assert p.kind is p.KEYWORD_ONLY and p.default is None, (
                f"{path}: {p.name!r} is a retired name: keep it only as a deprecated keyword shim (default None)"
            )
        if p.name == "progress":
            assert p.default is True, f"{path}: progress defaults to {p.default!r}, expected True"


@pytest.mark.parametrize("path", sorted(RUNS))
def test_a_run_returns_the_runners_result_type(path):
    _, expected = RUNS[path]
    annotation = inspect.signature(resolve(path)).return_annotation
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    assert name.strip("'\"").rsplit(".", 1)[-1] == expected, f"{path} returns {name}, expected {expected}"


def test_the_particle_results_are_particle_results():
    assert issubclass(psample.diffusion.SamplerResult, psample.ParticleResult)


@pytest.mark.parametrize("path", PARTICLE_METHODS)
def test_particle_methods_spell_resampling_one_way(path):
    names = {p.name for p in documented_parameters(resolve(path))}
    assert {"resampling", "resample_ess"} <= names, f"{path} lacks resampling/resample_ess: {sorted(names)}"
