"""One boundary for every scalar, action and observation, and the faults others reported.

Each case gives the exact bad input and the message it gets. The converters of
``horde.core`` (and their twins in ``demons.checks``) are fuzzed with hypothesis against a
plain-Python statement of what each accepts.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.envs.phys2d.cartpole import CartPoleFunctional
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import RecordEpisodeStatistics
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers horde/RandomWalk-v0)
import horde
from demons import Demon
from demons import checks as demon_checks
from demons import cumulants as C
from demons import discounts as D
from demons import policies as P
from horde.cli import CheckpointError, load_checkpoint, save_checkpoint
from horde.cli.main import main
from horde.core import (
    ArgumentTypeError,
    as_action,
    as_bool,
    as_float,
    as_instance,
    as_int,
    as_seed,
    check_keys,
)
from horde.runs.behaviour import UniformRandom
from horde.runs.features import FeatureMap
from horde.runs.streams import copy_info

# ---------------------------------------------------------------------------------------------
# Small worlds


@contextlib.contextmanager
def run_refuses(kind, match):
    """A fault ``horde.run`` meets in the stream ends the run with a ``RunError`` (keeping the
    records made so far) whose message and cause are the refusal."""
    with pytest.raises(horde.RunError, match=match) as info:
        yield info
    assert isinstance(info.value.__cause__, kind), info.value.__cause__


class TwoStateEnv(gym.Env):
    """Discrete observations 0/1 (or ``bad_obs`` at step ``bad_at``), two actions, reward 1
    (or ``bad_reward`` at step ``bad_at``); episodes of 5 steps."""

    def __init__(self, bad_obs=None, bad_reward=None, bad_at=3):
        self.observation_space = gym.spaces.Discrete(2)
        self.action_space = gym.spaces.Discrete(2)
        self.bad_obs, self.bad_reward, self.bad_at = bad_obs, bad_reward, bad_at

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return 0, {}

    def step(self, action):
        self.t += 1
        obs = self.t % 2
        reward = 1.0
        if self.t == self.bad_at:
            obs = self.bad_obs if self.bad_obs is not None else obs
            reward = self.bad_reward if self.bad_reward is not None else reward
        return obs, reward, self.t >= 5, False, {}


class UnboundedActionEnv(gym.Env):
    """A ``Box(-inf, inf)`` action space (numpy's uniform sampler overflowed on it)."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.tanh(np.asarray(action[:1], np.float32)), float(np.sum(action)), False, False, {}


def _learner(demon_list=None, **kw):
    demon_list = demon_list or [Demon("r", C.reward(), D.constant(0.5))]
    return horde.HordeLearner(demon_list, hidden_sizes=(), step_size=0.01, sparsity=0.0, **kw)


_SHARED_LEARNER = horde.HordeLearner(
    [Demon("r", C.reward(), D.constant(0.9))], hidden_sizes=(), step_size=0.01, sparsity=0.0
)


def _off_policy_learner():
    return _learner([Demon("off", C.reward(), D.constant(0.5), target_policy=P.fixed([1.0, 0.0]))])


# ---------------------------------------------------------------------------------------------
# The converters, fuzzed against a plain statement of what each accepts

_NUMPY_REALS = st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.float16, np.float32, np.float64])
_ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
    st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False),
    st.lists(st.integers(0, 3), max_size=2),
    st.builds(lambda t, v: t(v), _NUMPY_REALS, st.integers(0, 100)),
    st.builds(np.bool_, st.booleans()),
    st.builds(lambda v: np.asarray(v, np.float32), st.floats(-10, 10)),
    st.builds(lambda v: jnp.asarray(v, jnp.int32), st.integers(-5, 5)),
    st.just(np.zeros(2)),
)


def _is_real(v) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, numbers.Real):
        return True
    return getattr(v, "shape", None) == () and np.dtype(v.dtype).kind in "iuf"


def _is_integer(v) -> bool:
    return _is_real(v) and (isinstance(v, numbers.Integral) or np.dtype(getattr(v, "dtype", float)).kind in "iu")


