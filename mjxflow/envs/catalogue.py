"""Every task mjxflow offers, one spec each: the single place a task name is written.

A spec holds what is known before any env is built: the family that builds it, the env steps per
seed of a full run (the preset `--total-steps`), the episode length, the observation and action
sizes (so a config resolves and --print-config runs without building an env; tests check them
against the built envs), and a typical per-step reward of a good policy, which sets the
distributional critic's auto range. Whether videos can show the task and which MJX
implementations it runs on follow from its family.

Budgets follow what massively parallel off-policy methods report for a converged run of each task,
except inverted_pendulum, whose budget is the quick CPU run of the README. The brax tasks end
episodes at 1,000 steps as brax's and Playground's training scripts do; Playground's episode
lengths are in control steps after the task's action repeat (1,000 in the DM Control suite). The
reward scale is rounded up from the returns of well-trained brax policies over 1,000 steps, and 1
for the probes, the pendulum and Playground's rewards in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Family = Literal["brax", "probe", "playground"]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    family: Family
    total_steps: int
    episode_length: int
    obs_size: int
    action_size: int
    reward_scale: float = 1.0  # a typical per-step reward magnitude of a good policy (scale.auto_value_range)

    @property
    def renderable(self) -> bool:
        """Videos need bodies: the pure-JAX probes have none."""
        return self.family != "probe"

    @property
    def physics(self) -> tuple[str, ...]:
        """The MJX implementations the task runs on: brax 0.14 builds its models without a choice."""
        return ("jax", "warp") if self.family == "playground" else ("jax",)


def _brax(total_steps: int, obs_size: int, action_size: int, reward_scale: float = 1.0) -> EnvSpec:
    return EnvSpec("brax", total_steps, 1000, obs_size, action_size, reward_scale)


def _probe(total_steps: int) -> EnvSpec:
    return EnvSpec("probe", total_steps, 1, 2, 2)


def _playground(obs_size: int, action_size: int) -> EnvSpec:
    return EnvSpec("playground", 1_000_000, 1000, obs_size, action_size)


CATALOGUE: dict[str, EnvSpec] = {
    # brax's MJX tasks (mjxflow.envs.brax_envs), by budget as --help lists them
    "inverted_pendulum": _brax(20_000, 4, 1),
    "inverted_double_pendulum": _brax(1_000_000, 8, 1, 10.0),
    "reacher": _brax(2_000_000, 11, 2),
    "pusher": _brax(5_000_000, 23, 7, 2.0),
    "swimmer": _brax(5_000_000, 8, 2),
    "hopper": _brax(10_000_000, 11, 3, 4.0),
    "halfcheetah": _brax(10_000_000, 17, 6, 15.0),
    "walker2d": _brax(10_000_000, 17, 6, 6.0),
    "ant": _brax(10_000_000, 27, 8, 10.0),
    "humanoid": _brax(20_000_000, 244, 17, 10.0),
    "humanoidstandup": _brax(20_000_000, 244, 17, 300.0),
    # pure-JAX probes with known answers (mjxflow.envs.probes)
    "bandit": _probe(4_000),
    "multigoal": _probe(16_000),
    "unevengoal": _probe(16_000),
    # MuJoCo Playground's DM Control suite, mujoco_playground 0.2.0 (mjxflow.envs.playground; a test
    # checks the list against registry.dm_control_suite.ALL_ENVS). Its locomotion and manipulation
    # tasks download assets when loaded: not offered.
    "AcrobotSwingup": _playground(6, 1),
    "AcrobotSwingupSparse": _playground(6, 1),
    "BallInCup": _playground(8, 2),
    "CartpoleBalance": _playground(5, 1),
    "CartpoleBalanceSparse": _playground(5, 1),
    "CartpoleSwingup": _playground(5, 1),
    "CartpoleSwingupSparse": _playground(5, 1),
    "CheetahRun": _playground(17, 6),
    "FingerSpin": _playground(9, 2),
    "FingerTurnEasy": _playground(12, 2),
    "FingerTurnHard": _playground(12, 2),
    "FishSwim": _playground(24, 5),
    "HopperHop": _playground(15, 4),
    "HopperStand": _playground(15, 4),
    "HumanoidStand": _playground(67, 21),
    "HumanoidWalk": _playground(67, 21),
    "HumanoidRun": _playground(67, 21),
    "PendulumSwingup": _playground(3, 1),
    "PointMass": _playground(4, 2),
    "ReacherEasy": _playground(6, 2),
    "ReacherHard": _playground(6, 2),
    "SwimmerSwimmer6": _playground(25, 5),
    "WalkerRun": _playground(24, 6),
    "WalkerStand": _playground(24, 6),
    "WalkerWalk": _playground(24, 6),
}

ENV_NAMES: tuple[str, ...] = tuple(CATALOGUE)


def tasks(family: Family) -> tuple[str, ...]:
    """The names of one family, in the catalogue's order."""
    return tuple(name for name, spec in CATALOGUE.items() if spec.family == family)
