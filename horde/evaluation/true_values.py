r"""Ground truth for a demon: its true value :math:`v_i(s) = \mathbb{E}[G_i \mid S = s]`, and
how far a run's predictions and its ideal returns are from it.

The ideal return ``G_t`` of a logged stream (``horde.evaluation.returns``) is one sample of
the return; it mixes a learner's error with the noise the policy and the environment make.
The true value removes that noise: from the exact environment state ``s`` (a JAX environment
can be copied), ``N`` Monte Carlo rollouts under the demon's policy (the behaviour policy for
on-policy demons, the demon's target policy for off-policy ones) give

.. math::
    \hat v_i(s) = \frac{1}{N} \sum_{r=1}^{N} G_i^{(r)}, \qquad
    \mathrm{se}_i(s) = \mathrm{sd}(G_i^{(r)}) / \sqrt{N},

with each rollout's :math:`G_i = \sum_k (\prod_{j \le k} \gamma_{i,j}) c_{i,k+1}`, ended by a
termination (where the terminal outcome :math:`z_i` is added) or once the weight left,
:math:`\prod \gamma`, is at most ``tolerance`` for every demon (``max_horizon`` steps at most).
See ``docs/concepts/ground-truth.md`` for the method and its cost.

Two scores read a run that recorded true values (``run_jax(..., true_value_every=...)``):

* **RMSVE**, :math:`\sqrt{\mathrm{mean}_t (v_i(S_t) - \hat v_i(S_t))^2}`, the error of the
  predictions themselves;
* the **floor**, the normalised RMSE that :math:`\hat v_i` itself scores against the ideal
  returns at the same steps: the part of the ideal-return score no learner can remove.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import DemonSet
from horde.evaluation.demon_data import off_policy_mask
from horde.evaluation.returns import run_ideal_returns
from horde.runs import ROLLOUT_MAX_HORIZON, ROLLOUT_TOLERANCE, FeatureMap, as_jax_env, rollout_returns

__all__ = ["TrueValues", "true_values", "true_value_scores"]


class TrueValues(NamedTuple):
    """True values of every demon at ``S`` states.

    Attributes:
        values: ``(S, n_demons)`` float64, :math:`\\hat v_i(s)`.
        stderr: ``(S, n_demons)`` float64, their Monte Carlo standard errors.
        remainder: ``(S, n_demons)`` float64, mean weight :math:`\\prod \\gamma` left when the
            rollouts stopped: at most ``tolerance``, unless ``max_horizon`` cut them.
        horizon: the most steps a rollout took.
    """

    values: np.ndarray
    stderr: np.ndarray
    remainder: np.ndarray
    horizon: int


def true_values(
    env: Any,
    demons: DemonSet,
    states: Any,
    observations: Any,
    *,
    policy: Any = None,
    rollouts: int = 256,
    seed: int = 0,
    tolerance: float = ROLLOUT_TOLERANCE,
    max_horizon: int = ROLLOUT_MAX_HORIZON,
) -> TrueValues:
    """Monte Carlo estimates of every demon's true value at given states of a JAX environment.

    All rollouts of all states and policy groups are one batch stepped by one compiled
    ``lax.while_loop`` (vmapped environment steps); cost: ``rollouts × horizon × S`` environment
    steps per distinct policy (the behaviour, and each distinct target policy), the horizon
    being ``ceil(ln(tolerance) / ln(γ_max))`` for constant discounts (44 steps at γ = 0.9 and
    tolerance 0.01, 66 at the default 0.001) or shorter where every rollout terminates.

    Args:
        env: anything ``run_jax`` accepts (a gymnasium ``FuncEnv``, a ``FunctionalJaxEnv`` or its
            id, an ``envs`` environment).
        demons: the ``DemonSet``.
        states: environment states, a pytree with a leading axis ``S`` on every leaf (what the
            environment's functional form uses: ``FuncEnv.initial`` / ``transition``, or
            ``jax_reset`` / ``jax_step``).
        observations: the observation of each state, ``(S, *observation_shape)`` (an integer
            ``(S,)`` for a ``Discrete`` space); demons read its flattened float32 form.
        policy: the behaviour policy, as ``run_jax``'s ``policy`` (on-policy demons follow it).
        rollouts: rollouts per state and policy, at least 2.
        seed: as ``run_jax``'s: an ``envs`` environment is first reset with it (which fixes
            Collision's feature table: use the run's seed); rollout ``r`` of policy group ``g``
            from state ``s`` draws from ``fold_in(fold_in(fold_in(key(seed), s), g), r)``,
            folded with the step index.
        tolerance: stop adding once the weight left, ``Π γ``, is at most this for every demon.
        max_horizon: most steps of a rollout (bounds state-dependent discounts and ``γ = 1``).

    Returns:
        ``TrueValues`` with ``(S, n_demons)`` arrays in demon order.

    Raises:
        TypeError: ``env`` is not a JAX environment or ``demons`` is not a ``DemonSet``.
        ValueError: shapes that do not match, ``rollouts < 2``, a tolerance outside (0, 1), an
            off-policy demon with a continuous action space, demons that do not fit ``env``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    jenv = as_jax_env(env, int(seed))
    space = jenv.observation_space
    fmap = FeatureMap(space)
    obs = jnp.asarray(observations)
    if obs.ndim < 1:
        raise ValueError(f"observations must have a leading axis S, got shape {tuple(obs.shape)}")
    expected = tuple(space.shape or ())
    if tuple(obs.shape[1:]) != expected:
        raise ValueError(f"observations must have shape (S, *{expected}) for {space!r}, got {tuple(obs.shape)}")
    features = jax.vmap(fmap.jax_transform())(obs)
    S = int(obs.shape[0])
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(int(seed)), s))(jnp.arange(S, dtype=jnp.uint32))
    out = rollout_returns(
        jenv,
        demons,
        states,
        features,
        keys,
        policy=policy,
        rollouts=rollouts,
        tolerance=tolerance,
        max_horizon=max_horizon,
    )
    return TrueValues(out.values, out.stderr, out.remainder, out.horizon)


