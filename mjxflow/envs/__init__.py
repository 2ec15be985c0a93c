"""Environment registry: brax MJX tasks and pure-JAX probes, by name."""

from __future__ import annotations

from mjxflow.envs.base import Env, EnvState
from mjxflow.envs.brax_envs import BRAX_TASKS, BraxEnv
from mjxflow.envs.playground import PHYSICS, PLAYGROUND_TASKS
from mjxflow.envs.probes import PROBES
from mjxflow.envs.wrappers import (EpisodeEnv, EpisodeState, StepOutcome, Transition, member_rollout_returns,
                                   rollout_returns)

ENV_NAMES: tuple[str, ...] = BRAX_TASKS + tuple(PROBES) + PLAYGROUND_TASKS


def check_env_name(name: str) -> None:
    if name not in ENV_NAMES:
        raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(ENV_NAMES)}")


def check_physics(name: str, physics: str) -> None:
    """ValueError unless `physics` is an MJX implementation the task can use."""
    if physics not in PHYSICS:
        raise ValueError(f"--physics {physics!r} is not one of: {', '.join(PHYSICS)}")
    if physics != "jax" and name not in PLAYGROUND_TASKS:
        raise ValueError(f"--physics {physics} is for MuJoCo Playground tasks; {name} runs on MJX's jax implementation "
                         f"only (brax 0.14.2 builds its models without a choice of implementation)")


def check_renderable(name: str) -> None:
    """ValueError for a task that videos cannot show (the pure-JAX probes have no bodies)."""
    if name in PROBES:
        raise ValueError(f"--video: {name} is a pure-JAX probe task with nothing to draw; videos need an MJX task")


def make_env(name: str, physics: str = "jax") -> Env:
    """The environment called `name`; unknown names raise ValueError listing the valid ones."""
    check_env_name(name)
    check_physics(name, physics)
    if name in PROBES:
        return PROBES[name]()
    if name in PLAYGROUND_TASKS:
        from mjxflow.envs.playground import PlaygroundEnv

        return PlaygroundEnv(name, physics)
    return BraxEnv(name)


__all__ = [
    "ENV_NAMES", "Env", "EnvState", "EpisodeEnv", "EpisodeState", "StepOutcome", "Transition",
    "PLAYGROUND_TASKS", "check_env_name", "check_physics", "check_renderable", "make_env", "member_rollout_returns", "rollout_returns",
]
