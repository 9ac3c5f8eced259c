"""Gymnasium environments with known answers, for testing prediction learners.

Importing this package registers:

=========================  ===============================================
id                         class
=========================  ===============================================
``horde/RandomWalk-v0``    :class:`envs.random_walk.RandomWalk`
``horde/Baird-v0``         :class:`envs.baird.BairdCounterexample`
``horde/Collision-v0``     :class:`envs.collision.Collision`
=========================  ===============================================

so ``gymnasium.make("horde/RandomWalk-v0")`` works after ``import envs``.
Registration is skipped for ids already registered, so re-importing (or
reloading) the package is harmless. Each environment also has a pure-JAX
functional form; see :mod:`envs.functional`.
"""

from __future__ import annotations

import gymnasium

from envs.baird import BairdCounterexample
from envs.collision import Collision
from envs.functional import AutoResetStep, JaxEnv, autoreset_step
from envs.random_walk import RandomWalk, random_walk_model, random_walk_true_values

__all__ = [
    "AutoResetStep",
    "BairdCounterexample",
    "Collision",
    "JaxEnv",
    "RandomWalk",
    "autoreset_step",
    "random_walk_model",
    "random_walk_true_values",
    "ENV_IDS",
]

ENV_IDS: dict[str, str] = {
    "horde/RandomWalk-v0": "envs.random_walk:RandomWalk",
    "horde/Baird-v0": "envs.baird:BairdCounterexample",
    "horde/Collision-v0": "envs.collision:Collision",
}


def _register() -> None:
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=None)


_register()
