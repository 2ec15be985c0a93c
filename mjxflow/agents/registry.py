"""The agent registry: the one place that knows which agents exist.

Each agent module declares one `AgentSpec` (its `--agent` names, the dataclass of its option group,
the group's checks, the fields a `--sweep` may vary, its auto options and its constructor) as the
module attribute `SPEC`, and `BUILTIN` lists those modules. Everything else is derived from the
specs: the `--agent` choices and the option groups of `mjxflow.config.TrainConfig`, the group
checks, the sweepable options, train's "option of another agent" check, the study's routing of
options to cells and the bench's configs.

Adding an agent is its module plus its line in `BUILTIN`; code outside the package (a test, a
plugin) calls `register(spec)` (or uses `registered(spec)` for a scope) and the config is rebuilt
with the new group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from typing import Any, Callable, Iterator

# The agent modules, in the order their groups appear in a config (and their names in --agent's choices).
BUILTIN = ("mjxflow.agents.sac", "mjxflow.agents.smfp", "mjxflow.agents.fpmd")


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    group: str
    """The option group (`--sac.actor-lr`) and the TrainConfig field that holds `config`."""
    config: type
    """The group's frozen dataclass; every field has a default (the agent's defaults)."""
    variants: dict[str, Any]
    """--agent name -> the variant `build` receives (one entry for most agents; FPMD has r and m)."""
    build: Callable[..., Any]
    """build(variant, group_cfg, critic_cfg, obs_size, action_size, check) -> the agent (mjxflow.agents.base.Agent)."""
    check: Callable[[Any], None]
    """ValueError naming the first bad option of the group."""
    doc: str
    """Help line of the option group."""
    sweepable: tuple[str, ...] = ()
    """Float fields of the group used only in arithmetic inside the update (no array shape, no
    Python control flow), which a `--sweep` may therefore vary on the vmapped axis."""
    auto: Callable[[Any, int], Any] | None = None
    """auto(group_cfg, gradient_updates) -> the group with its auto (None) fields filled in from the
    run's gradient updates (iterations x updates per iteration); None: the group has none."""
    auto_fields: tuple[str, ...] = ()
    """The fields `auto` fills in when they are None."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.variants)


_SPECS: dict[str, AgentSpec] = {}  # group -> spec, in registration order
_listeners: list[Callable[[], None]] = []
_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            _add(importlib.import_module(module).SPEC)


def _add(spec: AgentSpec) -> None:
    if spec.group in _SPECS or spec.group in ("critic", "distributed"):
        raise ValueError(f"option group {spec.group!r} is taken")
    taken = set(names())
    if taken & set(spec.names):
        raise ValueError(f"agent name(s) {', '.join(sorted(taken & set(spec.names)))} already registered")
    _SPECS[spec.group] = spec


def specs() -> tuple[AgentSpec, ...]:
    _load()
    return tuple(_SPECS.values())


def names() -> tuple[str, ...]:
    """Every --agent value, in registration order."""
    return tuple(n for s in specs() for n in s.names)


def spec_of(agent: str) -> AgentSpec:
    """The spec of an --agent name; ValueError listing the valid ones."""
    for s in specs():
        if agent in s.variants:
            return s
    raise ValueError(f"unknown agent {agent!r}; valid agents: {', '.join(names())}")


def group_of(agent: str) -> str:
    return spec_of(agent).group


def groups() -> tuple[str, ...]:
    return tuple(s.group for s in specs())


def agents_of_group(group: str) -> tuple[str, ...]:
    return next((s.names for s in specs() if s.group == group), ())


def on_change(callback: Callable[[], None]) -> None:
    """Call `callback` after every register/unregister (mjxflow.config rebuilds TrainConfig)."""
    _listeners.append(callback)


def register(spec: AgentSpec) -> AgentSpec:
    _load()
    _add(spec)
    for callback in _listeners:
        callback()
    return spec


def unregister(group: str) -> None:
    _load()
    if _SPECS.pop(group, None) is not None:
        for callback in _listeners:
            callback()


@contextlib.contextmanager
def registered(spec: AgentSpec) -> Iterator[AgentSpec]:
    """The agent registered for the scope of a with-block (tests)."""
    register(spec)
    try:
        yield spec
    finally:
        unregister(spec.group)
