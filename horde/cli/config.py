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

[policy]                    # the behaviour policy (see POLICY_KINDS)
kind = "uniform"            # or "fixed" (probabilities = [0.5, 0.5]), "env" (the environment's
                            # own, e.g. horde/Collision-v0), "state" / "callable" (function =
                            # "module:name"), or "epsilon_greedy" with demon = "balance" (a control
                            # demon), epsilon = 0.01, start = 1.0, anneal_steps = 5000 (default: 5 %
                            # of the steps)

[control]                   # ControlLearner settings, when a demon is a control demon
hidden_sizes = [32, 32]     # (target_policy = { kind = "greedy" }); the others learn in the
                            # HordeLearner of [learner] around it

[plugins]                   # modules imported before the demons are read: their cumulant,
modules = ["my_kinds"]      # discount and policy kinds register themselves on import

[learner]                   # HordeLearner arguments
hidden_sizes = [128, 128]
step_size = 0.001
normalizer = { type = "WelfordNormalizer" }
bounder = { type = "ObGDBounding", kappa = 2.0 }
diagnostics = true          # RUPEE and UDE: extra time per step, up to about twice

[nexting]                   # compact standard sets, and/or explicit [[demons]] tables
observation_dim = 4
timescales = [1, 10, 100]
names = ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]

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
import importlib
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from demons import RUN_CONFIG_SECTIONS, DemonSet
from horde.control import ControlLearner, check_greedy_in, is_control_demon
from horde.core import as_int, head_features_from_config
from horde.td import HordeLearner

__all__ = [
    "ConfigError",
    "DEFAULT_CONFIG",
    "POLICY_KINDS",
    "load_config",
    "validate_config",
    "build_demons",
    "build_learner",
    "build_policy",
    "import_plugins",
    "is_control_config",
]

DEMON_SECTIONS = ("demons", "nexting", "reward_demons")
SECTIONS = RUN_CONFIG_SECTIONS + DEMON_SECTIONS

#: ``[policy] kind`` choices, one per behaviour policy of the Python API, with their keys:
#: ``uniform`` (``horde.UniformRandom``), ``fixed`` (``horde.FixedProbabilities``, key
#: ``probabilities``), ``env`` (the environment's own behaviour: the action probabilities it
#: publishes in ``info[key]`` each step, key ``key``, default ``"behaviour_probs"``, as
#: ``horde/Collision-v0`` does), ``state`` (``horde.StateProbabilities``, key ``function``:
#: ``"module:name"`` of a ``(observation, info) -> probabilities`` function) and ``callable``
#: (``horde.CallablePolicy``, key ``function``: ``"module:name"`` of an
#: ``(observation, rng) -> action`` function; its probabilities are unknown, so on-policy
#: demons only), and ``epsilon_greedy`` (``horde.EpsilonGreedy`` acting on the control demon
#: named by key ``demon``, keys ``epsilon``, ``start``, ``anneal_steps``).
POLICY_KINDS: dict[str, tuple[str, ...]] = {
    "uniform": (),
    "fixed": ("probabilities",),
    "env": ("key",),
    "state": ("function",),
    "callable": ("function",),
    "epsilon_greedy": ("demon", "epsilon", "start", "anneal_steps"),
}
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
        "head_features",
    }
)

