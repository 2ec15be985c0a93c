"""Automatic entropy temperature, shared by the agents that regularise entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def temperature_step(
    log_alpha: jax.Array, opt_state: optax.OptState, opt: optax.GradientTransformation, logp: jax.Array, target_entropy: float
) -> tuple[jax.Array, optax.OptState]:
    """One step on the Lagrangian -log_alpha * E[logp + target_entropy]: alpha grows while the
    (surrogate) entropy -E[logp] is below the target and shrinks above it."""
    grad = jax.grad(lambda la: -la * jnp.mean(jax.lax.stop_gradient(logp) + target_entropy))(log_alpha)
    updates, opt_state = opt.update(grad, opt_state)
    return optax.apply_updates(log_alpha, updates), opt_state
