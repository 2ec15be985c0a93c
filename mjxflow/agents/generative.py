"""Pieces the generative agents (SMFP, FPMD-R, FPMD-M) share: particle weights and best-of-N."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def repeat(x: jax.Array, n: int) -> jax.Array:
    """(B, ...) -> (n, B, ...): the same states for n particles each."""
    return jnp.broadcast_to(x, (n,) + x.shape)


def exp_weights(q: jax.Array, lam: float) -> jax.Array:
    """Per-state normalised exp(Q / lambda) over the particle axis 0 (a softmax: the unnormalised
    weights' minimiser is the same, Z(s) being a positive constant per state)."""
    return jax.nn.softmax(q / lam, axis=0)


def linear_weights(q: jax.Array, baseline: str = "mean", eps: float = 1e-8) -> jax.Array:
    """Truncated-linear weights (Q - V)+ with V = mean over particles (axis 0), normalised to sum
    1 per state (`mean`) or to a largest weight of 1 (`max`). All-equal Q gives zero weights."""
    adv = jax.nn.relu(q - jnp.mean(q, axis=0, keepdims=True))
    if baseline == "mean":
        return adv / (jnp.sum(adv, axis=0, keepdims=True) + eps)
    if baseline == "max":
        return adv / (jnp.max(adv, axis=0, keepdims=True) + eps)
    raise ValueError(f"unknown md_baseline {baseline!r}; valid: mean, max")


def best_of_n(actions: jax.Array, q: jax.Array) -> jax.Array:
    """For each state the particle with the highest Q: actions (N, B, d), q (N, B) -> (B, d)."""
    idx = jnp.argmax(q, axis=0)
    return jnp.take_along_axis(actions, idx[None, :, None], axis=0)[0]
