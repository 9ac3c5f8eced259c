"""Attach a Horde to a Gymnasium environment and let it learn.

``run(learner, env, steps=...)`` drives a behaviour policy in the environment, turns each
observation into features (``horde.runs.features.FeatureMap``), lets the demons compute their
cumulants, discounts and importance ratios, and updates the learner on every transition.

Episode boundaries follow Gymnasium exactly:

* single environments: after ``terminated or truncated`` the runner resets the environment
  itself; the transition that ended the episode carries the real final observation (no
  bootstrap where terminated; bootstrap from that observation where truncated);
* vector environments with next-step autoreset (Gymnasium ≥ 1.0's default): the step after an
  episode ends returns the reset observation with reward 0 and both flags false; that is not a
  real transition and is never learned from (the state is left exactly as it was). Same-step
  autoreset takes the real final observation from ``info["final_obs"]``.

Because no behaviour policy here looks at the learner, the runner collects ``chunk_size``
transitions and learns from them in one compiled ``lax.scan``: the numbers are the same as
learning after every step (``chunk_size=1``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from demons import DemonInfo
from horde.runs.behaviour import BehaviourPolicy, as_behaviour_policy
from horde.td import HordeLearner, HordeState, Transitions
from horde.runs.features import FeatureMap

__all__ = ["run", "RunResult", "DivergenceError"]


class DivergenceError(RuntimeError):
    """Learning produced non-finite predictions or parameters.

    Attributes:
        step: the global step at which it was detected.
        demons: names of the demons affected.
        result: the ``RunResult`` recorded up to and including the failing chunk; its
            ``state`` is the last good state (before that chunk).
    """

    def __init__(self, message: str, *, step: int, demons: tuple[str, ...], result: "RunResult"):
        super().__init__(message)
        self.step, self.demons, self.result = step, demons, result

RESULT_FORMAT_VERSION = 1


@dataclasses.dataclass
class RunResult:
    """What a run recorded, every ``record_every`` steps.

    Per-step arrays have a leading seed axis (length 1 for a single environment, the number of
    copies for a vector environment).

    Attributes:
        demon_names: the demons, in head order.
        steps: global step index of each record, ``(k,)``.
        predictions: ``v_i(S_t)`` before the update, ``(n_seeds, k, n_demons)``.
        td_errors: ``δ_i`` (NaN for inactive demons), ``(n_seeds, k, n_demons)``.
        cumulants: ``c_{i,t+1}``, ``(n_seeds, k, n_demons)``.
        discounts: ``γ_{i,t+1}`` as the demons define it (before termination), same shape.
        rewards: ``R_{t+1}``, ``(n_seeds, k)``.
        terminated: ``(n_seeds, k)`` bool.
        truncated: ``(n_seeds, k)`` bool.
        valid: ``(n_seeds, k)`` bool; False at a vector environment's autoreset steps (not
            real transitions: their per-demon values are NaN).
        episode_seed, episode_end_step, episode_return, episode_length: one entry per finished
            episode (``(E,)`` each).
        wall_time: seconds the run took (compilation included).
        total_steps: environment steps per seed.
        record_every: the recording interval.
        config: plain-data description of the run (environment, seed, policy, learner).
        state: final learner state (batched over seeds for a vector environment); not saved
            by ``save``.
        rupee: RUPEE per demon, ``(n_seeds, k, n_demons)``, when the learner tracks
            diagnostics (``HordeLearner(diagnostics=True)``); else None.
        ude: UDE per demon, same shape, or None.
        demons: one ``demons.DemonInfo`` per demon, in head order (its kinds, timescale, λ,
            terminal outcome and whether it is off-policy), so that reports read what a demon
            is as data; empty for a result built by hand without it.
    """

    demon_names: tuple[str, ...]
    steps: np.ndarray
    predictions: np.ndarray
    td_errors: np.ndarray
    cumulants: np.ndarray
    discounts: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    episode_seed: np.ndarray
    episode_end_step: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    wall_time: float
    total_steps: int
    record_every: int
    config: dict[str, Any]
    state: Any = None
    rupee: np.ndarray | None = None
    ude: np.ndarray | None = None
    demons: tuple[DemonInfo, ...] = ()

    _ARRAYS = (
        "steps", "predictions", "td_errors", "cumulants", "discounts", "rewards", "terminated",
        "truncated", "valid", "episode_seed", "episode_end_step", "episode_return", "episode_length",
    )

    @property
    def n_seeds(self) -> int:
        return int(self.predictions.shape[0])

    @property
    def n_demons(self) -> int:
        return len(self.demon_names)

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second over all seeds."""
        return self.total_steps * self.n_seeds / self.wall_time if self.wall_time > 0 else math.inf

    def then(self, later: "RunResult") -> "RunResult":
        """This run followed by ``later``, its continuation (e.g. a resumed run): per-step
        arrays joined along time, episodes and wall time added up, ``later``'s state."""
        if later.record_every != self.record_every or later.demon_names != self.demon_names:
            raise ValueError(
                "only a continuation with the same demons and record_every can be joined, got "
                f"record_every {self.record_every} and {later.record_every}"
            )
        joined = {}
        for name in self._ARRAYS:
            axis = 0 if name == "steps" or name.startswith("episode_") else 1
            joined[name] = np.concatenate([getattr(self, name), getattr(later, name)], axis=axis)
        for name in ("rupee", "ude"):
            a, b = getattr(self, name), getattr(later, name)
            joined[name] = None if a is None or b is None else np.concatenate([a, b], axis=1)
        return RunResult(
            demon_names=self.demon_names, wall_time=self.wall_time + later.wall_time,
            total_steps=self.total_steps + later.total_steps, record_every=self.record_every,
            config={**later.config, "start_step": self.config.get("start_step", 0)}, state=later.state,
            demons=self.demons or later.demons, **joined,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Writes ``metrics.npz`` (arrays, no pickle) and ``run.json`` (metadata) into the
        directory ``path``; returns it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.asarray(getattr(self, name)) for name in self._ARRAYS}
        for name in ("rupee", "ude"):
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name))
        tmp = path / "metrics.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path / "metrics.npz")
        meta = {
            "format_version": RESULT_FORMAT_VERSION,
            "demon_names": list(self.demon_names),
            "wall_time": self.wall_time,
            "total_steps": self.total_steps,
            "record_every": self.record_every,
            "config": self.config,
            "demons": [d._asdict() for d in self.demons],
        }
        tmp = path / "run.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, path / "run.json")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResult":
        """Reads a directory written by ``save``."""
        path = Path(path)
        meta_file, npz_file = path / "run.json", path / "metrics.npz"
        for f in (meta_file, npz_file):
            if not f.exists():
                raise FileNotFoundError(f"{f} not found: {path} is not a saved run")
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_file} is not valid JSON: {e}") from e
        version = meta.get("format_version")
        if version != RESULT_FORMAT_VERSION:
            raise ValueError(
                f"{meta_file} has format_version {version!r}, expected {RESULT_FORMAT_VERSION}"
            )
        try:
            with np.load(npz_file, allow_pickle=False) as data:
                arrays = {name: data[name] for name in cls._ARRAYS}
                for name in ("rupee", "ude"):
                    if name in data.files:
                        arrays[name] = data[name]
        except Exception as e:  # zipfile/npz errors vary by corruption
            raise ValueError(f"{npz_file} could not be read: {e}") from e
        return cls(
            demon_names=tuple(meta["demon_names"]),
            wall_time=float(meta["wall_time"]),
            total_steps=int(meta["total_steps"]),
            record_every=int(meta["record_every"]),
            config=meta["config"],
            demons=tuple(DemonInfo(**d) for d in meta.get("demons", [])),
            **arrays,
        )


