"""psample: modern samplers behind one BlackJAX-style ``init``/``step`` contract.

Public API
----------
- :func:`from_numpyro`, :class:`Target`: targets from NumPyro models or plain log-densities.
- :func:`sample`, :func:`resume`, :class:`Trace`: the runner (many chains, chunks, checkpoints).
- :func:`polar_slice`: Gibbsian polar slice sampling (``psample.mcmc.polar_slice``), with an
  affine preconditioner adapted during warm-up (``psample.mcmc.polar_slice_adaptation``).
- :mod:`psample.adaptation`: the warm-up adaptation protocol any sampler can implement.
- :mod:`psample.numpyro`: psample samplers as NumPyro ``MCMCKernel`` s (``PolarSlice``, ``kernel``).
- :func:`logconcave_chain`: chain of log-concave Markov chains / walk-jump sampling
  (``psample.mcmc.logconcave_chain``); :func:`logconcave_chain_samples` returns its final jumps.
- :func:`admm`: distributed MCMC with ADMM, one data shard per agent, agents over the devices of
  a mesh's ``"shards"`` axis (``psample.mcmc.admm``; Tzikas et al. 2024).
- :func:`run_particles`, :class:`ParticleResult`: the particle runner (weighted populations);
  :mod:`psample.smc` (tempered SMC with model evidence).
- :mod:`psample.diffusion`: noise schedules (``VP``, ``VE``) shared by the diffusion samplers and FKC;
  ``reverse_diffusion`` (training-free, SMC-corrected) and ``train_sampler`` (DDS/PIS) with exact
  importance weights and log Z.
- :mod:`psample.diagnostics` (ArviZ summaries and plots), :mod:`psample.models` (the model zoo),
  :mod:`psample.graphs` (graph-homomorphism chains and network observables).
"""

from psample import adaptation, diagnostics, diffusion, errors, smc
from psample.logconcave import logconcave_chain_samples
from psample.mcmc.admm import as_top_level_api as admm
from psample.mcmc.logconcave_chain import as_top_level_api as logconcave_chain
from psample.mcmc.polar_slice import as_top_level_api as polar_slice
from psample.particles import ParticleResult, run_particles
from psample.run import resume, sample
from psample.targets import Target, from_logdensity, from_numpyro
from psample.trace import Trace

__all__ = ["adaptation", "diagnostics", "diffusion", "errors", "Target", "Trace", "from_numpyro", "from_logdensity", "sample",
           "resume", "polar_slice", "logconcave_chain", "logconcave_chain_samples", "smc", "run_particles",
           "ParticleResult", "admm"]
__version__ = "0.1.0"


def __getattr__(name):
    # ``psample.numpyro`` (NumPyro MCMC kernels) is imported on first use: it needs numpyro.
    if name == "numpyro":
        import importlib

        return importlib.import_module("psample.numpyro")
    raise AttributeError(f"module 'psample' has no attribute {name!r}")
