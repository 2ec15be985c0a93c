"""Log-densities shared by the agents."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(x; mean, diag(exp(log_std))^2), summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def tanh_log_det(x: jax.Array) -> jax.Array:
    """sum_i log(1 - tanh(x_i)^2), the log-Jacobian of a = tanh(x), summed over the last axis.

    Written as 2 (log 2 - x - softplus(-2x)), which stays finite for large |x|.
    """
    return jnp.sum(2.0 * (math.log(2.0) - x - jax.nn.softplus(-2.0 * x)), axis=-1)


def mixture_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log (1/K sum_j N(x_i; mean_j, diag(exp(log_std_j))^2)) for each of K points x_i and the K
    diagonal Gaussians (mean_j, log_std_j) along axis 0: x, mean, log_std (K, ..., d) -> (K, ...).

    When x_i is drawn from component i and the components from a mixing distribution, minus its
    expectation is a lower bound on the mixture's entropy that rises towards it as K grows (the
    semi-implicit bound); K = 1 is the component's own log-density."""
    pair = gaussian_log_prob(x[:, None], mean[None], log_std[None])  # (K points, K components, ...)
    return jax.nn.logsumexp(pair, axis=1) - math.log(x.shape[0])