# ---------------------------------------------------------------------------------------------
# Compiled chunk learners


def _chunk_fn(learner: HordeLearner, batched: bool, masked: bool, every: int):
    """The compiled function that learns from one chunk, cached on the learner.

    ``fn(state, transitions, valid, offset) -> (state, recorded, bad_any, bad_first,
    bad_mask, mean_abs_td)``: ``recorded`` holds the per-demon outputs (predictions, TD
    errors, cumulants, discounts[, RUPEE, UDE]) only at the chunk's steps ``offset + every·j``
    (the last index repeated where the chunk ends first), so long runs move and keep only what
    they record; ``bad_*`` locate the first step with a non-finite prediction. With
    ``batched``, everything carries a leading seed axis.
    """
    cache = learner.__dict__.setdefault("_runner_fns", {})
    key = (batched, masked, every)
    if key in cache:
        return cache[key]

    n = learner.n_demons
    n_out = 6 if learner.diagnostics else 4

    def step(s, t, ok):
        r, ev = learner.evaluate_and_update_traced(s, *t)
        new = r.state
        if masked:
            new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, s)
        out = (r.predictions, r.td_errors, ev.cumulants, ev.discounts)
        if learner.diagnostics:
            out = out + (r.rupee, r.ude)
        return new, out

    def scan(state, transitions, valid, offset):
        T = valid.shape[0]
        m = -(-T // every)
        # Recorded rows live in small buffers carried through the loop (step j writes slot
        # ceil((j - offset) / every), so slot k ends with record step offset + k·every), and
        # divergence is tracked in the carry: nothing of size T x n_demons is materialised.
        init = (
            state,
            tuple(jnp.zeros((m + 1, n), jnp.float32) for _ in range(n_out)),  # + a spill row
            jnp.zeros((), bool), jnp.zeros((), jnp.int32), jnp.zeros((n,), bool),
            jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32),
        )

        def body(carry, inputs):
            s, buffers, bad_any, bad_first, bad_mask, td_sum, td_count = carry
            j, t, ok = inputs
            s, out = step(s, t, ok)
            slot = jnp.minimum((j - offset + every - 1) // every, m)  # steps after the last record spill
            buffers = tuple(jax.lax.dynamic_update_index_in_dim(b, v, slot, 0) for b, v in zip(buffers, out))
            bad = ~jnp.isfinite(out[0]) & ok
            new_bad = bad.any() & ~bad_any
            bad_first = jnp.where(new_bad, j, bad_first)
            bad_mask = jnp.where(new_bad, bad, bad_mask)
            abs_td = jnp.abs(out[1])
            seen = ~jnp.isnan(abs_td) & ok
            td_sum = td_sum + jnp.sum(jnp.where(seen, abs_td, 0.0))
            td_count = td_count + jnp.sum(seen)
            return (s, buffers, bad_any | bad.any(), bad_first, bad_mask, td_sum, td_count), None

        steps = jnp.arange(T, dtype=jnp.int32)
        (final, recorded, bad_any, bad_first, bad_mask, td_sum, td_count), _ = jax.lax.scan(
            body, init, (steps, transitions, valid)
        )
        mean_abs_td = jnp.where(td_count > 0, td_sum / jnp.maximum(td_count, 1.0), jnp.nan)
        return final, tuple(b[:m] for b in recorded), bad_any, bad_first, bad_mask, mean_abs_td

    fn = jax.vmap(scan, in_axes=(0, 0, 0, None)) if batched else scan
    cache[key] = jax.jit(fn)
    return cache[key]


# ---------------------------------------------------------------------------------------------
# Recording


class _Recorder:
    def __init__(self, n_seeds: int, n_demons: int, record_every: int):
        self.n_seeds, self.n_demons, self.every = n_seeds, n_demons, record_every
        self.parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("steps", "predictions", "td_errors", "cumulants", "discounts", "rupee", "ude", "rewards", "terminated", "truncated", "valid")
        }

    def add(self, start: int, outputs, rewards, terminated, truncated, valid):
        """``outputs`` hold the chunk's recorded rows, ``(n_seeds, m, n)`` (see ``_chunk_fn``);
        ``rewards``, ``terminated``, ``truncated`` and ``valid`` every step, ``(n_seeds, T)``."""
        T = rewards.shape[1]
        offset = (-start) % self.every
        idx = np.arange(offset, T, self.every)
        if idx.size == 0:
            return
        self.parts["steps"].append(start + idx)
        for name, arr in zip(("predictions", "td_errors", "cumulants", "discounts", "rupee", "ude"), outputs):
            arr = np.asarray(arr)[:, : idx.size]
            if not valid.all():
                arr = np.where(valid[:, idx, None], arr, np.nan)
            self.parts[name].append(arr)
        self.parts["rewards"].append(rewards[:, idx])
        self.parts["terminated"].append(terminated[:, idx])
        self.parts["truncated"].append(truncated[:, idx])
        self.parts["valid"].append(valid[:, idx])

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        shapes = {
            "steps": (0,), "rewards": (self.n_seeds, 0), "terminated": (self.n_seeds, 0),
            "truncated": (self.n_seeds, 0), "valid": (self.n_seeds, 0),
        }
        for name, parts in self.parts.items():
            if name in ("rupee", "ude"):
                out[name] = np.concatenate(parts, axis=1) if parts else None
                continue
            if not parts:
                shape = shapes.get(name, (self.n_seeds, 0, self.n_demons))
                dtype = bool if name in ("terminated", "truncated", "valid") else (np.int64 if name == "steps" else np.float32)
                out[name] = np.zeros(shape, dtype)
            else:
                out[name] = np.concatenate(parts, axis=0 if name == "steps" else 1)
        return out


