"""Attach a Horde to a Gymnasium environment and let it learn.

``run(learner, env, steps=...)`` drives a behaviour policy in the environment, turns each
observation into features (``horde.spaces.FeatureMap``), lets the demons compute their
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
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from horde.behaviour import BehaviourPolicy, as_behaviour_policy
from horde.horde_learner import HordeLearner, HordeState, Transitions
from horde.spaces import FeatureMap

__all__ = ["run", "RunResult"]

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
            **arrays,
        )


# ---------------------------------------------------------------------------------------------
# Compiled chunk learners


def _chunk_fn(learner: HordeLearner, batched: bool, masked: bool):
    """The compiled function that learns from one chunk, cached on the learner.

    Returns ``fn(state, transitions, valid) -> (state, (predictions, td_errors, cumulants,
    discounts))``; with ``batched``, everything carries a leading seed axis.
    """
    cache = learner.__dict__.setdefault("_runner_fns", {})
    key = (batched, masked)
    if key in cache:
        return cache[key]

    def scan(state, transitions, valid):
        def body(s, inputs):
            t, ok = inputs
            r, ev = learner._evaluate_and_update(s, *t)
            new = r.state
            if masked:
                new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, s)
            out = (r.predictions, r.td_errors, ev.cumulants, ev.discounts)
            if learner.diagnostics:
                out = out + (r.rupee, r.ude)
            return new, out

        return jax.lax.scan(body, state, (transitions, valid))

    fn = jax.vmap(scan) if batched else scan
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
        """``outputs`` arrays are ``(n_seeds, T, n)``; the rest ``(n_seeds, T)``."""
        T = rewards.shape[1]
        first = (-start) % self.every
        idx = np.arange(first, T, self.every)
        if idx.size == 0:
            return
        self.parts["steps"].append(start + idx)
        for name, arr in zip(("predictions", "td_errors", "cumulants", "discounts", "rupee", "ude"), outputs):
            arr = np.asarray(arr)[:, idx]
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
        state: a learner state to continue from (single environments); default: a fresh one.
        record_every: record per-demon values every this many steps.
        chunk_size: transitions per compiled learning call; 1 learns after every step.
        progress: show a progress bar; default: when stderr is a terminal.
        env_kwargs: keyword arguments for ``gymnasium.make`` when ``env`` is an id.
        callback: called as ``callback(steps_done, state)`` after every chunk (e.g. to write
            periodic checkpoints).
        stop_on_interrupt: on Ctrl-C (``KeyboardInterrupt``) stop after the last complete
            chunk and return what was learned and recorded so far, with
            ``config["interrupted"] = True``, instead of raising.

    Returns:
        ``RunResult``.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    for name, value in (("record_every", record_every), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(learner, HordeLearner):
        raise TypeError(f"learner must be a HordeLearner, got {type(learner).__name__}")
    env, env_id = _make_env(env, env_kwargs)
    vector = isinstance(env, gym.vector.VectorEnv)
    obs_space = env.single_observation_space if vector else env.observation_space
    act_space = env.single_action_space if vector else env.action_space
    features = FeatureMap(obs_space)
    n_actions = int(act_space.n) if isinstance(act_space, gym.spaces.Discrete) else None
    learner.demons.validate(features.dim, n_actions)
    config = {
        "env": env_id,
        "steps": int(steps),
        "seed": int(seed),
        "record_every": int(record_every),
        "chunk_size": int(chunk_size),
        "n_seeds": int(env.num_envs) if vector else 1,
        "learner": learner.to_config() if _serializable(learner) else None,
    }
    if vector:
        if state is not None:
            raise ValueError("state cannot be given for a vector environment; each copy starts fresh")
        return _run_vector(learner, env, features, policy, act_space, steps, seed, record_every, chunk_size, progress, config, callback, stop_on_interrupt)
    return _run_single(learner, env, features, policy, act_space, steps, seed, state, record_every, chunk_size, progress, config, callback, stop_on_interrupt)


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


def _run_single(learner, env, features, policy, act_space, steps, seed, state, record_every, chunk_size, progress, config, callback, stop_on_interrupt):
    policy = as_behaviour_policy(policy, act_space)
    _check_off_policy(learner, policy, act_space)
    config["policy"] = repr(policy)
    rng = np.random.default_rng(seed)
    if state is None:
        state = learner.init(features.dim, jax.random.key(seed))
    else:
        learner._check_state(state)
    fn = _chunk_fn(learner, batched=False, masked=False)
    recorder = _Recorder(1, learner.n_demons, record_every)
    bar = _Progress(steps, progress)
    dim = features.dim
    action_dtype = np.int32 if isinstance(act_space, gym.spaces.Discrete) else np.float32
    action_shape = () if isinstance(act_space, gym.spaces.Discrete) else act_space.shape
    episodes: list[tuple[int, int, float, int]] = []
    ep_return, ep_length = 0.0, 0

    start_time = time.perf_counter()
    raw, info = env.reset(seed=seed)
    x = features(raw)
    done_steps = 0
    try:
        while done_steps < steps:
            T = min(chunk_size, steps - done_steps)
            obs = np.empty((T, dim), np.float32)
            next_obs = np.empty((T, dim), np.float32)
            actions = np.empty((T,) + action_shape, action_dtype)
            rewards = np.empty(T, np.float32)
            terminated = np.zeros(T, bool)
            truncated = np.zeros(T, bool)
            probs = np.ones(T, np.float32)
            for t in range(T):
                action, prob = policy.sample(raw, info, rng)
                next_raw, reward, term, trunc, next_info = env.step(action)
                x_next = features(next_raw)
                if not np.isfinite(x_next).all():
                    raise ValueError(
                        f"the environment returned a non-finite observation at step {done_steps + t}: {next_raw!r}"
                    )
                obs[t] = x
                next_obs[t] = x_next
                actions[t] = action
                rewards[t] = reward
                terminated[t] = term
                truncated[t] = trunc
                if prob is not None:
                    probs[t] = prob
                ep_return += float(reward)
                ep_length += 1
                if term or trunc:
                    episodes.append((0, done_steps + t, ep_return, ep_length))
                    ep_return, ep_length = 0.0, 0
                    raw, info = env.reset()
                    x = features(raw)
                else:
                    raw, info, x = next_raw, next_info, x_next
            transitions = Transitions(obs, actions, rewards, next_obs, terminated, truncated, probs)
            state, outputs = fn(state, transitions, np.ones(T, bool))
            outputs = [np.asarray(o)[None] for o in outputs]
            recorder.add(done_steps, outputs, rewards[None], terminated[None], truncated[None], np.ones((1, T), bool))
            bar.update(T, outputs[1])
            done_steps += T
            if callback is not None:
                callback(done_steps, state)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        config["interrupted"] = True
        episodes = [e for e in episodes if e[1] < done_steps]
    finally:
        bar.close()
    jax.block_until_ready(state)
    wall = time.perf_counter() - start_time
    return RunResult(
        demon_names=learner.names, wall_time=wall, total_steps=int(done_steps), record_every=int(record_every),
        config=config, state=state, **recorder.arrays(), **_episode_arrays(episodes),
    )


def _run_vector(learner, env, features, policy, act_space, steps, seed, record_every, chunk_size, progress, config, callback, stop_on_interrupt):
    N = int(env.num_envs)
    mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    mode = gym.vector.AutoresetMode(mode) if not isinstance(mode, gym.vector.AutoresetMode) else mode
    if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
        raise ValueError(f"vector environments must autoreset (NEXT_STEP or SAME_STEP), got {mode}")
    policies = [as_behaviour_policy(policy, act_space) for _ in range(N)]
    _check_off_policy(learner, policies[0], act_space)
    config["policy"] = repr(policies[0])
    rngs = [np.random.default_rng(seed + i) for i in range(N)]
    keys = jnp.stack([jax.random.key_data(jax.random.key(seed + i)) for i in range(N)])
    state = jax.vmap(lambda k: learner._init(features.dim, jax.random.wrap_key_data(k)))(keys)
    fn = _chunk_fn(learner, batched=True, masked=True)
    recorder = _Recorder(N, learner.n_demons, record_every)
    bar = _Progress(steps * N, progress)
    dim = features.dim
    discrete = isinstance(act_space, gym.spaces.Discrete)
    action_dtype = np.int32 if discrete else np.float32
    action_shape = () if discrete else act_space.shape
    episodes: list[tuple[int, int, float, int]] = []
    ep_return, ep_length = np.zeros(N), np.zeros(N, np.int64)

    start_time = time.perf_counter()
    try:
        raw, infos = env.reset(seed=[seed + i for i in range(N)])
    except (TypeError, ValueError, AssertionError, gym.error.Error):
        # Natively vectorised environments (e.g. make_vec's default for CartPole) take one
        # integer seed for the whole batch: copies then do not match single runs seed for seed.
        raw, infos = env.reset(seed=seed)
    x = features.batch(raw)
    resetting = np.zeros(N, bool)  # next-step autoreset: this step only resets these copies
    last_actions = np.zeros((N,) + action_shape, action_dtype)
    done_steps = 0
    try:
        while done_steps < steps:
            T = min(chunk_size, steps - done_steps)
            obs = np.empty((T, N, dim), np.float32)
            next_obs = np.empty((T, N, dim), np.float32)
            actions = np.empty((T, N) + action_shape, action_dtype)
            rewards = np.zeros((T, N), np.float32)
            terminated = np.zeros((T, N), bool)
            truncated = np.zeros((T, N), bool)
            valid = np.ones((T, N), bool)
            probs = np.ones((T, N), np.float32)
            for t in range(T):
                for i in range(N):
                    if resetting[i]:
                        # The action is ignored by the autoreset; draw nothing so that copy i's
                        # policy stream matches a single environment that resets itself.
                        actions[t, i] = last_actions[i]
                        continue
                    info_i = {k: v[i] for k, v in infos.items() if not k.startswith("_")} if infos else {}
                    a, p = policies[i].sample(raw[i], info_i, rngs[i])
                    actions[t, i] = a
                    if p is not None:
                        probs[t, i] = p
                last_actions = actions[t].copy()
                next_raw, reward, term, trunc, next_infos = env.step(actions[t])
                x_next = features.batch(next_raw)
                ended = np.logical_or(term, trunc)
                if mode == gym.vector.AutoresetMode.SAME_STEP and ended.any():
                    final = next_infos["final_obs"]
                    real_next = x_next.copy()
                    for i in np.flatnonzero(ended):
                        real_next[i] = features(final[i])
                else:
                    real_next = x_next
                if not np.isfinite(real_next).all():
                    raise ValueError(f"the environment returned a non-finite observation at step {done_steps + t}")
                obs[t] = x
                next_obs[t] = real_next
                rewards[t] = reward
                terminated[t] = term
                truncated[t] = trunc
                valid[t] = ~resetting
                live = ~resetting
                ep_return[live] += np.asarray(reward, np.float64)[live]
                ep_length[live] += 1
                for i in np.flatnonzero(ended & live):
                    episodes.append((i, done_steps + t, float(ep_return[i]), int(ep_length[i])))
                    ep_return[i], ep_length[i] = 0.0, 0
                if mode == gym.vector.AutoresetMode.NEXT_STEP:
                    resetting = ended & live
                raw, infos, x = next_raw, next_infos, x_next
            transitions = Transitions(
                *(np.swapaxes(a, 0, 1) for a in (obs, actions, rewards, next_obs, terminated, truncated, probs))
            )
            state, outputs = fn(state, transitions, valid.T)
            outputs = [np.asarray(o) for o in outputs]
            recorder.add(done_steps, outputs, rewards.T, terminated.T, truncated.T, valid.T)
            bar.update(T * N, outputs[1])
            done_steps += T
            if callback is not None:
                callback(done_steps, state)
    except KeyboardInterrupt:
        if not stop_on_interrupt:
            raise
        config["interrupted"] = True
        episodes = [e for e in episodes if e[1] < done_steps]
    finally:
        bar.close()
    jax.block_until_ready(state)
    wall = time.perf_counter() - start_time
    return RunResult(
        demon_names=learner.names, wall_time=wall, total_steps=int(done_steps), record_every=int(record_every),
        config=config, state=state, **recorder.arrays(), **_episode_arrays(episodes),
    )
