"""How good are the predictions? Ideal returns of a recorded run, and errors against them.

The **ideal return** of demon ``i`` at step ``t`` is what its prediction ``v_i(S_t)`` should
have been, computed backwards from what was actually observed::

    G_t = c_{t+1} + γ_{t+1} G_{t+1}

cut at episode ends: where the transition terminated, ``G_t = c_{t+1} + z_i`` (the demon's
terminal outcome). Near the end of the log, and before a truncation, the rest of the return is
unknown; a step's return counts as *complete* when the weight of the unknown remainder,
``Π γ`` over the steps up to the cut, is at most ``tolerance`` (0.01). For a constant ``γ`` this
excludes exactly the last ``ceil(ln 0.01 / ln γ)`` steps before a cut.

The prediction error is ``v_t - G_t``; ``RMSE`` is its root mean square over the complete steps,
and the **normalised RMSE** divides it by the standard deviation of ``G`` (a demon that always
predicts the mean return scores 1).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from horde.evaluation.demon_data import terminal_outcomes

__all__ = ["IdealReturns", "ideal_returns", "run_ideal_returns", "ErrorCurve", "error_curve", "demon_summary"]


class IdealReturns(NamedTuple):
    """Ideal returns and which of them are complete.

    Attributes:
        returns: ``G_t`` per demon, float64, same shape as the cumulants; NaN where the step is
            not a real transition.
        complete: bool mask, True where the return is known to within ``tolerance``.
    """

    returns: np.ndarray
    complete: np.ndarray


@jax.jit
def _backward(cumulants, discounts, terminated, cut, z):
    """Reverse scan over time. ``cut[t]``: the return after step ``t`` is unknown (truncation,
    end of log). Returns ``(G, P)`` with ``P`` the weight of the unknown remainder."""

    def step(carry, inputs):
        g_next, p_next = carry
        c, gamma, term, is_cut = inputs
        g = jnp.where(term, c + z, jnp.where(is_cut, c, c + gamma * g_next))
        p = jnp.where(term, 0.0, jnp.where(is_cut, gamma, gamma * p_next))
        return (g, p), (g, p)

    n = cumulants.shape[-1]
    init = (jnp.zeros((n,), cumulants.dtype), jnp.ones((n,), cumulants.dtype))
    _, (g, p) = jax.lax.scan(step, init, (cumulants, discounts, terminated, cut), reverse=True)
    return g, p


def ideal_returns(
    cumulants: Any,
    discounts: Any,
    terminated: Any,
    truncated: Any,
    *,
    z: Any = None,
    valid: Any = None,
    tolerance: float = 0.01,
) -> IdealReturns:
    """Ideal returns of one logged stream.

    Args:
        cumulants: ``c_{t+1}``, shape ``(T, n_demons)``.
        discounts: ``γ_{t+1}`` as the demons define it, shape ``(T, n_demons)``.
        terminated: ``(T,)`` bool: the transition at ``t`` ended the episode in a terminal state.
        truncated: ``(T,)`` bool: the episode was cut after the transition at ``t``.
        z: terminal outcomes ``(n_demons,)``; default 0.
        valid: ``(T,)`` bool; False marks steps that are not real transitions (a vector
            environment's autoreset steps), whose returns are NaN.
        tolerance: a return is complete when the unknown remainder's weight is at most this.

    Returns:
        ``IdealReturns`` of shape ``(T, n_demons)``.
    """
    c = np.asarray(cumulants, np.float64)
    g = np.asarray(discounts, np.float64)
    if c.ndim != 2 or g.shape != c.shape:
        raise ValueError(f"cumulants and discounts must both have shape (T, n_demons), got {c.shape} and {g.shape}")
    T, n = c.shape
    term = np.asarray(terminated, bool).reshape(-1)
    trunc = np.asarray(truncated, bool).reshape(-1)
    if term.shape != (T,) or trunc.shape != (T,):
        raise ValueError(f"terminated and truncated must have shape ({T},), got {term.shape} and {trunc.shape}")
    ok = np.ones(T, bool) if valid is None else np.asarray(valid, bool).reshape(-1)
    zz = np.zeros(n) if z is None else np.broadcast_to(np.asarray(z, np.float64), (n,))
    cut = (trunc & ~term) | ~ok
    if T:
        cut[-1] = cut[-1] or not term[-1]
    c_in = np.where(ok[:, None], c, 0.0)
    g_in = np.where(ok[:, None], g, 0.0)
    # float64: returns over long horizons lose precision in float32.
    with jax.enable_x64(True):
        G, P = _backward(jnp.asarray(c_in), jnp.asarray(g_in), jnp.asarray(term), jnp.asarray(cut), jnp.asarray(zz))
        G, P = np.asarray(G, np.float64), np.asarray(P, np.float64)
    G = np.where(ok[:, None], G, np.nan)
    complete = ok[:, None] & (P <= tolerance) & np.isfinite(G)
    return IdealReturns(G, complete)


def run_ideal_returns(result: Any, z: Any = None, tolerance: float = 0.01) -> IdealReturns:
    """Ideal returns of every seed of a ``RunResult`` recorded with ``record_every=1``.

    Args:
        result: the run.
        z: terminal outcomes ``(n_demons,)``; default: each demon's own, as recorded in
            ``result.demons`` (0 for a result that records none).
        tolerance: see ``ideal_returns``.

    Returns:
        ``IdealReturns`` with arrays of shape ``(n_seeds, T, n_demons)``.
    """
    if result.record_every != 1:
        raise ValueError(
            f"ideal returns need every step recorded (record_every=1), got record_every={result.record_every}"
        )
    if z is None:
        z = terminal_outcomes(result)
    out = [
        ideal_returns(
            result.cumulants[s],
            result.discounts[s],
            result.terminated[s],
            result.truncated[s],
            z=z,
            valid=result.valid[s],
            tolerance=tolerance,
        )
        for s in range(result.n_seeds)
    ]
    return IdealReturns(np.stack([o.returns for o in out]), np.stack([o.complete for o in out]))


class ErrorCurve(NamedTuple):
    """Prediction error against the ideal return, per time window.

    Attributes:
        steps: step at the centre of each window, ``(n_windows,)``.
        rmse: ``(n_seeds, n_windows, n_demons)``; NaN where a window has no complete return.
        normalized_rmse: ``rmse / std(G)`` with ``std(G)`` over the whole run per seed and
            demon, same shape.
        return_std: ``(n_seeds, n_demons)``.
    """

    steps: np.ndarray
    rmse: np.ndarray
    normalized_rmse: np.ndarray
    return_std: np.ndarray


def error_curve(result: Any, window: int = 1000, z: Any = None, tolerance: float = 0.01) -> ErrorCurve:
    """RMSE and normalised RMSE of every demon's predictions over consecutive windows.

    Args:
        result: a ``RunResult`` recorded with ``record_every=1``.
        window: window length in steps.
        z: terminal outcomes; default: each demon's own (``run_ideal_returns``).
        tolerance: see ``ideal_returns``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    ideal = run_ideal_returns(result, z=z, tolerance=tolerance)
    err = np.where(ideal.complete, result.predictions.astype(np.float64) - ideal.returns, np.nan)
    S, T, n = err.shape
    n_windows = max(1, -(-T // window))
    pad = n_windows * window - T
    sq = np.pad(err**2, ((0, 0), (0, pad), (0, 0)), constant_values=np.nan).reshape(S, n_windows, window, n)
    with np.errstate(all="ignore"), _quiet_nanmean():
        rmse = np.sqrt(np.nanmean(sq, axis=2))
        g = np.where(ideal.complete, ideal.returns, np.nan)
        std = np.nanstd(g, axis=1)
    normalized = rmse / np.where(std > 0, std, np.nan)[:, None, :]
    steps = np.minimum(np.arange(n_windows) * window + window // 2, max(T - 1, 0))
    return ErrorCurve(np.asarray(result.steps)[steps] if T else steps, rmse, normalized, std)


class _quiet_nanmean:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def demon_summary(result: Any, last_fraction: float = 0.1, z: Any = None) -> dict[str, np.ndarray]:
    """Per-demon summary over the last ``last_fraction`` of the run, averaged over seeds.

    ``z``: terminal outcomes; default: each demon's own (``run_ideal_returns``).

    Returns:
        dict of ``(n_demons,)`` arrays: ``rmse``, ``normalized_rmse`` (against ideal returns,
        when every step was recorded; NaN otherwise), ``mean_squared_td_error``, and, from the
        true values a run recorded (``horde.evaluation.true_value_scores``; NaN without them),
        ``rmsve`` (against the true values) and ``floor`` (the normalised RMSE the true
        values themselves score against the ideal returns).
    """
    # true_values imports this module: import it where it is needed
    from horde.evaluation.true_values import true_value_scores

    T = result.predictions.shape[1]
    start = int(T * (1 - last_fraction))
    with np.errstate(all="ignore"), _quiet_nanmean():
        msq_td = np.nanmean(result.td_errors[:, start:] ** 2, axis=(0, 1))
        if result.record_every == 1 and T:
            ideal = run_ideal_returns(result, z=z)
            err = np.where(ideal.complete, result.predictions - ideal.returns, np.nan)
            rmse = np.sqrt(np.nanmean(err[:, start:] ** 2, axis=1))
            std = np.nanstd(np.where(ideal.complete, ideal.returns, np.nan), axis=1)
            nrmse = np.nanmean(rmse / np.where(std > 0, std, np.nan), axis=0)
            rmse = np.nanmean(rmse, axis=0)
        else:
            rmse = nrmse = np.full(result.n_demons, np.nan)
    truth = true_value_scores(result, last_fraction=last_fraction, z=z)
    return {
        "rmse": rmse,
        "normalized_rmse": nrmse,
        "mean_squared_td_error": msq_td,
        "rmsve": truth["rmsve"],
        "floor": truth["floor"],
    }