class _Progress:
    """tqdm bar with steps/s and the mean recent |TD error|; silent when disabled."""

    def __init__(self, total: int, enabled: bool | None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update(self, n: int, td_errors) -> None:
        if self.bar is None:
            return
        with np.errstate(all="ignore"):
            err = float(np.nanmean(np.abs(np.asarray(td_errors)))) if np.size(td_errors) else float("nan")
        self.bar.set_postfix_str(f"|δ| {err:.3g}", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# The runner


def _make_env(env: Any, env_kwargs: dict | None):
    if isinstance(env, str):
        return gym.make(env, **(env_kwargs or {})), env
    if env_kwargs:
        raise ValueError("env_kwargs is only used when env is an environment id string")
    spec = getattr(env, "spec", None)
    return env, getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__


def _check_off_policy(learner: HordeLearner, policy: BehaviourPolicy, action_space: gym.Space) -> None:
    off = [n for n, o in zip(learner.names, learner.demons.is_off_policy) if o]
    if off and not policy.has_probabilities:
        raise ValueError(
            f"policy {policy!r} gives no action probabilities, but demons {off[:3]} are "
            "off-policy and need mu(a|s) for their importance ratios: use FixedProbabilities "
            "or StateProbabilities"
        )
    if off and not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"off-policy demons {off[:3]} need a Discrete action space, got {action_space!r}")


def run(
    learner: HordeLearner,
    env: Any,
    *,
    steps: int,
    policy: Any = None,
    seed: int = 0,
    state: HordeState | None = None,
    record_every: int = 1,
    chunk_size: int = 1024,
    progress: bool | None = None,
    env_kwargs: dict | None = None,
    callback: Any = None,
    stop_on_interrupt: bool = False,
    start_step: int = 0,
) -> RunResult:
    """Runs a behaviour policy in ``env`` for ``steps`` steps while ``learner`` learns.

    Args:
        learner: the ``HordeLearner``; its demons read the feature vector of the observation.
        env: a Gymnasium environment, a Gymnasium vector environment (one independent learner
            state per copy, learned in one vmapped call), or an environment id for
            ``gymnasium.make``.
        steps: environment steps (per copy for a vector environment).
        policy: behaviour policy: ``None`` (uniform random), a ``BehaviourPolicy`` or a
            callable ``(observation, rng) -> action``.
        seed: seeds the environment (``reset(seed=seed)``; copy ``i`` of a vector environment
            gets ``seed + i``), the policy's generator (``numpy.random.default_rng(seed + i)``)
            and the learner's initial weights (``jax.random.key(seed + i)``), so copy ``i`` of
            a vector run equals a single run with seed ``seed + i``.
        state: a learner state to continue from (batched over copies for a vector
            environment); default: a fresh one.
        record_every: record per-demon values every this many steps.
        chunk_size: transitions per compiled learning call; 1 learns after every step.
        progress: show a progress bar; default: when stderr is a terminal.
        env_kwargs: keyword arguments for ``gymnasium.make`` when ``env`` is an id.
        callback: called as ``callback(steps_done, state)`` after every chunk (e.g. to write
            periodic checkpoints).
        stop_on_interrupt: on Ctrl-C (``KeyboardInterrupt``) stop after the last complete
            chunk and return what was learned and recorded so far, with
            ``config["interrupted"] = True``, instead of raising.
        start_step: resume a run at this step: the environment and the behaviour policy are
            first stepped ``start_step`` times without learning (their stream depends on the
            seed alone, so this restores it exactly), then learning continues from ``state``.
            With the state checkpointed at ``start_step``, the result continues the
            interrupted run bit for bit (on the same machine).

    Returns:
        ``RunResult``.

    Raises:
        DivergenceError: a prediction or parameter became non-finite; the message names the
            demons and the step, and ``error.result`` holds what was recorded, with the last
            good state.
    """
    steps = _positive_int("steps", steps)
    record_every = _positive_int("record_every", record_every)
    chunk_size = _positive_int("chunk_size", chunk_size)
    if not isinstance(learner, HordeLearner):
        raise TypeError(f"learner must be a HordeLearner, got {type(learner).__name__}")
    env, env_id = _make_env(env, env_kwargs)
    vector = isinstance(env, gym.vector.VectorEnv)
    obs_space = env.single_observation_space if vector else env.observation_space
    act_space = env.single_action_space if vector else env.action_space
    features = FeatureMap(obs_space)
    n_actions = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else None
    learner.demons.validate(features.dim, n_actions)
    if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) or start_step < 0:
        raise ValueError(f"start_step must be an integer >= 0, got {start_step!r}")
    config = {
        "start_step": int(start_step),
        "env": env_id,
        "steps": int(steps),
        "seed": int(seed),
        "record_every": int(record_every),
        "chunk_size": int(chunk_size),
        "n_seeds": int(env.num_envs) if vector else 1,
        "learner": learner.to_config() if _serializable(learner) else None,
    }
    runner = _run_vector if vector else _run_single
    return runner(
        learner, env, features, policy, act_space, steps, seed, state, record_every, chunk_size, progress,
        config, callback, stop_on_interrupt, int(start_step),
    )