@settings(max_examples=300, deadline=None)
@given(_ANY_VALUE, st.floats(-5, 5), st.floats(0, 5), st.booleans(), st.booleans())
def test_as_float_accepts_exactly_the_real_numbers_in_range(value, low, width, low_open, high_open):
    high = low + width
    real = _is_real(value)
    x = float(value) if real else None
    inside = real and (
        math.isfinite(x) and (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    )
    if inside:
        assert as_float("arg", value, low=low, high=high, low_open=low_open, high_open=high_open) == x
        return
    error = ArgumentTypeError if not real else ValueError
    with pytest.raises(error, match=r"^arg must be (a real number|in [\[(])") as info:
        as_float("arg", value, low=low, high=high, low_open=low_open, high_open=high_open)
    assert repr(value)[:20] in str(info.value)
    assert real or not isinstance(info.value, ArgumentTypeError) or isinstance(info.value, TypeError)


@settings(max_examples=300, deadline=None)
@given(_ANY_VALUE, st.integers(-3, 3))
def test_as_int_accepts_exactly_the_integers_in_range(value, low):
    if _is_integer(value) and int(value) >= low:
        result = as_int("n", value, low=low)
        assert result == int(value) and type(result) is int
        return
    error = ValueError if _is_integer(value) else ArgumentTypeError
    with pytest.raises(error, match=rf"^n must be an integer >= {low}, got "):
        as_int("n", value, low=low)


@settings(max_examples=200, deadline=None)
@given(_ANY_VALUE)
def test_as_bool_accepts_only_bools(value):
    if isinstance(value, (bool, np.bool_)):
        assert as_bool("flag", value) is bool(value)
    else:
        with pytest.raises(ArgumentTypeError, match=r"^flag must be True or False, got "):
            as_bool("flag", value)


@settings(max_examples=200, deadline=None)
@given(_ANY_VALUE, st.integers(1, 8))
def test_as_seed_accepts_non_negative_integers_that_leave_room_for_the_copies(value, count):
    ok = _is_integer(value) and 0 <= int(value) and int(value) + count <= 2**31
    if ok:
        assert as_seed("seed", value, count=count) == int(value)
    else:
        with pytest.raises(ValueError, match=r"^seed must be a non-negative integer"):
            as_seed("seed", value, count=count)


@settings(max_examples=300, deadline=None)
@given(_ANY_VALUE)
def test_demons_checks_make_the_same_decisions_as_horde_core(value):
    """``demons`` imports nothing of ``horde``, so it has its own converters: they must agree."""

    def outcome(fn, *args):
        try:
            return ("ok", fn(*args))
        except (TypeError, ValueError):
            return ("refused", None)

    def finite_only(result):
        kind, v = result
        return result if kind == "refused" or math.isfinite(v) else ("refused", None)

    assert finite_only(outcome(demon_checks.as_float, value, "x")) == outcome(as_float, "x", value)
    assert outcome(demon_checks.as_int, value, "x") == outcome(as_int, "x", value)
    assert outcome(demon_checks.as_bool, value, "x") == outcome(as_bool, "x", value)


def test_as_instance_refuses_a_class_where_an_instance_is_expected():
    with pytest.raises(TypeError, match=r"^optimizer must be an instance \(e.g. LMS\(0.01\)\), got the class LMS"):
        as_instance("optimizer", horde.LMS, methods=("init_for_shape",), example="LMS(0.01)")
    assert as_instance("optimizer", horde.LMS(0.1), methods=("init_for_shape",)) == horde.LMS(0.1)
    with pytest.raises(TypeError, match=r"^config must be a dict, got \[1, 2\] \(list\)"):
        as_instance("config", [1, 2], dict)


# ---------------------------------------------------------------------------------------------
# Scalars of the public API: the same kind of value gets the same check everywhere


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"diagnostics": "false"}, TypeError, "diagnostics must be True or False, got 'false'"),
        ({"diagnostics": 1}, TypeError, "diagnostics must be True or False, got 1"),
        ({"use_layer_norm": "no"}, TypeError, "use_layer_norm must be True or False, got 'no'"),
        ({"step_size": True}, TypeError, "step_size must be a real number, got True"),
        ({"step_size": "0.1"}, TypeError, "step_size must be a real number, got '0.1'"),
        ({"step_size": float("nan")}, ValueError, "step_size must be a finite number >= 0, got nan"),
        ({"sparsity": 1.0}, ValueError, r"sparsity must be in \[0, 1\), got 1.0"),
        ({"leaky_relu_slope": None}, TypeError, "leaky_relu_slope must be a real number, got None"),
        ({"hidden_sizes": (8, 2.0)}, TypeError, r"hidden_sizes\[1\] must be a positive integer, got 2.0"),
        ({"hidden_sizes": 8}, TypeError, "hidden_sizes must be a tuple of positive integers, got 8"),
        ({"optimizer": horde.LMS}, TypeError, "optimizer must be an instance .*got the class LMS"),
        ({"head_optimizer": horde.Autostep}, TypeError, "head_optimizer must be an instance .*got the class Autostep"),
        ({"bounder": horde.ObGDBounding}, TypeError, "bounder must be an instance .*got the class ObGDBounding"),
        ({"optimizer": "LMS"}, TypeError, "optimizer must be an object with init_for_shape"),
        ({"secondary_step_size": False}, TypeError, "secondary_step_size must be a real number, got False"),
        ({"diagnostics_step_size": 0}, ValueError, "diagnostics_step_size must be a finite number > 0, got 0"),
    ],
)
def test_horde_learner_refuses_each_bad_argument_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        horde.HordeLearner([Demon("r", C.reward(), D.constant(0.5))], **kwargs)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: horde.LMS(step_size=True), TypeError, "LMS: step_size must be a real number, got True"),
        (lambda: horde.LMS("0.1"), TypeError, "LMS: step_size must be a real number, got '0.1'"),
        (lambda: horde.IDBD(meta_step_size=-1), ValueError, "IDBD: meta_step_size must be a finite number >= 0"),
        (lambda: horde.Autostep(tau=0), ValueError, "Autostep: tau must be a finite number > 0, got 0"),
        (lambda: horde.ObGDBounding(kappa=True), TypeError, "ObGDBounding: kappa must be a real number, got True"),
        (
            lambda: horde.EMANormalizer(decay=1.0),
            ValueError,
            r"EMANormalizer: decay must be in \[0, 1\), got 1.0",
        ),
        (
            lambda: horde.WelfordNormalizer(epsilon="1e-8"),
            TypeError,
            "WelfordNormalizer: epsilon must be a real number",
        ),
        (lambda: horde.MultiHeadMLPLearner(n_heads=True), TypeError, "n_heads must be an integer >= 1, got True"),
        (
            lambda: horde.MultiHeadMLPLearner(2, store_head_traces=1),
            TypeError,
            "store_head_traces must be True, False or None, got 1",
        ),
    ],
)
def test_core_configs_refuse_each_bad_argument_by_name(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_numpy_scalars_are_numbers_and_are_stored_as_python_floats():
    lms = horde.LMS(np.float32(0.1))
    assert lms.step_size == float(np.float32(0.1)) and type(lms.step_size) is float
    learner = _learner(secondary_step_size=np.float64(0.5), diagnostics=np.bool_(True))
    assert learner.secondary_step_size == 0.5 and learner.diagnostics is True
    assert horde.HordeLearner.from_config(learner.to_config()).to_config() == learner.to_config()


@pytest.mark.parametrize(
    "config, message",
    [
        ([1, 2], r"config must be a dict \(e.g. HordeLearner.to_config\(\)\), got \[1, 2\] \(list\)"),
        ("learner", "config must be a dict"),
        ({"demons": [], "optimizer": "LMS"}, "optimizer config must be a dict"),
        ({"demons": [], "hidden_sizes": 8}, r"hidden_sizes must be a list or a tuple \(e.g. \[128, 128\]\), got 8"),
    ],
)
def test_from_config_refuses_what_is_not_a_config(config, message):
    with pytest.raises(TypeError, match=message):
        horde.HordeLearner.from_config(config)


@pytest.mark.parametrize(
    "keys, error, message",
    [
        (np.zeros((2, 2), np.float32), TypeError, "got an array of dtype float32"),
        ("abc", TypeError, "got 'abc'"),
        (None, TypeError, "got None"),
        (np.zeros((2, 3), np.uint32), ValueError, r"got shape \(2, 3\)"),
    ],
)
def test_check_keys_refuses_floats_strings_and_other_shapes(keys, error, message):
    with pytest.raises(error, match=r"keys must be typed keys of shape \(n_seeds,\).*" + message):
        check_keys(keys)
    assert check_keys(jax.random.split(jax.random.key(0), 3)).shape == (3,)


# ---------------------------------------------------------------------------------------------
# Actions, observations, rewards, seeds


@pytest.mark.parametrize(
    "action, error, message",
    [
        (5, ValueError, r"action must be one of the 2 actions 0..1, got 5"),
        (-1, ValueError, r"action must be one of the 2 actions 0..1, got -1"),
        (1.7, TypeError, r"action must be an integer \(a discrete action index\), got 1.7"),
        (1.0, TypeError, r"action must be an integer \(a discrete action index\), got 1.0"),
        (True, TypeError, r"action must be an integer \(a discrete action index\), got True"),
        ("1", TypeError, r"action must be an integer \(a discrete action index\), got '1'"),
    ],
)
def test_an_action_outside_the_target_policies_actions_is_refused(action, error, message):
    learner = _off_policy_learner()
    state = learner.init(2, jax.random.key(0))
    with pytest.raises(error, match=message):
        learner.update_from_transition(state, np.zeros(2), action, 1.0, np.zeros(2), behaviour_prob=0.5)
    daemon = horde.Daemon(learner, state)
    with pytest.raises(error, match=message):
        daemon.update_from_transition(np.zeros(2), action, 1.0, np.zeros(2), behaviour_prob=0.5)


def test_as_action_counts_from_the_space_start_and_lets_tracers_through():
    assert as_action("a", np.int32(3), 3, start=1) == 3
    with pytest.raises(ValueError, match=r"a must be one of the 3 actions 1..3, got 0"):
        as_action("a", 0, 3, start=1)
    assert as_action("a", 7, None) == 7  # the count unknown: only the kind is checked
    assert jax.jit(lambda a: as_action("a", a, 2) + 1)(jnp.int32(1)) == 2


def test_valid_actions_give_the_importance_ratio_pi_over_mu():
    """π = (1, 0), μ = 0.5: ρ = 2 for action 0 and 0 for action 1. With a zero trace decay
    and LMS, the head bias moves by α ρ δ = 0.01 · ρ · 1 from 0 (cumulant 1, γ v' = 0)."""
    learner = _off_policy_learner()
    state = learner.init(1, jax.random.key(0))
    for action, rho in ((0, 2.0), (np.int64(1), 0.0)):
        r = learner.update_from_transition(state, np.zeros(1), action, 1.0, np.zeros(1), behaviour_prob=0.5)
        np.testing.assert_allclose(float(r.state.core.head_params.biases[0]), 0.01 * rho, rtol=1e-6)


def test_a_behaviour_policy_action_outside_the_space_is_refused():
    learner = _learner()
    with run_refuses(ValueError, r"action at step 0 must be one of the 2 actions 0..1, got 2"):
        horde.run(learner, TwoStateEnv(), steps=10, policy=lambda obs, rng: 2, progress=False)
    with run_refuses(TypeError, r"action at step 0 must be an integer \(a discrete action index\), got 1.7"):
        horde.run(learner, TwoStateEnv(), steps=10, policy=lambda obs, rng: 1.7, progress=False)


@pytest.mark.parametrize(
    "space, observation, message",
    [
        (gym.spaces.Discrete(3), -1, r"observation -1 is outside the space Discrete\(3\)"),
        (gym.spaces.Discrete(3), 3, r"observation 3 is outside the space Discrete\(3\)"),
        (gym.spaces.Discrete(3, start=1), 0, r"observation 0 is outside the space Discrete\(3, start=1\)"),
        (gym.spaces.Discrete(3), 1.5, r"observation must be an integer of the space Discrete\(3\), got \[1.5\]"),
        (gym.spaces.Discrete(3), [0, 1], r"observation must be one integer \(space Discrete\(3\)\), got \[0, 1\]"),
        (gym.spaces.MultiDiscrete([2, 3]), [0, 3], r"observation \[0, 3\] is outside the space MultiDiscrete"),
        (gym.spaces.MultiDiscrete([2, 3]), [1], r"observation must have 2 components"),
        (gym.spaces.Box(0, 1, (4,)), np.zeros(3), r"observation must have 4 entries .* got shape \(3,\)"),
    ],
)
def test_an_observation_outside_its_space_is_refused(space, observation, message):
    features = FeatureMap(space)
    with pytest.raises(ValueError, match=message):
        features(observation)


def test_discrete_features_are_one_hot_of_the_index_from_start():
    features = FeatureMap(gym.spaces.Discrete(3, start=-1))
    np.testing.assert_array_equal(features(-1), [1, 0, 0])
    np.testing.assert_array_equal(features.batch(np.array([1, 0])), [[0, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match=r"observation 2 is outside the space"):
        features.batch(np.array([0, 2]))


def test_an_environment_observation_outside_its_space_is_refused_by_the_run():
    with run_refuses(ValueError, r"observation -1 is outside the space Discrete\(2\)"):
        horde.run(_learner(), TwoStateEnv(bad_obs=-1), steps=10, progress=False)


@pytest.mark.parametrize("reward", [float("nan"), np.float32("nan")])
def test_a_nan_reward_from_the_environment_is_refused_like_one_given_by_hand(reward):
    learner = _learner()
    with pytest.raises(ValueError, match=r"reward must be finite, got (np.float32\()?nan"):
        learner.update_from_transition(learner.init(2, jax.random.key(0)), np.zeros(2), 0, reward, np.zeros(2))
    with run_refuses(ValueError, r"reward must not be NaN, got .*nan.* from the environment at step 2"):
        horde.run(learner, TwoStateEnv(bad_reward=reward), steps=10, progress=False)
    venv = gym.vector.SyncVectorEnv([lambda: TwoStateEnv(bad_reward=reward) for _ in range(2)])
    with run_refuses(ValueError, r"reward must not be NaN, got .*nan.* from the environment at step 2"):
        horde.run(learner, venv, steps=10, progress=False)


def test_an_infinite_reward_from_the_environment_is_a_divergence_at_its_step():
    with pytest.raises(horde.DivergenceError, match="learning diverged at step 3"):
        horde.run(_learner(), TwoStateEnv(bad_reward=float("inf")), steps=10, progress=False)


def test_a_reward_that_is_not_a_number_is_refused():
    with run_refuses(ValueError, r"reward must be one number, got 'x' from the environment at step 2"):
        horde.run(_learner(), TwoStateEnv(bad_reward="x"), steps=10, progress=False)


@pytest.mark.parametrize(
    "seed, error, message",
    [
        (-1, ValueError, "seed must be a non-negative integer below 2147483648, got -1"),
        (1.5, TypeError, r"seed must be a non-negative integer, got 1.5 \(float\)"),
        (True, TypeError, r"seed must be a non-negative integer, got True \(bool\)"),
        ("0", TypeError, r"seed must be a non-negative integer, got '0' \(str\)"),
        (2**31, ValueError, "seed must be a non-negative integer below"),
    ],
)
def test_seeds_are_non_negative_integers(seed, error, message):
    with pytest.raises(error, match=message):
        horde.run(_learner(), TwoStateEnv(), steps=5, seed=seed, progress=False)


def test_run_flags_are_bools():
    with pytest.raises(TypeError, match="stop_on_interrupt must be True or False, got 'yes'"):
        horde.run(_learner(), TwoStateEnv(), steps=5, stop_on_interrupt="yes", progress=False)
    with pytest.raises(TypeError, match="steps must be a positive integer, got 5.0"):
        horde.run(_learner(), TwoStateEnv(), steps=5.0, progress=False)


# ---------------------------------------------------------------------------------------------
# Traced user functions that leave their range


def _fault(demon, steps=50):
    learner = _learner([Demon("fine", C.reward(), D.constant(0.5)), demon])
    with pytest.raises(horde.DivergenceError) as info:
        horde.run(learner, "CartPole-v1", steps=steps, seed=0, progress=False, chunk_size=16)
    return info.value


def test_a_discount_function_above_one_is_reported_with_the_demons_name():
    error = _fault(Demon("too_far", C.reward(), D.function(lambda o: 1.3 + 0.0 * o[0], name="g")))
    message = str(error)
    assert "at step 0" in message and "demon 'too_far': its discount is 1.3, outside [0, 1]" in message
    assert "not of the step size" in message and "step size or ObGDBounding" not in message
    assert error.demons == ("too_far",) and error.step == 0


def test_a_negative_or_nan_discount_function_is_reported_at_its_first_step():
    error = _fault(Demon("neg", C.reward(), D.function(lambda o: jnp.where(o[0] > 0, -0.5, 0.5), name="g")))
    assert "demon 'neg': its discount is -0.5, outside [0, 1]" in str(error)
    error = _fault(Demon("nan", C.reward(), D.function(lambda o: jnp.nan + o[0], name="g")))
    assert "demon 'nan': its discount is nan" in str(error) and error.step == 0


def test_nan_target_policy_probabilities_are_reported():
    demon = Demon(
        "pi",
        C.reward(),
        D.constant(0.5),
        target_policy=P.function(lambda o: jnp.array([jnp.nan, jnp.nan]) + o[0], "pi", 2),
    )
    error = _fault(demon)
    assert "demon 'pi': its importance ratio" in str(error) and "not a distribution" in str(error)
    # a valid distribution runs
    ok = Demon("pi", C.reward(), D.constant(0.5), target_policy=P.function(lambda o: jnp.array([0.3, 0.7]), "pi", 2))
    horde.run(_learner([ok]), "CartPole-v1", steps=20, progress=False)


def test_the_compiled_jax_runner_reports_a_discount_fault_by_name():
    learner = _learner([Demon("far", C.reward(), D.function(lambda o: 2.0 + 0.0 * o[0], name="g"))])
    with pytest.raises(horde.DivergenceError, match=r"demon 'far': its discount is 2, outside \[0, 1\]"):
        horde.run_jax(learner, "horde/RandomWalk-v0", steps=20, progress=False)


def test_a_target_policy_that_does_not_sum_to_one_is_reported_with_the_demons_name():
    """The ratio of the action taken can look fine (0.3/0.5) while π(·|s) is no distribution:
    the runners check the whole vector of user-function target policies."""
    half = Demon("half", C.reward(), D.constant(0.5), target_policy=P.function(lambda o: jnp.full(2, 0.3), "p", 2))
    error = _fault(half)
    assert "demon 'half': its target policy's probabilities sum to 0.6, not 1" in str(error)
    assert error.step == 0 and error.demons == ("half",) and "not of the step size" in str(error)
    learner = _learner([Demon("fine", C.reward(), D.constant(0.5)), half])
    with pytest.raises(horde.DivergenceError, match="demon 'half': its target policy's probabilities sum to 0.6"):
        horde.run_jax(learner, "phys2d/CartPole-v1", steps=20, progress=False)


def test_a_negative_target_probability_of_an_action_not_taken_is_reported():
    # The behaviour always takes action 0: its ratio 1.5/1 is a valid number; the -0.5 is the fault.
    skew = Demon(
        "skew", C.reward(), D.constant(0.5), target_policy=P.function(lambda o: jnp.array([1.5, -0.5]), "p", 2)
    )
    learner = _learner([Demon("fine", C.reward(), D.constant(0.5)), skew])
    with pytest.raises(horde.DivergenceError) as info:
        horde.run(learner, "CartPole-v1", steps=20, policy=horde.FixedProbabilities([1.0, 0.0]), progress=False)
    assert info.value.step == 0 and info.value.demons == ("skew",)
    assert "demon 'skew': its target policy gives a probability of -0.5" in str(info.value)


class _NanRewardCartPole(CartPoleFunctional):
    """CartPole whose reward is NaN once the pole leans past ``lean`` radians."""

    def __init__(self, lean):
        super().__init__()
        self.lean = lean

    def reward(self, state, action, next_state, rng, params=None):
        return jnp.where(jnp.abs(next_state[2]) > self.lean, jnp.nan, 1.0)


def test_a_nan_reward_from_a_jax_environment_is_reported_with_its_step():
    with pytest.raises(horde.DivergenceError) as info:
        horde.run_jax(_learner(), _NanRewardCartPole(-1.0), steps=30, max_episode_steps=500, progress=False)
    assert str(info.value).startswith("the environment returned a NaN reward at step 0;")
    with pytest.raises(horde.DivergenceError) as info:
        horde.run_jax(_learner(), _NanRewardCartPole(0.05), steps=400, max_episode_steps=500, progress=False)
    step = info.value.step
    assert f"NaN reward at step {step};" in str(info.value) and step > 0
    kept = info.value.result  # the records up to it
    assert kept.steps[-1] == step and not np.isnan(kept.rewards[0][:-1]).any() and np.isnan(kept.rewards[0][-1])
    # the same environment without the fault runs past it
    horde.run_jax(_learner(), _NanRewardCartPole(10.0), steps=step + 5, max_episode_steps=500, progress=False)


# ---------------------------------------------------------------------------------------------
# Vector environments: every autoreset mode, nested info


def test_copy_info_takes_each_copys_entries_from_nested_masked_info():
    infos = {
        "x": np.array([1, 2]),
        "_x": np.array([True, True]),
        "episode": {"r": np.array([0.0, 5.0]), "l": np.array([0, 7]), "_r": np.array([False, True])},
        "_episode": np.array([False, True]),
    }
    assert copy_info(infos, 0) == {"x": 1}
    assert copy_info(infos, 1) == {"x": 2, "episode": {"r": 5.0, "l": 7}}


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
@pytest.mark.parametrize("record_statistics", [False, True])
def test_every_autoreset_mode_gives_each_copy_the_single_run_with_its_seed(mode, record_statistics):
    learner = _SHARED_LEARNER  # one learner: its compiled chunk functions are reused across cases
    venv = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})
    if record_statistics:
        venv = RecordEpisodeStatistics(venv)
    vector = horde.run(learner, venv, steps=120, seed=3, chunk_size=32, progress=False)
    assert vector.episode_length.size > 0  # episodes ended inside the run
    for i in range(2):
        n_real = int(vector.valid[i].sum())
        single = horde.run(learner, "CartPole-v1", steps=n_real, seed=3 + i, chunk_size=50, progress=False)
        np.testing.assert_allclose(vector.predictions[i][vector.valid[i]], single.predictions[0], rtol=1e-5, atol=1e-6)
    if mode != AutoresetMode.NEXT_STEP:
        assert vector.valid.all()  # no reset-only steps to mask


def test_a_policy_sees_its_copys_nested_episode_statistics():
    seen = []

    def probabilities(observation, info):
        if "episode" in info:
            seen.append(float(info["episode"]["l"]))
        return [0.5, 0.5]

    venv = gym.make_vec(
        "CartPole-v1", 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}
    )
    venv = RecordEpisodeStatistics(venv)
    result = horde.run(_learner(), venv, steps=200, policy=horde.StateProbabilities(probabilities), progress=False)
    lengths = sorted(float(n) for n in result.episode_length)
    assert len(seen) >= len(lengths) - 2  # every episode but one per copy ended before the last step
    if tuple(int(v) for v in gym.__version__.split(".")[:2]) >= (1, 4):
        # Gymnasium 1.3's vector RecordEpisodeStatistics miscounts some SAME_STEP episodes by
        # a step (its own lengths disagree with the steps the copy took); 1.4 counts them right.
        assert all(n in lengths for n in seen)


