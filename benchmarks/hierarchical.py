"""Adapted polar slice against BlackJAX NUTS on hierarchical posteriors of inference-gym (issue #28).

Posteriors (``psample.models.hierarchical``: NumPyro versions of inference-gym's targets, written
site by site from the gym's source, fed the gym's data through readers of the files shipped in
``psample/models/data``; the gym itself loads radon through TensorFlow Datasets, not installed):

- ``sv``: ``StochasticVolatilitySP500Small`` (d = 103);
- ``radon``: ``RadonContextualEffectsMinnesota`` (d = 91);
- ``lorenz``: ``ConvectionLorenzBridgeUnknownScales`` (d = 92; ``psample.models.lorenz_bridge``,
  one site per Euler-Maruyama step as the gym writes it, so ``psample.noncentered`` gives the
  innovations).

Ground truth: the gym's own ``targets/ground_truth`` modules (posterior means and standard
deviations of every component of its ``identity`` transformation), read from the installed
``inference_gym`` package (``pip install -e .[bench]``). ``--check`` first verifies that the NumPyro
model's log-joint differs from the gym's ``unnormalized_log_prob`` by one constant at random
points (the gym's JAX substrate: ``inference_gym.using_jax``, TFP's JAX backend).

Protocol (the issue's): 8 chains, the same 500 warm-up steps for both, then sampling in jitted
``lax.scan`` chunks, NUTS and polar slice alternating chunk by chunk, each chunk compiled before
it is timed (``block_until_ready``; the fastest of ``--repeats`` runs of a chunk counts).

- ``nuts``: ``blackjax.nuts`` after ``blackjax.window_adaptation`` (diagonal mass matrix), per
  chain, on the model **as the gym writes it** (centred);
- ``polar``: ``psample.polar_slice`` after its own warm-up adaptation, on the same centred model
  (what the issue measured);
- ``polar_flow`` / ``polar_flow_nc`` (not run by default: ``--samplers``): polar slice in the base
  space of a normalizing flow fitted in the warm-up (``psample.mcmc.flow_preconditioning``,
  NeuTra: ``--fit-steps`` Adam steps on the ELBO, then the same 500 adaptation steps in the base
  space), on the centred / non-centred model; the fit counts as warm-up time;
- ``polar_nc``: ``psample.polar_slice`` after its adaptation on the **non-centred** model
  (``psample.targets.noncentered``: ``LocScaleReparam(centered=0)`` on location-scale sites, the
  AR(1) series by its innovations). The same posterior on the user's sites, another geometry.
- ``polar_c`` (German credit only): the centred form of the weights
  (``hierarchical.sparse_logistic_regression_centered_model``: ``weights ~ Normal(0, local *
  global)``), the same posterior;
- ``polar_block`` / ``polar_block_nc`` / ``polar_block_c``: ``psample.blocked_polar_slice`` with
  two blocks, the latent site (``LATENTS``) and the other sites, in the gym's / non-centred /
  centred form;
- ``polar_asis`` (SV, German credit and the Lorenz bridge): ``psample.interweaved_polar_slice``: a polar slice move of
  the whole non-centred position, then the hyperparameters moved given the non-centred latents
  and given the centred ones, the ancillarity-sufficiency interweaving of Yu and Meng (2011) as
  Kastner and Frühwirth-Schnatter (2014) use it for SV (:func:`sv_interweaving_maps`: ``h = mean +
  L(persistence, scale) z``; German credit: :func:`german_interweaving_maps`, ``weights =
  unscaled_weights * local_scales * global_scale``, hyperparameters the 26 scales; the Lorenz
  bridge: :func:`lorenz_interweaving_maps`, the Euler-Maruyama path from its innovations,
  hyperparameters the two scales);
  ``--hyper-w`` sets the hyperparameter moves' window (default 1);
- ``polar_pncp`` (German credit and radon): polar slice in a partially non-centred parameterisation
  (``psample.partially_noncentered_polar_slice``: ``weights = mu(v) + L(v)^-T e`` from a Gaussian
  approximation of the likelihood fitted in warm-up, :func:`pncp_warm_up`), the joint move plus a move of the scales
  given ``e``;
- ``polar_pncp_cw`` (German credit and radon): the same coordinates, the joint move, then each
  hyperparameter by univariate slice given the centred latents
  (``hyper_move="coordinatewise"``, on ``psample.latent_gaussian``'s ``hyper_conditional_fn``:
  for German credit the model's prior
  alone, no likelihood evaluation); its brackets are ``--hyper-w`` (default 2) marginal spreads;
- ``best``: the polar slice variant that does best on each case (``BEST``), for one command that
  reproduces issue #28's comparison: ``python benchmarks/hierarchical.py --cases sv radon german``;
- ``polar_pairs`` (German credit only): ``psample.blocked_polar_slice`` with one block per feature
  ``(log local_scales[j], unscaled_weights[j])`` plus a block of the global and all local scales
  (:func:`pair_blocks`; diagonal scales).

Starts: NumPyro's ``init_to_uniform`` (radius 2) in each parameterisation, from the same key.
Reported per sampler, over every scalar component of the gym's identity sites (the constrained,
original sites; for ``polar_nc`` the deterministic sites the reparameterisation recovers): max
rank-normalised R-hat, min bulk and min tail ESS (ArviZ), min-ESS per second of sampling, and the
worst ``|mean - truth| / SE`` with ``SE = sd_truth / sqrt(ESS_bulk)`` per component; then the
ratios of min-ESS/s to NUTS's.

Run ``python benchmarks/hierarchical.py`` (NUTS and ``best`` on every case, 8 chains and each
case's ``DRAWS``: the sizes of its BENCHMARKS.md rows, 800 draws for SV, 1,000 for radon, 4,000 for
German credit, whose shorter runs understate polar slice's ESS, 2,000 for the Lorenz bridge) or
``--quick`` (4 chains x 300 draws, a smoke run). ``--draws``, ``--chains``, ``--warmup``, ``--samplers`` and ``--cases``
override. NUTS on the centred SV model takes deep trees (about 45 gradient evaluations per step):
on two shared CPU cores the full SV case takes tens of minutes; ``--draws 500`` a few. An ESS
below about 100 (a short run) makes the min-ESS/s ratio unreliable: read the R-hat column first.

Cases: ``sv``, ``radon``, ``german`` (``GermanCreditNumericSparseLogisticRegression``, already
non-centred in the gym: ``polar_nc`` only rewrites its standard-normal weights, the same
coordinates) and ``lorenz`` (``ConvectionLorenzBridgeUnknownScales``; its ground truth comes from
Stan runs with their own Monte Carlo error, e.g. 0.018 on the mean of ``innovation_scale``, which
the ``|z|`` column ignores). Every posterior issue #28 lists is covered.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import arviz as az  # noqa: E402
import blackjax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from arviz_stats.base import array_stats  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import psample  # noqa: E402
from psample.models import hierarchical, lorenz_bridge  # noqa: E402
from psample.mcmc.blocked_polar_slice import block_indices  # noqa: E402
from psample.mcmc.flow_preconditioning import flow_polar_slice  # noqa: E402
from psample.targets import from_numpyro, noncentered  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from polar_slice import _cpu_model  # noqa: E402  (one reader of the CPU's name for the benchmarks)

SAMPLERS = ("nuts", "polar", "polar_nc", "polar_c", "polar_flow", "polar_flow_nc", "polar_block", "polar_block_nc",
            "polar_block_c", "polar_pairs", "polar_asis", "polar_pncp", "polar_pncp_cw", "best")
#: the latent sites of each case (a site whose name starts with one of these; non-centred names
#: end in ``_decentered``): ``polar_block*`` updates them in one block and the other sites in another
LATENTS = {"sv": ("log_volatility",), "radon": ("county_effect",), "german": ("unscaled_weights", "weights"),
           "lorenz": ("state_",)}
DEFAULT_SAMPLERS = ("nuts", "best")
#: case -> the polar slice variant that ``best`` runs (the winner of BENCHMARKS.md's hierarchical section)
#: case -> draws per chain when --draws is not given (the sizes of the BENCHMARKS.md rows)
DRAWS = {"sv": 800, "radon": 1000, "german": 4000, "lorenz": 2000}
BEST = {"sv": "polar_asis", "radon": "polar_pncp", "german": "polar_pncp_cw", "lorenz": "polar_asis"}

#: case -> (gym target class, gym ground-truth module, the gym's identity sites in its order)
CASES = {
    "sv": ("StochasticVolatilitySP500Small", "stochastic_volatility_sp500_small",
           ("persistence_of_volatility", "mean_log_volatility", "white_noise_shock_scale", "log_volatility")),
    "radon": ("RadonContextualEffectsMinnesota", "radon_contextual_effects_minnesota",
              ("county_effect_mean", "county_effect_scale", "county_effect", "weight", "log_radon_scale")),
    "german": ("GermanCreditNumericSparseLogisticRegression", "german_credit_numeric_sparse_logistic_regression",
               ("global_scale", "local_scales", "unscaled_weights")),
    "lorenz": ("ConvectionLorenzBridgeUnknownScales", "convection_lorenz_bridge_unknown_scales",
               ("innovation_scale", "observation_scale", "latents")),
}


def model_and_data(case):
    if case == "sv":
        return hierarchical.stochastic_volatility_model, (hierarchical.sp500_small_returns(),), {}
    if case == "german":
        return hierarchical.sparse_logistic_regression_model, (), hierarchical.german_credit_numeric_data()
    if case == "lorenz":
        return lorenz_bridge.lorenz_bridge_model, (), lorenz_bridge.convection_lorenz_bridge_data()
    return hierarchical.radon_model, (), hierarchical.radon_minnesota_data()


def centered_model(case):
    """The case's centred alternative parameterisation (the same posterior), or ``None``."""
    if case == "german":
        return hierarchical.sparse_logistic_regression_centered_model
    return None


