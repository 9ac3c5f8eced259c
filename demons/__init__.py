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
"""

from demons import cumulants, discounts, policies, serialization
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
from demons.demon_set import MIN_BEHAVIOUR_PROB, DemonSet, Evaluation
from demons.discounts import (
    ConstantDiscount,
    Discount,
    FunctionDiscount,
    TimescaleDiscount,
    UntilDiscount,
)
from demons.policies import PROBABILITY_TOLERANCE, FixedPolicy, FunctionPolicy, Policy

__all__ = [
    # modules of builders
    "cumulants",
    "discounts",
    "policies",
    "serialization",
    # questions and sets
    "Demon",
    "DemonInfo",
    "DemonSet",
    "Evaluation",
    "nexting",
    "reward_demons",
    "timescale_label",
    "MIN_BEHAVIOUR_PROB",
    "PROBABILITY_TOLERANCE",
    # spec types
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
]
