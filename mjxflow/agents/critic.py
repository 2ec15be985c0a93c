"""The twin critic every agent shares: clipped double Q, Polyak targets, truncation-aware TD."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow.agents.base import Batch
from mjxflow.config import CriticConfig, check_critic
from mjxflow.networks import EnsembleQ


class CriticState(struct.PyTreeNode):
    params: dict
    target_params: dict
    opt_state: optax.OptState


class Critic:
    def __init__(self, cfg: CriticConfig, obs_size: int, action_size: int):
        check_critic(cfg)
        self.cfg = cfg
        self.obs_size = obs_size
        self.action_size = action_size
        self.net = EnsembleQ(tuple(cfg.hidden))
        self.opt = optax.adam(cfg.lr)

    def init(self, key: jax.Array) -> CriticState:
        params = self.net.init(key, jnp.zeros((1, self.obs_size)), jnp.zeros((1, self.action_size)))
        return CriticState(params=params, target_params=params, opt_state=self.opt.init(params))

    def q(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Both critics' values, shape (2, batch)."""
        return self.net.apply(params, obs, action)

    def min_q(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        return jnp.min(self.q(params, obs, action), axis=0)

    def td_target(
        self, state: CriticState, batch: Batch, next_action: jax.Array, next_logp: jax.Array, alpha: jax.Array
    ) -> jax.Array:
        """y = r + gamma (1 - terminated) (min_k Qbar_k(s', a') - alpha logp(a'|s')).

        Only termination stops bootstrapping: a transition cut by the time limit keeps its true
        final observation in `next_obs` and bootstraps from it.
        """
        next_v = self.min_q(state.target_params, batch.next_obs, next_action) - alpha * next_logp
        y = batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * next_v
        return jax.lax.stop_gradient(y)

    def loss(self, params: dict, batch: Batch, target: jax.Array) -> tuple[jax.Array, dict]:
        q = self.q(params, batch.obs, batch.action)
        loss = jnp.mean(jnp.sum((q - target) ** 2, axis=0))
        return loss, {"critic/loss": loss, "critic/q_mean": jnp.mean(q), "critic/target_mean": jnp.mean(target)}

    def update(
        self, state: CriticState, batch: Batch, next_action: jax.Array, next_logp: jax.Array, alpha: jax.Array
    ) -> tuple[CriticState, dict]:
        """One Adam step on the TD loss, then a Polyak step of the targets."""
        target = self.td_target(state, batch, next_action, next_logp, alpha)
        grads, info = jax.grad(self.loss, has_aux=True)(state.params, batch, target)
        updates, opt_state = self.opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target_params = optax.incremental_update(params, state.target_params, self.cfg.tau)
        return CriticState(params=params, target_params=target_params, opt_state=opt_state), info