def ground_truth(case):
    """``{site: (mean, sd)}`` from the gym's ground-truth module (arrays as the site)."""
    import importlib

    module = importlib.import_module(f"inference_gym.targets.ground_truth.{CASES[case][1]}")
    return {
        site: (np.asarray(getattr(module, f"IDENTITY_{site.upper()}_MEAN")),
               np.asarray(getattr(module, f"IDENTITY_{site.upper()}_STANDARD_DEVIATION")))
        for site in CASES[case][2]
    }  # fmt: skip


def check_against_gym(case, num_points=4):
    """The NumPyro model's log-joint minus the gym's ``unnormalized_log_prob``: one constant."""
    from numpyro.infer.util import log_density
    from inference_gym import using_jax as gym

    model, args, kwargs = model_and_data(case)
    target = from_numpyro(model, *args, **kwargs)
    positions = target.initial_positions(jax.random.key(1), num_points)
    sites = target.postprocess(jax.tree.map(lambda a: a[None], positions))
    if case == "sv":
        gym_target = gym.targets.StochasticVolatilitySP500Small()
    elif case == "german":
        d = hierarchical.german_credit_numeric_data()
        # the gym's German credit loader needs TFDS: its model class is fed the shipped data instead
        gym_target = gym.targets.SparseLogisticRegression(train_features=d["features"], train_labels=d["labels"])
    elif case == "lorenz":
        gym_target = gym.targets.ConvectionLorenzBridgeUnknownScales()  # its data ship with the gym (no TFDS)
    else:
        d = hierarchical.radon_minnesota_data()
        dataset = dict(num_counties=d["num_counties"], train_log_uranium=d["log_uranium"], train_floor=d["floor"],
                       train_county=d["county"], train_floor_by_county=d["floor_by_county"],
                       train_log_radon=d["log_radon"])
        # the gym's radon loader needs TFDS: its model class is fed these arrays instead
        gym_target = gym.targets.RadonContextualEffects(**dataset)
    differences, logps = [], []
    for i in range(num_points):
        value = {k: np.asarray(v[0, i]) for k, v in sites.items()}
        ours = float(log_density(model, args, kwargs, {k: value[k] for k in positions})[0])
        if case == "sv":
            dtype, f32 = gym_target.dtype, (lambda v: jnp.asarray(v, jnp.float32))  # the gym's SV is float32
            gym_value = type(dtype)(f32(value["persistence_of_volatility"]), f32(value["mean_log_volatility"]),
                                    f32(value["white_noise_shock_scale"]),
                                    type(dtype[-1])(*[f32(x) for x in value["log_volatility"]]))
        elif case == "lorenz":  # the gym's Lorenz bridge is float32, one part per time step
            f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
            gym_value = type(gym_target.dtype)(f32(value["innovation_scale"]), f32(value["observation_scale"]),
                                               *[f32(row) for row in value["latents"]])
        else:
            gym_value = {k: jnp.asarray(value[k]) for k in CASES[case][2]}
            if case == "german":  # the gym's sparse regression computes in float32
                gym_value = {k: v.astype(jnp.float32) for k, v in gym_value.items()}
        theirs = float(gym_target.unnormalized_log_prob(gym_value))
        differences.append(ours - theirs)
        logps.append(ours)
    spread = max(differences) - min(differences)
    float32_gym = case in ("sv", "german", "lorenz")  # these gym models compute in float32
    tolerance = (1e-5 if float32_gym else 1e-10) * max(abs(x) for x in logps) + 1e-9
    print(f"  check against inference-gym: log-joint differences {np.round(differences, 6).tolist()} "
          f"(spread {spread:.2e}; {'OK' if spread < tolerance else 'MISMATCH'}, tolerance {tolerance:.1e})")