def _serializable(learner: HordeLearner) -> bool:
    try:
        json.dumps(learner.to_config())
        return True
    except (ValueError, TypeError):
        return False


def _episode_arrays(episodes: list[tuple[int, int, float, int]]) -> dict[str, np.ndarray]:
    e = np.asarray(episodes, dtype=np.float64).reshape(-1, 4)
    return {
        "episode_seed": e[:, 0].astype(np.int64),
        "episode_end_step": e[:, 1].astype(np.int64),
        "episode_return": e[:, 2],
        "episode_length": e[:, 3].astype(np.int64),
    }


class _SingleStream:
    """Steps one environment with the behaviour policy, resetting it at episode ends, and
    collects transitions as feature arrays."""

    def __init__(self, env, features, policy, act_space, seed):
        self.env, self.features, self.policy = env, features, policy
        self.rng = np.random.default_rng(seed)
        discrete = isinstance(act_space, gym.spaces.Discrete)
        self.action_dtype = np.int32 if discrete else np.float32
        self.action_shape = () if discrete else act_space.shape
        # Demons index discrete actions from 0 (action indicators, target policies).
        self.action_start = int(act_space.start) if discrete else 0
        self.episodes: list[tuple[int, int, float, int]] = []
        self.ep_return, self.ep_length = 0.0, 0
        self.raw, self.info = env.reset(seed=seed)
        self.x = features(self.raw)

    def collect(self, T: int, first_step: int) -> tuple[Transitions, np.ndarray]:
        dim = self.features.dim
        obs = np.empty((T, dim), np.float32)
        next_obs = np.empty((T, dim), np.float32)
        actions = np.empty((T,) + self.action_shape, self.action_dtype)
        rewards = np.empty(T, np.float32)
        terminated = np.zeros(T, bool)
        truncated = np.zeros(T, bool)
        probs = np.ones(T, np.float32)
        env, features, policy, rng = self.env, self.features, self.policy, self.rng
        raw, info, x = self.raw, self.info, self.x
        for t in range(T):
            action, prob = policy.sample(raw, info, rng)
            next_raw, reward, term, trunc, next_info = env.step(action)
            x_next = features(next_raw)
            if not np.isfinite(x_next).all():
                raise ValueError(
                    f"the environment returned a non-finite observation at step {first_step + t}: {next_raw!r}"
                )
            obs[t] = x
            next_obs[t] = x_next
            actions[t] = action - self.action_start if self.action_start else action
            rewards[t] = reward
            terminated[t] = term
            truncated[t] = trunc
            if prob is not None:
                probs[t] = prob
            self.ep_return += float(reward)
            self.ep_length += 1
            if term or trunc:
                self.episodes.append((0, first_step + t, self.ep_return, self.ep_length))
                self.ep_return, self.ep_length = 0.0, 0
                raw, info = env.reset()
                x = features(raw)
            else:
                raw, info, x = next_raw, next_info, x_next
        self.raw, self.info, self.x = raw, info, x
        transitions = Transitions(obs, actions, rewards, next_obs, terminated, truncated, probs)
        return transitions, np.ones(T, bool)


