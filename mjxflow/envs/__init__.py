"""Environments by name: brax MJX tasks, MuJoCo Playground's DM Control suite and pure-JAX probes,
all listed once in mjxflow.envs.catalogue."""

from __future__ import annotations

from mjxflow.envs.base import Env, EnvState
from mjxflow.envs.brax_envs import BRAX_TASKS, BraxEnv
from mjxflow.envs.catalogue import CATALOGUE, ENV_NAMES, EnvSpec, tasks
from mjxflow.envs.playground import PHYSICS, PLAYGROUND_TASKS
from mjxflow.envs.probes import PROBES
from mjxflow.envs.wrappers import (EpisodeEnv, EpisodeState, StepOutcome, Transition, member_rollout_returns,
                                   rollout_returns)


def check_env_name(name: str) -> None:
    if name not in ENV_NAMES:
        raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(ENV_NAMES)}")


def check_physics(name: str, physics: str) -> None:
    """ValueError unless `physics` is an MJX implementation the task can use."""
    check_env_name(name)
    if physics not in PHYSICS:
        raise ValueError(f"--physics {physics!r} is not one of: {', '.join(PHYSICS)}")
    if physics not in CATALOGUE[name].physics:
        raise ValueError(f"--physics {physics} is for MuJoCo Playground tasks; {name} runs on MJX's jax implementation "
                         f"only (brax 0.14.2 builds its models without a choice of implementation)")


def check_renderable(name: str) -> None:
    """ValueError for a task that videos cannot show (the pure-JAX probes have no bodies)."""
    check_env_name(name)
    if not CATALOGUE[name].renderable:
        raise ValueError(f"--video: {name} is a pure-JAX probe task with nothing to draw; videos need an MJX task")


def make_env(name: str, physics: str = "jax") -> Env:
    """The environment called `name`; unknown names raise ValueError listing the valid ones."""
    check_env_name(name)
    check_physics(name, physics)
    family = CATALOGUE[name].family
    if family == "probe":
        return PROBES[name]()
    if family == "playground":
        from mjxflow.envs.playground import PlaygroundEnv

        return PlaygroundEnv(name, physics)
    return BraxEnv(name)


__all__ = [
    "BRAX_TASKS", "BraxEnv", "CATALOGUE", "ENV_NAMES", "Env", "EnvSpec", "EnvState", "EpisodeEnv", "EpisodeState", "StepOutcome", "Transition",
    "PLAYGROUND_TASKS", "check_env_name", "check_physics", "check_renderable", "make_env", "member_rollout_returns", "rollout_returns", "tasks",
]