# ---------------------------------------------------------------------------------------------
# The default behaviour on Box and other action spaces


def test_uniform_random_samples_unbounded_boxes_without_overflow():
    policy = UniformRandom().bind(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))
    rng = np.random.default_rng(0)
    actions = np.array([policy.sample(None, {}, rng)[0] for _ in range(500)])
    assert np.isfinite(actions).all() and (actions < 0).any() and (actions > 0).any()
    assert policy.sample(None, {}, rng)[1] is None  # a density, not a probability mass
    result = horde.run(_learner(), UnboundedActionEnv(), steps=50, progress=False)
    assert np.isfinite(result.predictions).all()


def test_uniform_random_reaches_both_bounds_of_an_integer_box_with_its_probability():
    space = gym.spaces.Box(0, 2, (3,), np.int64)
    policy = UniformRandom().bind(space)
    rng = np.random.default_rng(0)
    draws = [policy.sample(None, {}, rng) for _ in range(3000)]
    actions = np.array([a for a, _ in draws])
    assert actions.min() == 0 and actions.max() == 2
    counts = np.bincount(actions.ravel(), minlength=3) / actions.size
    np.testing.assert_allclose(counts, 1 / 3, atol=0.02)
    assert draws[0][1] == pytest.approx(1 / 27) and policy.has_probabilities


