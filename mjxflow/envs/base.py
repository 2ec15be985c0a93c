"""The single-environment interface every task implements; batching is done by jax.vmap outside."""

from __future__ import annotations

from typing import Any, Protocol

import jax
from flax import struct


class EnvState(struct.PyTreeNode):
    """State of one environment after reset or step.

    `terminated` is 1.0 when the episode ended by the task's own rule (no bootstrapping);
    time limits are handled by the episode wrapper, never here.
    """

    inner: Any
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array


class Env(Protocol):
    name: str
    obs_size: int
    action_size: int
    default_episode_length: int

    def reset(self, key: jax.Array) -> EnvState: ...

    def step(self, state: EnvState, action: jax.Array) -> EnvState: ...
