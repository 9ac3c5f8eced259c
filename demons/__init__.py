r"""Declarative general value function questions ("demons") and their vectorized evaluation.

A transition is :math:`(S_t, A_t, R_{t+1}, S_{t+1})`. Demon :math:`i` predicts

.. math::
    G_{i,t} = c_{i,t+1} + \gamma_{i,t+1} G_{i,t+1},

with cumulant :math:`c_{i,t+1}` computed from the transition and discount
:math:`\gamma_{i,t+1}` from :math:`S_{t+1}`, optionally under its own target
policy :math:`\pi_i`.

Example::

    import demons
    from demons import cumulants, discounts, policies

    ds = demons.DemonSet(
        demons.nexting(4, timescales=(1, 10), names=["x", "x_dot", "theta", "theta_dot"])
        + [demons.Demon("steps_to_fall", cumulants.constant(1.0),
                        discounts.until(2, 0.1745, absolute=True)),
           demons.Demon("right@10", cumulants.observation(2), discounts.timescale(10),
                        target_policy=policies.fixed([0.0, 1.0]))]
    ).validate(observation_dim=4, n_actions=2)
    ev = ds.evaluate(obs, action, reward, next_obs, behaviour_prob=0.5)
    ev.cumulants, ev.discounts, ev.rhos  # float32 (n_demons,)

A new cumulant, discount or policy kind is one class (a frozen dataclass subclassing
:class:`Cumulant`, :class:`Discount` or :class:`Policy`) that owns its scalar, batched and
plain-data forms; defining it registers it. See :mod:`demons.kinds`.
"""

from demons import checks, cumulants, discounts, kinds, policies, serialization
from demons.cumulants import (
    ActionIndicatorCumulant,
    ConstantCumulant,
    Cumulant,
    FunctionCumulant,
    ObservationCumulant,
    RewardCumulant,
    ThresholdCumulant,
)
from demons.demon import Demon, DemonInfo, nexting, reward_demons, timescale_label
from demons.demon_set import MIN_BEHAVIOUR_PROB, RUN_CONFIG_SECTIONS, DemonSet, Evaluation
from demons.discounts import (
    ConstantDiscount,
    Discount,
    FunctionDiscount,
    TimescaleDiscount,
    UntilDiscount,
)
from demons.kinds import Kind
from demons.policies import PROBABILITY_TOLERANCE, FixedPolicy, FunctionPolicy, GreedyInPolicy, Policy

__all__ = [
    # modules of builders, the kind contract and argument checks
    "cumulants",
    "discounts",
    "policies",
    "serialization",
    "kinds",
    "checks",
    # questions and sets
    "Demon",
    "DemonInfo",
    "DemonSet",
    "Evaluation",
    "nexting",
    "reward_demons",
    "timescale_label",
    "MIN_BEHAVIOUR_PROB",
    "RUN_CONFIG_SECTIONS",
    "PROBABILITY_TOLERANCE",
    # spec types: the kind base and the three families with their built-in kinds
    "Kind",
    "Cumulant",
    "ObservationCumulant",
    "RewardCumulant",
    "ConstantCumulant",
    "ThresholdCumulant",
    "ActionIndicatorCumulant",
    "FunctionCumulant",
    "Discount",
    "ConstantDiscount",
    "TimescaleDiscount",
    "UntilDiscount",
    "FunctionDiscount",
    "Policy",
    "FixedPolicy",
    "FunctionPolicy",
    "GreedyInPolicy",
]