def flat_target(target, num_chains, key):
    positions = target.initial_positions(key, num_chains)
    example = jax.tree.map(lambda a: a[0], positions)
    _, unravel = ravel_pytree(example)
    flat0 = jax.vmap(lambda p: ravel_pytree(p)[0])(positions)
    return (lambda flat: target.logdensity_fn(unravel(flat))), flat0, unravel


def latent_blocks(case, example):
    """Flat index blocks ``[latent sites, the other sites]`` of one position (a dict of sites)."""
    latent = [k for k in example if k.startswith(LATENTS[case])]
    rest = [k for k in example if k not in latent]
    return [list(b) for b in block_indices(example, [latent, rest])]


def pair_blocks(example):
    """German credit: one block per feature ``(log local_scales[j], unscaled_weights[j])``, the global
    scale with feature 0, and one block of the global and all local scales (their ridge: only the
    products ``local_j * global`` enter the likelihood). Blocks overlap; each update is exact."""
    idx = {k: v.tolist() for k, v in zip(("g", "l", "u"), block_indices(example, [["global_scale", "local_scales"],
                                                                               ["local_scales"], ["unscaled_weights"]]))}
    g = [i for i in idx["g"] if i not in idx["l"]]
    pairs = [[l, u] for l, u in zip(idx["l"], idx["u"])]
    pairs[0] = g + pairs[0]
    return pairs + [g + idx["l"]]