def _replay(stream, start_step: int, chunk_size: int) -> None:
    """Steps the environment and policy to ``start_step`` without learning: the behaviour
    stream is a function of the seed alone, so this restores it exactly."""
    done = 0
    while done < start_step:
        T = min(chunk_size, start_step - done)
        stream.collect(T, done)
        done += T
    stream.episodes.clear()


def _learn(learner, fn, state, stream, *, steps, start_step, chunk_size, record_every, progress, callback,
           stop_on_interrupt, config, n_seeds, batched):
    """The loop shared by single and vector runs: collect a chunk, learn from it in one
    compiled call, check for divergence, record, report.

    Pipelined on two cores: while the compiled call learns from chunk k, Python collects chunk
    k + 1 from the environment (and dispatches it after chunk k's state, which JAX orders).
    Chunk k is then checked; if it diverged, the state before it is kept and later work is
    dropped.
    """
    recorder = _Recorder(n_seeds, learner.n_demons, record_every)
    bar = _Progress(steps * n_seeds, progress)
    check = _finite_fn(learner, batched)
    seeds_first = (lambda a: a) if batched else (lambda a: a[None])  # recorded arrays: (n_seeds, ...)
    good_state, latest_state = state, state
    collected = done = 0
    inflight: list[tuple] = []
    start_time = time.perf_counter()
    try:
        while done < steps:
            while collected < steps and len(inflight) < 2:
                T = min(chunk_size, steps - collected)
                first = start_step + collected
                transitions, valid = stream.collect(T, first)
                offset = (-first) % record_every
                outputs = fn(latest_state, transitions, valid, offset)
                latest_state = outputs[0]
                inflight.append((first, T, transitions, valid, outputs))
                collected += T
            first, T, transitions, valid, (new_state, recorded, bad_any, bad_first, bad_mask, td) = inflight.pop(0)
            recorded = [seeds_first(np.asarray(o)) for o in recorded]
            bad_any, bad_first, bad_mask = (seeds_first(np.asarray(a)) for a in (bad_any, bad_first, bad_mask))
            finite_after = np.atleast_2d(np.asarray(check(new_state)))
            rows = (seeds_first(transitions.rewards), seeds_first(transitions.terminated), seeds_first(transitions.truncated), seeds_first(valid))
            if bad_any.any() or not finite_after.all():
                if bad_any.any():
                    seed_i = int(np.flatnonzero(bad_any)[0])
                    t, demons_bad = int(bad_first[seed_i]), np.flatnonzero(bad_mask[seed_i])
                else:
                    seed_i = int(np.argwhere(~finite_after.all(axis=-1))[0][0])
                    t, demons_bad = T - 1, np.flatnonzero(~finite_after[seed_i])
                recorder.add(first, recorded, *rows)
                result = _result(learner, recorder, stream.episodes, time.perf_counter() - start_time, done + T, record_every, config, good_state)
                names = [learner.names[i] for i in demons_bad]
                shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                raise DivergenceError(
                    f"learning diverged at step {first + t}{f' (seed {seed_i})' if n_seeds > 1 else ''}: "
                    f"non-finite predictions (or parameters after that step's update) for "
                    f"demon{'s' if len(names) > 1 else ''} {shown}. "
                    "The returned state is the last good one (before this chunk); try a smaller step size "
                    "or ObGDBounding.",
                    step=first + t, demons=tuple(names), result=result,
                )
            recorder.add(first, recorded, *rows)
            good_state, done = new_state, done + T  # together: an interrupt sees both or neither
            bar.update(T * n_seeds, np.asarray(td))
            if callback is not None:
                callback(start_step + done, good_state)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        config["interrupted"] = True
    finally:
        bar.close()
    jax.block_until_ready(good_state)
    return _result(learner, recorder, stream.episodes, time.perf_counter() - start_time, done, record_every, config, good_state)


