"""The critic every agent shares: an ensemble of Q networks (two by default, clipped double Q: the
minimum over the members), Polyak targets, truncation-aware TD. The agent hands in what its target
needs beyond Q: the next action and a per-sample bonus (SAC and SMFP: -alpha log p; FPMD: none).

With `distributional` each member is a categorical (C51-style) critic over fixed atoms; `q` is
then its expected value, so the agents read it exactly as they read a scalar critic
(docs/ALGORITHMS.md, "Distributional critic")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow.agents.base import Batch, gradient_step
from mjxflow.options import CriticConfig, check_critic
from mjxflow.networks import EnsembleQ


class CriticState(struct.PyTreeNode):
    params: dict
    target_params: dict
    opt_state: optax.OptState


def categorical_projection(probs: jax.Array, values: jax.Array, atoms: jax.Array) -> jax.Array:
    """Project the distribution that puts mass probs[..., j] on values[..., j] onto the fixed,
    evenly spaced `atoms` (C51): each value is clipped to [atoms[0], atoms[-1]] and its mass split
    between its two neighbouring atoms in proportion to closeness, b = (v - v_min) / dz, atom
    floor(b) gets p (1 - (b - floor b)) and the next one p (b - floor b); a value on an atom gives
    it all its mass. Shapes: probs and values (..., J), atoms (K,); result (..., K), summing to
    the mass of probs.

    Written as m_i = sum_j p_j max(0, 1 - |b_j - i|): the same split (the "hat" of atom i), with
    no scatter and no special case for b on an atom."""
    v_min, v_max = atoms[0], atoms[-1]
    dz = (v_max - v_min) / (atoms.shape[0] - 1)
    b = (jnp.clip(values, v_min, v_max) - v_min) / dz
    hat = jnp.clip(1.0 - jnp.abs(b[..., :, None] - jnp.arange(atoms.shape[0])), 0.0, 1.0)  # (..., J, K)
    return jnp.sum(probs[..., :, None] * hat, axis=-2)


class Critic:
    def __init__(self, cfg: CriticConfig, obs_size: int, action_size: int, check: bool = True):
        check and check_critic(cfg)
        self.cfg = cfg
        self.obs_size = obs_size
        self.action_size = action_size
        if cfg.distributional is None:
            raise ValueError("the critic needs --critic.distributional True or False (auto: mjxflow.scale.resolve decides by num_envs)")
        self.distributional = cfg.distributional
        self.net = EnsembleQ(tuple(cfg.hidden), cfg.num_q, cfg.layer_norm, cfg.num_atoms if cfg.distributional else 1)
        self.opt = optax.adam(cfg.lr)
        if cfg.tau is None:
            raise ValueError("the critic needs its --critic.tau (auto: mjxflow.scale.resolve sets it from the batch size)")
        self.tau = cfg.tau
        if cfg.distributional:
            if cfg.v_min is None or cfg.v_max is None:
                raise ValueError("a distributional critic needs its range: --critic.v-min and --critic.v-max "
                                 "(mjxflow.scale.resolve fills them in from the env's reward scale)")
            self.atoms = jnp.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms)

    def init(self, key: jax.Array) -> CriticState:
        params = self.net.init(key, jnp.zeros((1, self.obs_size)), jnp.zeros((1, self.action_size)))
        return CriticState(params=params, target_params=params, opt_state=self.opt.init(params))

    def logits(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        """A distributional critic's logits over the atoms, shape (num_q, batch, num_atoms)."""
        return self.net.apply(params, obs, action)

    def q(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        """Every member's value, shape (num_q, batch): the expected value of a distributional member."""
        out = self.net.apply(params, obs, action)
        if not self.distributional:
            return out
        return jnp.sum(jax.nn.softmax(out, axis=-1) * self.atoms, axis=-1)

    def min_q(self, params: dict, obs: jax.Array, action: jax.Array) -> jax.Array:
        return jnp.min(self.q(params, obs, action), axis=0)

    def td_target(self, state: CriticState, batch: Batch, next_action: jax.Array, next_bonus: jax.Array | float) -> jax.Array:
        """y = r + gamma (1 - terminated) (min_k Qbar_k(s', a') + bonus(s', a')); the entropy bonus
        of SAC and SMFP is -alpha log p(a'|s'), FPMD has none (0).

        Only termination stops bootstrapping: a transition cut by the time limit keeps its true
        final observation in `next_obs` and bootstraps from it.

        Distributional: the target distribution (batch, num_atoms), the projection of
        r + gamma (1 - terminated) (z + bonus) under the target member whose expected value is the
        smallest (clipped double Q on the distribution).
        """
        if self.distributional:
            return self.target_distribution(state, batch, next_action, next_bonus)
        next_v = self.min_q(state.target_params, batch.next_obs, next_action) + next_bonus
        y = batch.reward + self.cfg.gamma * (1.0 - batch.terminated) * next_v
        return jax.lax.stop_gradient(y)

    def target_distribution(self, state: CriticState, batch: Batch, next_action: jax.Array,
                            next_bonus: jax.Array | float) -> jax.Array:
        probs = jax.nn.softmax(self.logits(state.target_params, batch.next_obs, next_action), axis=-1)  # (k, B, K)
        expected = jnp.sum(probs * self.atoms, axis=-1)  # (k, B)
        lowest = jnp.argmin(expected, axis=0)  # (B,)
        chosen = jnp.take_along_axis(probs, lowest[None, :, None], axis=0)[0]  # (B, K)
        discount = self.cfg.gamma * (1.0 - batch.terminated)
        values = batch.reward[:, None] + discount[:, None] * (self.atoms + jnp.reshape(next_bonus, (-1, 1)))
        return jax.lax.stop_gradient(categorical_projection(chosen, values, self.atoms))

    def loss(self, params: dict, batch: Batch, target: jax.Array) -> tuple[jax.Array, dict]:
        """Scalar: the summed squared TD error of the members, averaged over the batch.
        Distributional: the summed cross-entropy of each member's distribution against the
        target distribution, averaged over the batch."""
        if self.distributional:
            log_p = jax.nn.log_softmax(self.logits(params, batch.obs, batch.action), axis=-1)  # (k, B, K)
            loss = jnp.mean(jnp.sum(-jnp.sum(target * log_p, axis=-1), axis=0))
            q = jnp.sum(jnp.exp(log_p) * self.atoms, axis=-1)
            target_mean = jnp.mean(jnp.sum(target * self.atoms, axis=-1))
        else:
            q = self.q(params, batch.obs, batch.action)
            loss = jnp.mean(jnp.sum((q - target) ** 2, axis=0))
            target_mean = jnp.mean(target)
        return loss, {"critic/loss": loss, "critic/q_mean": jnp.mean(q), "critic/target_mean": target_mean}

    def update(
        self, state: CriticState, batch: Batch, next_action: jax.Array, next_bonus: jax.Array | float
    ) -> tuple[CriticState, dict]:
        """One Adam step on the TD loss, then a Polyak step of the targets."""
        target = self.td_target(state, batch, next_action, next_bonus)
        params, opt_state, info = gradient_step(self.loss, self.opt, state.params, state.opt_state, batch, target)
        target_params = optax.incremental_update(params, state.target_params, self.tau)
        return CriticState(params=params, target_params=target_params, opt_state=opt_state), info
