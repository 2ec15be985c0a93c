"""Running observation mean and variance (Chan et al.'s parallel form of Welford's update)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


class RunningStats(struct.PyTreeNode):
    count: jax.Array
    mean: jax.Array
    m2: jax.Array  # sum of squared deviations from the mean


def init(size: int) -> RunningStats:
    return RunningStats(count=jnp.zeros(()), mean=jnp.zeros((size,)), m2=jnp.zeros((size,)))


def update(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merge a batch (n, size) into the statistics: exact mean and M2 of all data seen."""
    n = batch.shape[0]
    b_mean = jnp.mean(batch, axis=0)
    b_m2 = jnp.sum((batch - b_mean) ** 2, axis=0)
    count = stats.count + n
    delta = b_mean - stats.mean
    mean = stats.mean + delta * n / count
    m2 = stats.m2 + b_m2 + delta**2 * stats.count * n / count
    return RunningStats(count=count, mean=mean, m2=m2)


def variance(stats: RunningStats) -> jax.Array:
    return stats.m2 / jnp.maximum(stats.count, 1.0)


def normalize(stats: RunningStats, x: jax.Array, clip: float = 10.0) -> jax.Array:
    std = jnp.sqrt(variance(stats) + 1e-6)
    return jnp.clip((x - stats.mean) / std, -clip, clip)
