"""Load a trained policy from a run directory, without its replay buffer or optimiser states.

    from mjxflow import load_policy
    policy = load_policy("runs/NAME")                 # latest checkpoint, seed 0
    action = policy(obs, key)                         # deterministic (the evaluation action)
    action = policy(obs, key, deterministic=False)    # a draw from the learned policy itself

Each checkpoint keeps a small `policy` item (actor parameters, observation statistics and the
evaluation key of every seed) beside the train state; only that item is read. `policy` is a pure
function of (obs, key): jit it with `jax.jit(policy, static_argnames="deterministic")`, vmap it, or
call it inside your own MJX loop. Observations are raw (the policy normalises them with the run's
statistics), shaped (obs_size,) or (batch, obs_size); actions lie in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp

from mjxflow import checkpoint
from mjxflow.config import TrainConfig
from mjxflow.loop import Loop, PolicyState


@dataclass
class Policies:
    """Every member's policy at one checkpoint, with the run's config and loop."""

    cfg: TrainConfig
    loop: Loop
    state: PolicyState  # leading axis: members (seeds, times sweep points)
    step: int  # env steps per seed at the checkpoint

    @property
    def iteration(self) -> int:
        return self.step // self.cfg.num_envs


def load_policies(run_dir: str, step: int | None = None) -> Policies:
    """The policy item of checkpoint `step` (default: the latest) of a run, on this process's devices."""
    cfg, loop, step = checkpoint.open_run(run_dir, step)
    try:
        state = checkpoint.restore_policy(run_dir, step, loop)
    except checkpoint.UnreadableCheckpoint as e:
        raise FileNotFoundError(f"the policy in the checkpoint at step {step} of {run_dir} cannot be read: {e}") from None
    return Policies(cfg=cfg, loop=loop, state=state, step=step)


def load_policy(run_dir: str, step: int | None = None, seed: int = 0) -> Callable[..., jax.Array]:
    """policy(obs, key, deterministic=True) -> action of one seed of a run (in a sweep, `seed`
    counts members: seed s of grid point p is p * num_seeds + s)."""
    loaded = load_policies(run_dir, step)
    members = loaded.loop.num_members
    if not 0 <= seed < members:
        raise ValueError(f"seed {seed} is not in the run's 0 .. {members - 1}")
    mine = jax.device_put(jax.tree.map(lambda x: x[seed], loaded.state), jax.local_devices()[0])
    loop = loaded.loop

    def policy(obs: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
        obs = jnp.asarray(obs, jnp.float32)
        batch = obs[None] if obs.ndim == 1 else obs
        action = loop.acting(mine, deterministic)(batch, key)
        return action[0] if obs.ndim == 1 else action

    return policy
