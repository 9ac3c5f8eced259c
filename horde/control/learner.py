r"""The ``ControlLearner``: control demons, each on its own network, and a Horde learning around them.

A control demon (target policy ``demons.policies.greedy()`` or ``epsilon_greedy(ε)``) predicts
:math:`q(s, a)` for every action with a network of its own: a trunk and one head per action
(``horde.core.MultiHeadMLPLearner``'s sparse initialisation, parameterless LayerNorm and
LeakyReLU). Its value is :math:`v(s) = \max_a q(s, a)`. The networks of all control demons are
stacked along a leading demon axis and updated in one ``jax.vmap`` of
:func:`horde.control.control_step`; the prediction demons learn as before, in an optional
``HordeLearner`` on its own trunk, from the same transitions. Why the networks are separate:
docs/concepts/control.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from demons import Demon, DemonSet, Evaluation, policies
from horde.control.rules import RULES, ReturnStats, control_step, return_scale, scale_cumulants
from horde.core import (
    FourierFeatures,
    MultiHeadMLPLearner,
    ObGDBounding,
    WelfordNormalizer,
    computed_together,
    head_features_from_config,
    trunk_backward,
)
from horde.td import HordeLearner

__all__ = [
    "DEFAULT_CONTROL_HEAD_FEATURES",
    "ControlLearner",
    "ControlState",
    "ControlUpdateResult",
    "check_greedy_in",
    "is_control_demon",
]

DEFAULT_CONTROL_HEAD_FEATURES = FourierFeatures(n_features=256, bandwidth=1.0)
"""The control networks' default head features: the observation and 256 random Fourier
features of it (σ = 1 on the normalised observation); docs/concepts/control.md says why."""


def is_control_demon(demon: Demon) -> bool:
    """True for a demon whose target policy is defined on its own action values."""
    return demon.target_policy is not None and bool(getattr(demon.target_policy, "control", False))


def check_greedy_in(prediction: Iterable[Demon], control: Iterable[Demon] | None) -> None:
    """Refuses prediction demons whose ``greedy_in`` target policy names no control demon.

    Args:
        prediction: the prediction demons (a ``HordeLearner``'s).
        control: the control demons of the learner that carries them, or None where no control
            learner does (then any ``greedy_in`` demon is refused).

    Raises:
        ValueError: naming the demon, the name its target policy gives, and what was expected
            (a control demon of the learner, or a ``horde.ControlLearner`` at all).
    """
    control = list(control) if control is not None else None
    names = [d.name for d in control] if control is not None else []
    others = {d.name for d in prediction}
    for d in prediction:
        policy = d.target_policy
        if not isinstance(policy, policies.GreedyInPolicy):
            continue
        if control is None:
            raise ValueError(
                f"demon {d.name!r} has target policy greedy_in({policy.demon!r}): its importance ratio "
                f"needs control demon {policy.demon!r}'s action values, so it must be learned in the "
                "horde= of a horde.ControlLearner holding that demon, got no control learner"
            )
        if policy.demon not in names:
            what = "is a prediction demon, not a control demon" if policy.demon in others else "is no demon"
            raise ValueError(
                f"demon {d.name!r} has target policy greedy_in({policy.demon!r}), but {policy.demon!r} "
                f"{what} of this learner; expected one of the control demons {names}"
            )


class ControlState(NamedTuple):
    r"""State of a :class:`ControlLearner` (one pytree; vmappable over seeds).

    Attributes:
        params: ``(MLPParams, HeadParams)`` of every control demon's network, stacked along a
            leading demon axis ``(K, ...)``; the heads are ``(K, n_actions, H)`` / ``(K, n_actions)``.
        traces: the eligibility traces, like ``params``.
        secondary: Greedy-GQ's secondary weights, like ``params`` (zero for the other rules).
        observation_stats: the observation normaliser's state (``WelfordState``), or None.
        returns: each demon's running discounted cumulant return, ``(K,)``.
        return_stats: its running statistics (``ReturnStats``).
        discounts: :math:`\gamma_t`, each demon's discount of the current state, ``(K,)``.
        horde: the prediction demons' ``HordeState``, or None.
    """

    params: Any
    traces: Any
    secondary: Any
    observation_stats: Any
    returns: jax.Array
    return_stats: ReturnStats
    discounts: jax.Array
    horde: Any


class ControlUpdateResult(NamedTuple):
    r"""Result of one update, for every demon: the control demons first, then the Horde's.

    Attributes:
        state: the new state.
        predictions: :math:`v_i(S_t)` before the update (control demons: :math:`\max_a q`, in
            cumulant units), ``(n_demons,)``.
        td_errors: :math:`\delta_i` (control demons: in cumulant units), ``(n_demons,)``.
        explored: ``(K,)`` bool, whether :math:`A_t` was not greedy for each control demon.
        rupee: RUPEE of the Horde's demons, NaN for control demons (and all NaN without
            diagnostics).
        ude: UDE, as ``rupee``.
    """

    state: ControlState
    predictions: jax.Array
    td_errors: jax.Array
    explored: jax.Array
    rupee: jax.Array
    ude: jax.Array


class ControlLearner:
    r"""Control demons on their own networks, and optionally a Horde of prediction demons.

    Args:
        demons: the control demons (target policy ``policies.greedy()`` or
            ``policies.epsilon_greedy(ε)``), a sequence or a ``DemonSet``.
        horde: a ``HordeLearner`` whose prediction demons learn from the same transitions, or
            None.
        hidden_sizes: each control network's trunk (stream-x: ``(32, 32)``).
        step_size: :math:`\alpha` (stream-x: 1.0 with ObGD).
        kappa: ObGD's :math:`\kappa` (stream-x: 2.0); None for unbounded steps.
        sparsity: fraction of each unit's inputs initialised to zero (stream-x: 0.9).
        use_layer_norm: parameterless LayerNorm after each hidden layer.
        normalize_observations: Welford observation normalisation, shared by the control networks.
        scale_cumulants: divide each control demon's cumulant by the running standard deviation
            of its discounted return (stream-x reward scaling).
        greedy_rule: the rule of greedy demons: ``"q_lambda"`` (Stream Q(λ), the default) or
            ``"greedy_gq"`` (Greedy-GQ(λ)). ε-greedy demons use ``"sarsa"`` (Expected SARSA(λ)).
        secondary_step_size: Greedy-GQ's :math:`\beta`.
        head_features: fixed features of the (normalised) observation that each network's
            action heads see next to its trunk's output (``horde.FourierFeatures``: the
            observation and random Fourier features of it), or None for the trunk's output
            alone (stream-x's network). Their head weights start at zero and learn with the rest
            of the demon's parameters, under the same trace. Default
            :data:`DEFAULT_CONTROL_HEAD_FEATURES` (256 features, σ = 1) with a trunk, none without one
            (``hidden_sizes=()``: the heads read the observation already).

    Raises:
        TypeError: ``horde`` is not a HordeLearner, or an entry of ``demons`` is not a Demon.
        ValueError: no demons, a demon that is not a control demon, a control demon in ``horde``,
            a ``greedy_in`` target policy in ``horde`` that names no control demon of ``demons``,
            a name used twice, or an invalid setting (naming the argument and the value).
    """

    def __init__(
        self,
        demons: Iterable[Demon] | DemonSet,
        *,
        horde: HordeLearner | None = None,
        hidden_sizes: Sequence[int] = (32, 32),
        step_size: float = 1.0,
        kappa: float | None = 2.0,
        sparsity: float = 0.9,
        use_layer_norm: bool = True,
        normalize_observations: bool = True,
        scale_cumulants: bool = True,
        greedy_rule: str = "q_lambda",
        secondary_step_size: float = 0.01,
        head_features: FourierFeatures | None = DEFAULT_CONTROL_HEAD_FEATURES,
    ) -> None:
        control = DemonSet(demons)
        if len(control) == 0:
            raise ValueError("ControlLearner: demons must hold at least one control demon, got none")
        for d in control:
            if not is_control_demon(d):
                raise ValueError(
                    f"ControlLearner: demon {d.name!r} is not a control demon (target policy "
                    f"{d.target_policy!r}); give it policies.greedy() or policies.epsilon_greedy(ε), "
                    "or put it in the HordeLearner passed as horde="
                )
        if horde is not None and not isinstance(horde, HordeLearner):
            raise TypeError(f"ControlLearner: horde must be a HordeLearner or None, got {type(horde).__name__}")
        if horde is not None:
            bad = [d.name for d in horde.demons if is_control_demon(d)]
            if bad:
                raise ValueError(
                    f"ControlLearner: the horde's demons {bad[:3]} are control demons; pass them as demons="
                )
        if horde is not None:
            check_greedy_in(horde.demons, control)
        if greedy_rule not in ("q_lambda", "greedy_gq"):
            raise ValueError(f"ControlLearner: greedy_rule must be 'q_lambda' or 'greedy_gq', got {greedy_rule!r}")
        for name, value in (("step_size", step_size), ("secondary_step_size", secondary_step_size)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"ControlLearner: {name} must be a finite number > 0, got {value!r}")
        self.control_demons = control
        # Cumulants and discounts of the control demons: their ratios come from their own values.
        self._questions = DemonSet([dataclasses.replace(d, target_policy=None) for d in control])
        self.horde = horde
        # Every demon, control demons first: what a runner records (DemonSet checks the names).
        self.demons = DemonSet(list(control) + (list(horde.demons) if horde is not None else []))
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.step_size = float(step_size)
        self.kappa = None if kappa is None else float(kappa)
        self.bounder = None if kappa is None else ObGDBounding(float(kappa))
        self.sparsity = float(sparsity)
        self.use_layer_norm = bool(use_layer_norm)
        self.normalizer = WelfordNormalizer() if normalize_observations else None
        self.scale_cumulants = bool(scale_cumulants)
        self.greedy_rule = greedy_rule
        self.secondary_step_size = float(secondary_step_size)
        if head_features is not None and not isinstance(head_features, FourierFeatures):
            raise TypeError(
                f"ControlLearner: head_features must be a horde.FourierFeatures or None, got {head_features!r}"
            )
        if head_features is DEFAULT_CONTROL_HEAD_FEATURES and not self.hidden_sizes:
            head_features = None
        self.head_features = head_features
        self.network(2)  # MultiHeadMLPLearner's checks of the network settings, at the boundary
        self.rules = tuple(
            "sarsa" if d.target_policy.kind == "epsilon_greedy" else greedy_rule  # type: ignore[union-attr]
            for d in control
        )
        assert all(r in RULES for r in self.rules)
        self._epsilons = np.asarray([getattr(d.target_policy, "epsilon", 0.0) for d in control], np.float32)
        self._cuts = np.asarray([r == "q_lambda" for r in self.rules], bool)
        self._gq = np.asarray([r == "greedy_gq" for r in self.rules], bool)
        self.diagnostics = bool(horde.diagnostics) if horde is not None else False

    # -- description ---------------------------------------------------------------------------

    @property
    def shards_seeds(self) -> bool:
        """Whether ``run_jax`` may spread this learner's seeds over several devices: as its
        Horde's (``HordeLearner.shards_seeds``); always without one."""
        return self.horde is None or self.horde.shards_seeds

    @property
    def n_control(self) -> int:
        """Number of control demons ``K``."""
        return len(self.control_demons)

    @property
    def n_demons(self) -> int:
        """Number of demons, control and prediction."""
        return len(self.demons)

    @property
    def names(self) -> tuple[str, ...]:
        """Every demon's name, control demons first."""
        return self.demons.names

    def control_index(self, name: str) -> int:
        """Position of the control demon ``name`` among the control demons.

        Raises:
            ValueError: no control demon has that name.
        """
        if name not in self.control_demons.names:
            raise ValueError(
                f"no control demon named {name!r}; the control demons are {list(self.control_demons.names)}"
            )
        return self.control_demons.index(name)

    def to_config(self) -> dict[str, Any]:
        """Plain data describing the learner (its demons and settings)."""
        return {
            "type": "ControlLearner",
            "demons": self.control_demons.to_dict(),
            "horde": None if self.horde is None else self.horde.to_config(),
            "hidden_sizes": list(self.hidden_sizes),
            "step_size": self.step_size,
            "kappa": self.kappa,
            "sparsity": self.sparsity,
            "use_layer_norm": self.use_layer_norm,
            "normalize_observations": self.normalizer is not None,
            "scale_cumulants": self.scale_cumulants,
            "greedy_rule": self.greedy_rule,
            "secondary_step_size": self.secondary_step_size,
            "head_features": None if self.head_features is None else self.head_features.to_config(),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ControlLearner:
        """Inverse of :meth:`to_config`.

        Raises:
            ValueError: a config that is not a ControlLearner's, or a bad setting (naming it).
        """
        config = dict(config)
        if config.pop("type", "ControlLearner") != "ControlLearner":
            raise ValueError(f"ControlLearner.from_config: type must be 'ControlLearner', got {config.get('type')!r}")
        control = DemonSet.from_dict(config.pop("demons"))
        horde_config = config.pop("horde", None)
        horde = None if horde_config is None else HordeLearner.from_config(horde_config)
        # A config without the key predates head features: its networks read h alone.
        config["head_features"] = head_features_from_config(config.get("head_features"))
        return cls(control, horde=horde, **config)

    def observation_dim(self, state: ControlState) -> int:
        """The observation size ``state`` was built for (its networks' input size)."""
        trunk, heads = state.params
        weights = jax.tree_util.tree_leaves(trunk)
        return int(np.shape(weights[0])[-2]) if weights else int(np.shape(heads.weights)[-1])

    def action_count(self, state: ControlState) -> int:
        """The number of actions ``state`` was built for (one head per action)."""
        return self._n_actions(state)

    def __repr__(self) -> str:
        return (
            f"ControlLearner({list(self.control_demons.names)}, rules={list(self.rules)}, "
            f"hidden_sizes={self.hidden_sizes}, horde={self.horde!r})"
        )

    # -- the network ---------------------------------------------------------------------------

    def network(self, n_actions: int) -> MultiHeadMLPLearner:
        """The core learner whose initialisation and forward pass one control network uses."""
        return MultiHeadMLPLearner(
            n_actions,
            hidden_sizes=self.hidden_sizes,
            sparsity=self.sparsity,
            use_layer_norm=self.use_layer_norm,
            head_features=self.head_features,
        )

    def _forward(self, net: MultiHeadMLPLearner):
        slope, layer_norm = net.leaky_relu_slope, net.use_layer_norm

        # The trunk's hand-written backward pass (one reduction per LayerNorm, from the forward
        # pass's tape) instead of the one autodiff derives, which compiles to many more kernels.
        @jax.custom_vjp
        def forward(params, x):
            trunk, heads = params
            return net.head_forward(heads, net.trunk_forward(trunk, x))

        def forward_fwd(params, x):
            trunk, heads = params
            h, tape = net.trunk_forward_with_tape(trunk, x)
            return net.head_forward(heads, h), (params, h, tape, x)

        def forward_bwd(saved, g):
            (trunk, heads), h, tape, x = saved
            # With head features the heads read [h, φ(x)]; only h's weights carry the error back.
            # g W rather than Wᵀ g (the same sums) and its trunk part taken after the product:
            # no transposed or sliced copy of the weights.
            factors = trunk_backward(trunk, tape, net.trunk_part(g @ heads.weights), layer_norm, slope)
            trunk_grad = type(trunk)(tuple(jnp.outer(inp, gl) for inp, gl in factors), tuple(gl for _, gl in factors))
            head_grad = type(heads)(jnp.outer(g, h), g)
            return (trunk_grad, head_grad), jnp.zeros_like(x)

        forward.defvjp(forward_fwd, forward_bwd)
        return forward

    def _n_actions(self, state: ControlState) -> int:
        return int(state.params[1].biases.shape[-1])

    # -- traced API ----------------------------------------------------------------------------

    def init_traced(self, feature_dim: int, key: jax.Array, n_actions: int) -> ControlState:
        """The initial state (traceable; ``feature_dim`` and ``n_actions`` static).

        Control network ``k`` is initialised from ``fold_in(key, k + 1)``; the Horde (if any)
        from ``key`` itself, as it would be on its own.
        """
        net = self.network(n_actions)
        keys = jax.vmap(lambda k: jax.random.fold_in(key, k + 1))(jnp.arange(self.n_control))

        def one(k):
            s = net.init(feature_dim, k)
            return (s.trunk_params, s.head_params)

        params = jax.vmap(one)(keys)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        K = self.n_control
        return ControlState(
            params=params,
            traces=zeros,
            secondary=zeros,
            observation_stats=None if self.normalizer is None else self.normalizer.init(feature_dim),
            returns=jnp.zeros((K,), jnp.float32),
            return_stats=ReturnStats.zeros(K),
            discounts=jnp.zeros((K,), jnp.float32),
            horde=None if self.horde is None else self.horde.init_traced(feature_dim, key),
        )

    def features(self, state: ControlState, observation: jax.Array) -> tuple[jax.Array, Any]:
        """The control networks' input for ``observation`` and the normaliser state that
        includes it where it is the first observation ever seen (traced)."""
        x = jnp.asarray(observation, jnp.float32)
        if self.normalizer is None:
            return x, None
        stats = state.observation_stats
        # The statistics of one observation, written out: mean x, variance 0, count 1. For a
        # finite x these are, bit for bit, the normaliser's update of its initial state (the
        # mean as 0 + (x - 0), which flushes a subnormal x and turns -0 into +0 as that update
        # does), at a fraction of the compiled kernels.
        first = (stats.count == 0) & (stats.count_high == 0)
        stats = stats._replace(
            mean=jnp.where(first, stats.mean + (x - stats.mean), stats.mean),
            count=jnp.where(first, jnp.ones_like(stats.count), stats.count),
        )
        return self.normalizer.normalize(stats, x), stats

    def action_values_traced(self, state: ControlState, observation: jax.Array) -> jax.Array:
        r""":math:`q_k(s, a)` of every control demon, ``(K, n_actions)``, in scaled cumulant units
        (the argmax is what acting needs)."""
        x, _ = self.features(state, observation)
        forward = self._forward(self.network(self._n_actions(state)))
        return jax.vmap(forward, in_axes=(0, None))(state.params, x)

    def cumulant_scales(self, state: ControlState) -> jax.Array:
        """Each control demon's divisor :math:`\\sqrt{\\sigma^2 + 10^{-8}}` of its cumulant, ``(K,)``
        (ones without ``scale_cumulants``)."""
        if not self.scale_cumulants:
            return jnp.ones((self.n_control,), jnp.float32)
        return return_scale(state.return_stats)

    def values_traced(self, state: ControlState, observation: jax.Array) -> jax.Array:
        r"""Each control demon's value of ``observation`` in cumulant units, ``(K,)``:
        :math:`\max_a q(s, a)` for a greedy demon, the ε-greedy expectation for an ε-greedy one,
        times the current cumulant scale."""
        q = self.action_values_traced(state, observation)
        eps = jnp.asarray(self._epsilons)[:, None]
        pi = eps / q.shape[-1] + (1.0 - eps) * policies.greedy_probabilities(q)
        return jnp.sum(pi * q, axis=-1) * self.cumulant_scales(state)

    def evaluate_and_update_traced(
        self, state, observation, action, reward, next_observation, terminated, truncated, behaviour_prob
    ) -> tuple[ControlUpdateResult, Evaluation]:
        """One transition for every demon: ``(result, evaluation)``, both control demons first
        (the runners' interface, as ``HordeLearner.evaluate_and_update_traced``)."""
        terminated = jnp.asarray(terminated, bool)
        episode_end = terminated | jnp.asarray(truncated, bool)
        action = jnp.asarray(action, jnp.int32)
        ev = self._questions.evaluate(observation, action, reward, next_observation, behaviour_prob)

        x, stats = self.features(state, observation)
        if self.normalizer is not None:
            x_next, stats = self.normalizer.update(stats, jnp.asarray(next_observation, jnp.float32))
        else:
            x_next = jnp.asarray(next_observation, jnp.float32)
        if self.scale_cumulants:
            cumulants, returns, return_stats, sigma = scale_cumulants(
                state.return_stats, state.returns, ev.cumulants, ev.discounts, episode_end
            )
        else:
            cumulants, returns, return_stats = ev.cumulants, state.returns, state.return_stats
            sigma = jnp.ones_like(cumulants)
        z = jnp.asarray(self.control_demons.z) / sigma
        if self.scale_cumulants:
            # The scaling's results in one kernel on the CPU (see computed_together), not one per
            # division and square root that several later values read.
            cumulants, returns, mean, m2, sigma, z = computed_together(
                cumulants, returns, return_stats.mean, return_stats.m2, sigma, z
            )
            return_stats = return_stats._replace(mean=mean, m2=m2)
        net = self.network(self._n_actions(state))
        forward = self._forward(net)
        gq = bool(self._gq.any())

        def one(params, trace, secondary, c, gamma, gamma_next, z_k, lamda, eps, cut, is_gq):
            step = control_step(
                forward,
                params,
                trace,
                secondary,
                x,
                action,
                x_next,
                c,
                gamma,
                gamma_next,
                z_k,
                terminated,
                episode_end,
                behaviour_prob,
                lamda,
                eps,
                cut,
                gq=gq,
                step_size=self.step_size,
                bounder=self.bounder,
                secondary_step_size=self.secondary_step_size,
            )
            return step

        steps = jax.vmap(one)(
            state.params,
            state.traces,
            state.secondary,
            cumulants,
            state.discounts,
            ev.discounts,
            z,
            jnp.asarray(self.control_demons.lamdas),
            jnp.asarray(self._epsilons),
            jnp.asarray(self._cuts),
            jnp.asarray(self._gq),
        )
        values, deltas = steps.value * sigma, steps.td_error * sigma
        nan = jnp.full((self.n_control,), jnp.nan, jnp.float32)
        if self.horde is not None:
            # greedy_in demons' π: each control demon's greedy policy on q(S_t, ·) before this
            # update, the values the behaviour acted on.
            h, h_ev = self.horde.evaluate_and_update_traced(
                state.horde,
                observation,
                action,
                reward,
                next_observation,
                terminated,
                truncated,
                behaviour_prob,
                control_policies=policies.ControlPolicies(self.control_demons.names, steps.greedy),
            )
            horde_state = h.state
            predictions = jnp.concatenate([values, h.predictions])
            td_errors = jnp.concatenate([deltas, h.td_errors])
            rupee = jnp.concatenate([nan, h.rupee])
            ude = jnp.concatenate([nan, h.ude])
            evaluation = Evaluation(*(jnp.concatenate([a, b]) for a, b in zip(ev, h_ev)))
        else:
            horde_state, predictions, td_errors, rupee, ude, evaluation = None, values, deltas, nan, nan, ev
        new_state = ControlState(
            params=steps.params,
            traces=steps.trace,
            secondary=steps.secondary,
            observation_stats=stats,
            returns=returns,
            return_stats=return_stats,
            discounts=jnp.where(episode_end, 0.0, ev.discounts),
            horde=horde_state,
        )
        return ControlUpdateResult(new_state, predictions, td_errors, steps.explored, rupee, ude), evaluation

    def finite_demons(self, state: ControlState) -> jax.Array:
        """Per demon, are its parameters finite? ``bool (n_demons,)``, control demons first."""
        leaves = jax.tree_util.tree_leaves(state.params)
        ok = jnp.all(jnp.stack([jnp.isfinite(a).reshape(self.n_control, -1).all(-1) for a in leaves]), axis=0)
        if self.horde is None:
            return ok
        return jnp.concatenate([ok, self.horde.finite_demons(state.horde)])
