"""Observations to feature vectors: how a Gymnasium observation space becomes the flat float32
vector that the learner and the demons read.

| space          | features                                             |
|----------------|------------------------------------------------------|
| ``Box``        | flattened, float32                                   |
| ``Discrete(n)``| one-hot of length ``n``                              |
| ``MultiBinary``| flattened, float32                                   |
| ``MultiDiscrete`` | one one-hot block per component, concatenated     |

``FeatureMap.jax_transform()`` gives the same map in JAX (jittable, for ``run_jax``).

Any other space (``Dict``, ``Tuple``, ``Text``, ``Graph``, ``Sequence``, …) is refused with a
message naming it; wrap the environment (e.g. ``gymnasium.wrappers.FlattenObservation``) first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FeatureMap"]


class FeatureMap:
    """Maps observations of one Gymnasium space to float32 feature vectors.

    Args:
        space: the environment's (single, unbatched) observation space.

    Attributes:
        dim: length of the feature vector.
    """

    # Set only for the space kinds that use them.
    _start: int  # Discrete: the first value
    _starts: np.ndarray  # MultiDiscrete: the first value of each component, int64
    _offsets: np.ndarray  # MultiDiscrete: where each component's one-hot block begins, int64

    def __init__(self, space: gym.Space) -> None:
        self.space = space
        if isinstance(space, gym.spaces.Box):
            self.kind = "box"
            self.dim = int(np.prod(space.shape, dtype=np.int64)) if space.shape else 1
        elif isinstance(space, gym.spaces.Discrete):
            self.kind = "discrete"
            self.dim = int(space.n)
            self._start = int(space.start)
        elif isinstance(space, gym.spaces.MultiBinary):
            self.kind = "multibinary"
            self.dim = int(np.prod(space.shape, dtype=np.int64))
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.kind = "multidiscrete"
            nvec = np.asarray(space.nvec).ravel()
            self._offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]]).astype(np.int64)
            self._starts = np.asarray(space.start).ravel().astype(np.int64)
            self.dim = int(nvec.sum())
        else:
            raise ValueError(
                f"observation space {space!r} ({type(space).__name__}) is not supported: expected "
                "Box, Discrete, MultiBinary or MultiDiscrete. Flatten it first, e.g. with "
                "gymnasium.wrappers.FlattenObservation, or pick the entries the demons should read"
            )
        if self.dim < 1:
            raise ValueError(f"observation space {space!r} has no entries to learn from")

    def __call__(self, observation: Any) -> np.ndarray:
        """Features of one observation, float32 of shape ``(dim,)``.

        Raises:
            ValueError: ``observation`` does not belong to the space (wrong size; a discrete
                value that is not an integer of the space's range).
        """
        if self.kind == "box" or self.kind == "multibinary":
            obs = np.asarray(observation, np.float32)
            if obs.size != self.dim:
                raise ValueError(
                    f"observation must have {self.dim} entries (space {self.space!r}), got shape {obs.shape}"
                )
            return obs.reshape(self.dim)
        out = np.zeros(self.dim, np.float32)
        if self.kind == "discrete":
            values = np.asarray(observation)
            if values.size != 1:
                raise ValueError(f"observation must be one integer (space {self.space!r}), got {observation!r}")
            out[self._indices(values.reshape(1))[0]] = 1.0
        else:
            out[self._indices(np.asarray(observation).reshape(1, -1))[0]] = 1.0
        return out

    def batch(self, observations: Any) -> np.ndarray:
        """Features of a batch of observations (leading axis ``N``), float32 ``(N, dim)``.

        Raises:
            ValueError: an observation does not belong to the space (see ``__call__``).
        """
        if self.kind == "box" or self.kind == "multibinary":
            obs = np.asarray(observations, np.float32)
            if obs.ndim == 0 or obs[0].size != self.dim:
                raise ValueError(
                    f"observations must have {self.dim} entries each (space {self.space!r}), got shape {obs.shape}"
                )
            return obs.reshape(obs.shape[0], self.dim)
        obs = np.asarray(observations)
        out = np.zeros((obs.shape[0], self.dim), np.float32)
        rows = np.arange(obs.shape[0])
        if self.kind == "discrete":
            out[rows, self._indices(obs.reshape(obs.shape[0]))] = 1.0
        else:
            out[rows[:, None], self._indices(obs.reshape(obs.shape[0], -1))] = 1.0
        return out

    def _indices(self, values: np.ndarray) -> np.ndarray:
        """One-hot positions of discrete observations: ``(N,)`` values of a ``Discrete`` space,
        ``(N, k)`` of a ``MultiDiscrete`` one; refuses a value outside the space (a negative
        index would silently select the last position)."""
        if values.dtype.kind not in "iu" and not (
            values.dtype.kind == "f" and np.array_equal(values, np.round(values))
        ):
            raise ValueError(f"observation must be an integer of the space {self.space!r}, got {values.tolist()!r}")
        if self.kind == "discrete":
            idx = values.astype(np.int64) - self._start
            n = np.full_like(idx, self.dim)
        else:
            nvec = np.asarray(self.space.nvec).ravel()  # type: ignore[attr-defined]
            if values.shape[1] != nvec.size:
                raise ValueError(
                    f"observation must have {nvec.size} components (space {self.space!r}), got {values.tolist()!r}"
                )
            idx = values.astype(np.int64) - self._starts[None, :]
            n = np.broadcast_to(nvec[None, :], idx.shape)
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            raise ValueError(
                f"observation {values[np.argwhere(bad)[0][0]].tolist()!r} is outside the space {self.space!r}"
            )
        if self.kind == "discrete":
            return idx
        return self._offsets[None, :] + idx

    def jax_transform(self) -> Callable[[Any], jax.Array]:
        """The same map in JAX, for use inside traced code.

        Returns:
            ``f(observation) -> float32 (dim,)``: one unbatched observation (a JAX array of the
            space's shape; an integer scalar for ``Discrete``) to its features, equal to
            ``self(observation)``; wrap it in ``jax.vmap`` for batches.
        """
        dim = self.dim
        if self.kind == "box" or self.kind == "multibinary":
            return lambda o: jnp.asarray(o, jnp.float32).reshape(dim)
        if self.kind == "discrete":
            start = self._start
            return lambda o: jax.nn.one_hot(jnp.asarray(o).reshape(()) - start, dim, dtype=jnp.float32)
        offsets = jnp.asarray(self._offsets, jnp.int32)
        starts = jnp.asarray(self._starts, jnp.int32)

        def multidiscrete(o):
            idx = offsets + jnp.asarray(o, jnp.int32).reshape(-1) - starts
            return jnp.zeros((dim,), jnp.float32).at[idx].set(1.0)

        return multidiscrete

    def __repr__(self) -> str:
        return f"FeatureMap({type(self.space).__name__}, dim={self.dim})"