def sv_interweaving_maps(num_timesteps=100):
    """SV's maps between the non-centred and centred sites (unconstrained coordinates, dicts).

    Non-centred: ``log_volatility_decentered`` ``z`` (the AR(1) innovations) and
    ``mean_log_volatility_decentered`` (the Cauchy(0, 5) site over 5); centred: ``log_volatility``
    ``h = mean + L(persistence, scale) z`` (:func:`hierarchical.ar1_scale_tril`) and
    ``mean_log_volatility``. ``persistence_beta`` (logit) and ``white_noise_shock_scale`` (log) are
    the same coordinates in both.
    """
    from jax.scipy.linalg import solve_triangular

    def tril(p):
        persistence = 2.0 * jax.nn.sigmoid(p["persistence_beta"]) - 1.0
        return hierarchical.ar1_scale_tril(num_timesteps, persistence, jnp.exp(p["white_noise_shock_scale"]))

    def to_centered(p):
        mean = 5.0 * p["mean_log_volatility_decentered"]
        return {"log_volatility": mean + tril(p) @ p["log_volatility_decentered"], "mean_log_volatility": mean,
                "persistence_beta": p["persistence_beta"], "white_noise_shock_scale": p["white_noise_shock_scale"]}

    def to_noncentered(q):
        z = solve_triangular(tril(q), q["log_volatility"] - q["mean_log_volatility"], lower=True)
        return {"log_volatility_decentered": z, "mean_log_volatility_decentered": q["mean_log_volatility"] / 5.0,
                "persistence_beta": q["persistence_beta"], "white_noise_shock_scale": q["white_noise_shock_scale"]}

    return to_centered, to_noncentered


def german_interweaving_maps():
    """German credit's maps between the gym's (non-centred) and the centred sites (unconstrained, dicts).

    Non-centred: ``unscaled_weights`` ``u``; centred: ``weights = u * local_scales * global_scale``
    (:func:`hierarchical.sparse_logistic_regression_centered_model`). The scales' coordinates (their
    logs) are the same in both.
    """

    def to_centered(p):
        return {"global_scale": p["global_scale"], "local_scales": p["local_scales"],
                "weights": p["unscaled_weights"] * jnp.exp(p["local_scales"] + p["global_scale"])}

    def to_noncentered(q):
        return {"global_scale": q["global_scale"], "local_scales": q["local_scales"],
                "unscaled_weights": q["weights"] * jnp.exp(-(q["local_scales"] + q["global_scale"]))}

    return to_centered, to_noncentered