DEFAULT_CONFIG: dict[str, Any] = {
    "env": {"id": "CartPole-v1", "kwargs": {}},
    "run": {"steps": 50_000, "seed": 0, "seeds": 1, "record_every": 1, "chunk_size": 1024, "checkpoint_every": 0},
    "policy": {"kind": "uniform"},
    # HordeLearner's defaults: least-squares heads for these 27 demons (the demo has
    # no off-policy demon, so RUPEE and UDE, which need TD heads, are left out).
    "learner": {},
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


def load_config(path: str | Path, *, require_env: bool = True) -> dict[str, Any]:
    """Reads a TOML (or ``.json``) run configuration and validates it (``validate_config``).

    Plugin modules (``[plugins] modules``) are looked for on ``sys.path``, in the current
    directory and in the config file's directory."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from e
    return validate_config(data, require_env=require_env, search=(path.resolve().parent,))


def _expect(cond: bool, key: str, value: Any, expected: str) -> None:
    if not cond:
        raise ConfigError(f"config key {key} must be {expected}, got {value!r}")


def _positive_int(section: dict, name: str, key: str, minimum: int = 1) -> None:
    if name in section:
        try:
            as_int(f"config key {key}", section[name], low=minimum)
        except ValueError as e:  # ArgumentTypeError is one too
            raise ConfigError(str(e)) from None


def validate_config(
    data: dict[str, Any], *, require_env: bool = True, search: Sequence[str | Path] = ()
) -> dict[str, Any]:
    """Checks a configuration dict and fills in defaults for the [run] and [policy] sections
    (the demons and the learner must be given, or come from ``DEFAULT_CONFIG``).

    Args:
        data: the configuration's sections.
        require_env: whether ``[env] id`` must be given (``horde demons`` needs no environment).
        search: more directories to import ``[plugins] modules`` from (besides ``sys.path``
            and the current directory).

    Returns:
        A new, complete configuration dict.

    Raises:
        ConfigError: naming the first bad key, the value it has and what was expected.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a table of sections, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"config has unknown section {unknown[0]!r}; expected sections {list(SECTIONS)}")
    config = copy.deepcopy(data)
    plugins = config.get("plugins", {})
    _expect(isinstance(plugins, dict) and set(plugins) <= {"modules"}, "plugins", plugins, "a table with key 'modules'")
    modules = plugins.get("modules", [])
    _expect(
        isinstance(modules, list) and all(isinstance(m, str) and m for m in modules),
        "plugins.modules",
        modules,
        "a list of module names",
    )
    import_plugins(modules, search)
    if require_env or "env" in config:
        env = config.setdefault("env", {})
        _expect(isinstance(env, dict), "env", env, "a table")
        _expect(set(env) <= {"id", "kwargs"}, "env", sorted(env), "a table with keys 'id' and 'kwargs'")
        _expect(
            isinstance(env.get("id"), str) and env.get("id"),
            "env.id",
            env.get("id"),
            "a Gymnasium environment id string",
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
    _expect(kind in POLICY_KINDS, "policy.kind", kind, f"one of {', '.join(map(repr, POLICY_KINDS))}")
    keys = ("kind", *POLICY_KINDS[kind])
    _expect(set(policy) <= set(keys), "policy", sorted(policy), f"keys {list(keys)} for kind {kind!r}")
    if kind == "fixed":
        probs = policy.get("probabilities")
        _expect(
            isinstance(probs, list)
            and len(probs) > 0
            and all(isinstance(p, (int, float)) and not isinstance(p, bool) and p >= 0 for p in probs)
            and abs(sum(probs) - 1) < 1e-6,
            "policy.probabilities",
            probs,
            "a list of non-negative numbers summing to 1",
        )
    if kind == "env":
        key = policy.get("key", "behaviour_probs")
        _expect(isinstance(key, str) and key != "", "policy.key", key, "the info key of the action probabilities")
    if kind in ("state", "callable"):
        _function(policy.get("function"), search)
    if kind == "epsilon_greedy":
        _check_epsilon_greedy(policy)
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
    control_demons = [d for d in demon_set if is_control_demon(d)]
    try:
        check_greedy_in([d for d in demon_set if not is_control_demon(d)], control_demons or None)
    except ValueError as e:
        raise ConfigError(f"config demons: {e}") from e
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
        if horde_learner.heads_chosen_by_default and horde_learner.heads is not None:
            # The run's config.json says which heads the default chose, so that the run means
            # the same if the default changes.
            config.setdefault("learner", {})["heads"] = horde_learner.heads.to_config()
    if not control:
        return horde_learner
    try:
        settings = dict(config.get("control", {}))
        if "head_features" in settings:
            settings["head_features"] = _control_head_features(settings["head_features"])
        return ControlLearner(control, horde=horde_learner, **settings)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config [control]: {e}") from e


def _control_head_features(value: Any) -> Any:
    """``[control] head_features``: a ``{ type = "FourierFeatures", ... }`` table, or ``false``
    for none (TOML has no null)."""
    if value is False:
        return None
    if not isinstance(value, dict):
        raise ConfigError(
            f'config key control.head_features must be a table such as {{ type = "FourierFeatures", '
            f"n_features = 256 }} or false, got {value!r}"
        )
    return head_features_from_config(value)


def import_plugins(modules: Sequence[str], search: Sequence[str | Path] = ()) -> None:
    """Imports the plugin ``modules`` (``[plugins] modules``, ``--plugin``): a module that
    defines cumulant, discount or policy kinds registers them on import, so that a config's
    demons can name them.

    Args:
        modules: module names (``"my_kinds"``, ``"lab.kinds"``).
        search: directories tried after ``sys.path`` (the current directory is always tried).

    Raises:
        ConfigError: a module cannot be imported (naming it and the reason).
    """
    for name in modules:
        if name in sys.modules:
            continue
        extra = [str(Path(d)) for d in (*search, Path.cwd()) if str(Path(d)) not in sys.path]
        sys.path[len(sys.path) :] = extra  # after the installed packages: a plugin never shadows them
        try:
            importlib.import_module(name)
        except Exception as e:  # a plugin's own error is the user's to read, in one line
            where = ", ".join(["sys.path", *extra]) if extra else "sys.path"
            raise ConfigError(
                f"config key plugins.modules: cannot import {name!r} ({type(e).__name__}: {e}); looked in {where}"
            ) from e
        finally:
            for d in extra:
                sys.path.remove(d)


def _function(spec: Any, search: Sequence[str | Path] = ()) -> Any:
    """The callable ``"module:name"`` points to (``[policy] function``)."""
    ok = isinstance(spec, str) and spec.count(":") == 1 and all(spec.split(":"))
    _expect(ok, "policy.function", spec, "'module:name' of a function")
    module, name = spec.split(":")
    import_plugins([module], search)
    fn = getattr(sys.modules[module], name, None)
    _expect(callable(fn), "policy.function", spec, f"a function; module {module!r} has no callable {name!r}")
    return fn


class _InfoProbabilities:
    """The environment's own behaviour policy: the action probabilities it publishes in
    ``info[key]`` at each step (``horde/Collision-v0`` publishes ``info["behaviour_probs"]``)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.__name__ = f"info[{key!r}]"

    def __call__(self, observation: Any, info: dict) -> Any:
        if self.key not in info:
            raise ValueError(
                f"config key policy.kind = 'env' takes the behaviour policy's action probabilities "
                f"from info[{self.key!r}], which this environment does not publish (info keys: "
                f"{sorted(info)}); give policy.key, or choose another policy.kind"
            )
        return info[self.key]


def build_policy(config: dict[str, Any]) -> Any:
    """The behaviour policy a configuration declares (``[policy]``, see ``POLICY_KINDS``).

    Returns:
        A ``horde.runs.BehaviourPolicy``; it is checked against the environment's action
        space when the run starts.
    """
    from horde.runs import CallablePolicy, EpsilonGreedy, FixedProbabilities, StateProbabilities, UniformRandom

    policy = config.get("policy", {})
    kind = policy.get("kind", "uniform")
    if kind == "fixed":
        return FixedProbabilities(policy["probabilities"])
    if kind == "env":
        return StateProbabilities(_InfoProbabilities(policy.get("key", "behaviour_probs")))
    if kind == "state":
        return StateProbabilities(_function(policy["function"]))
    if kind == "callable":
        return CallablePolicy(_function(policy["function"]))
    if kind == "epsilon_greedy":
        return EpsilonGreedy(
            policy["demon"],
            epsilon=policy.get("epsilon", 0.01),
            start=policy.get("start", 1.0),
            anneal_steps=policy.get("anneal_steps"),
        )
    return UniformRandom()
