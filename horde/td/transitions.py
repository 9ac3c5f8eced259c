"""A stream of transitions with a leading time axis, and its boundary check."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from horde.core import check_observation_values

__all__ = ["Transitions", "as_transitions"]


class Transitions(NamedTuple):
    """A stream of transitions, every field with a leading time axis of length ``T``.

    Attributes:
        observations: ``S_t``, ``(T, observation_dim)``.
        actions: ``A_t``, ``(T,)`` (integers for discrete actions).
        rewards: ``R_{t+1}``, ``(T,)``.
        next_observations: ``S_{t+1}``, ``(T, observation_dim)``: the real final observation
            where an episode ended, never a reset observation.
        terminated: ``(T,)`` bool.
        truncated: ``(T,)`` bool.
        behaviour_probs: ``μ(A_t|S_t)``, ``(T,)``; only off-policy demons read it.
    """

    observations: Any
    actions: Any
    rewards: Any
    next_observations: Any
    terminated: Any
    truncated: Any
    behaviour_probs: Any


def as_transitions(transitions: Transitions, observation_dim: int | None) -> Transitions:
    """Checks a ``Transitions`` stream and returns it as NumPy arrays of the expected dtypes.

    Args:
        transitions: the stream; ``behaviour_probs`` may be a scalar (broadcast over time).
        observation_dim: the required observation size, or ``None`` to accept any.

    Returns:
        ``Transitions`` with float32 observations, rewards and probabilities, bool flags.

    Raises:
        TypeError: ``transitions`` is not a ``Transitions``.
        ValueError: a shape does not match, an observation or reward is not finite, or a
            behaviour probability is outside ``(0, 1]``.
    """
    if not isinstance(transitions, Transitions):
        raise TypeError(f"transitions must be a Transitions tuple, got {type(transitions).__name__}")
    obs = np.asarray(transitions.observations, np.float32)
    if obs.ndim != 2 or (observation_dim is not None and obs.shape[1] != observation_dim):
        want = "observation_dim" if observation_dim is None else observation_dim
        raise ValueError(f"transitions.observations must have shape (T, {want}), got {obs.shape}")
    T = obs.shape[0]
    next_obs = np.asarray(transitions.next_observations, np.float32)
    if next_obs.shape != obs.shape:
        raise ValueError(
            f"transitions.next_observations must have shape {obs.shape} like observations, got {next_obs.shape}"
        )
    check_observation_values("transitions.observations", obs)
    check_observation_values("transitions.next_observations", next_obs)
    fields = {}
    for name, dtype in (
        ("actions", None),
        ("rewards", np.float32),
        ("terminated", bool),
        ("truncated", bool),
        ("behaviour_probs", np.float32),
    ):
        value = getattr(transitions, name)
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype)
        if arr.ndim == 0 and name == "behaviour_probs":
            arr = np.full((T,), arr, np.float32)
        if arr.shape[:1] != (T,):
            raise ValueError(f"transitions.{name} must have a leading time axis of length {T}, got shape {arr.shape}")
        fields[name] = arr
    if not np.all(np.isfinite(fields["rewards"])):
        raise ValueError("transitions.rewards must be finite")
    probs = fields["behaviour_probs"]
    if not np.all((probs > 0) & (probs <= 1)):
        i = int(np.flatnonzero(~((probs > 0) & (probs <= 1)))[0])
        raise ValueError(f"transitions.behaviour_probs must be in (0, 1], got {probs[i]} at step {i}")
    return Transitions(
        obs, fields["actions"], fields["rewards"], next_obs, fields["terminated"], fields["truncated"], probs
    )
