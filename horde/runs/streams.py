"""Streams of transitions from Gymnasium environments, for ``horde.run``.

``SingleStream`` steps one environment and resets it itself after ``terminated or
truncated``: the transition that ended the episode carries the real final observation.
``VectorStream`` steps a vector environment, one behaviour policy and generator per copy.
With next-step autoreset (Gymnasium >= 1.0's default) the step after an episode ends returns
the reset observation with reward 0 and both flags false: not a real transition, so it is
marked invalid (``valid`` False) and never learned from. Same-step autoreset takes the real
final observation from ``info["final_obs"]``. With autoreset disabled the stream resets the
copies whose episode ended itself (``reset(options={"reset_mask": ...})``), so every mode gives
the same transitions as single environments that reset themselves. Infos may nest
dictionaries (e.g. ``RecordEpisodeStatistics``'s ``info["episode"]``): each copy's policy sees
its own entries (``copy_info``).

Each ``collect(T, first_step)`` returns ``(Transitions, valid)`` with features as float32
arrays, actions indexed from 0 as the demons see them, and records finished episodes in
``episodes`` as ``(copy, end step, return, length)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

from horde.core import as_action
from horde.runs.behaviour import BehaviourPolicy, as_behaviour_policy
from horde.runs.features import FeatureMap
from horde.td import Transitions

__all__ = ["SingleStream", "VectorStream", "copy_info", "replay"]


def copy_info(infos: dict, i: int) -> dict:
    """Copy ``i``'s part of a vector environment's ``info``.

    Gymnasium's vector environments stack each key's values over the copies and mark the copies
    that set it with a boolean ``"_key"`` entry; a key whose values are dictionaries (e.g.
    ``"episode"`` of ``RecordEpisodeStatistics``, ``"final_info"`` of same-step autoreset) is
    stacked the same way inside. Keys that copy ``i`` did not set are left out.

    Args:
        infos: the vector environment's ``info`` dictionary.
        i: the copy.

    Returns:
        A dictionary of copy ``i``'s values, nested where ``infos`` nests.
    """
    out: dict = {}
    for key, value in infos.items():
        if isinstance(key, str) and key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not bool(np.asarray(mask)[i]):
            continue
        if isinstance(value, dict):
            out[key] = copy_info(value, i)
        elif isinstance(value, (np.ndarray, list, tuple)) and len(value) > i:
            out[key] = value[i]
        else:
            out[key] = value
    return out


def checked_action(action: Any, act_space: gym.Space, step: int) -> Any:
    """The behaviour policy's action, refused unless it belongs to ``act_space``: for a
    ``Discrete`` space an integer in range (a float would be truncated when stored, an index
    out of range would give a wrong importance ratio); otherwise an array of the space's shape.

    Raises:
        TypeError: a discrete action that is not an integer.
        ValueError: an action outside the space.
    """
    if isinstance(act_space, gym.spaces.Discrete):
        return as_action(f"action at step {step}", action, int(act_space.n), int(act_space.start))
    if np.shape(action) != act_space.shape or not act_space.contains(np.asarray(action, act_space.dtype)):
        raise ValueError(f"action at step {step} must belong to the action space {act_space!r}, got {action!r}")
    return action


def checked_reward(reward: Any, step: int) -> float:
    """The environment's reward as a float, refused when it is NaN or not a number, as
    ``update_from_transition`` refuses it (a NaN would otherwise make the reward demons
    silently inactive for the step). An infinite reward passes: the demons that read it
    diverge, and the run reports the divergence at that step.

    Raises:
        ValueError: the reward is NaN or not a number.
    """
    try:
        value = float(reward)
    except (TypeError, ValueError):
        raise ValueError(f"reward must be one number, got {reward!r} from the environment at step {step}") from None
    if math.isnan(value):
        raise ValueError(f"reward must not be NaN, got {reward!r} from the environment at step {step}")
    return value


def action_layout(act_space: gym.Space) -> tuple[type, tuple[int, ...], int]:
    """How actions of ``act_space`` are stored: dtype, shape of one action, and the value
    subtracted from a discrete action (demons index discrete actions from 0: action
    indicators, target policies).

    Raises:
        ValueError: ``act_space`` has no fixed shape (e.g. ``Tuple``, ``Dict``, ``Text``).
    """
    if isinstance(act_space, gym.spaces.Discrete):
        return np.int32, (), int(act_space.start)
    if act_space.shape is None:
        raise ValueError(
            f"action space {act_space!r} ({type(act_space).__name__}) has no fixed shape: actions "
            "are stored as arrays, so use a Discrete, Box, MultiDiscrete or MultiBinary space"
        )
    return np.float32, act_space.shape, 0


class SingleStream:
    """Steps one environment with the behaviour policy, resetting it at episode ends, and
    collects transitions as feature arrays.

    Args:
        env: the Gymnasium environment (reset here with ``seed``).
        features: its ``FeatureMap``.
        policy: a bound ``BehaviourPolicy``.
        act_space: the environment's action space.
        seed: seeds the environment and the policy's generator.
    """

    def __init__(
        self, env: gym.Env, features: FeatureMap, policy: BehaviourPolicy, act_space: gym.Space, seed: int
    ) -> None:
        self.env, self.features, self.policy, self.act_space = env, features, policy, act_space
        self.rng = np.random.default_rng(seed)
        self.action_dtype, self.action_shape, self.action_start = action_layout(act_space)
        self.episodes: list[tuple[int, int, float, int]] = []
        self.ep_return, self.ep_length = 0.0, 0
        self.raw, self.info = env.reset(seed=seed)
        self.x = features(self.raw)

    def collect(self, T: int, first_step: int) -> tuple[Transitions, np.ndarray]:
        """The next ``T`` transitions, from global step ``first_step``: ``Transitions`` of
        ``(T, ...)`` arrays and ``valid`` (all True).

        Raises:
            ValueError: the environment returned a non-finite observation.
        """
        dim = self.features.dim
        obs = np.empty((T, dim), np.float32)
        next_obs = np.empty((T, dim), np.float32)
        actions: np.ndarray = np.empty((T,) + self.action_shape, self.action_dtype)
        rewards = np.empty(T, np.float32)
        terminated = np.zeros(T, bool)
        truncated = np.zeros(T, bool)
        probs = np.ones(T, np.float32)
        env, features, policy, rng = self.env, self.features, self.policy, self.rng
        raw, info, x = self.raw, self.info, self.x
        for t in range(T):
            action, prob = policy.sample(raw, info, rng)
            action = checked_action(action, self.act_space, first_step + t)
            next_raw, reward, term, trunc, next_info = env.step(action)
            reward = checked_reward(reward, first_step + t)
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


class VectorStream:
    """Steps a vector environment, one behaviour policy and generator per copy, and collects
    transitions with a validity mask (False at next-step autoreset steps).

    Args:
        env: the vector environment (copy ``i`` reset with ``seed + i`` where it allows).
        features: the ``FeatureMap`` of one copy's observation space.
        policy: anything ``as_behaviour_policy`` accepts; one is bound per copy (``policies``).
        act_space: one copy's action space.
        seed: copy ``i``'s policy generator is ``numpy.random.default_rng(seed + i)``.
    """

    def __init__(
        self, env: gym.vector.VectorEnv, features: FeatureMap, policy: Any, act_space: gym.Space, seed: int
    ) -> None:
        N = self.N = int(env.num_envs)
        self.seeded_per_copy = True
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        mode = gym.vector.AutoresetMode(mode) if not isinstance(mode, gym.vector.AutoresetMode) else mode
        self.mode, self.env, self.features, self.act_space = mode, env, features, act_space
        self.policies = [as_behaviour_policy(policy, act_space) for _ in range(N)]
        self.rngs = [np.random.default_rng(seed + i) for i in range(N)]
        self.action_dtype, self.action_shape, self.action_start = action_layout(act_space)
        self.episodes: list[tuple[int, int, float, int]] = []
        self.ep_return, self.ep_length = np.zeros(N), np.zeros(N, np.int64)
        try:
            # VectorEnv.reset is annotated `int | None`, but the Sync/Async vector environments
            # take one seed per copy (a list); others refuse it below.
            self.raw, self.infos = env.reset(seed=[seed + i for i in range(N)])  # type: ignore[arg-type]
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
        self.copy_infos = [copy_info(self.infos, i) for i in range(N)]
        self.x = features.batch(self.raw)
        self.resetting = np.zeros(N, bool)  # next-step autoreset: this step only resets these
        self.last_actions: np.ndarray = np.zeros((N,) + self.action_shape, self.action_dtype)

    def collect(self, T: int, first_step: int) -> tuple[Transitions, np.ndarray]:
        """The next ``T`` steps of every copy, from global step ``first_step``: ``Transitions``
        with a leading copy axis ``(N, T, ...)`` and ``valid`` ``(N, T)``.

        Raises:
            ValueError: the environment returned a non-finite observation.
        """
        N, dim, features = self.N, self.features.dim, self.features
        obs = np.empty((T, N, dim), np.float32)
        next_obs = np.empty((T, N, dim), np.float32)
        actions: np.ndarray = np.empty((T, N) + self.action_shape, self.action_dtype)
        rewards = np.zeros((T, N), np.float32)
        terminated = np.zeros((T, N), bool)
        truncated = np.zeros((T, N), bool)
        valid = np.ones((T, N), bool)
        probs = np.ones((T, N), np.float32)
        raw, copy_infos, x, resetting = self.raw, self.copy_infos, self.x, self.resetting
        for t in range(T):
            for i in range(N):
                if resetting[i]:
                    # The autoreset ignores the action; draw nothing so that copy i's policy
                    # stream matches a single environment that resets itself.
                    actions[t, i] = self.last_actions[i]
                    continue
                a, p = self.policies[i].sample(raw[i], copy_infos[i], self.rngs[i])
                actions[t, i] = checked_action(a, self.act_space, first_step + t)
                if p is not None:
                    probs[t, i] = p
            self.last_actions = actions[t].copy()
            next_raw, reward, term, trunc, next_infos = self.env.step(actions[t])
            if self.action_start:
                actions[t] -= self.action_start  # the demons' view: actions indexed from 0
            x_next = features.batch(next_raw)
            ended = np.logical_or(term, trunc)
            real_next = x_next
            copy_infos = [copy_info(next_infos, i) for i in range(N)]
            if self.mode == gym.vector.AutoresetMode.SAME_STEP and ended.any():
                real_next = x_next.copy()
                for j in np.flatnonzero(ended):
                    real_next[j] = features(next_infos["final_obs"][j])
            elif self.mode == gym.vector.AutoresetMode.DISABLED and ended.any():
                try:
                    reset_raw, reset_infos = self.env.reset(options={"reset_mask": np.asarray(ended, np.bool_)})
                except (TypeError, ValueError, KeyError, AssertionError, gym.error.Error) as e:
                    raise ValueError(
                        f"{type(self.env).__name__} has autoreset_mode DISABLED but refused to reset the "
                        f"copies whose episode ended (reset(options={{'reset_mask': ...}})): {e}; make it "
                        "with autoreset_mode NEXT_STEP or SAME_STEP"
                    ) from e
                x_next = x_next.copy()
                reset_x = features.batch(reset_raw)
                for j in np.flatnonzero(ended):
                    x_next[j] = reset_x[j]
                    copy_infos[j] = copy_info(reset_infos, int(j))
                next_raw = reset_raw
            if not np.isfinite(real_next).all():
                raise ValueError(f"the environment returned a non-finite observation at step {first_step + t}")
            reward = np.asarray(reward, np.float64)
            if np.isnan(reward).any():
                checked_reward(reward[np.isnan(reward)][0], first_step + t)
            obs[t] = x
            next_obs[t] = real_next
            rewards[t] = reward
            terminated[t] = term
            truncated[t] = trunc
            live = ~resetting
            valid[t] = live
            self.ep_return[live] += np.asarray(reward, np.float64)[live]
            self.ep_length[live] += 1
            for j in np.flatnonzero(ended & live):
                self.episodes.append((int(j), first_step + t, float(self.ep_return[j]), int(self.ep_length[j])))
                self.ep_return[j], self.ep_length[j] = 0.0, 0
            if self.mode == gym.vector.AutoresetMode.NEXT_STEP:
                resetting = ended & live
            raw, x = next_raw, x_next
        self.raw, self.copy_infos, self.x, self.resetting = raw, copy_infos, x, resetting
        transitions = Transitions(
            *(np.swapaxes(a, 0, 1) for a in (obs, actions, rewards, next_obs, terminated, truncated, probs))
        )
        return transitions, valid.T


def replay(stream: SingleStream | VectorStream, start_step: int, chunk_size: int) -> None:
    """Steps the environment and policy to ``start_step`` without learning: the behaviour
    stream is a function of the seed alone, so this restores it exactly."""
    done = 0
    while done < start_step:
        T = min(chunk_size, start_step - done)
        stream.collect(T, done)
        done += T
    stream.episodes.clear()
