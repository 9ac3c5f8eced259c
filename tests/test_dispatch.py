"""JAX's CPU dispatch mode for acting: ``horde.run`` and ``ActingDaemon`` say once per process
when they act on an asynchronous CPU client, and the ``horde`` command turns asynchronous
dispatch off for its acting runs while JAX has not created its backends yet."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest

import demons
import horde
from demons import cumulants, discounts, policies
from horde.runs import dispatch


def _learner() -> horde.ControlLearner:
    q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
    return horde.ControlLearner([q], hidden_sizes=(8,), head_features=None)


def test_acting_on_an_asynchronous_cpu_client_warns_once_per_process_at_the_callers_line(monkeypatch):
    # This test process runs JAX's default (asynchronous) CPU dispatch.
    assert not dispatch.synchronous_cpu_dispatch()
    monkeypatch.setattr(dispatch, "_warned", False)
    learner, policy = _learner(), horde.EpsilonGreedy("q", anneal_steps=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        horde.run(learner, "CartPole-v1", steps=5, policy=policy, progress=False)
        horde.run(learner, "CartPole-v1", steps=5, policy=policy, progress=False)
        horde.ActingDaemon(learner, policy, gym.spaces.Box(-1, 1, (4,)), 2)
    ours = [w for w in caught if issubclass(w.category, horde.AsyncDispatchWarning)]
    assert len(ours) == 1
    assert ours[0].filename == __file__  # the user's call, not the library's
    assert 'jax.config.update("jax_cpu_enable_async_dispatch", False)' in str(ours[0].message)


def test_the_daemon_warns_when_it_is_the_first_to_act(monkeypatch):
    monkeypatch.setattr(dispatch, "_warned", False)
    with pytest.warns(horde.AsyncDispatchWarning, match="ActingDaemon acts step by step"):
        horde.ActingDaemon(_learner(), horde.EpsilonGreedy("q", anneal_steps=5), gym.spaces.Box(-1, 1, (4,)), 2)


def _fresh_process(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


_ACT = """
import json, warnings
import jax
import demons, horde
from demons import cumulants, discounts, policies
from horde.runs import dispatch
q = demons.Demon("q", cumulants.reward(), discounts.constant(0.9), lamda=0.8, target_policy=policies.greedy())
learner = horde.ControlLearner([q], hidden_sizes=(8,), head_features=None)
def act():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        horde.run(learner, "CartPole-v1", steps=5, policy=horde.EpsilonGreedy("q", anneal_steps=5), progress=False)
    return [w.category.__name__ for w in caught]
"""


def test_the_switch_applies_before_jax_starts_and_the_client_is_what_is_reported_after():
    """In a fresh process: before any JAX computation ``use_synchronous_cpu_dispatch`` turns
    asynchronous dispatch off and acting does not warn; the setting changed afterwards does
    not apply to the client, and what is reported is what the client does."""
    out = _fresh_process(
        _ACT
        + """
out = {"before": dispatch.synchronous_cpu_dispatch(), "switched": dispatch.use_synchronous_cpu_dispatch()}
out["warned"] = act()
jax.config.update("jax_cpu_enable_async_dispatch", True)  # too late for the client
out["after"] = [dispatch.synchronous_cpu_dispatch(), dispatch.use_synchronous_cpu_dispatch()]
print(json.dumps(out))
"""
    )
    assert out == {"before": False, "switched": True, "warned": [], "after": [True, True]}


def test_a_setting_made_after_jax_started_is_not_taken_for_the_clients_mode():
    out = _fresh_process(
        _ACT
        + """
jax.numpy.ones(3).sum().block_until_ready()  # JAX's CPU client exists now, asynchronous
jax.config.update("jax_cpu_enable_async_dispatch", False)  # too late: the client stays as it is
out = {"reported": dispatch.synchronous_cpu_dispatch(), "switched": dispatch.use_synchronous_cpu_dispatch()}
out["warned"] = act()
print(json.dumps(out))
"""
    )
    assert out == {"reported": False, "switched": False, "warned": ["AsyncDispatchWarning"]}


def test_a_refused_call_does_not_use_up_the_warning_and_an_error_filter_raises_each_time(monkeypatch):
    monkeypatch.setattr(dispatch, "_warned", False)
    policy = horde.EpsilonGreedy("q", anneal_steps=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match="no control demon named 'nobody'"):
            horde.run(_learner(), "CartPole-v1", steps=5, policy=horde.EpsilonGreedy("nobody"), progress=False)
        assert caught == []  # refused before the warning
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error", horde.AsyncDispatchWarning)
            with pytest.raises(horde.AsyncDispatchWarning):
                horde.run(_learner(), "CartPole-v1", steps=5, policy=policy, progress=False)


# One small run on the walk; the control run adds an acting behaviour and its greedy demon.
_RUN = """
[env]
id = "horde/RandomWalk-v0"
kwargs = { n_states = 5 }

[run]
steps = 20
chunk_size = 10

[[demons]]
name = "r"
cumulant = { kind = "reward" }
discount = { kind = "constant", gamma = 0.9 }
"""

PREDICTION_TOML = (
    _RUN
    + """
[learner]
hidden_sizes = [4]
"""
)

CONTROL_TOML = (
    _RUN.replace('name = "r"', 'name = "q"')
    + """lamda = 0.8
target_policy = { kind = "greedy" }

[policy]
kind = "epsilon_greedy"
demon = "q"
anneal_steps = 5

[control]
hidden_sizes = [4]
"""
)


@pytest.mark.parametrize(
    ("toml", "acting"), [(CONTROL_TOML, True), (PREDICTION_TOML, False)], ids=["control", "prediction"]
)
def test_the_horde_command_asks_for_synchronous_dispatch_for_acting_runs_only(tmp_path, monkeypatch, toml, acting):
    import envs  # noqa: F401  (registers horde/RandomWalk-v0)
    from horde.cli import control_run_command, run_command
    from horde.cli.main import main

    calls = []
    monkeypatch.setattr(horde.runs, "use_synchronous_cpu_dispatch", lambda: calls.append(1) or True)
    for module, name in (
        (control_run_command, "draw_figures"),
        (control_run_command, "draw_returns"),
        (run_command, "draw_figures"),
    ):
        monkeypatch.setattr(module, name, lambda *a, **k: [])  # figures are other tests' subject
    config = tmp_path / "run.toml"
    config.write_text(toml)
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert calls == ([1] if acting else [])
