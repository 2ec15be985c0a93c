"""Scale rules: every option that depends on the number of environments, derived in one place.

Options left at None (`auto`) are filled in by `resolve` from `--num-envs`, the env's preset and the
size of one transition; an option given explicitly always wins. The rules, with n = num_envs:

| option            | rule                                                    | n = 16   | n = 1,024  | n = 4,096  |
|-------------------|---------------------------------------------------------|----------|------------|------------|
| total_steps       | the env's preset (`envs.catalogue`)                     |          |            |            |
| batch_size        | 2 n, clipped to [256, 8,192]                            | 256      | 2,048      | 8,192      |
| updates_per_iter  | round(reuse(n) n / batch), at least 1                   | 4        | 8          | 8          |
|   reuse(n)        | 64 x 256 / n, clipped to [16, 64]                       | 64       | 16         | 16         |
| replay_size       | 1,024 iterations, at least 100,000 transitions, at most | 100,000  | 1,048,576  | 4,194,304  |
|                   | replay_gib_per_seed; with --shard envs rounded up to a  |          |            |            |
|                   | multiple of n                                           |          |            |            |
| min_replay        | max(2,000, batch, 10 n)                                 | 2,000    | 10,240     | 40,960     |
| num_evals         | 20 (at most one per iteration)                          | 20       | 20         | 20         |
| eval_episodes     | n / 32, clipped to [10, 128]                            | 10       | 32         | 128        |
| chunk_iters       | ceil(iterations / 200), at most 1,000                   |          |            |            |
| num_checkpoints   | 5 (at most one per iteration)                           |          |            |            |
| critic.tau        | 0.005 batch / 256, and at least 2 / ((1 - gamma) x the  | 0.005    | 0.04       | 0.1        |
|                   | run's gradient updates), clipped to [0.005, 0.1]        |          |            |            |
| critic.distribu-  | on (C51) at n >= 256, off below                         | off      | on         | on         |
|   tional          |                                                         |          |            |            |
| critic.v_min/max  | distributional critic only: -+ reward_scale / (1 - gamma), the env's reward scale in the catalogue |  |  |  |
| reset_every       | 16 (MJX physics under jax, episodes of >= 16 steps), 1  | 16       | 16         | 16         |
|                   | otherwise (the probes, MuJoCo Warp)                     |          |            |            |
| fpmd.explore_     | half the run's gradient updates, at most 50,000 (an     |          |            |            |
|   decay_updates   | agent's own auto options: its spec's `auto`, e.g.       |          |            |            |
|                   | mjxflow.agents.fpmd.auto_explore_decay)                 |          |            |            |
| smfp.init_alpha   | 1.0 where U x alpha_lr / 2 >= ln 100 (U: the run's      | 0.2      |            | 0.2        |
|                   | gradient updates), else 0.2 (mjxflow.agents.smfp.       |          |            |            |
|                   | auto_temperature)                                       |          |            |            |
| smfp.target_ent-  | 0 (target entropy 0) where init_alpha's rule gives 1.0, | 1.0      |            | 1.0        |
|   ropy_scale      | else 1.0 (target -action_dim)                           |          |            |            |

They follow published massively parallel off-policy recipes: FastSAC (4,096 envs, batch 8,192,
8 updates per iteration: reuse 16, replay 1,024 steps per env), FastTD3 (1,024 envs, reuse 64,
10,240 steps per env) and brax's SAC (128 envs, batch 512); at 16 envs they give this project's
long-standing CPU defaults. At 256 envs (batch 512) they give 32 updates per iteration (reuse 64)
and the C51 critic: on Ant at 1M env steps that pair beat reuse 32 and either change alone
(docs/RESULTS.md, "Ant at 256 envs"). Sample reuse = batch x updates per iteration / n is how many times each
transition is drawn on average; `derived` reports it with the other figures of a run.

Schedules counted in gradient updates do not transfer across scale: a run of 4,096 envs makes
~30x fewer updates per env step than one of 16. The target critics' rate grows with the batch (a
larger batch is a less noisy step, as FastTD3's tau 0.1 at batch 32,768), so that value propagates
through bootstrapping within the run's few thousand updates; FPMD's exploration noise decays over a
share of the run rather than a fixed count.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from mjxflow import replay as replay_lib
from mjxflow.agents import registry
from mjxflow.config import TrainConfig
from mjxflow.envs.catalogue import CATALOGUE
from mjxflow.replay import Transition

TARGET_HOST_SYNCS = 200  # compiled calls per run the auto chunk length aims at
MAX_CHUNK_ITERS = 1000
DEFAULT_NUM_EVALS = 20
DEFAULT_NUM_CHECKPOINTS = 5
REPLAY_ITERATIONS = 1024  # auto replay capacity, in iterations of num_envs transitions
MIN_AUTO_REPLAY = 100_000
BASE_TAU, MAX_TAU, BASE_BATCH = 0.005, 0.1, 256
RESET_EVERY = 16  # auto: env steps between redraws of the spare initial states (auto_reset_every)
DISTRIBUTIONAL_MIN_ENVS = 256  # the auto critic is distributional (C51) from this many envs on
PROPAGATION = 2.0  # the targets converge within 1 / PROPAGATION of the run's updates (auto_tau)


def auto_tau(batch_size: int, total_updates: int | None = None, gamma: float = 0.99) -> float:
    """0.005 x batch / 256, and at least what lets the targets carry value over the discount's
    horizon within half the run's updates: a target moving at rate tau needs about
    1 / ((1 - gamma) tau) updates to converge, so tau >= PROPAGATION / ((1 - gamma) updates);
    within [0.005, 0.1]."""
    tau = BASE_TAU * batch_size / BASE_BATCH
    if total_updates:
        tau = max(tau, PROPAGATION / ((1.0 - gamma) * total_updates))
    return float(f"{min(MAX_TAU, max(BASE_TAU, tau)):.4g}")


def auto_value_range(reward_scale: float, gamma: float) -> tuple[float, float]:
    """The distributional critic's support: +-reward_scale / (1 - gamma), the discounted value of
    a reward of that magnitude at every step (values beyond it are clipped onto the edge atoms)."""
    v = float(f"{reward_scale / (1.0 - gamma):.6g}")  # 1 / (1 - 0.99) is 99.99999999999991 in floats
    return -v, v


def sample_reuse_target(num_envs: int) -> float:
    """64 up to 256 envs (measured on Ant at 256: reuse 64 over 32), falling as 1 / n to 16 at 1,024."""
    return min(64.0, max(16.0, 64.0 * DISTRIBUTIONAL_MIN_ENVS / num_envs))


def auto_reset_every(episode_length: int, physics: str) -> int:
    """Env steps between redraws of the spare initial states: RESET_EVERY where a reset is a costly
    physics forward pass (MJX under jax) and an episode lasts at least that many steps, so that an
    env restarts from an already used spare only when it ends twice within RESET_EVERY steps;
    1 (a reset of every env at every step) for shorter episodes (the probes' one-step episodes)
    and under MuJoCo Warp, whose batch-wide buffers do not allow keeping spares."""
    return 1 if physics == "warp" or episode_length < RESET_EVERY else RESET_EVERY


def auto_batch_size(num_envs: int) -> int:
    return min(8192, max(256, 2 * num_envs))


def run_updates(iterations: int, num_envs: int, min_replay: int, updates_per_iter: int) -> int:
    """Gradient updates per seed of a whole run: every iteration from the one whose data fills
    min_replay makes updates_per_iter."""
    first_learning = max(1, -(-min_replay // num_envs))
    return max(0, iterations - first_learning + 1) * updates_per_iter


def auto_replay_size(num_envs: int, bytes_per_transition: int, gib_per_seed: float) -> int:
    cap = int(gib_per_seed * 2**30) // bytes_per_transition
    return max(num_envs, min(max(MIN_AUTO_REPLAY, REPLAY_ITERATIONS * num_envs), cap))


def transition_example(obs_size: int, action_size: int, zeros: Callable = jnp.zeros) -> Transition:
    """One stored transition of zeros (float32 obs, action, reward, next obs, termination flag);
    `zeros=np.zeros` builds it without touching a device."""
    obs = zeros((obs_size,), jnp.float32)
    return Transition(obs=obs, action=zeros((action_size,), jnp.float32), reward=zeros((), jnp.float32),
                      next_obs=obs, terminated=zeros((), jnp.float32))


def transition_bytes(obs_size: int, action_size: int) -> int:
    """Bytes of one stored transition (from shapes alone)."""
    return replay_lib.bytes_per_item(transition_example(obs_size, action_size, np.zeros))


AUTO_FIELDS = ("total_steps", "episode_length", "reset_every", "batch_size", "updates_per_iter", "replay_size", "min_replay", "num_evals",
               "eval_episodes", "chunk_iters", "num_checkpoints")


def unresolved(cfg: TrainConfig) -> list[str]:
    """The auto (None) options that resolve() would fill in; empty for a resolved config."""
    left = [f for f in AUTO_FIELDS if getattr(cfg, f) is None]
    left += ["critic.tau"] if cfg.critic.tau is None else []
    left += ["critic.distributional"] if cfg.critic.distributional is None else []
    left += ["critic.v_min / v_max"] if cfg.critic.distributional is not False and None in (cfg.critic.v_min, cfg.critic.v_max) else []
    left += [f"{spec.group}.{f}" for spec in registry.specs() for f in spec.auto_fields
             if getattr(getattr(cfg, spec.group), f) is None]
    return left


def resolve(cfg: TrainConfig, obs_size: int | None = None, action_size: int | None = None) -> TrainConfig:
    """The config with every auto (None) option filled in by the rules above (sizes: the env's
    preset unless given)."""
    n = cfg.num_envs
    preset = CATALOGUE[cfg.env]
    obs_size = preset.obs_size if obs_size is None else obs_size
    action_size = preset.action_size if action_size is None else action_size
    cfg = dataclasses.replace(
        cfg,
        total_steps=cfg.total_steps if cfg.total_steps is not None else preset.total_steps,
        episode_length=cfg.episode_length if cfg.episode_length is not None else preset.episode_length,
    )
    iters = cfg.iterations
    reset_every = cfg.reset_every if cfg.reset_every is not None else auto_reset_every(cfg.episode_length, cfg.physics)
    batch = cfg.batch_size if cfg.batch_size is not None else auto_batch_size(n)
    updates = cfg.updates_per_iter if cfg.updates_per_iter is not None else max(1, round(sample_reuse_target(n) * n / batch))
    replay = (cfg.replay_size if cfg.replay_size is not None
              else auto_replay_size(n, transition_bytes(obs_size, action_size), cfg.replay_gib_per_seed))
    if cfg.replay_size is None and cfg.shard == "envs":
        replay = -(-replay // n) * n  # whole rows of one transition per env (mjxflow.replay's width)
    min_replay = cfg.min_replay if cfg.min_replay is not None else min(replay, max(2000, batch, 10 * n))
    critic = cfg.critic if cfg.critic.tau is not None else dataclasses.replace(
        cfg.critic, tau=auto_tau(batch, run_updates(iters, n, min_replay, updates), cfg.critic.gamma))
    if critic.distributional is None:
        critic = dataclasses.replace(critic, distributional=n >= DISTRIBUTIONAL_MIN_ENVS)
    if critic.distributional and (critic.v_min is None or critic.v_max is None):
        low, high = auto_value_range(preset.reward_scale, critic.gamma)
        critic = dataclasses.replace(critic, v_min=low if critic.v_min is None else critic.v_min,
                                     v_max=high if critic.v_max is None else critic.v_max)
    groups = {spec.group: spec.auto(getattr(cfg, spec.group), iters * updates) for spec in registry.specs() if spec.auto}
    return dataclasses.replace(
        cfg,
        critic=critic,
        **groups,
        reset_every=reset_every,
        batch_size=batch,
        updates_per_iter=updates,
        replay_size=replay,
        min_replay=min_replay,
        num_evals=cfg.num_evals if cfg.num_evals is not None else min(DEFAULT_NUM_EVALS, iters),
        eval_episodes=cfg.eval_episodes if cfg.eval_episodes is not None else min(128, max(10, n // 32)),
        chunk_iters=cfg.chunk_iters if cfg.chunk_iters is not None else min(MAX_CHUNK_ITERS, -(-iters // TARGET_HOST_SYNCS)),
        num_checkpoints=cfg.num_checkpoints if cfg.num_checkpoints is not None else min(DEFAULT_NUM_CHECKPOINTS, iters),
    )


def spread(count: int, total: int) -> list[int]:
    """`count` iterations spread evenly over 1..total, ending at total: ceil(k total / count)."""
    count = min(count, total)
    return sorted({-(-k * total // count) for k in range(1, count + 1)})


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Where a run stops its compiled loop (every chunk_iters iterations, at every evaluation and at
    the end) and which of those stops evaluate and checkpoint. Evaluations fall exactly on
    ceil(k total / num_evals); a checkpoint is saved at the first stop at or after each of
    ceil(k total / num_checkpoints), so checkpoints add no host syncs."""

    total: int
    evals: tuple[int, ...]
    checkpoints: tuple[int, ...]
    stops: tuple[int, ...]

    def next_stop(self, iteration: int) -> int:
        return next(s for s in self.stops if s > iteration)


def schedule(cfg: TrainConfig) -> Schedule:
    total = cfg.iterations
    evals = spread(cfg.num_evals, total)
    grid = range(cfg.chunk_iters, total + 1, cfg.chunk_iters)
    stops = sorted(set(grid) | set(evals) | {total})
    checkpoints = sorted({next(s for s in stops if s >= target) for target in spread(cfg.num_checkpoints, total)})
    return Schedule(total=total, evals=tuple(evals), checkpoints=tuple(checkpoints), stops=tuple(stops))


def derived(cfg: TrainConfig, obs_size: int | None = None, action_size: int | None = None) -> dict:
    """The figures that say what a resolved config will do, for --print-config and config.json."""
    sch = schedule(cfg)
    obs_size = CATALOGUE[cfg.env].obs_size if obs_size is None else obs_size
    action_size = CATALOGUE[cfg.env].action_size if action_size is None else action_size
    per_item = transition_bytes(obs_size, action_size)
    return {
        "iterations": sch.total,
        "env_steps_per_seed": sch.total * cfg.num_envs,
        "gradient_updates_per_seed": run_updates(sch.total, cfg.num_envs, cfg.min_replay, cfg.updates_per_iter),
        "sample_reuse": round(cfg.batch_size * cfg.updates_per_iter / cfg.num_envs, 3),
        "replay_iterations": round(cfg.replay_size / cfg.num_envs, 1),
        "num_evals": len(sch.evals),
        "eval_episodes": cfg.eval_episodes,
        "num_checkpoints": len(sch.checkpoints),
        "host_syncs": len(sch.stops),
        "replay_bytes_per_seed": cfg.replay_size * per_item,
        "obs_size": obs_size,
        "action_size": action_size,
    }


def derived_table(d: dict) -> str:
    """The derived figures as a short two-column table for the start of a run."""
    def fmt(key, value):
        if key == "replay_bytes_per_seed":
            return f"{value / 2**20:,.1f} MiB"
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"

    width = max(len(k) for k in d)
    return "\n".join(f"  {k:<{width}}  {fmt(k, v)}" for k, v in d.items())