def _result(learner, recorder, episodes, wall, done, record_every, config, state) -> RunResult:
    """The RunResult of ``done`` learned steps: the recorder's arrays and the episodes that
    ended within them, in (step, copy) order."""
    last = config.get("start_step", 0) + done
    kept = sorted((e for e in episodes if e[1] < last), key=lambda e: (e[1], e[0]))
    return RunResult(
        demon_names=learner.names, wall_time=wall, total_steps=int(done), record_every=int(record_every),
        config=config, state=state, demons=tuple(d.info for d in learner.demons), **recorder.arrays(),
        **_episode_arrays(kept),
    )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _finite_fn(learner: HordeLearner, batched: bool):
    """Compiled check of a state: per demon, are its head and the trunk all finite?"""
    cache = learner.__dict__.setdefault("_runner_fns", {})
    key = ("finite", batched)
    if key not in cache:

        def finite(state):
            core = state.core
            ok = jnp.isfinite(core.head_params.weights).all(-1) & jnp.isfinite(core.head_params.biases)
            trunk = jax.tree_util.tree_leaves(core.trunk_params)
            if trunk:
                ok = ok & jnp.all(jnp.stack([jnp.isfinite(t).all() for t in trunk]))
            return ok

        cache[key] = jax.jit(jax.vmap(finite) if batched else finite)
    return cache[key]


