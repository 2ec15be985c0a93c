"""The automatic entropy temperature alpha of SAC and SMFP: the one owner of its value, its state
and its step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow.agents.base import gradient_step


class TemperatureState(struct.PyTreeNode):
    log_alpha: jax.Array
    opt_state: optax.OptState


class Temperature:
    """alpha = exp(log_alpha), tuned by Adam on the Lagrangian -log_alpha * E[logp + target]:
    alpha grows while the (estimated) entropy -E[logp] is below the target and shrinks above it.
    `autotune` False keeps alpha at its initial value; `enabled` False makes it 0 (no entropy term)."""

    def __init__(self, init_alpha: float, lr: float, target_entropy: float, autotune: bool = True, enabled: bool = True):
        self.init_alpha = init_alpha if enabled else 1.0
        self.opt = optax.adam(lr)
        self.target_entropy = target_entropy
        self.autotune = autotune and enabled
        self.enabled = enabled

    def init(self) -> TemperatureState:
        log_alpha = jnp.log(jnp.asarray(self.init_alpha, jnp.float32))
        return TemperatureState(log_alpha=log_alpha, opt_state=self.opt.init(log_alpha))

    def value(self, state: TemperatureState) -> jax.Array:
        return jnp.exp(state.log_alpha) if self.enabled else jnp.zeros(())

    def loss(self, log_alpha: jax.Array, logp: jax.Array) -> tuple[jax.Array, None]:
        return -log_alpha * jnp.mean(jax.lax.stop_gradient(logp) + self.target_entropy), None

    def update(self, state: TemperatureState, logp: jax.Array) -> TemperatureState:
        """One step given the log-densities of the policy's samples (no step when not autotuned)."""
        if not self.autotune:
            return state
        log_alpha, opt_state, _ = gradient_step(self.loss, self.opt, state.log_alpha, state.opt_state, logp)
        return TemperatureState(log_alpha=log_alpha, opt_state=opt_state)
