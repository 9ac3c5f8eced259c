"""Run configurations: a whole experiment declared in one TOML (or JSON) file.

```toml
[env]
id = "CartPole-v1"          # any registered Gymnasium id
kwargs = {}                 # passed to gymnasium.make

[run]
steps = 50000               # environment steps per seed
seed = 0
seeds = 1                   # > 1: a synchronous vector env, one learner state per copy
record_every = 1
chunk_size = 1024
checkpoint_every = 0        # steps between checkpoints (0: only at the end)

[policy]
kind = "uniform"            # or "fixed", with probabilities = [0.5, 0.5], or "epsilon_greedy"
                            # with demon = "balance" (a control demon), epsilon = 0.01,
                            # start = 1.0, anneal_steps = 5000 (default: 5 % of the steps)

[control]                   # ControlLearner settings, when a demon is a control demon
hidden_sizes = [32, 32]     # (target_policy = { kind = "greedy" }); the others learn in the
                            # HordeLearner of [learner] around it

[learner]                   # HordeLearner arguments
hidden_sizes = [128, 128]
step_size = 0.001
normalizer = { type = "WelfordNormalizer" }
bounder = { type = "ObGDBounding", kappa = 2.0 }
diagnostics = true

[nexting]                   # compact standard sets, and/or explicit [[demons]] tables
observation_dim = 4
timescales = [1, 10, 100]

[[demons]]
name = "steps_to_fall"
cumulant = { kind = "constant", value = 1.0 }
discount = { kind = "until", index = 2, threshold = 0.2095, absolute = true }
```

Every key is checked; a bad one raises ``ConfigError`` naming the key, the value and what was
expected.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from demons import DemonSet
from horde.control import ControlLearner, is_control_demon
from horde.td import HordeLearner

__all__ = [
    "ConfigError",
    "DEFAULT_CONFIG",
    "load_config",
    "validate_config",
    "build_demons",
    "build_learner",
    "is_control_config",
]

DEMON_SECTIONS = ("demons", "nexting", "reward_demons")
SECTIONS = ("env", "run", "policy", "learner", "control") + DEMON_SECTIONS
#: ``[control]`` keys: the ``ControlLearner``'s settings.
CONTROL_KEYS = frozenset(
    {
        "hidden_sizes",
        "step_size",
        "kappa",
        "sparsity",
        "use_layer_norm",
        "normalize_observations",
        "scale_cumulants",
        "greedy_rule",
        "secondary_step_size",
    }
)
POLICY_KINDS = ("uniform", "fixed", "epsilon_greedy")

DEFAULT_CONFIG: dict[str, Any] = {
    "env": {"id": "CartPole-v1", "kwargs": {}},
    "run": {"steps": 50_000, "seed": 0, "seeds": 1, "record_every": 1, "chunk_size": 1024, "checkpoint_every": 0},
    "policy": {"kind": "uniform"},
    "learner": {
        "hidden_sizes": [128, 128],
        "step_size": 0.001,
        "normalizer": {"type": "WelfordNormalizer"},
        "diagnostics": True,
    },
    "nexting": {
        "observation_dim": 4,
        "timescales": [1, 2, 5, 10, 20, 50],
        "names": ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"],
    },
    "reward_demons": {"timescales": [1, 10, 100]},
}

RUN_DEFAULTS = DEFAULT_CONFIG["run"]
#: Learner settings a run config may give (its demons come from [nexting] and [[demons]]).
LEARNER_KEYS = HordeLearner.CONFIG_KEYS - {"demons"}


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the key."""


