r"""Monte Carlo returns of every demon from given states of a JAX environment.

The engine behind ``horde.evaluation.true_values`` and ``run_jax``'s true-value sampling. From
each state :math:`s` it runs ``N`` independent rollouts of the environment's own dynamics and
sums each demon's discounted cumulants,

.. math::
    G_i = \sum_{k \ge 0} \Big(\prod_{j=1}^{k} \gamma_{i,j}\Big) c_{i,k+1}
    \quad (+\ \text{the terminal outcome } z_i \text{ at a termination, which ends the sum}),

exactly the recursion of the ideal return (``G_t = c_{t+1} + γ_{t+1} G_{t+1}``, cut at
termination with ``c_{t+1} + z_i``). An on-policy demon's rollouts follow the behaviour
policy; an off-policy demon's follow its own target policy :math:`\pi_i`. The estimate is
:math:`\hat v_i(s) = \mathrm{mean}(G_i)` with standard error :math:`\mathrm{sd}(G_i)/\sqrt N`.

A rollout stops adding once the weight of what is left, :math:`P_{i,k} = \prod_{j \le k}
\gamma_{i,j}` (0 after a termination), is at most ``tolerance`` for every demon and rollout,
or after ``max_horizon`` steps, whichever comes first; the mean of :math:`P` left at the stop is
returned (``remainder``) so that a cut by ``max_horizon`` is visible. With a constant
:math:`\gamma < 1` the horizon is :math:`\lceil \ln(\text{tolerance}) / \ln \gamma \rceil`.

Demons are grouped by the policy their rollouts follow (the behaviour, or one distinct target
policy each), all groups, states and rollouts are one batch, and time is one
``lax.while_loop``: no Python loop over demons, states, rollouts or time is traced.
Environment time limits are not part of the state, so rollouts ignore them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from demons import DemonSet
from horde.runs.features import FeatureMap
from horde.runs.jax_envs import JaxEnv, JaxPolicy, as_jax_env, as_jax_policy

__all__ = ["RolloutReturns", "rollout_returns", "ROLLOUT_TOLERANCE", "ROLLOUT_MAX_HORIZON"]

ROLLOUT_TOLERANCE = 1e-3
"""Default weight of the cut-off remainder, ``Π γ``, at which a rollout stops."""

ROLLOUT_MAX_HORIZON = 1000
"""Default most steps of a rollout (state-dependent discounts, ``γ = 1`` until termination)."""

# States per compiled call: batches of about this many rollout steps in flight keep memory
# bounded whatever the number of states (the host loop over batches is outside traced code).
_BATCH_ELEMENTS = 1 << 17


class RolloutReturns(NamedTuple):
    """Monte Carlo returns from ``S`` states.

    Attributes:
        values: ``(S, n_demons)`` float64, the mean return :math:`\\hat v_i(s)`.
        stderr: ``(S, n_demons)`` float64, ``sd(G)/sqrt(rollouts)``.
        remainder: ``(S, n_demons)`` float64, mean weight ``Π γ`` left when the rollouts
            stopped (at most ``tolerance`` unless ``max_horizon`` cut them).
        horizon: the most steps any batch ran.
    """

    values: np.ndarray
    stderr: np.ndarray
    remainder: np.ndarray
    horizon: int


def _policy_groups(demons: DemonSet) -> tuple[np.ndarray, list[int | None]]:
    """Group of each demon and the acting policy of each group: None (the behaviour) or the
    position of a demon whose target policy the group follows."""
    groups: list[int | None] = []
    seen: dict[Any, int] = {}
    of_demon = np.zeros(len(demons), np.int32)
    for i, demon in enumerate(demons):
        key = demon.target_policy
        if key not in seen:
            seen[key] = len(groups)
            groups.append(None if key is None else i)
        of_demon[i] = seen[key]
    return of_demon, groups


def _build(env: JaxEnv, policy: JaxPolicy, demons: DemonSet, n: int, tolerance: float, max_horizon: int):
    """Jitted ``fn(states, features, keys) -> (G mean, G sd, P mean, steps)`` for a batch of
    ``S`` states (leading axis of every leaf)."""
    feat = FeatureMap(env.observation_space).jax_transform()
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    start = int(env.action_space.start) if discrete else 0
    n_actions = int(env.action_space.n) if discrete else 0
    of_demon, groups = _policy_groups(demons)
    n_groups = len(groups)
    acting_positions = [g for g in groups if g is not None]
    acting = DemonSet([demons.demons[i] for i in acting_positions]) if acting_positions else None
    # column of `acting` a group samples from (0 for the behaviour group: unused there)
    column = np.asarray([0 if g is None else acting_positions.index(g) for g in groups], np.int32)
    is_behaviour = np.asarray([g is None for g in groups], bool)
    z = jnp.asarray(demons.z, jnp.float32)
    relevant = jnp.asarray(np.arange(n_groups)[:, None] == of_demon[None, :], jnp.float32)  # (G, n)

    def fix_types(new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.asarray(a).astype(b.dtype).reshape(b.shape), new, old)

    def target_probs(x):
        # pi_j(a | s) for every acting demon j, as the ratio a behaviour probability of 1 gives
        one = lambda a: acting.evaluate(x, a, jnp.float32(0.0), x, jnp.float32(1.0)).rhos  # noqa: E731
        return jax.vmap(one)(jnp.arange(n_actions, dtype=jnp.int32))  # (n_actions, n_acting)

    def step_one(env_state, x, key, group):
        k_policy, k_env, k_target = jax.random.split(key, 3)
        action, prob = policy.act(policy.noise(k_policy), env_state)
        action = action.astype(jnp.int32) if discrete else action.astype(jnp.float32)
        if acting is not None:
            probs = target_probs(x)[:, jnp.asarray(column)[group]]
            # categorical, not a cumulative sum: a fixed policy's probabilities are constants,
            # and XLA would fold their cumulative sum over the whole batch at compile time
            chosen = jax.random.categorical(k_target, jnp.log(probs)).astype(jnp.int32) + start
            action = jnp.where(jnp.asarray(is_behaviour)[group], action, chosen)
        next_state, raw, reward, terminated = env.step(env_state, action, k_env)
        next_state = fix_types(next_state, env_state)
        x_next = feat(raw)
        demon_action = action - start if discrete else action
        ev = demons.evaluate(x, demon_action, reward, x_next, prob)
        return next_state, x_next, ev.cumulants, ev.discounts, terminated

    def batch(states, features, keys):
        S = features.shape[0]
        B = n_groups * S * n

        def spread(a):  # (S, ...) -> (G * S * N, ...), group-major
            return jnp.broadcast_to(a[None, :, None], (n_groups, S, n) + a.shape[1:]).reshape((B,) + a.shape[1:])

        env_state = jax.tree_util.tree_map(spread, states)
        x = spread(features)
        group = jnp.broadcast_to(jnp.arange(n_groups, dtype=jnp.int32)[:, None, None], (n_groups, S, n)).reshape(B)
        rollout_keys = jax.vmap(
            lambda k: jax.vmap(
                lambda g: jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(k, g), r))(jnp.arange(n))
            )(jnp.arange(n_groups))
        )(keys)  # (S, G, N)
        rollout_keys = jnp.swapaxes(rollout_keys, 0, 1).reshape(B)
        weight = jnp.broadcast_to(relevant[:, None, None, :], (n_groups, S, n, len(demons))).reshape(B, -1)
        G = jnp.zeros_like(weight)
        ended = jnp.zeros((B,), bool)

        def cond(c):
            t, _, _, _, P, _ = c
            return (t < max_horizon) & jnp.any(P > tolerance)

        def body(c):
            t, env_state, x, G, P, ended = c
            keys_t = jax.vmap(jax.random.fold_in, in_axes=(0, None))(rollout_keys, t)
            nxt, x_next, cum, disc, term = jax.vmap(step_one)(env_state, x, keys_t, group)
            gain = jnp.where(term[:, None], cum + z, cum)
            # A tail that no longer counts (P = 0) must not turn a NaN of a finished episode into G.
            G = G + jnp.where(P > 0, P * gain, 0.0)
            P = jnp.where(term[:, None], 0.0, P * disc)
            # A finished rollout stays in its last state (stepping past termination could overflow).
            keep = lambda new, old: jnp.where(  # noqa: E731
                ended.reshape((-1,) + (1,) * (old.ndim - 1)), old, new
            )
            env_state = jax.tree_util.tree_map(keep, nxt, env_state)
            x = keep(x_next, x)
            return t + 1, env_state, x, G, P, ended | term

        init = (jnp.zeros((), jnp.int32), env_state, x, G, weight, ended)
        t, _, _, G, P, _ = jax.lax.while_loop(cond, body, init)
        G = G.reshape(n_groups, S, n, -1)
        P = P.reshape(n_groups, S, n, -1)
        mean = jnp.mean(G, axis=2)
        sd = jnp.std(G, axis=2, ddof=1) if n > 1 else jnp.full_like(mean, jnp.nan)
        left = jnp.mean(P, axis=2)
        pick = lambda a: jnp.take_along_axis(a, jnp.asarray(of_demon)[None, None, :], axis=0)[0]  # noqa: E731
        return pick(mean), pick(sd), pick(left), t

    return jax.jit(batch)


_CACHE: dict[Any, tuple[Any, Any]] = {}
_CACHE_SIZE = 8


def _compiled(env: JaxEnv, policy: JaxPolicy, demons: DemonSet, n: int, tolerance: float, max_horizon: int):
    key = (id(env.owner), env.fingerprint, policy.cache_key, demons, n, tolerance, max_horizon)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is env.owner:
        return hit[1]
    fn = _build(env, policy, demons, n, tolerance, max_horizon)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = (env.owner, fn)
    return fn


def rollout_returns(
    env: Any,
    demons: DemonSet,
    states: Any,
    features: Any,
    keys: Any,
    *,
    policy: Any = None,
    env_seed: int = 0,
    rollouts: int,
    tolerance: float = ROLLOUT_TOLERANCE,
    max_horizon: int = ROLLOUT_MAX_HORIZON,
) -> RolloutReturns:
    """Monte Carlo returns of every demon from each of ``S`` environment states (see the module
    docstring for the estimator and the stopping rule).

    Args:
        env: a ``JaxEnv`` or anything ``run_jax`` accepts as an environment.
        demons: the ``DemonSet``; validated against the environment here.
        states: the environment states, a pytree whose leaves have a leading axis ``S``
            (the ``env_state`` of ``JaxEnv.reset`` / ``JaxEnv.step``, stacked).
        features: ``(S, observation_dim)``, the flattened float32 observation of each state
            (``FeatureMap`` of the raw observation), what the demons read as :math:`S_t`.
        keys: ``(S,)`` typed JAX keys, one per state; rollout ``r`` of group ``g`` from state
            ``s`` uses ``fold_in(fold_in(keys[s], g), r)`` folded with the step index.
        policy: the behaviour policy (``run_jax``'s ``policy`` forms, or a ``JaxPolicy``).
        env_seed: an ``envs`` environment (not yet a ``JaxEnv``) is first reset with it, as
            ``run_jax(seed=...)`` does, which fixes Collision's feature table.
        rollouts: rollouts per state and policy group, ``N >= 2``.
        tolerance: a rollout stops adding once ``Π γ`` is at most this for every demon.
        max_horizon: most steps of a rollout.

    Returns:
        ``RolloutReturns`` with ``(S, n_demons)`` arrays.

    Raises:
        ValueError: a bad argument, or demons that do not fit the environment.
    """
    jenv = env if isinstance(env, JaxEnv) else as_jax_env(env, env_seed)
    jpolicy = policy if isinstance(policy, JaxPolicy) else as_jax_policy(policy, jenv)
    if not isinstance(demons, DemonSet):
        raise TypeError(f"demons must be a demons.DemonSet, got {type(demons).__name__}")
    if isinstance(rollouts, bool) or not isinstance(rollouts, (int, np.integer)) or rollouts < 2:
        raise ValueError(f"rollouts must be an integer >= 2 (a standard error needs two), got {rollouts!r}")
    if not (isinstance(tolerance, (int, float)) and 0.0 < tolerance < 1.0):
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if isinstance(max_horizon, bool) or not isinstance(max_horizon, (int, np.integer)) or max_horizon < 1:
        raise ValueError(f"max_horizon must be a positive integer, got {max_horizon!r}")
    space = jenv.action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    if demons.is_off_policy.any() and not discrete:
        raise ValueError(
            f"off-policy demons need a Discrete action space to follow their target policies, got {space!r}"
        )
    fmap = FeatureMap(jenv.observation_space)
    demons.validate(fmap.dim, int(space.n) if discrete else None)
    x = jnp.asarray(features, jnp.float32)
    if x.ndim != 2 or x.shape[1] != fmap.dim:
        raise ValueError(f"features must have shape (S, {fmap.dim}), got {tuple(x.shape)}")
    S = int(x.shape[0])
    if S == 0:
        empty = np.zeros((0, len(demons)))
        return RolloutReturns(empty, empty.copy(), empty.copy(), 0)
    leaves = jax.tree_util.tree_leaves(states)
    if any(np.shape(leaf)[:1] != (S,) for leaf in leaves):
        raise ValueError(
            f"every leaf of states must have the leading axis S={S} of features, got shapes "
            f"{[tuple(np.shape(leaf)) for leaf in leaves]}"
        )
    if np.shape(keys)[:1] != (S,):
        raise ValueError(f"keys must have shape ({S},), got {np.shape(keys)}")
    n = int(rollouts)
    fn = _compiled(jenv, jpolicy, demons, n, float(tolerance), int(max_horizon))
    n_groups = len(_policy_groups(demons)[1])
    # Batches of a power-of-two number of states, the last one padded: one compiled shape per
    # call (a single batch is padded to the next power of two).
    size = 1 << max(0, (_BATCH_ELEMENTS // (n * n_groups)).bit_length() - 1)
    if S <= size:
        size = 1 << max(0, (S - 1).bit_length())
    parts, horizon = [], 0
    for lo in range(0, S, size):
        hi = min(S, lo + size)
        idx = np.minimum(np.arange(lo, lo + size), S - 1)
        picked = jax.tree_util.tree_map(lambda a, idx=idx: jnp.asarray(a)[idx], states)
        mean, sd, left, t = fn(picked, x[idx], jnp.asarray(keys)[idx])
        parts.append(tuple(np.asarray(a, np.float64)[: hi - lo] for a in (mean, sd, left)))
        horizon = max(horizon, int(t))
    values, sd, left = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return RolloutReturns(values, sd / np.sqrt(n), left, horizon)
