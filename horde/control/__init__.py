"""Control demons: demons that act.

A demon whose target policy is greedy (``demons.policies.greedy()``) or ε-greedy
(``policies.epsilon_greedy(ε)``) on its own action values is a control demon. The
``ControlLearner`` gives each control demon a network of its own (a trunk and one head per
action), learns it with Stream Q(λ), Expected SARSA(λ) or Greedy-GQ(λ) (``rules``), and carries
an optional ``HordeLearner`` of prediction demons that learn from the same transitions.

This room imports ``horde.core``, ``horde.td`` and ``demons``; ``horde.runs`` drives it.
"""

from horde.control.learner import (
    DEFAULT_CONTROL_HEAD_FEATURES,
    ControlLearner,
    ControlState,
    ControlUpdateResult,
    check_greedy_in,
    is_control_demon,
)
from horde.control.rules import RULES, ControlStep, ReturnStats, control_step, return_scale, scale_cumulants, tree_l1

__all__ = [
    "DEFAULT_CONTROL_HEAD_FEATURES",
    "RULES",
    "ControlLearner",
    "ControlState",
    "ControlStep",
    "ControlUpdateResult",
    "ReturnStats",
    "check_greedy_in",
    "control_step",
    "is_control_demon",
    "return_scale",
    "scale_cumulants",
    "tree_l1",
]