def load_config(path: str | Path) -> dict[str, Any]:
    """Reads a TOML (or ``.json``) run configuration and validates it."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from e
    return validate_config(data)


def _expect(cond: bool, key: str, value: Any, expected: str) -> None:
    if not cond:
        raise ConfigError(f"config key {key} must be {expected}, got {value!r}")


def _positive_int(section: dict, name: str, key: str, minimum: int = 1) -> None:
    if name in section:
        v = section[name]
        _expect(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, key, v, f"an integer >= {minimum}")


def validate_config(data: dict[str, Any]) -> dict[str, Any]:
    """Checks a configuration dict and fills in defaults for the [env], [run] and [policy]
    sections (the demons and the learner must be given, or come from ``DEFAULT_CONFIG``).

    Returns:
        A new, complete configuration dict.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a table of sections, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"config has unknown section {unknown[0]!r}; expected sections {list(SECTIONS)}")
    config = copy.deepcopy(data)
    env = config.setdefault("env", {})
    _expect(isinstance(env, dict), "env", env, "a table")
    _expect(set(env) <= {"id", "kwargs"}, "env", sorted(env), "a table with keys 'id' and 'kwargs'")
    _expect(
        isinstance(env.get("id"), str) and env.get("id"), "env.id", env.get("id"), "a Gymnasium environment id string"
    )
    env.setdefault("kwargs", {})
    _expect(isinstance(env["kwargs"], dict), "env.kwargs", env["kwargs"], "a table of keyword arguments")

    run = config.setdefault("run", {})
    _expect(isinstance(run, dict), "run", run, "a table")
    bad = sorted(set(run) - set(RUN_DEFAULTS))
    _expect(not bad, f"run.{bad[0] if bad else ''}", run.get(bad[0]) if bad else None, f"one of {sorted(RUN_DEFAULTS)}")
    for name, default in RUN_DEFAULTS.items():
        run.setdefault(name, default)
    for name in ("steps", "seeds", "record_every", "chunk_size"):
        _positive_int(run, name, f"run.{name}")
    _positive_int(run, "seed", "run.seed", 0)
    _positive_int(run, "checkpoint_every", "run.checkpoint_every", 0)

    policy = config.setdefault("policy", {"kind": "uniform"})
    _expect(isinstance(policy, dict), "policy", policy, "a table")
    kind = policy.get("kind", "uniform")
    _expect(kind in POLICY_KINDS, "policy.kind", kind, "'uniform', 'fixed' or 'epsilon_greedy'")
    if kind == "fixed":
        probs = policy.get("probabilities")
        _expect(
            isinstance(probs, list)
            and len(probs) > 0
            and all(isinstance(p, (int, float)) and p >= 0 for p in probs)
            and abs(sum(probs) - 1) < 1e-6,
            "policy.probabilities",
            probs,
            "a list of non-negative numbers summing to 1",
        )
    if kind == "epsilon_greedy":
        _check_epsilon_greedy(policy)
    else:
        _expect(set(policy) <= {"kind", "probabilities"}, "policy", sorted(policy), "keys 'kind' and 'probabilities'")
    control = config.get("control", {})
    _expect(isinstance(control, dict), "control", control, "a table")
    bad = sorted(set(control) - CONTROL_KEYS)
    if bad:
        raise ConfigError(
            f"config key control.{bad[0]} is not a ControlLearner setting; expected one of {sorted(CONTROL_KEYS)}"
        )

    learner = config.setdefault("learner", {})
    _expect(isinstance(learner, dict), "learner", learner, "a table")
    bad = sorted(set(learner) - LEARNER_KEYS)
    if bad:
        raise ConfigError(
            f"config key learner.{bad[0]} is not a learner setting; expected one of {sorted(LEARNER_KEYS)}"
        )
    if not any(k in config for k in DEMON_SECTIONS):
        raise ConfigError("config declares no demons: add [[demons]] tables or a [nexting] / [reward_demons] section")
    demon_set = build_demons(config)  # raises ConfigError naming the demon
    if kind == "epsilon_greedy":
        named = policy["demon"]
        if named not in [d.name for d in demon_set if is_control_demon(d)]:
            controls = [d.name for d in demon_set if is_control_demon(d)]
            raise ConfigError(
                f'config key policy.demon must name a control demon (target_policy = {{ kind = "greedy" }}), '
                f"got {named!r}; the control demons are {controls}"
            )
    return config


def _check_epsilon_greedy(policy: dict[str, Any]) -> None:
    _expect(
        set(policy) <= {"kind", "demon", "epsilon", "start", "anneal_steps"},
        "policy",
        sorted(policy),
        "keys 'kind', 'demon', 'epsilon', 'start' and 'anneal_steps' for kind 'epsilon_greedy'",
    )
    _expect(isinstance(policy.get("demon"), str), "policy.demon", policy.get("demon"), "a control demon's name")
    for name in ("epsilon", "start"):
        if name in policy:
            v = policy[name]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
            _expect(ok, f"policy.{name}", v, "a number in [0, 1]")
    _positive_int(policy, "anneal_steps", "policy.anneal_steps", 0)


def is_control_config(config: dict[str, Any]) -> bool:
    """Whether the configuration's behaviour acts on a control demon (``[policy] kind =
    "epsilon_greedy"``)."""
    return config.get("policy", {}).get("kind") == "epsilon_greedy"


def build_demons(config: dict[str, Any]) -> DemonSet:
    """The DemonSet a configuration declares."""
    section = {k: v for k, v in config.items() if k in DEMON_SECTIONS}  # in file order
    try:
        return DemonSet.from_dict(section)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"config demons: {e}") from e


def build_learner(config: dict[str, Any]):
    """The learner a configuration declares: a ``HordeLearner``, or, where some demons are
    control demons, a ``ControlLearner`` of those (``[control]`` settings) with the others in a
    ``HordeLearner`` (``[learner]`` settings) around it."""
    demon_set = build_demons(config)
    control = [d for d in demon_set if is_control_demon(d)]
    prediction = [d for d in demon_set if not is_control_demon(d)]
    settings = dict(config.get("learner", {}))
    horde_learner = None
    if prediction or not control:
        learner_config = {"demons": DemonSet(prediction).to_dict()["demons"], **settings}
        try:
            horde_learner = HordeLearner.from_config(learner_config)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"config [learner]: {e}") from e
    if not control:
        return horde_learner
    try:
        return ControlLearner(control, horde=horde_learner, **config.get("control", {}))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config [control]: {e}") from e