def lorenz_interweaving_maps(num_timesteps=30):
    """The Lorenz bridge's maps between the non-centred and centred sites (unconstrained, dicts).

    Non-centred (``psample.noncentered``): the innovations ``state_tt_decentered``; centred: the
    Euler-Maruyama path ``state_tt`` (:func:`lorenz_bridge.euler_maruyama_path`, a ``lax.scan``; its
    inverse :func:`lorenz_bridge.euler_maruyama_innovations`, vectorised). ``innovation_scale`` and
    ``observation_scale`` (their logs) are the same coordinates in both.
    """
    names = lorenz_bridge.state_site_names(num_timesteps)

    def scales(p):
        return {"innovation_scale": p["innovation_scale"], "observation_scale": p["observation_scale"]}

    def to_centered(p):
        z = jnp.stack([p[f"{n}_decentered"] for n in names])
        path = lorenz_bridge.euler_maruyama_path(z, jnp.exp(p["innovation_scale"]))
        return {**scales(p), **{n: path[t] for t, n in enumerate(names)}}

    def to_noncentered(q):
        path = jnp.stack([q[n] for n in names])
        z = lorenz_bridge.euler_maruyama_innovations(path, jnp.exp(q["innovation_scale"]))
        return {**scales(q), **{f"{n}_decentered": z[t] for t, n in enumerate(names)}}

    return to_centered, to_noncentered


#: case -> (the maps, the hyperparameter sites non-centred, centred, the latent site(s) non-centred, centred)
INTERWEAVING = {
    "sv": (sv_interweaving_maps, ["mean_log_volatility_decentered", "persistence_beta", "white_noise_shock_scale"],
           ["mean_log_volatility", "persistence_beta", "white_noise_shock_scale"], "log_volatility_decentered",
           "log_volatility"),
    "german": (german_interweaving_maps, ["global_scale", "local_scales"], ["global_scale", "local_scales"],
               "unscaled_weights", "weights"),
    "lorenz": (lorenz_interweaving_maps, ["innovation_scale", "observation_scale"],
               ["innovation_scale", "observation_scale"],
               [f"{n}_decentered" for n in lorenz_bridge.state_site_names()], lorenz_bridge.state_site_names()),
}


def interweaving_spec(case, target_nc, flat0, unravel, hyper_w=1.0):
    """``psample.interweaved_polar_slice`` on the case's flat non-centred position, the maps checked first.

    The check: ``log p_nc(x) = log p_c(F(x)) + log |det F'(x)|`` at two starts (the change of
    variables between the two densities, to rounding), so the maps fit the two models exactly.
    """
    if case not in INTERWEAVING:
        raise ValueError(f"polar_asis is defined for {sorted(INTERWEAVING)} only")
    maps, hypers_nc, hypers_c, latent_nc, latent_c = INTERWEAVING[case]
    model, args, kwargs = model_and_data(case)
    target_c = from_numpyro(centered_model(case) or model, *args, **kwargs)
    example_c = jax.tree.map(lambda a: a[0], target_c.initial_positions(jax.random.key(0), 1))
    _, unravel_c = ravel_pytree(example_c)
    to_c, to_nc = maps()
    to_c_flat = lambda x: ravel_pytree(to_c(unravel(x)))[0]  # noqa: E731
    to_nc_flat = lambda y: ravel_pytree(to_nc(unravel_c(y)))[0]  # noqa: E731
    log_nc = lambda x: target_nc.logdensity_fn(unravel(x))  # noqa: E731
    log_c = lambda y: target_c.logdensity_fn(unravel_c(y))  # noqa: E731
    for x in flat0[:2]:
        gap = log_nc(x) - log_c(to_c_flat(x)) - jnp.linalg.slogdet(jax.jacfwd(to_c_flat)(x))[1]
        if not abs(float(gap)) <= 1e-8 * abs(float(log_nc(x))) + 1e-6:
            raise AssertionError(f"{case} interweaving maps do not match the models: change-of-variables gap "
                                 f"{float(gap)}")
    # block_indices wants blocks covering the position: the latent site is the second block
    as_list = lambda sites: [sites] if isinstance(sites, str) else list(sites)  # noqa: E731  (Lorenz: a site per step)
    idx, _ = block_indices(unravel(flat0[0]), [hypers_nc, as_list(latent_nc)])
    idx_c, _ = block_indices(example_c, [hypers_c, as_list(latent_c)])
    return psample.interweaved_polar_slice(log_nc, log_c, to_c_flat, to_nc_flat, list(idx), list(idx_c), w=10.0,
                                           hyper_w=hyper_w)


