r"""One control demon's update on its own network: Stream Q(λ), (Expected) SARSA(λ), Greedy-GQ(λ).

The network :math:`q_\theta(s, \cdot)` (a trunk and one head per action) belongs to the demon
alone, so one scalar TD error trains all of its parameters and a trace over all of them is
exact. With :math:`x_t` the features of :math:`S_t`, :math:`\pi` the demon's target policy on
its own values (greedy, or ε-greedy) and :math:`\gamma'` the discount (0 where the episode
terminated, where the target is :math:`c + z` instead):

.. math::
    \delta_t = c_{t+1} + \gamma_{t+1} \sum_a \pi(a \mid S_{t+1})\, q(S_{t+1}, a) - q(S_t, A_t)

(for a greedy target the sum is :math:`\max_a q(S_{t+1}, a)`: Q-learning; for an ε-greedy one
it is the ε-greedy expectation: Expected SARSA).

* **Stream Q(λ)** (Elsayed, Vasan & Mahmood 2024): :math:`e \leftarrow \gamma_t \lambda e +
  \nabla_\theta q(S_t, A_t)`, :math:`\theta \leftarrow \theta + \alpha_{eff} \delta e`, then
  :math:`e \leftarrow 0` when :math:`A_t` was not greedy or the episode ended.
* **SARSA(λ)**: the same without the cut after exploratory actions.
* **Greedy-GQ(λ)** (Maei & Sutton 2010) with :math:`\phi = \nabla_\theta q(S_t, A_t)`,
  :math:`\bar\phi' = \nabla_\theta q(S_{t+1}, a^*)`, :math:`a^* = \arg\max_a q(S_{t+1}, a)`,
  :math:`\rho_t = \pi(A_t \mid S_t)/\mu(A_t \mid S_t)`:
  :math:`e \leftarrow \phi + \gamma_t \lambda \rho_t e`,
  :math:`\theta \leftarrow \theta + \alpha_{eff}[\delta e - \gamma' (1 - \lambda)(w^\top e)\bar\phi']`,
  :math:`w \leftarrow w + \beta[\delta e - (w^\top \phi)\phi]`.

Every step is bounded as ObGD does (``horde.core.ObGDBounding``):
:math:`\alpha_{eff} = \alpha / \max(\kappa \alpha \max(|\delta|, 1) \|e\|_1, 1)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from demons import policies
from horde.core import ObGDBounding

__all__ = ["RULES", "ControlStep", "ReturnStats", "control_step", "return_scale", "scale_cumulants", "tree_l1"]

RULES = ("q_lambda", "sarsa", "greedy_gq")
"""The learning rules of a control demon (see the module docstring)."""


class ControlStep(NamedTuple):
    """One demon's update.

    Attributes:
        params: the new network parameters.
        trace: the new trace :math:`e` (zero after a cut).
        secondary: the new Greedy-GQ weights :math:`w` (unchanged for the other rules).
        value: :math:`\\max_a q(S_t, a)` before the update.
        td_error: :math:`\\delta_t`.
        explored: whether :math:`A_t` was not greedy for :math:`q(S_t, \\cdot)`.
        scale: the ObGD factor :math:`\\alpha_{eff} / \\alpha` in (0, 1].
        greedy: :math:`\\pi_{greedy}(\\cdot \\mid S_t)` on :math:`q(S_t, \\cdot)` before the update
            (ties split evenly), ``(n_actions,)``: what ``greedy_in`` target policies read.
    """

    params: Any
    trace: Any
    secondary: Any
    value: jax.Array
    td_error: jax.Array
    explored: jax.Array
    scale: jax.Array
    greedy: jax.Array


def tree_l1(tree: Any) -> jax.Array:
    """:math:`\\sum |x|` over every leaf of a pytree (a scalar)."""
    return sum((jnp.sum(jnp.abs(leaf)) for leaf in jax.tree_util.tree_leaves(tree)), jnp.zeros((), jnp.float32))


def _dot(a: Any, b: Any) -> jax.Array:
    return sum(
        (jnp.sum(x * y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))),
        jnp.zeros((), jnp.float32),
    )


def _axpy(a: jax.Array, x: Any, y: Any) -> Any:
    return jax.tree_util.tree_map(lambda xi, yi: yi + a * xi, x, y)


def control_step(
    forward: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    trace: Any,
    secondary: Any,
    x: jax.Array,
    action: jax.Array,
    x_next: jax.Array,
    cumulant: jax.Array,
    discount: jax.Array,
    next_discount: jax.Array,
    terminal_value: jax.Array,
    terminated: jax.Array,
    episode_end: jax.Array,
    behaviour_prob: jax.Array,
    lamda: jax.Array,
    epsilon: jax.Array,
    cut_after_exploring: jax.Array,
    *,
    gq: bool,
    step_size: float,
    bounder: ObGDBounding | None,
    secondary_step_size: float,
) -> ControlStep:
    r"""One update of one control demon (traced; the learner vmaps it over its demons).

    Args:
        forward: ``forward(params, x) -> q`` of shape ``(n_actions,)``; it is applied under
            ``jax.vmap`` to :math:`S_t` and :math:`S_{t+1}` together.
        params: the demon's network parameters (any pytree).
        trace: :math:`e`, a pytree like ``params``.
        secondary: Greedy-GQ's :math:`w`, a pytree like ``params`` (ignored unless ``gq``).
        x: features of :math:`S_t`, ``(d,)``.
        action: :math:`A_t`, int32 scalar in ``[0, n_actions)``.
        x_next: features of :math:`S_{t+1}`, ``(d,)``.
        cumulant: :math:`c_{t+1}` (already scaled).
        discount: :math:`\gamma_t`, the discount of :math:`S_t` (decays the trace).
        next_discount: :math:`\gamma_{t+1}`, the discount of :math:`S_{t+1}`.
        terminal_value: :math:`z`, the target's tail where terminated.
        terminated: bool scalar; no bootstrap, target :math:`c + z`.
        episode_end: bool scalar (terminated or truncated); the trace is cleared after the step.
        behaviour_prob: :math:`\mu(A_t \mid S_t)` (Greedy-GQ's ratio).
        lamda: :math:`\lambda`.
        epsilon: the target policy's ε (0 for greedy).
        cut_after_exploring: Stream Q(λ)'s cut: clear the trace after a non-greedy action.
        gq: use Greedy-GQ(λ) (static).
        step_size: :math:`\alpha`.
        bounder: ObGD, or None for a plain step.
        secondary_step_size: :math:`\beta` of Greedy-GQ.

    Returns:
        A :class:`ControlStep`.
    """
    # S_t and S_{t+1} through the network together: one pass of twice the rows compiles to
    # half the kernels of two passes, and a row's cotangent of zero adds nothing to the other's.
    xs = jnp.stack([x, x_next])
    qs, pullback = jax.vjp(lambda p: jax.vmap(forward, in_axes=(None, 0))(p, xs), params)
    q, q_next = qs[0], qs[1]
    n = q.shape[0]
    onehot = jax.nn.one_hot(action, n, dtype=q.dtype)
    (grad,) = pullback(jnp.stack([onehot, jnp.zeros_like(onehot)]))
    # Both rows' greedy policies, and the three sums over actions below, each as one reduction
    # over stacked rows: on the CPU every reduction is a kernel of its own, whatever its size.
    greedy_now, greedy_next = policies.greedy_probabilities(qs)
    pi_next = epsilon / n + (1.0 - epsilon) * greedy_next
    q_sa, greedy_sa, expected_next = jnp.sum(jnp.stack([q * onehot, greedy_now * onehot, pi_next * q_next]), axis=-1)
    explored = greedy_sa == 0.0

    bootstrap = jnp.where(terminated, terminal_value, next_discount * expected_next)
    delta = cumulant + bootstrap - q_sa

    decay = discount * lamda
    if gq:
        pi_now = epsilon / n + (1.0 - epsilon) * greedy_now
        decay = decay * (pi_now @ onehot) / behaviour_prob
    trace = jax.tree_util.tree_map(lambda e, g: decay * e + g, trace, grad)

    scale = jnp.ones((), jnp.float32) if bounder is None else bounder.scale(step_size * tree_l1(trace), delta)
    alpha = step_size * scale
    if gq:
        a_star = jnp.argmax(q_next)
        (grad_next,) = pullback(jnp.stack([jnp.zeros_like(onehot), jax.nn.one_hot(a_star, n, dtype=q.dtype)]))
        gamma_next = jnp.where(terminated, 0.0, next_discount)
        correction = gamma_next * (1.0 - lamda) * _dot(secondary, trace)
        params = _axpy(alpha * delta, trace, params)
        params = _axpy(-alpha * correction, grad_next, params)
        w_phi = _dot(secondary, grad)
        secondary = _axpy(secondary_step_size * delta, trace, secondary)
        secondary = _axpy(-secondary_step_size * w_phi, grad, secondary)
    else:
        params = _axpy(alpha * delta, trace, params)

    cut = episode_end | (cut_after_exploring & explored)
    trace = jax.tree_util.tree_map(lambda e: jnp.where(cut, jnp.zeros_like(e), e), trace)
    # The row's maximum as greedy_probabilities takes it (one reduction for both, after CSE).
    value = jnp.max(qs, axis=-1)[0]
    return ControlStep(params, trace, secondary, value, delta, explored, scale, greedy_now)


class ReturnStats(NamedTuple):
    """Running statistics of each demon's discounted cumulant return (Welford).

    Attributes:
        n: samples seen, float32 scalar.
        mean: ``(n,)``.
        m2: sum of squared deviations, ``(n,)``.
    """

    n: jax.Array
    mean: jax.Array
    m2: jax.Array

    @classmethod
    def zeros(cls, n: int) -> ReturnStats:
        z = jnp.zeros((n,), jnp.float32)
        return cls(jnp.zeros((), jnp.float32), z, z)


def scale_cumulants(
    stats: ReturnStats,
    returns: jax.Array,
    cumulants: jax.Array,
    discounts: jax.Array,
    episode_end: jax.Array,
    epsilon: float = 1e-8,
) -> tuple[jax.Array, jax.Array, ReturnStats, jax.Array]:
    r"""Cumulants divided by the running standard deviation of their discounted return.

    The stream-x reward scaling (Elsayed, Vasan & Mahmood 2024):
    :math:`G \leftarrow \gamma_{t+1} G + c_{t+1}` (restarted after an episode end), its sample
    variance :math:`\sigma^2` over every step so far (1 until two samples), and
    :math:`\tilde c = c / \sqrt{\sigma^2 + \epsilon}`.

    Args:
        stats: the running statistics.
        returns: :math:`G` before this step, ``(n,)``.
        cumulants: :math:`c_{t+1}`, ``(n,)``.
        discounts: :math:`\gamma_{t+1}`, ``(n,)``.
        episode_end: bool scalar; :math:`G` restarts at 0 for the next step.
        epsilon: added to the variance.

    Returns:
        ``(scaled cumulants, new returns, new stats, sigma)``, ``sigma`` the divisor ``(n,)``.
    """
    g = discounts * returns + cumulants
    count = stats.n + 1.0
    d = g - stats.mean
    mean = stats.mean + d / count
    m2 = stats.m2 + d * (g - mean)
    stats = ReturnStats(count, mean, m2)
    sigma = return_scale(stats, epsilon)
    return cumulants / sigma, jnp.where(episode_end, 0.0, g), stats, sigma


def return_scale(stats: ReturnStats, epsilon: float = 1e-8) -> jax.Array:
    r""":math:`\sqrt{\sigma^2 + \epsilon}` with :math:`\sigma^2` the sample variance of the returns
    seen (1 until two samples), ``(n,)``."""
    var = jnp.where(stats.n < 2.0, 1.0, stats.m2 / jnp.maximum(stats.n - 1.0, 1.0))
    return jnp.sqrt(var + epsilon)