def _run_single(learner, env, features, policy, act_space, steps, seed, state, record_every, chunk_size, progress, config, callback, stop_on_interrupt, start_step):
    policy = as_behaviour_policy(policy, act_space)
    _check_off_policy(learner, policy, act_space)
    config["policy"] = repr(policy)
    if state is None:
        state = learner.init(features.dim, jax.random.key(seed))
    else:
        learner.check_state(state)
    fn = _chunk_fn(learner, batched=False, masked=False, every=int(record_every))
    stream = _SingleStream(env, features, policy, act_space, seed)
    _replay(stream, start_step, chunk_size)
    return _learn(
        learner, fn, state, stream, steps=steps, start_step=start_step, chunk_size=chunk_size,
        record_every=record_every, progress=progress, callback=callback, stop_on_interrupt=stop_on_interrupt,
        config=config, n_seeds=1, batched=False,
    )


class _VectorStream:
    """Steps a vector environment, one behaviour policy and generator per copy, and collects
    transitions with a validity mask (False at next-step autoreset steps)."""

    def __init__(self, env, features, policy, act_space, seed):
        N = self.N = int(env.num_envs)
        self.seeded_per_copy = True
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        mode = gym.vector.AutoresetMode(mode) if not isinstance(mode, gym.vector.AutoresetMode) else mode
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
            raise ValueError(f"vector environments must autoreset (NEXT_STEP or SAME_STEP), got {mode}")
        self.mode, self.env, self.features = mode, env, features
        self.policies = [as_behaviour_policy(policy, act_space) for _ in range(N)]
        self.rngs = [np.random.default_rng(seed + i) for i in range(N)]
        discrete = isinstance(act_space, gym.spaces.Discrete)
        self.action_dtype = np.int32 if discrete else np.float32
        self.action_shape = () if discrete else act_space.shape
        self.action_start = int(act_space.start) if discrete else 0
        self.episodes: list[tuple[int, int, float, int]] = []
        self.ep_return, self.ep_length = np.zeros(N), np.zeros(N, np.int64)
        try:
            self.raw, self.infos = env.reset(seed=[seed + i for i in range(N)])
        except (TypeError, ValueError, AssertionError, gym.error.Error):
            # Natively vectorised environments (e.g. make_vec's default for CartPole) take one
            # integer seed for the whole batch: copies then do not match single runs seed for seed.
            warnings.warn(
                f"{type(env).__name__} takes one seed for all copies: copy i is not the single run "
                "with seed + i (use gymnasium.make_vec(..., vectorization_mode='sync') for that)",
                stacklevel=4,
            )
            self.seeded_per_copy = False
            self.raw, self.infos = env.reset(seed=seed)
        self.x = features.batch(self.raw)
        self.resetting = np.zeros(N, bool)  # next-step autoreset: this step only resets these
        self.last_actions = np.zeros((N,) + self.action_shape, self.action_dtype)

    def collect(self, T: int, first_step: int) -> tuple[Transitions, np.ndarray]:
        N, dim, features = self.N, self.features.dim, self.features
        obs = np.empty((T, N, dim), np.float32)
        next_obs = np.empty((T, N, dim), np.float32)
        actions = np.empty((T, N) + self.action_shape, self.action_dtype)
        rewards = np.zeros((T, N), np.float32)
        terminated = np.zeros((T, N), bool)
        truncated = np.zeros((T, N), bool)
        valid = np.ones((T, N), bool)
        probs = np.ones((T, N), np.float32)
        raw, infos, x, resetting = self.raw, self.infos, self.x, self.resetting
        for t in range(T):
            for i in range(N):
                if resetting[i]:
                    # The autoreset ignores the action; draw nothing so that copy i's policy
                    # stream matches a single environment that resets itself.
                    actions[t, i] = self.last_actions[i]
                    continue
                info_i = {k: v[i] for k, v in infos.items() if not k.startswith("_")} if infos else {}
                a, p = self.policies[i].sample(raw[i], info_i, self.rngs[i])
                actions[t, i] = a
                if p is not None:
                    probs[t, i] = p
            self.last_actions = actions[t].copy()
            next_raw, reward, term, trunc, next_infos = self.env.step(actions[t])
            if self.action_start:
                actions[t] -= self.action_start  # the demons' view: actions indexed from 0
            x_next = features.batch(next_raw)
            ended = np.logical_or(term, trunc)
            real_next = x_next
            if self.mode == gym.vector.AutoresetMode.SAME_STEP and ended.any():
                real_next = x_next.copy()
                for i in np.flatnonzero(ended):
                    real_next[i] = features(next_infos["final_obs"][i])
            if not np.isfinite(real_next).all():
                raise ValueError(f"the environment returned a non-finite observation at step {first_step + t}")
            obs[t] = x
            next_obs[t] = real_next
            rewards[t] = reward
            terminated[t] = term
            truncated[t] = trunc
            live = ~resetting
            valid[t] = live
            self.ep_return[live] += np.asarray(reward, np.float64)[live]
            self.ep_length[live] += 1
            for i in np.flatnonzero(ended & live):
                self.episodes.append((i, first_step + t, float(self.ep_return[i]), int(self.ep_length[i])))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
            if self.mode == gym.vector.AutoresetMode.NEXT_STEP:
                resetting = ended & live
            raw, infos, x = next_raw, next_infos, x_next
        self.raw, self.infos, self.x, self.resetting = raw, infos, x, resetting
        transitions = Transitions(
            *(np.swapaxes(a, 0, 1) for a in (obs, actions, rewards, next_obs, terminated, truncated, probs))
        )
        return transitions, valid.T


