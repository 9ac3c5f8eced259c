"""Temporal-difference learning of demons on the multi-head core: the ``HordeLearner``.

Each demon is a head. This room holds the TD target and trace decay, off-policy GTD(λ), the
RUPEE and UDE diagnostics, ``Transitions`` and the Horde's scan/vmap loops.
"""