def true_value_scores(result: Any, last_fraction: float = 0.1, z: Any = None) -> dict[str, np.ndarray]:
    """RMSVE and floor of every demon over the last ``last_fraction`` of a run that recorded
    true values (``run_jax(..., true_value_every=...)``), averaged over seeds.

    Args:
        result: a ``RunResult``.
        last_fraction: the share of the run, at its end, that is scored.
        z: terminal outcomes for the ideal returns; default: each demon's own.

    Returns:
        dict of ``(n_demons,)`` float64 arrays, NaN where not available. ``rmsve``:
        :math:`\\sqrt{\\mathrm{mean}(v_i(S_t) - \\hat v_i(S_t))^2}` over the sampled steps
        (those that were also recorded). ``floor``: RMSE of :math:`\\hat v_i(S_t)` against the
        ideal return ``G_t`` at the sampled steps whose return is complete, divided by
        ``std(G)`` over the whole run (the normalisation of ``demon_summary``'s
        ``normalized_rmse``); needs ``record_every == 1``; NaN for off-policy demons (their
        ideal return is not observed). ``mean_stderr``: root mean square of the true values'
        standard errors (the Monte Carlo noise in ``rmsve`` and ``floor``).

    Raises:
        ValueError: ``last_fraction`` outside (0, 1].
    """
    n = result.n_demons
    nan = np.full(n, np.nan)
    if not 0.0 < last_fraction <= 1.0:
        raise ValueError(f"last_fraction must be in (0, 1], got {last_fraction!r}")
    if result.true_values is None:
        return {"rmsve": nan, "floor": nan.copy(), "mean_stderr": nan.copy()}
    steps = np.asarray(result.steps)
    sampled = np.asarray(result.true_value_steps)
    # the same scored window as demon_summary: the last `last_fraction` of the records
    start = int(steps.size * (1 - last_fraction))
    cut = steps[start] if start < steps.size else np.inf
    pos = np.searchsorted(steps, sampled)
    recorded = (pos < steps.size) & (steps[np.minimum(pos, max(steps.size - 1, 0))] == sampled)
    use = recorded & (sampled >= cut)
    if not use.any():
        return {"rmsve": nan, "floor": nan.copy(), "mean_stderr": nan.copy()}
    rows = pos[use]
    v_hat = result.true_values[:, use]
    with np.errstate(all="ignore"):
        rmsve = np.nanmean(np.sqrt(np.nanmean((result.predictions[:, rows] - v_hat) ** 2, axis=1)), axis=0)
        mean_se = np.sqrt(np.nanmean(result.true_value_stderr[:, use] ** 2, axis=(0, 1)))
        floor = nan.copy()
        if result.record_every == 1:
            ideal = run_ideal_returns(result, z=z)
            g = np.where(ideal.complete, ideal.returns, np.nan)
            std = np.nanstd(g, axis=1)
            err = v_hat - g[:, rows]
            rmse = np.sqrt(np.nanmean(err**2, axis=1))
            floor = np.nanmean(rmse / np.where(std > 0, std, np.nan), axis=0)
            floor = np.where(off_policy_mask(result), np.nan, floor)
    return {"rmsve": rmsve, "floor": floor, "mean_stderr": mean_se}