def test_uniform_random_draws_depend_on_the_seed_alone():
    space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def draws(seed):
        policy, rng = UniformRandom().bind(space), np.random.default_rng(seed)
        return np.array([policy.sample(None, {}, rng)[0] for _ in range(5)])

    np.testing.assert_array_equal(draws(4), draws(4))
    assert not np.array_equal(draws(4), draws(5))
    assert UniformRandom().bind(gym.spaces.MultiDiscrete([2, 4])).sample(None, {}, np.random.default_rng(0))[1] == 1 / 8


# ---------------------------------------------------------------------------------------------
# Checkpoints of learners with custom functions


def _custom_learner(step_size=0.01, fn_name="first"):
    demon_list = [
        Demon("f", C.function(lambda o, a, r, o2: o2[0], name=fn_name), D.constant(0.5)),
        Demon("r", C.reward(), D.constant(0.9)),
    ]
    return horde.HordeLearner(demon_list, hidden_sizes=(4,), step_size=step_size)


def test_a_learner_with_custom_functions_is_checkpointed_and_loaded_given_the_rebuilt_learner(tmp_path):
    learner = _custom_learner()
    state = learner.init(3, jax.random.key(0))
    state = learner.update(state, np.ones(3), np.ones(2), np.ones(3)).state
    path = save_checkpoint(tmp_path / "ck", learner, state, {"step": 1})
    with pytest.raises(CheckpointError, match=r"demons \['f'\] have Python functions.*load_checkpoint\(path, learner="):
        load_checkpoint(path)
    rebuilt = _custom_learner()
    loaded_learner, loaded, meta = load_checkpoint(path, learner=rebuilt)
    assert loaded_learner is rebuilt and meta == {"step": 1}
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_rebuilt_learner_that_differs_is_refused_listing_the_differences(tmp_path):
    learner = _custom_learner()
    path = save_checkpoint(tmp_path / "ck", learner, learner.init(3, jax.random.key(0)))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, learner=_custom_learner(step_size=0.1, fn_name="second"))
    message = str(info.value)
    assert "the given learner does not match the stored one" in message
    assert "step_size: stored 0.01, given 0.1" in message
    assert "demon 0 ('f') cumulant: stored 'function(first)', given 'function(second)'" in message
    plain = _learner()
    with pytest.raises(CheckpointError, match="number of demons: stored 2, given 1"):
        load_checkpoint(path, learner=plain)