#: case -> the latent site that ``polar_pncp`` partially non-centres (its prior read from the centred
#: model by ``psample.latent_gaussian``; the other sites are the hyperparameters)
PARTIAL = {"german": "weights", "radon": "county_effect"}


def pncp_warm_up(case, num_chains, init_key, warm_key, num_warmup, hyper_w=1.0, coordinatewise=False):
    """``polar_pncp`` and ``polar_pncp_cw``: ``psample.partially_noncentered_polar_slice`` on the centred model.

    ``polar_pncp``: ``hyper_move="polar"`` (the joint move and a move of the hyperparameters given
    the partially non-centred latents), the map fitted once; ``polar_pncp_cw``:
    ``hyper_move="coordinatewise"`` (the joint move, then the hyperparameters one by one by
    univariate slice given the centred latents on ``latents.hyper_conditional_fn``: German credit's
    prior alone, radon's whole log-density), the map fitted twice. Its warm-up: 40 % of the steps
    non-centred, then the fit(s) at the adapted centre; fixed afterwards.
    """
    model, args, kwargs = model_and_data(case)
    model_c = centered_model(case) or model
    target_c = from_numpyro(model_c, *args, **kwargs)
    logp_c, y0, unravel_c = flat_target(target_c, num_chains, init_key)
    latents = psample.latent_gaussian(model_c, [PARTIAL[case]], *args, **kwargs)
    start = time.perf_counter()
    algorithm = psample.partially_noncentered_polar_slice(
        logp_c, latents, hyper_move="coordinatewise" if coordinatewise else "polar", hyper_w=hyper_w)
    (states, parameters), _ = algorithm.adaptation.run(warm_key, y0, num_warmup)
    tuned = algorithm.with_parameters(parameters)

    def step(k, state):
        state, info = tuned.step(k, state)
        return state, info.num_evals

    jax.block_until_ready(states)
    return states, step, lambda state: state.position, time.perf_counter() - start, target_c, unravel_c


def warm_up(kind, logdensity, flat0, key, num_warmup, fit_steps=1000, blocks=None, algorithm=None):
    """Tuned ``(states, step)`` after ``num_warmup`` adaptation steps, and the warm-up seconds."""
    start = time.perf_counter()
    if kind == "nuts":
        adaptation = blackjax.window_adaptation(blackjax.nuts, logdensity)
        (states, parameters), _ = jax.jit(jax.vmap(lambda k, x: adaptation.run(k, x, num_steps=num_warmup)))(
            jax.random.split(key, flat0.shape[0]), flat0
        )

        def step(k, chain):
            state, params = chain
            state, info = blackjax.nuts(logdensity, **params).step(k, state)
            return (state, params), info.num_integration_steps

        carry = (states, parameters)
        position = lambda chain: chain[0].position  # noqa: E731
    else:
        if algorithm is not None:
            pass
        elif kind.startswith("polar_flow"):
            algorithm = flow_polar_slice(logdensity, num_fit_steps=fit_steps)
        elif kind.startswith("polar_block"):
            algorithm = psample.blocked_polar_slice(logdensity, blocks, w=10.0)
        elif kind == "polar_pairs":
            algorithm = psample.blocked_polar_slice(logdensity, blocks, w=3.0, structure="diagonal")
        else:
            algorithm = psample.polar_slice(logdensity, w=10.0)
        (states, parameters), _ = algorithm.adaptation.run(key, flat0, num_warmup)
        tuned = algorithm.with_parameters(parameters)

        def step(k, state):
            state, info = tuned.step(k, state)
            return state, info.num_evals

        carry = states
        position = lambda state: state.position  # noqa: E731
    jax.block_until_ready(carry)
    return carry, step, position, time.perf_counter() - start


def chunk_runner(step, position, num_chains, chunk_length):
    def one(carry, key):
        carry, evals = jax.vmap(step)(jax.random.split(key, num_chains), carry)
        return carry, (position(carry), evals)

    return jax.jit(lambda carry, key: jax.lax.scan(one, carry, jax.random.split(key, chunk_length)))


def component_table(draws_by_site, sites):
    """``(chain, draw, K)`` of the gym's identity components, and their labels."""
    columns, labels = [], []
    for site in sites:
        values = np.asarray(draws_by_site[site])
        flat = values.reshape(values.shape[:2] + (-1,))
        columns.append(flat)
        labels += [site] if flat.shape[2] == 1 and values.ndim == 2 else [f"{site}[{j}]" for j in range(flat.shape[2])]
    return np.concatenate(columns, axis=2), labels


