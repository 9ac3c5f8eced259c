#!/usr/bin/env python3
"""Which learner settings get a Horde close to the truth: the sweep behind ``HordeLearner``'s
defaults, against linear TD(λ) on tile codes.

Usage::

    python benchmarks/sweep_defaults.py                                # every config, 3 envs, seeds 0 1 2
    python benchmarks/sweep_defaults.py --envs CartPole-v1 --only defaults tile
    python benchmarks/sweep_defaults.py --list                         # the config names

Streams (one per seed, the same for every config): ``--steps`` (30,000) steps of uniformly
random actions in the Python Gymnasium environment.

* ``CartPole-v1`` (episodic, its own 500-step limit); 17 demons: each of the 4 observation
  components at γ ∈ {0, 0.5, 0.8, 0.9}, and time to termination (cumulant 1, γ 0.9, ended by
  termination).
* ``Acrobot-v1`` without its time limit (termination, the tip above the line, is kept); 24
  demons: each of the 6 observation components at the same four γ.
* ``Pendulum-v1`` without its time limit (a continuing stream); 14 demons: each of the 3
  observation components at the four γ, and the reward at γ 0.5 and 0.9.

The demons' λ is each config's (``defaults`` rows: λ = 0, ``Demon``'s own default, which is
what ``HordeLearner(demons)`` meets; the tile coder: λ = 0.9, its best). The learners
learn from the recorded transitions with ``HordeLearner.scan_traced`` (the update every runner
uses), one ``vmap`` over the seeds.

Score (per seed): for every demon, the RMSE of ``v(S_t)`` against the ideal return ``G_t``
over the last 20 % of the steps, divided by the standard deviation of ``G_t`` there (a demon
that predicts the mean return scores 1); the table shows the median over the demons, the
median over the γ = 0.9 demons, and CartPole's time-to-termination demon. The floor (what the
true values ``E[G_t | S_t]`` themselves score: CartPole 0.355 / 0.486 / 0.486, Pendulum median
0.061) is the policy's noise, which no learner removes.

Head features (rows "heads see ..."): prototypes of heads that see ``[h, φ(x)]``, the trunk's
output and a fixed map of the normalised observation (``ExtraHeadFeatures`` below, a
``MultiHeadMLPLearner`` built here); the library's ``head_features`` (``FourierFeatures``) is
the one that became a default. Rows named ``RFF ...`` change one setting around the default
head features (their number, bandwidth and step size, the normalizer, the trunk's step size,
λ); ``cartpole_ceilings.py`` gives the floor and the least-squares ceiling they are measured
against.

Least-squares heads (rows ``LSTD heads: ...``): ``HordeLearner(ds, heads=LSTDHeads(...))``
with their settings spelled out (``_lstd``). They are ``HordeLearner(ds)``'s choice since the
row ``LSTD heads: Welford, burn-in 3000`` met the CartPole targets; today's default is the row
``LSTD heads: Welford, burn-in 3000, input clip 3, 128 products``; the row ``TD heads (trunk,
head features)`` is the defaults before that (``heads="td"``), and the rows ``defaults, ...``
that change a trunk or TD-head setting are TD heads too (any such setting chooses them).

Tile coder (``tile``): 8 tilings of all observation components together (``4096^(1/d)``
intervals per component, offsets ``k/8`` of an interval times a fixed odd vector), plus 8
tilings of each component alone (16 intervals), plus a bias feature; ranges from the 0.1 and
99.9 percentiles of the stream's observations. Linear TD(λ = 0.9) with accumulating traces
(truncated after 48 steps, ``0.81^48 < 1e-4``), step size ``α / (active features)`` with
``α = 0.1`` (best of 0.05, 0.1, 0.2, 0.4 on CartPole).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _machine import machine_info  # noqa: E402

import horde  # noqa: E402
from demons import Demon, DemonSet, cumulants, discounts  # noqa: E402
from horde import (  # noqa: E402
    IDBD,
    LMS,
    Autostep,
    EMANormalizer,
    HordeLearner,
    MultiHeadMLPLearner,
    ObGDBounding,
    OvershootBounding,
    WelfordNormalizer,
)
from horde.core import HeadParams  # noqa: E402
from horde.evaluation import ideal_returns  # noqa: E402
from horde.td import Transitions  # noqa: E402

GAMMAS = (0.0, 0.5, 0.8, 0.9)
ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1")


def demon_set(env_id: str, lamda: float = 0.9) -> DemonSet:
    dims = {"CartPole-v1": 4, "Acrobot-v1": 6, "Pendulum-v1": 3}[env_id]
    ds = [
        Demon(f"obs[{i}]@{g}", cumulants.observation(i), discounts.constant(g), lamda)
        for i in range(dims)
        for g in GAMMAS
    ]
    if env_id == "CartPole-v1":
        ds.append(Demon("time_to_termination", cumulants.constant(1.0), discounts.constant(0.9), lamda))
    if env_id == "Pendulum-v1":
        ds += [Demon(f"reward@{g}", cumulants.reward(), discounts.constant(g), lamda) for g in (0.5, 0.9)]
    return DemonSet(ds)


def record_stream(env_id: str, seed: int, steps: int) -> Transitions:
    """``steps`` transitions of uniformly random actions (``action_space.sample()``)."""
    # max_episode_steps=None would keep the registered limit (Pendulum's 200 steps): a limit
    # past the stream's end removes it.
    env = gym.make(env_id) if env_id == "CartPole-v1" else gym.make(env_id, max_episode_steps=steps + 1)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    cols: list[list[Any]] = [[], [], [], [], [], []]
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for col, value in zip(cols, (obs, action, reward, next_obs, terminated, truncated and not terminated)):
            col.append(value)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    o, a, r, o2, te, tr = (np.asarray(c) for c in cols)
    return Transitions(
        o.astype(np.float32),
        a.astype(np.float32) if a.ndim > 1 else a,
        r.astype(np.float32),
        o2.astype(np.float32),
        te.astype(bool),
        tr.astype(bool),
        np.ones(steps, np.float32),
    )


def streams(env_id: str, seeds: list[int], steps: int) -> Transitions:
    """One stream per seed, stacked on a leading seed axis."""
    return jax.tree_util.tree_map(lambda *x: np.stack(x), *(record_stream(env_id, s, steps) for s in seeds))


def ideal(stream: Transitions, ds: DemonSet) -> tuple[np.ndarray, np.ndarray]:
    """Ideal returns ``(n_seeds, T, n_demons)`` and where they are complete."""
    out = []
    for s in range(stream.observations.shape[0]):
        ev = ds.evaluate_batch(
            stream.observations[s], stream.actions[s], stream.rewards[s], stream.next_observations[s]
        )
        out.append(
            ideal_returns(np.asarray(ev.cumulants), np.asarray(ev.discounts), stream.terminated[s], stream.truncated[s])
        )
    return np.stack([o.returns for o in out]), np.stack([o.complete for o in out])


def scores(predictions: np.ndarray, returns: np.ndarray, complete: np.ndarray, ds: DemonSet, last: float = 0.2):
    """Per seed: median, γ = 0.9 median, time to termination (NaN if none)."""
    start = int(predictions.shape[1] * (1 - last))
    err = np.where(complete, predictions - returns, np.nan)[:, start:]
    g = np.where(complete, returns, np.nan)[:, start:]
    normalized = np.sqrt(np.nanmean(err**2, axis=1)) / np.nanstd(g, axis=1)
    g9 = np.isclose(np.asarray(ds.constant_gammas), 0.9)
    ttt = (
        normalized[:, ds.names.index("time_to_termination")]
        if "time_to_termination" in ds.names
        else np.full(len(normalized), np.nan)
    )
    return np.median(normalized, axis=1), np.median(normalized[:, g9], axis=1), ttt


def horde_predictions(learner: HordeLearner, stream: Transitions, seeds: list[int]) -> np.ndarray:
    dim = stream.observations.shape[-1]

    def one(transitions, key):
        return learner.scan_traced(learner.init_traced(dim, key), transitions).predictions

    keys = jnp.stack([jax.random.key(s) for s in seeds])
    return np.asarray(jax.jit(jax.vmap(one))(stream, keys))


# ---------------------------------------------------------------------------------------------
# The tile-coded baseline


def tile_indices(obs: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_tilings: int = 8) -> tuple[np.ndarray, int]:
    """Active feature indices ``(T, n_active)`` and the feature count."""
    d = obs.shape[1]
    u = np.clip((obs - lo) / (hi - lo), 0.0, 1.0 - 1e-9)
    bins = max(2, round(4096 ** (1.0 / d)))
    odd = np.arange(1, 2 * d, 2)  # offsets along a fixed odd vector, as in Sutton & Barto §9.5.4
    idx, offset = [], 0
    for k in range(n_tilings):
        cell = np.floor(u * (bins - 1) + (k * odd / n_tilings) % 1.0).astype(np.int64)
        idx.append(offset + np.ravel_multi_index(tuple(cell.T), (bins,) * d))
        offset += bins**d
    for j in range(d):
        for k in range(n_tilings):
            idx.append(offset + np.floor(u[:, j] * 15 + k / n_tilings).astype(np.int64))
            offset += 16
    idx.append(np.full(len(obs), offset))
    return np.stack(idx, 1).astype(np.int32), offset + 1


def tile_td_lambda(stream: Transitions, ds: DemonSet, alpha: float = 0.1, lamda: float = 0.9, window: int = 48):
    """Linear TD(λ) on tile codes, every demon, per seed: predictions ``(n_seeds, T, n_demons)``."""
    flat = stream.observations.reshape(-1, stream.observations.shape[-1])
    lo, hi = np.quantile(flat, 0.001, axis=0), np.quantile(flat, 0.999, axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    z_terminal = jnp.asarray(np.asarray(ds.z, np.float32))
    out = []
    for s in range(stream.observations.shape[0]):
        active, n_features = tile_indices(stream.observations[s], lo, hi)
        active_next, _ = tile_indices(stream.next_observations[s], lo, hi)
        ev = ds.evaluate_batch(
            stream.observations[s], stream.actions[s], stream.rewards[s], stream.next_observations[s]
        )
        n, k = len(ds), active.shape[1]
        step = alpha / k

        def body(carry, inputs):
            w, past, coef, gamma_prev = carry
            i, i_next, c, gamma, terminated, ended = inputs
            v, v_next = w[:, i].sum(1), w[:, i_next].sum(1)
            delta = jnp.where(terminated, c + z_terminal, c + gamma * v_next) - v
            # z_t = γ_t λ z_{t-1} + x_t kept as the last `window` feature sets and their weights
            past = jnp.roll(past, 1, 0).at[0].set(i)
            coef = jnp.roll(coef * (gamma_prev * lamda)[:, None], 1, 1).at[:, 0].set(1.0)
            w = w.at[:, past].add(step * delta[:, None, None] * coef[:, :, None])
            return (w, past, jnp.where(ended, 0.0, coef), gamma), v

        init = (jnp.zeros((n, n_features)), jnp.zeros((window, k), jnp.int32), jnp.zeros((n, window)), jnp.zeros(n))
        inputs = (
            jnp.asarray(active),
            jnp.asarray(active_next),
            jnp.asarray(ev.cumulants),
            jnp.asarray(ev.discounts),
            jnp.asarray(stream.terminated[s]),
            jnp.asarray(stream.terminated[s] | stream.truncated[s]),
        )
        out.append(np.asarray(jax.lax.scan(jax.jit(body), init, inputs)[1]))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------
# Head features beyond the trunk's output (prototypes): the heads see ``[h, φ(x)]``, ``x`` the
# normalised observation and ``φ`` a fixed map; the trunk learns from ``h``'s part of the
# cotangent only.

FeatureFactory = Callable[[int], tuple[Callable[[jax.Array], jax.Array], int]]


class ExtraHeadFeatures(MultiHeadMLPLearner):
    """A ``MultiHeadMLPLearner`` whose heads also see ``φ(x)``; ``make_phi(dim)`` gives
    ``(φ, its size)`` for inputs of size ``dim``."""

    def __init__(self, make_phi: FeatureFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.make_phi = make_phi
        self.maps: dict[int, Any] = {}

    def map_for(self, dim: int):
        if dim not in self.maps:
            self.maps[dim] = self.make_phi(dim)
        return self.maps[dim]

    def init(self, feature_dim, key):
        s = super().init(feature_dim, key)
        n_extra = self.map_for(int(feature_dim))[1]
        w = jnp.concatenate([s.head_params.weights, jnp.zeros((self.n_heads, n_extra))], 1)
        b = s.head_params.biases
        return s._replace(
            head_params=HeadParams(w, b),
            head_optimizer_states=(self.head_opt.init_for_shape(w.shape), self.head_opt.init_for_shape(b.shape)),
            head_traces=(jnp.zeros_like(w), jnp.zeros_like(b)) if s.head_traces else (),
        )

    def trunk_forward_with_tape(self, trunk_params, x):
        h, tape = super().trunk_forward_with_tape(trunk_params, x)
        phi = self.map_for(x.shape[-1])[0]
        return jnp.concatenate([h, phi(x).astype(h.dtype)], -1), tape

    def predict_traced(self, state, observation):
        x, _ = self.normalized_features(state, observation, update=False)
        return self.head_forward(state.head_params, self.trunk_forward_with_tape(state.trunk_params, x)[0])

    def trunk_step(self, state, tape, cotangent, errors=None, active=None):
        hidden = self.hidden_sizes[-1]
        w = state.head_params
        trunk_state = state._replace(head_params=HeadParams(w.weights[:, :hidden], w.biases))
        return super().trunk_step(trunk_state, tape, cotangent[:hidden], errors, active)


def identity_map(scale: float = 1.0) -> FeatureFactory:
    """``φ(x) = scale · x``."""
    return lambda dim: ((lambda x: scale * x), dim)


def fourier_map(n: int, bandwidth: float, scale: float = 1.0, seed: int = 12345) -> FeatureFactory:
    """``scale · cos(x W / bandwidth + b)``, ``W ~ N(0, 1)``, ``b ~ U(0, 2π)`` (random Fourier
    features, Rahimi & Recht 2007)."""

    def make(dim):
        rng = np.random.default_rng(seed)
        w = (rng.normal(size=(dim, n)) / bandwidth).astype(np.float32)
        b = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        return (lambda x: scale * jnp.cos(x @ w + b)), n

    return make


def rbf_map(n: int, width: float, scale: float = 1.0, seed: int = 12345) -> FeatureFactory:
    """``scale · exp(-‖x - c_k‖² / (2 width²))``, centres ``c_k ~ N(0, I)``."""

    def make(dim):
        c = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
        return (lambda x: scale * jnp.exp(-jnp.sum((x[..., None, :] - c) ** 2, -1) / (2 * width**2))), n

    return make


def tile_map(
    tiles: int = 6, tilings: int = 8, single: int = 16, low: float = -2.5, high: float = 2.5, scale: float = 1.0
) -> FeatureFactory:
    """Dense one-hot tile codes of the normalised input on ``[low, high]`` (as ``tile_indices``:
    ``tilings`` joint tilings and ``tilings`` per-component ones), ``scale`` per active tile."""

    def make(dim):
        joint = (tiles + 1) ** dim
        n = tilings * joint + tilings * dim * (single + 1)
        odd = np.arange(1, 2 * dim, 2)
        offs = ((np.arange(tilings)[:, None] * odd[None, :] / tilings) % 1.0).astype(np.float32)
        strides = (tiles + 1) ** np.arange(dim)

        def phi(x):
            u = jnp.clip((x - low) / (high - low), 0.0, 1.0 - 1e-6)
            cell = jnp.floor(u[..., None, :] * tiles + offs).astype(jnp.int32)
            idx = jnp.sum(cell * strides, -1) + np.arange(tilings) * joint
            one = jnp.floor(u[..., None, :] * single + np.arange(tilings)[:, None] / tilings).astype(jnp.int32)
            idx1 = tilings * joint + (np.arange(tilings)[:, None] * dim + np.arange(dim)) * (single + 1) + one
            active = jnp.concatenate([idx, idx1.reshape(idx1.shape[:-2] + (-1,))], -1)
            return scale * jnp.sum(jax.nn.one_hot(active, n), -2)

        return phi, n

    return make


def concat_maps(*factories: FeatureFactory) -> FeatureFactory:
    def make(dim):
        maps = [f(dim) for f in factories]
        return (lambda x: jnp.concatenate([m(x) for m, _ in maps], -1)), sum(k for _, k in maps)

    return make


def _head_features(make_phi: FeatureFactory, **kwargs: Any) -> Callable[[DemonSet], HordeLearner]:
    """The defaults spelled out, with heads that also see ``φ(x)``."""
    settings: dict[str, Any] = {
        "optimizer": LMS(2e-4),
        "head_optimizer": Autostep(1e-3),
        "normalizer": EMANormalizer(),
        **kwargs,
    }

    def make(ds: DemonSet) -> HordeLearner:
        learner = HordeLearner(ds, **settings)
        c = learner.core
        learner.core = ExtraHeadFeatures(
            make_phi,
            n_heads=c.n_heads,
            hidden_sizes=c.hidden_sizes,
            optimizer=c.optimizer,
            step_size=c.step_size,
            bounder=c.bounder,
            normalizer=c.normalizer,
            sparsity=c.sparsity,
            leaky_relu_slope=c.leaky_relu_slope,
            use_layer_norm=c.use_layer_norm,
            head_optimizer=c.head_optimizer,
            store_head_traces=c.store_head_traces,
        )
        return learner

    return make


# ---------------------------------------------------------------------------------------------
# Configurations: name -> (the demons' λ, learner for a demon set); "defaults" rows spell the
# defaults out, so that they keep their meaning when the defaults change


def _defaults(**kwargs: Any) -> Callable[[DemonSet], HordeLearner]:
    """The defaults spelled out (so that a row keeps its meaning when they change), with
    ``kwargs`` replacing some of them."""
    settings: dict[str, Any] = {
        "optimizer": LMS(2e-4),
        "head_optimizer": Autostep(1e-3),
        "normalizer": EMANormalizer(),
        **kwargs,
    }
    return lambda ds: HordeLearner(ds, **settings)


def _with_rff(**kwargs: Any) -> Callable[[DemonSet], HordeLearner]:
    """The defaults with head features spelled out (``FourierFeatures(256, bandwidth=1.0)``
    heads, so that a row keeps its meaning when the defaults change), ``kwargs`` replacing
    some of them."""
    settings: dict[str, Any] = {
        "optimizer": LMS(2e-4),
        "head_optimizer": Autostep(1e-3),
        "normalizer": EMANormalizer(),
        "head_features": horde.FourierFeatures(256, bandwidth=1.0),
        **kwargs,
    }
    return lambda ds: HordeLearner(ds, **settings)


def _lstd(normalizer: Any = None, **kwargs: Any) -> Callable[[DemonSet], HordeLearner]:
    """Least-squares heads with their settings spelled out (``kwargs`` replacing some), and
    ``WelfordNormalizer()`` unless ``normalizer`` is given."""
    settings: dict[str, Any] = {
        "ridge": 10.0,
        "solve_every": 250,
        "forgetting": 1e-5,
        "averaging_power": 0.0,
        "burn_in": 3000,
        "features": horde.FourierFeatures(256, bandwidth=1.0),
        **kwargs,
    }
    norm = WelfordNormalizer() if normalizer is None else normalizer
    return lambda ds: HordeLearner(ds, heads=horde.LSTDHeads(**settings), normalizer=norm)


CONFIGS: dict[str, tuple[float, Callable[[DemonSet], HordeLearner]]] = {
    # name: (the demons' λ, learner for the demon set)
    "defaults": (0.0, lambda ds: HordeLearner(ds)),
    "defaults, λ 0.9": (0.9, lambda ds: HordeLearner(ds)),
    # heads="td": the defaults before least-squares heads became them (a trunk with TD heads)
    "TD heads (trunk, head features)": (0.0, lambda ds: HordeLearner(ds, heads="td")),
    "defaults without head features (LMS 2e-4 trunk, Autostep(1e-3) heads, EMA)": (0.0, _defaults()),
    "defaults, heads Autostep(3e-4)": (0.0, lambda ds: HordeLearner(ds, head_optimizer=Autostep(3e-4))),
    "defaults, RFF bandwidth 1": (
        0.0,
        lambda ds: HordeLearner(ds, head_features=horde.FourierFeatures(256, bandwidth=1.0)),
    ),
    "defaults, RFF bandwidth 2": (
        0.0,
        lambda ds: HordeLearner(ds, head_features=horde.FourierFeatures(256, bandwidth=2.0)),
    ),
    "defaults, 64 RFF": (0.0, lambda ds: HordeLearner(ds, head_features=horde.FourierFeatures(64))),
    "defaults, 128 RFF": (0.0, lambda ds: HordeLearner(ds, head_features=horde.FourierFeatures(128))),
    "defaults, skip path only (0 RFF)": (0.0, lambda ds: HordeLearner(ds, head_features=horde.FourierFeatures(0))),
    "previous defaults (no normalizer, Autostep(0.01) heads)": (
        0.0,
        _defaults(head_optimizer=Autostep(), normalizer=None),
    ),
    "old defaults (LMS 1e-3)": (0.0, lambda ds: HordeLearner(ds, step_size=1e-3, normalizer=None)),
    # the normalizer
    "no normalizer": (0.0, _defaults(normalizer=None)),
    "WelfordNormalizer": (0.0, _defaults(normalizer=WelfordNormalizer())),
    # the heads
    "heads Autostep(0.01)": (0.0, _defaults(head_optimizer=Autostep())),
    "heads Autostep(3e-4)": (0.0, _defaults(head_optimizer=Autostep(3e-4))),
    "heads Autostep(1e-3, meta 1e-3)": (0.0, _defaults(head_optimizer=Autostep(1e-3, 1e-3))),
    "heads LMS 1e-3": (0.0, _defaults(head_optimizer=LMS(1e-3))),
    "heads LMS 3e-4": (0.0, _defaults(head_optimizer=LMS(3e-4))),
    "heads LMS 1e-4": (0.0, _defaults(head_optimizer=LMS(1e-4))),
    "heads LMS 3e-4, λ 0.9": (0.9, _defaults(head_optimizer=LMS(3e-4))),
    # the trunk, under the previous heads (Autostep(0.01)) with the EMA normalizer
    "Autostep(0.01) heads: trunk LMS 1e-3": (0.0, _defaults(head_optimizer=Autostep(), optimizer=LMS(1e-3))),
    "Autostep(0.01) heads: trunk LMS 3e-3": (0.0, _defaults(head_optimizer=Autostep(), optimizer=LMS(3e-3))),
    "Autostep(0.01) heads: trunk IDBD(2e-4)": (0.0, _defaults(head_optimizer=Autostep(), optimizer=IDBD(2e-4))),
    "Autostep(0.01) heads: trunk Autostep(1e-3)": (
        0.0,
        _defaults(head_optimizer=Autostep(), optimizer=Autostep(1e-3)),
    ),
    "Autostep(0.01) heads: trunk (256,)": (0.0, _defaults(head_optimizer=Autostep(), hidden_sizes=(256,))),
    "Autostep(0.01) heads: trunk (1024,)": (0.0, _defaults(head_optimizer=Autostep(), hidden_sizes=(1024,))),
    "Autostep(0.01) heads: trunk (512, 512)": (0.0, _defaults(head_optimizer=Autostep(), hidden_sizes=(512, 512))),
    "Autostep(0.01) heads: no LayerNorm": (0.0, _defaults(head_optimizer=Autostep(), use_layer_norm=False)),
    "Autostep(0.01) heads: sparsity 0": (0.0, _defaults(head_optimizer=Autostep(), sparsity=0.0)),
    "Autostep(0.01) heads: no trunk (linear on the normalised observations)": (
        0.0,
        _defaults(hidden_sizes=(), optimizer=Autostep(), head_optimizer=None),
    ),
    "trunk LMS 5e-4": (0.0, _defaults(optimizer=LMS(5e-4))),
    # bounding
    "Autostep(0.01) heads: trunk LMS 1e-3 + OvershootBounding()": (
        0.0,
        _defaults(head_optimizer=Autostep(), optimizer=LMS(1e-3), bounder=OvershootBounding()),
    ),
    "stream-x: LMS 1.0 + ObGD, λ 0.9": (
        0.9,
        lambda ds: HordeLearner(ds, optimizer=LMS(1.0), bounder=ObGDBounding(), normalizer=WelfordNormalizer()),
    ),
    "stream-x: LMS 1.0 + OvershootBounding(10), λ 0.9": (
        0.9,
        lambda ds: HordeLearner(
            ds, optimizer=LMS(1.0), bounder=OvershootBounding(10.0), normalizer=WelfordNormalizer()
        ),
    ),
    "stream-x: LMS 1.0 + OvershootBounding(30), λ 0.9": (
        0.9,
        lambda ds: HordeLearner(
            ds, optimizer=LMS(1.0), bounder=OvershootBounding(30.0), normalizer=WelfordNormalizer()
        ),
    ),
    # heads that also see fixed features of the normalised observation (prototypes)
    "skip: heads see [h, x]": (0.0, _head_features(identity_map())),
    "skip: heads see [h, x], λ 0.9": (0.9, _head_features(identity_map())),
    "heads see [h, x, RFF 256 bw 1]": (0.0, _head_features(concat_maps(identity_map(), fourier_map(256, 1.0)))),
    "heads see [h, x, RFF 256 bw 0.5]": (0.0, _head_features(concat_maps(identity_map(), fourier_map(256, 0.5)))),
    "heads see [h, x, RBF 256 w 0.5]": (0.0, _head_features(concat_maps(identity_map(), rbf_map(256, 0.5)))),
    "heads see [h, x, RBF 256 w 1]": (0.0, _head_features(concat_maps(identity_map(), rbf_map(256, 1.0)))),
    "heads see [h, x, tiles 4]": (0.0, _head_features(concat_maps(identity_map(), tile_map(tiles=4)))),
    "heads see [h, x, RFF 1024 bw 1]": (0.0, _head_features(concat_maps(identity_map(), fourier_map(1024, 1.0)))),
    "heads see [h, x, RFF 256 bw 2]": (0.0, _head_features(concat_maps(identity_map(), fourier_map(256, 2.0)))),
    "heads see [h, x, RFF 256 bw 1], λ 0.9": (0.9, _head_features(concat_maps(identity_map(), fourier_map(256, 1.0)))),
    "heads see [h, x, RFF 256 bw 1], heads Autostep(3e-4)": (
        0.0,
        _head_features(concat_maps(identity_map(), fourier_map(256, 1.0)), head_optimizer=Autostep(3e-4)),
    ),
    "heads see [h, x, RFF 256 bw 1], Welford": (
        0.0,
        _head_features(concat_maps(identity_map(), fourier_map(256, 1.0)), normalizer=WelfordNormalizer()),
    ),
    # with the library's head features (FourierFeatures(256, bandwidth=1.0)): what else moves
    "RFF: heads Autostep(5e-4)": (0.0, _with_rff(head_optimizer=Autostep(5e-4))),
    "RFF 512": (0.0, _with_rff(head_features=horde.FourierFeatures(512))),
    "RFF 512, heads Autostep(5e-4)": (
        0.0,
        _with_rff(head_features=horde.FourierFeatures(512), head_optimizer=Autostep(5e-4)),
    ),
    "RFF 1024, heads Autostep(2.5e-4)": (
        0.0,
        _with_rff(head_features=horde.FourierFeatures(1024), head_optimizer=Autostep(2.5e-4)),
    ),
    "RFF: EMA decay 0.9999": (0.0, _with_rff(normalizer=EMANormalizer(decay=0.9999))),
    "RFF: Welford": (0.0, _with_rff(normalizer=WelfordNormalizer())),
    "RFF: Welford, heads Autostep(5e-4)": (
        0.0,
        _with_rff(normalizer=WelfordNormalizer(), head_optimizer=Autostep(5e-4)),
    ),
    "RFF: trunk LMS 1e-4": (0.0, _with_rff(optimizer=LMS(1e-4))),
    "RFF: trunk LMS 5e-5": (0.0, _with_rff(optimizer=LMS(5e-5))),
    "RFF: heads Autostep(1e-3, meta 0.03)": (0.0, _with_rff(head_optimizer=Autostep(1e-3, 0.03))),
    "RFF: heads Autostep(1e-3, tau 1000)": (0.0, _with_rff(head_optimizer=Autostep(1e-3, tau=1000.0))),
    "RFF bw 0.7": (0.0, _with_rff(head_features=horde.FourierFeatures(256, bandwidth=0.7))),
    "RFF: λ 0.5": (0.5, _with_rff()),
    "RFF: heads LMS 3e-4": (0.0, _with_rff(head_optimizer=LMS(3e-4))),
    "RFF bw 0.5": (0.0, _with_rff(head_features=horde.FourierFeatures(256, bandwidth=0.5))),
    "RFF bw 0.35": (0.0, _with_rff(head_features=horde.FourierFeatures(256, bandwidth=0.35))),
    "RFF 512 bw 0.5, heads Autostep(5e-4)": (
        0.0,
        _with_rff(head_features=horde.FourierFeatures(512, bandwidth=0.5), head_optimizer=Autostep(5e-4)),
    ),
    "RFF 1024 bw 0.5, heads Autostep(2.5e-4)": (
        0.0,
        _with_rff(head_features=horde.FourierFeatures(1024, bandwidth=0.5), head_optimizer=Autostep(2.5e-4)),
    ),
    # least-squares TD(λ) heads (horde.td.least_squares) on [1, x, 256 Fourier features of x], ridge 10,
    # a solve every 250 steps; settings spelled out so that a row keeps its meaning; "burn-in N":
    # the normaliser learns for N steps, then stays fixed, and the statistics restart there
    "LSTD heads: Welford, burn-in 3000": (0.0, _lstd()),
    # the cosines read the normalised observation clipped at ±c standard deviations
    # (FourierFeatures(input_clip=c)); with 128 product features (n_products=128,
    # product_bandwidth=2), clip 3 is LSTDHeads()'s default
    "LSTD heads: Welford, burn-in 3000, input clip 3, 128 products": (
        0.0,
        _lstd(
            features=horde.FourierFeatures(256, bandwidth=1.0, input_clip=3.0, n_products=128, product_bandwidth=2.0)
        ),
    ),
    "LSTD heads: Welford, burn-in 3000, input clip 3": (
        0.0,
        _lstd(features=horde.FourierFeatures(256, bandwidth=1.0, input_clip=3.0)),
    ),
    "LSTD heads: Welford, burn-in 3000, input clip 2": (
        0.0,
        _lstd(features=horde.FourierFeatures(256, bandwidth=1.0, input_clip=2.0)),
    ),
    "LSTD heads: Welford, burn-in 3000, input clip 4": (
        0.0,
        _lstd(features=horde.FourierFeatures(256, bandwidth=1.0, input_clip=4.0)),
    ),
    "LSTD heads: Welford, burn-in 1000": (0.0, _lstd(burn_in=1000)),
    "LSTD heads: Welford, burn-in 3000, λ 0.5": (0.5, _lstd()),
    "LSTD heads: Welford, burn-in 3000, λ 0.9": (0.9, _lstd()),
    "LSTD heads: EMA, burn-in 3000": (0.0, _lstd(normalizer=EMANormalizer())),
    "LSTD heads: Welford, no burn-in": (0.0, _lstd(burn_in=0)),
    "LSTD heads: Welford, no burn-in, λ 0.5": (0.5, _lstd(burn_in=0)),
    "LSTD heads: Welford, averaging power 1": (0.0, _lstd(burn_in=0, averaging_power=1.0)),
    "LSTD heads: Welford, averaging power 1, λ 0.5": (0.5, _lstd(burn_in=0, averaging_power=1.0)),
    "LSTD heads: Welford, averaging power 0.5": (0.0, _lstd(burn_in=0, averaging_power=0.5)),
    "LSTD heads: EMA, no burn-in": (0.0, _lstd(normalizer=EMANormalizer(), burn_in=0)),
    "LSTD heads: EMA, averaging power 1": (0.0, _lstd(normalizer=EMANormalizer(), burn_in=0, averaging_power=1.0)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--only", nargs="+", default=None, help="these configs only (names as --list prints)")
    parser.add_argument("--list", action="store_true", help="list the config names and exit")
    args = parser.parse_args()
    names = ["tile", *CONFIGS]
    if args.list:
        print("\n".join(names))
        return
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown configs {sorted(unknown)}; --list prints the names")
        names = [n for n in names if n in args.only]
    info = machine_info()
    load = os.getloadavg()
    print(f"command: python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}")
    print(f"seeds {args.seeds}, {args.steps} steps; horde {horde.__version__}; machine: {info}")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| config | env | median (per seed) | γ = 0.9 group | time to termination | s |")
    print("|---|---|---|---|---|---|")
    for env_id in args.envs:
        stream = streams(env_id, args.seeds, args.steps)
        ds = demon_set(env_id)  # the returns do not depend on λ
        returns, complete = ideal(stream, ds)
        for name in names:
            start = time.time()
            if name == "tile":
                predictions = tile_td_lambda(stream, ds)
            else:
                lamda, make = CONFIGS[name]
                predictions = horde_predictions(make(demon_set(env_id, lamda)), stream, args.seeds)
            med, g9, ttt = scores(predictions, returns, complete, ds)

            def fmt(x):
                return " ".join(f"{v:.3f}" for v in x) if np.all(np.isfinite(x)) else "-"

            print(
                f"| {name} | {env_id} | {fmt(med)} | {fmt(g9)} | {fmt(ttt)} | {time.time() - start:.0f} |", flush=True
            )
    load = os.getloadavg()
    print(f"\nload average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