def test_a_plain_learner_still_loads_alone_and_checks_a_given_learner(tmp_path):
    learner = _learner()
    path = save_checkpoint(tmp_path / "ck", learner, learner.init(2, jax.random.key(0)))
    assert load_checkpoint(path)[0].to_config() == learner.to_config()
    with pytest.raises(CheckpointError, match="step_size: stored 0.01, given 0.5"):
        load_checkpoint(path, learner=horde.HordeLearner(learner.demons, hidden_sizes=(), step_size=0.5, sparsity=0.0))


# ---------------------------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "horde run: error: --steps must be an integer >= 1, got 0\n"),
        (["--seeds", "-2"], "horde run: error: --seeds must be an integer >= 1, got -2\n"),
        (["--seed", "-1"], "horde run: error: --seed must be an integer >= 0, got -1\n"),
        (
            ["--checkpoint-every", "-5"],
            "horde run: error: argument --checkpoint-every: must be an integer >= 0, got '-5'\n",
        ),
    ],
)
def test_bad_counts_are_one_line_errors(capsys, args, message):
    try:
        status = main(["run", *args])
    except SystemExit as e:  # refused by the argument parser itself, after its usage line
        status = e.code
    assert status == 2
    assert capsys.readouterr().err.splitlines()[-1] + "\n" == message