def summarise(values, labels, truth_mean, truth_sd, seconds, evals):
    rhat = np.asarray(array_stats.rhat(values, chain_axis=0, draw_axis=1))
    bulk = np.asarray(array_stats.ess(values, chain_axis=0, draw_axis=1, method="bulk"))
    tail = np.asarray(array_stats.ess(values, chain_axis=0, draw_axis=1, method="tail", prob=0.94))
    mean = values.mean(axis=(0, 1))
    z = np.abs(mean - truth_mean) / (truth_sd / np.sqrt(bulk))
    min_ess = float(min(bulk.min(), tail.min()))
    worst_ess = labels[int(np.argmin(np.minimum(bulk, tail)))]
    return {
        "max_rhat": float(np.nanmax(rhat)), "worst_rhat": labels[int(np.nanargmax(rhat))],
        "min_ess": min_ess, "worst_ess": worst_ess, "ess/s": min_ess / seconds, "seconds": seconds,
        "max_z": float(np.max(z)), "worst_z": labels[int(np.argmax(z))], "n_over_5": int(np.sum(z > 5)),
        "evals/step": float(evals),
    }  # fmt: skip


def sampler_setup(kind, case, num_chains, init_key, warm_key, num_warmup, fit_steps, hyper_w):
    """Warmed-up ``(carry, step, position, seconds, target, unravel)`` of one sampler, or ``None`` (skipped)."""
    model, args, kwargs = model_and_data(case)
    if kind.endswith("_c"):
        if centered_model(case) is None:
            print(f"  {kind}: no centred alternative for {case}; skipped")
            return None
        chosen = centered_model(case)
    else:
        asis_nc = kind == "polar_asis" and case in ("sv", "lorenz")  # German credit's is non-centred already
        chosen = noncentered(model) if kind.endswith("_nc") or asis_nc else model
    target = from_numpyro(chosen, *args, **kwargs)
    logdensity, flat0, unravel = flat_target(target, num_chains, init_key)
    blocks = algorithm = None
    if kind == "polar_asis":
        if case not in INTERWEAVING:
            print(f"  {kind}: the interweaving maps are defined for {sorted(INTERWEAVING)} only; skipped")
            return None
        algorithm = interweaving_spec(case, target, flat0, unravel, hyper_w)
    example = jax.tree.map(lambda a: a[0], target.initial_positions(init_key, 1))
    if kind.startswith("polar_block"):
        blocks = latent_blocks(case, example)
    elif kind == "polar_pairs":
        if case != "german":
            print(f"  {kind}: pair blocks are defined for german only; skipped")
            return None
        blocks = pair_blocks(example)
    if blocks is not None:
        print(f"  {kind}: blocks of sizes {[len(b) for b in blocks]}")
    carry, step, position, warm_seconds = warm_up(kind, logdensity, flat0, warm_key, num_warmup, fit_steps,
                                                  blocks, algorithm)
    return carry, step, position, warm_seconds, target, unravel


