"""Agent registry."""

from __future__ import annotations

from mjxflow.agents.base import Agent, Batch
from mjxflow.agents.critic import Critic, CriticState
from mjxflow.agents.fpmd import FPMD
from mjxflow.agents.sac import SAC
from mjxflow.agents.smfp import SMFP
import typing

from mjxflow.config import AgentName, TrainConfig

AGENT_NAMES: tuple[str, ...] = typing.get_args(AgentName)


def check_agent_name(name: str) -> None:
    if name not in AGENT_NAMES:
        raise ValueError(f"unknown agent {name!r}; valid agents: {', '.join(AGENT_NAMES)}")


def make_agent(cfg: TrainConfig, obs_size: int, action_size: int, check: bool = True) -> Agent:
    """The agent of cfg.agent. `check` False skips the option checks: for a config whose swept
    fields hold traced values (mjxflow.loop), checked beforehand point by point."""
    check_agent_name(cfg.agent)
    if cfg.agent == "sac":
        return SAC(cfg.sac, cfg.critic, obs_size, action_size, check)
    if cfg.agent == "smfp":
        return SMFP(cfg.smfp, cfg.critic, obs_size, action_size, check)
    if cfg.agent in ("fpmd-r", "fpmd-m"):
        return FPMD(cfg.agent[-1], cfg.fpmd, cfg.critic, obs_size, action_size, check)
    raise AssertionError(cfg.agent)


__all__ = ["AGENT_NAMES", "Agent", "Batch", "Critic", "CriticState", "check_agent_name", "make_agent"]
