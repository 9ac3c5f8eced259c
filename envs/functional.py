"""The pure-JAX functional interface shared by the environments in :mod:`envs`.

Every environment in this package (``RandomWalk``, ``BairdCounterexample``,
``Collision``) has two pure methods that mirror its Gymnasium ``reset`` /
``step``:

* ``jax_reset(key) -> (state, observation)``
* ``jax_step(state, action, key) -> (next_state, observation, reward, terminated)``

``state`` is an int32 scalar with the same meaning as the Python
environment's ``info["state"]``; ``observation`` matches the Python
observation (float32 array, or int32 scalar for ``RandomWalk(observation=
"index")``); ``reward`` is float32; ``terminated`` is bool. Terminal states
are absorbing (reward 0, ``terminated`` True). The functions read the
environment's configuration when traced and are safe under ``jax.jit``,
``jax.vmap`` and ``jax.lax.scan``. Environments also provide
``jax_behaviour_probs(state)`` (and, where a target policy is defined,
``jax_target_probs(state)``), float32 arrays over the two actions.

:func:`autoreset_step` combines step and reset for use inside
``jax.lax.scan``.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp


class JaxEnv(Protocol):
    """Structural type of an environment with the functional interface."""

    def jax_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]: ...

    def jax_step(
        self, state: jax.Array, action: jax.Array, key: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]: ...


class AutoResetStep(NamedTuple):
    """Result of :func:`autoreset_step`.

    ``state``/``obs`` are where the next step starts (a fresh start if the
    episode terminated); ``final_obs`` is the observation the step itself
    produced (the terminal observation when ``terminated``).
    """

    state: jax.Array
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    final_obs: jax.Array


def autoreset_step(env: JaxEnv, state: jax.Array, action: jax.Array, key: jax.Array) -> AutoResetStep:
    """Step ``env`` functionally and, if the episode terminated, reset it.

    The key is split into one key for the step and one for the reset.
    """
    k_step, k_reset = jax.random.split(key)
    next_state, obs, reward, terminated = env.jax_step(state, action, k_step)
    reset_state, reset_obs = env.jax_reset(k_reset)
    return AutoResetStep(
        state=jnp.where(terminated, reset_state, next_state),
        obs=jnp.where(terminated, reset_obs, obs),
        reward=reward,
        terminated=terminated,
        final_obs=obs,
    )
