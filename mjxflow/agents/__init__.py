"""The agents: each module declares its AgentSpec (mjxflow.agents.registry); make_agent builds the
agent a config names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mjxflow.agents import registry
from mjxflow.agents.base import Agent, Batch
from mjxflow.agents.critic import Critic, CriticState

if TYPE_CHECKING:
    from mjxflow.config import TrainConfig


def agent_names() -> tuple[str, ...]:
    """Every --agent value (the registry's, in its order)."""
    return registry.names()


def check_agent_name(name: str) -> None:
    registry.spec_of(name)


def make_agent(cfg: TrainConfig, obs_size: int, action_size: int, check: bool = True) -> Agent:
    """The agent of cfg.agent. `check` False skips the option checks: for a config whose swept
    fields hold traced values (mjxflow.loop), checked beforehand point by point."""
    spec = registry.spec_of(cfg.agent)
    return spec.build(spec.variants[cfg.agent], getattr(cfg, spec.group), cfg.critic, obs_size, action_size, check)


__all__ = ["Agent", "Batch", "Critic", "CriticState", "agent_names", "check_agent_name", "make_agent"]