def run_case(case, samplers, num_chains, num_draws, num_warmup, num_chunks, repeats, seed, fit_steps=1000,
             hyper_w=None):
    model, args, kwargs = model_and_data(case)
    sites = CASES[case][2]
    truth = ground_truth(case)
    truth_mean = np.concatenate([np.ravel(truth[s][0]) for s in sites])
    truth_sd = np.concatenate([np.ravel(truth[s][1]) for s in sites])
    key = jax.random.key(seed)
    init_key, warm_key, draw_key = jax.random.split(key, 3)
    runs = {}
    for kind in samplers:
        if kind.startswith("polar_pncp"):
            if case not in PARTIAL:
                print(f"  {kind}: the partial non-centring is defined for {sorted(PARTIAL)} only; skipped")
                continue
            coordinatewise = kind == "polar_pncp_cw"
            setup = pncp_warm_up(case, num_chains, init_key, warm_key, num_warmup,
                                 (2.0 if coordinatewise else 1.0) if hyper_w is None else hyper_w,
                                 coordinatewise=coordinatewise)
        else:
            setup = sampler_setup(kind, case, num_chains, init_key, warm_key, num_warmup, fit_steps,
                                  1.0 if hyper_w is None else hyper_w)
            if setup is None:
                continue
        carry, step, position, warm_seconds, target, unravel = setup
        run = chunk_runner(step, position, num_chains, num_draws // num_chunks)
        compiled = run.lower(carry, draw_key).compile()
        print(f"  {kind}: warm-up {warm_seconds:.0f} s incl. compile", flush=True)
        runs[kind] = dict(target=target, unravel=unravel, carry=carry, compiled=compiled, records=[], evals=[],
                          seconds=0.0, warm=warm_seconds)
    samplers = [kind for kind in samplers if kind in runs]
    for chunk in range(num_chunks):  # alternating, chunk by chunk
        chunk_key = jax.random.fold_in(draw_key, chunk)
        for kind in samplers:
            r = runs[kind]
            fastest = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                out = jax.block_until_ready(r["compiled"](r["carry"], chunk_key))
                fastest = min(fastest, time.perf_counter() - start)
            r["carry"], (flat, evals) = out
            r["seconds"] += fastest
            r["records"].append(np.asarray(flat))
            r["evals"].append(np.asarray(evals))
    results = {}
    for kind in samplers:
        r = runs[kind]
        flat = np.concatenate(r["records"]).swapaxes(0, 1)  # (chain, draw, d)
        positions = jax.vmap(jax.vmap(r["unravel"]))(flat)
        constrained = r["target"].postprocess(positions)
        values, labels = component_table(constrained, sites)
        results[kind] = summarise(values, labels, truth_mean, truth_sd, r["seconds"], np.mean(r["evals"]))
        results[kind]["warm"] = r["warm"]
    return results


def print_header(argv, num_chains, num_warmup, num_draws, num_chunks, precision):
    """The command, the machine and the protocol, as every run's first lines."""
    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]))
    print(f"machine: {_cpu_model()}, {os.cpu_count()} logical CPUs; devices {jax.devices()}; jax {jax.__version__}, "
          f"blackjax {blackjax.__version__}, arviz {az.__version__}")
    print(f"{num_chains} chains, {num_warmup} warm-up steps, {num_draws} draws per chain in {num_chunks} "
          f"alternating chunks, {precision}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 chains x 300 draws, a smoke run")
    parser.add_argument("--chains", type=int, default=None)
    parser.add_argument("--draws", type=int, default=None,
                        help="draws per chain (default per case: sv 800, radon 1000, german 4000, lorenz 2000)")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(DEFAULT_SAMPLERS))
    parser.add_argument("--fit-steps", type=int, default=1000, help="ELBO steps of polar_flow's flow fit")
    parser.add_argument("--hyper-w", type=float, default=None,
                        help="the hyperparameter moves' window (polar_asis, polar_pncp: default 1; polar_pncp_cw: "
                             "the coordinatewise brackets in marginal spreads, default 2)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="first compare each model with inference-gym's")
    args = parser.parse_args(argv)
    num_chains = args.chains or (4 if args.quick else 8)
    num_chunks = 10
    draws = {case: args.draws or (300 if args.quick else DRAWS[case]) for case in args.cases}
    print_header(argv, num_chains, args.warmup, "/".join(str(draws[case]) for case in args.cases), num_chunks,
                 "float64")
    for case in args.cases:
        num_draws = draws[case]
        print(f"== {case} (inference-gym {CASES[case][0]}), {num_chains} x {num_draws} draws")
        if args.check:
            check_against_gym(case)
        samplers = list(dict.fromkeys(BEST[case] if kind == "best" else kind for kind in args.samplers))
        results = run_case(case, samplers, num_chains, num_draws, args.warmup, num_chunks, args.repeats, args.seed,
                           args.fit_steps, args.hyper_w)
        print(f"{'sampler':<9} {'evals/step':>10} {'time s':>8} {'max R-hat':>10} {'min ESS':>8} {'ESS/s':>8} "
              f"{'max |z|':>8} {'#|z|>5':>6}  worst (R-hat / ESS / z)")
        for kind, r in results.items():
            print(f"{kind:<9} {r['evals/step']:>10.1f} {r['seconds']:>8.2f} {r['max_rhat']:>10.3f} {r['min_ess']:>8.0f} "
                  f"{r['ess/s']:>8.2f} {r['max_z']:>8.1f} {r['n_over_5']:>6}  {r['worst_rhat']} / {r['worst_ess']} / "
                  f"{r['worst_z']}   (warm-up {r['warm']:.0f} s incl. compile)")
        if "nuts" in results:
            for kind in results:
                if kind != "nuts":
                    print(f"  {kind} / nuts: min-ESS/s x{results[kind]['ess/s'] / results['nuts']['ess/s']:.3g}")
        print(flush=True)


if __name__ == "__main__":
    main()
