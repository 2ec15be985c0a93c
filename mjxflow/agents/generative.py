"""Pieces the generative agents (SMFP, FPMD-R, FPMD-M) share: particle weights and best-of-N."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from mjxflow.options import MDBaseline, WeightScale


def repeat(x: jax.Array, n: int) -> jax.Array:
    """(B, ...) -> (n, B, ...): the same states for n particles each."""
    return jnp.broadcast_to(x, (n,) + x.shape)


def exp_weights(q: jax.Array, lam: float, scale: WeightScale = "raw", eps: float = 1e-6) -> jax.Array:
    """Per-state normalised exp(Q / lambda) over the particle axis 0 (a softmax: the unnormalised
    weights' minimiser is the same, Z(s) being a positive constant per state).

    scale `raw`: Q as it is (the FPMD paper), so lambda must match the scale of Q's differences.
    `std`: Q standardised per state across its particles, (Q - mean) / (std + eps), so lambda is
    in units of that spread and the weights do not change when rewards are scaled or shifted."""
    if scale == "std":
        centred = q - jnp.mean(q, axis=0, keepdims=True)
        q = centred / (jnp.sqrt(jnp.mean(centred**2, axis=0, keepdims=True)) + eps)
    return jax.nn.softmax(q / lam, axis=0)


def linear_weights(q: jax.Array, baseline: MDBaseline = "mean", eps: float = 1e-8) -> jax.Array:
    """Truncated-linear weights (Q - V)+ with V = mean over particles (axis 0), normalised to sum
    1 per state (`mean`) or to a largest weight of 1 (`max`). All-equal Q gives zero weights."""
    adv = jax.nn.relu(q - jnp.mean(q, axis=0, keepdims=True))
    if baseline == "max":
        return adv / (jnp.max(adv, axis=0, keepdims=True) + eps)
    return adv / (jnp.sum(adv, axis=0, keepdims=True) + eps)


def resample(key: jax.Array, x: jax.Array, q: jax.Array, w: jax.Array, m: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw m of the N particles per state (axis 0) with replacement, with probability w_j / sum_j
    w_j, and give each the weight sum_j w_j / m, so that for any per-particle loss f
    E[sum_i w'_i f(x'_i)] = sum_j w_j f(x_j). x (N, B, d), q and w (N, B) -> (m, B, d), (m, B), (m, B).
    A state whose weights are all zero keeps total weight zero."""
    total = jnp.sum(w, axis=0)  # (B,)
    logits = jnp.log(jnp.where(total > 0, w, 1.0)).T  # (B, N); all-zero rows: uniform, weight 0
    idx = jax.random.categorical(key, logits, axis=-1, shape=(m, w.shape[1]))  # (m, B)
    pick = lambda a: jnp.take_along_axis(a, idx.reshape(idx.shape + (1,) * (a.ndim - 2)), axis=0)
    return pick(x), pick(q), jnp.broadcast_to(total / m, idx.shape)


def state_subset(key: jax.Array, obs: jax.Array, frac: float) -> jax.Array:
    """A uniformly random subset of ceil(frac * B) of the B states (rows of obs), without
    replacement; frac >= 1 returns obs as it is. A mean over the subset is an unbiased estimate of
    the mean over all B states, at about frac of the cost of anything computed per state."""
    b = obs.shape[0]
    k = num_subset(b, frac)
    if k >= b:
        return obs
    return obs[jax.random.permutation(key, b)[:k]]


def num_subset(batch: int, frac: float) -> int:
    """States the mirror-descent step of a batch of `batch` states uses: ceil(frac * batch), >= 1."""
    return min(batch, max(1, math.ceil(round(frac * batch, 6))))  # round: 0.07 * 100 is 7.000000000000001


def best_of_n(actions: jax.Array, q: jax.Array) -> jax.Array:
    """For each state the particle with the highest Q: actions (N, B, d), q (N, B) -> (B, d)."""
    idx = jnp.argmax(q, axis=0)
    return jnp.take_along_axis(actions, idx[None, :, None], axis=0)[0]
