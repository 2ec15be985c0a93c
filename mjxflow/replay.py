"""On-device ring buffer of transitions (one per seed; vmap for many)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class Transition(struct.PyTreeNode):
    """What the replay buffer stores. `next_obs` is the observation the action led to, also when
    the episode ended there (never the reset observation that replaces it)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


class Replay(struct.PyTreeNode):
    data: Any  # pytree of arrays with leading axis `capacity`
    ptr: jax.Array  # next write index
    size: jax.Array  # number of valid entries

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(capacity: int, example: Any) -> Replay:
    """An empty buffer for items shaped like `example` (one transition, no batch axis)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)), example)
    return Replay(data=data, ptr=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def add(replay: Replay, batch: Any) -> Replay:
    """Write a batch (leading axis n <= capacity) at the write index, wrapping modulo capacity.

    A scatter into the (donated) buffer: the buffer is never copied or rolled.
    """
    n = jax.tree.leaves(batch)[0].shape[0]
    cap = replay.capacity
    idx = (replay.ptr + jnp.arange(n)) % cap
    data = jax.tree.map(lambda buf, x: buf.at[idx].set(x), replay.data, batch)
    return Replay(data=data, ptr=(replay.ptr + n) % cap, size=jnp.minimum(replay.size + n, cap))


def sample(replay: Replay, key: jax.Array, batch_size: int) -> Any:
    """A uniform minibatch (with replacement) from the valid entries."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(replay.size, 1))
    return jax.tree.map(lambda buf: buf[idx], replay.data)


def bytes_per_item(example: Any) -> int:
    return int(sum(np.prod(jnp.shape(x)) * jnp.result_type(x).itemsize for x in jax.tree.leaves(example)))
