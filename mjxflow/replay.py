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
    data: Any  # pytree of arrays with leading axis `capacity`, or (capacity / width, width) when width > 0
    ptr: jax.Array  # next write index (flat)
    size: jax.Array  # number of valid entries
    width: int = struct.field(pytree_node=False, default=0)
    """0: a flat ring. w > 0: rows of w items, one row per add of w items (one per env), so the
    env axis of the rows can be split over devices (--shard envs) and each env's transitions stay
    on its device. The flat index i is item (i // w, i % w): both layouts hold and sample the same
    transitions."""

    @property
    def capacity(self) -> int:
        shape = jax.tree.leaves(self.data)[0].shape
        return shape[0] * self.width if self.width else shape[0]


def init(capacity: int, example: Any, width: int = 0) -> Replay:
    """An empty buffer for items shaped like `example` (one transition, no batch axis); with
    `width` (which must divide capacity) stored as rows of that many items."""
    if width and capacity % width:
        raise ValueError(f"a replay of rows of {width} needs a capacity that is a multiple of {width}, got {capacity}")
    lead = (capacity // width, width) if width else (capacity,)
    data = jax.tree.map(lambda x: jnp.zeros(lead + jnp.shape(x), jnp.result_type(x)), example)
    return Replay(data=data, ptr=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32), width=width)


def add(replay: Replay, batch: Any) -> Replay:
    """Write a batch (leading axis n <= capacity; n == width for a buffer of rows) at the write
    index, wrapping modulo capacity.

    A scatter into the (donated) buffer: the buffer is never copied or rolled.
    """
    n = jax.tree.leaves(batch)[0].shape[0]
    cap = replay.capacity
    if replay.width:
        if n != replay.width:
            raise ValueError(f"a replay of rows of {replay.width} takes batches of {replay.width}, got {n}")
        row = replay.ptr // n
        data = jax.tree.map(lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x, row, 0), replay.data, batch)
    else:
        idx = (replay.ptr + jnp.arange(n)) % cap
        data = jax.tree.map(lambda buf, x: buf.at[idx].set(x), replay.data, batch)
    return replay.replace(data=data, ptr=(replay.ptr + n) % cap, size=jnp.minimum(replay.size + n, cap))


def sample(replay: Replay, key: jax.Array, batch_size: int) -> Any:
    """A uniform minibatch (with replacement) from the valid entries: the same items from the
    same key whatever the layout."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(replay.size, 1))
    if replay.width:
        return jax.tree.map(lambda buf: buf[idx // replay.width, idx % replay.width], replay.data)
    return jax.tree.map(lambda buf: buf[idx], replay.data)


def bytes_per_item(example: Any) -> int:
    return int(sum(np.prod(jnp.shape(x)) * jnp.result_type(x).itemsize for x in jax.tree.leaves(example)))
