"""The critic every agent shares: an ensemble of Q networks (two by default, clipped double Q: the
minimum over the members), Polyak targets, truncation-aware TD. The agent hands in what its target
needs beyond Q: the next action and a per-sample bonus (SAC and SMFP: -alpha log p; FPMD: none)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow.agents.base import Batch, gradient_step
from mjxflow.config import CriticConfig, check_critic
from mjxflow.networks import EnsembleQ
from mjxflow.scale import BASE_TAU


class CriticState(struct.PyTreeNode):
    params: dict
    target_params: dict
    opt_state: optax.OptState


class Critic:
    def __init__(self, cfg: CriticConfig, obs_size: int, action_size: int, check: bool = True):
        check and check_critic(cfg)
        self.cfg = cfg
        self.obs_size = obs_size
        self.action_size = action_size
        self.net = EnsembleQ(tuple(cfg.hidden), cfg.num_q, cfg.layer_norm)
        self.opt = optax.adam(cfg.lr)
        # auto (None) is resolved from the batch size by mjxflow.scale for every run; a critic built
        # from an unresolved config takes the rule's small-batch value
        self.tau = BASE_TAU if cfg.tau is None else cfg.tau

    def init(self, key: jax.Array) -> CriticState:
        params = self.net.init(key, jnp.zeros((1, self.obs_size)), jnp.zeros((1, self.action_size)))
        return CriticState(params=params, target_params=params, opt_state=self.opt.init(params))

    def q(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Every member's value, shape (num_q, batch)."""
        return self.net.apply(params, obs, action)

    def min_q(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        return jnp.min(self.q(params, obs, action), axis=0)

    def td_target(self, state: CriticState, batch: Batch, next_action: jax.Array, next_bonus: jax.Array | float) -> jax.Array:
        """y = r + gamma (1 - terminated) (min_k Qbar_k(s', a') + bonus(s', a')); the entropy bonus
        of SAC and SMFP is -alpha log p(a'|s'), FPMD has none (0).

        Only termination stops bootstrapping: a transition cut by the time limit keeps its true
        final observation in `next_obs` and bootstraps from it.
        """
        next_v = self.min_q(state.target_params, batch.next_obs, next_action) + next_bonus
        y = batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * next_v
        return jax.lax.stop_gradient(y)

    def loss(self, params: dict, batch: Batch, target: jax.Array) -> tuple[jax.Array, dict]:
        q = self.q(params, batch.obs, batch.action)
        loss = jnp.mean(jnp.sum((q - target) ** 2, axis=0))
        return loss, {"critic/loss": loss, "critic/q_mean": jnp.mean(q), "critic/target_mean": jnp.mean(target)}

    def update(
        self, state: CriticState, batch: Batch, next_action: jax.Array, next_bonus: jax.Array | float
    ) -> tuple[CriticState, dict]:
        """One Adam step on the TD loss, then a Polyak step of the targets."""
        target = self.td_target(state, batch, next_action, next_bonus)
        params, opt_state, info = gradient_step(self.loss, self.opt, state.params, state.opt_state, batch, target)
        target_params = optax.incremental_update(params, state.target_params, self.tau)
        return CriticState(params=params, target_params=target_params, opt_state=opt_state), info