def test_out_pointing_at_a_file_or_an_unwritable_place_is_a_one_line_error(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["run", "--out", str(a_file)]) == 2
    assert capsys.readouterr().err == f"horde run: error: --out {a_file}: is a file, not a directory\n"
    assert main(["run", "--out", str(a_file / "sub")]) == 2
    assert (
        capsys.readouterr().err == f"horde run: error: --out {a_file / 'sub'}: cannot write there (Not a directory)\n"
    )
    assert main(["run", "--out", "/proc/horde-out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("horde run: error: --out /proc/horde-out: cannot write there (") and err.count("\n") == 1


TOML = """
[env]
id = "CartPole-v1"
[run]
steps = 20
[learner]
hidden_sizes = [4]
{setting}
[[demons]]
name = "r"
cumulant = {{ kind = "reward" }}
discount = {{ kind = "constant", gamma = 0.5 }}
"""


@pytest.mark.parametrize(
    "setting, message",
    [
        ("step_size = true", "step_size must be a real number, got True"),
        ('diagnostics = "false"', "diagnostics must be True or False, got 'false'"),
        ('use_layer_norm = "no"', "use_layer_norm must be True or False, got 'no'"),
    ],
)
def test_a_toml_setting_of_the_wrong_kind_is_refused(capsys, tmp_path, setting, message):
    (tmp_path / "run.toml").write_text(TOML.format(setting=setting))
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("horde run: error: config [learner]: ")


def test_a_toml_policy_probability_that_is_a_bool_is_refused(capsys, tmp_path):
    text = TOML.format(setting="") + '\n[policy]\nkind = "fixed"\nprobabilities = [true, false]\n'
    (tmp_path / "run.toml").write_text(text)
    assert main(["run", str(tmp_path / "run.toml"), "--no-progress"]) == 2
    assert "config key policy.probabilities must be a list of non-negative numbers" in capsys.readouterr().err


def test_a_core_checkpoint_loaded_into_another_core_learner_names_the_settings_that_differ(tmp_path):
    """A ``MultiHeadMLPLearner`` checkpoint given a learner of another trace layout and step
    size: the refusal names both settings with their stored and given values."""
    stored = horde.MultiHeadMLPLearner(2, hidden_sizes=(4,), step_size=0.01, per_head_gamma_lamda=[0.5, 0.5])
    path = save_checkpoint(tmp_path / "ck", stored, stored.init(3, jax.random.key(0)))
    other = horde.MultiHeadMLPLearner(
        2, hidden_sizes=(4,), step_size=0.1, per_head_gamma_lamda=[0.5, 0.5], shared_traces=False
    )
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, learner=other)
    message = str(info.value)
    assert "the given learner does not match the stored one" in message
    assert "shared_traces: stored True, given False" in message
    assert "step_size: stored 0.01, given 0.1" in message
