"""Environment registry: brax MJX tasks and pure-JAX probes, by name."""

from __future__ import annotations

from mjxflow.envs.base import Env, EnvState
from mjxflow.envs.brax_envs import BRAX_TASKS, BraxEnv
from mjxflow.envs.probes import PROBES
from mjxflow.envs.wrappers import EpisodeEnv, EpisodeState, StepOutcome, Transition, rollout_returns

ENV_NAMES: tuple[str, ...] = BRAX_TASKS + tuple(PROBES)


def check_env_name(name: str) -> None:
    if name not in ENV_NAMES:
        raise ValueError(f"unknown env {name!r}; valid envs: {', '.join(ENV_NAMES)}")


def make_env(name: str) -> Env:
    """The environment called `name`; unknown names raise ValueError listing the valid ones."""
    check_env_name(name)
    if name in PROBES:
        return PROBES[name]()
    return BraxEnv(name)


__all__ = [
    "ENV_NAMES", "Env", "EnvState", "EpisodeEnv", "EpisodeState", "StepOutcome", "Transition",
    "check_env_name", "make_env", "rollout_returns",
]