def _run_vector(learner, env, features, policy, act_space, steps, seed, state, record_every, chunk_size, progress, config, callback, stop_on_interrupt, start_step):
    stream = _VectorStream(env, features, policy, act_space, seed)
    config["seeded_per_copy"] = stream.seeded_per_copy
    _check_off_policy(learner, stream.policies[0], act_space)
    config["policy"] = repr(stream.policies[0])
    N = stream.N
    if state is None:
        keys = jnp.stack([jax.random.key_data(jax.random.key(seed + i)) for i in range(N)])
        state = jax.vmap(lambda k: learner.init_traced(features.dim, jax.random.wrap_key_data(k)))(keys)
    elif np.shape(state.core.head_params.biases) != (N, learner.n_demons):
        raise ValueError(
            f"state must be batched over the {N} copies (head biases of shape {(N, learner.n_demons)}), "
            f"got {np.shape(state.core.head_params.biases)}"
        )
    fn = _chunk_fn(learner, batched=True, masked=True, every=int(record_every))
    _replay(stream, start_step, chunk_size)
    return _learn(
        learner, fn, state, stream, steps=steps, start_step=start_step, chunk_size=chunk_size,
        record_every=record_every, progress=progress, callback=callback, stop_on_interrupt=stop_on_interrupt,
        config=config, n_seeds=N, batched=True,
    )
