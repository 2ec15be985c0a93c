"""FPMD-R and FPMD-M: One-Step Flow Policy Mirror Descent (FPMD paper, eqs. 8 and 16).

Both regress a flow onto N particles of the current policy weighted by exp(Q / lambda) (normalised
per state): FPMD-R a velocity field by flow matching (particles from K Euler steps in training),
FPMD-M a mean-velocity field by MeanFlow (particles and actions from one step). Training actions
are best-of-N by Q plus scheduled Gaussian noise; evaluation takes one network evaluation.

As in the paper the flow lives in the action box itself: an action is the flow's output clipped
to [-1, 1], and particles are clipped before they become regression data. (With a tanh squash
instead, nothing bounds the pre-squash particles once tanh saturates and Q stops telling them
apart, and FPMD-M's self-generated targets then grow without limit.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow import flows
from mjxflow.agents.base import Batch, gradient_step
from mjxflow.agents.critic import Critic, CriticState
from mjxflow.agents.generative import best_of_n, exp_weights, repeat, resample, state_subset
from mjxflow.networks import FlowActor
from mjxflow.agents.registry import AgentSpec
from mjxflow.options import (CriticConfig, FlowTimeConfig, WeightScale, check_positive, check_times, check_typed,
                             check_widths, require)

Variant = Literal["r", "m"]  # FPMD-R (flow matching) or FPMD-M (MeanFlow)
MAX_EXPLORE_DECAY = 50_000  # the auto exploration decay's cap, in gradient updates


@dataclass(frozen=True)
class FPMDConfig:
    """One-Step Flow Policy Mirror Descent (FPMD-R: flow matching; FPMD-M: MeanFlow)."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the velocity (FPMD-R) or mean-velocity (FPMD-M) network."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    num_particles: int = 32
    """N: particles per state for the importance weights and best-of-N action selection."""
    md_lambda: float = 0.5
    """lambda of the weights exp(Q / lambda); with weight_scale std (the default) in units of the
    per-state spread of the particles' Q, so one value serves every task."""
    weight_scale: WeightScale = "std"
    """std: Q standardised per state across its particles before the exp (scale-free); raw: the
    paper's exp(Q / lambda), where lambda must match the scale of Q (0.02 to 1 on our tasks)."""
    train_steps: int = 20
    """K: Euler steps of FPMD-R's particle sampling in training (evaluation uses one)."""
    md_samples: int = 0
    """0: regress every particle with its weight (the paper). M > 0: regress M particles per state
    drawn in proportion to their weights (same expected loss, cheaper regression)."""
    md_states: float = 1.0
    """Fraction of each minibatch's states the actor's step uses (a random subset; 1: all, the
    paper). Same expected loss at about this fraction of the particles' cost."""
    explore_std_start: float = 0.3
    """Std of the Gaussian exploration noise added to training actions, at the start ..."""
    explore_std_end: float = 0.05
    """... and after explore_decay_updates gradient updates (linear schedule)."""
    explore_decay_updates: int | None = None
    """Updates over which the exploration std decays; auto: the first half of the run's gradient
    updates, at most 50,000 (mjxflow.scale)."""
    times: FlowTimeConfig = field(default_factory=FlowTimeConfig)
    """(r, t) sampling of FPMD-M's MeanFlow regression (FPMD-R draws t ~ U[0, 1])."""


def check_fpmd(cfg: FPMDConfig) -> None:
    check_widths("fpmd.actor_hidden", cfg.actor_hidden)
    check_positive("fpmd", cfg, "actor_lr", "md_lambda", "train_steps")
    check_typed("fpmd", cfg)
    require(cfg.md_samples >= 0, "fpmd.md_samples", cfg.md_samples, ">= 0 (0 regresses every particle)")
    require(0.0 < cfg.md_states <= 1.0, "fpmd.md_states", cfg.md_states, "in (0, 1] (1 uses every state)")
    require(cfg.num_particles >= 2, "fpmd.num_particles", cfg.num_particles,
             ">= 2 (the weights compare particles of the same state)")
    for name in ("explore_std_start", "explore_std_end", "explore_decay_updates"):
        require(getattr(cfg, name) is None or getattr(cfg, name) >= 0, f"fpmd.{name}", getattr(cfg, name), ">= 0")
    check_times("fpmd", cfg.times)


class FPMDState(struct.PyTreeNode):
    actor_params: dict
    actor_opt: optax.OptState
    critic: CriticState
    updates: jax.Array


class FPMD:
    def __init__(self, variant: Variant, cfg: FPMDConfig, critic_cfg: CriticConfig, obs_size: int, action_size: int,
                 check: bool = True):
        if variant not in ("r", "m"):
            raise ValueError(f"unknown FPMD variant {variant!r}; valid: r, m")
        check and check_fpmd(cfg)
        if cfg.explore_decay_updates is None:
            raise ValueError("FPMD needs its --fpmd.explore-decay-updates (auto: mjxflow.scale.resolve sets it from the "
                             "run's updates)")
        self.name = f"fpmd-{variant}"
        self.variant = variant
        self.cfg = cfg
        self.obs_size = obs_size
        self.action_size = action_size
        self.actor = FlowActor(tuple(cfg.actor_hidden), action_size)
        self.critic = Critic(critic_cfg, obs_size, action_size, check)
        self.actor_opt = optax.adam(cfg.actor_lr)
        self.train_steps = cfg.train_steps if variant == "r" else 1

    def init(self, key: jax.Array) -> FPMDState:
        actor_key, critic_key = jax.random.split(key)
        d = self.action_size
        params = self.actor.init(actor_key, jnp.zeros((1, self.obs_size)), jnp.zeros((1, d)), jnp.zeros((1,)), jnp.ones((1,)))
        return FPMDState(actor_params=params, actor_opt=self.actor_opt.init(params), critic=self.critic.init(critic_key),
                         updates=jnp.zeros((), jnp.int32))

    def field(self, params: dict, obs: jax.Array) -> flows.MeanVelocityFn:
        """u(z, r, t) for FPMD-M; FPMD-R's velocity v(z, t) is the same network at r = t."""
        return lambda z, r, t: self.actor.apply(params, obs, z, r, t)

    def sample_x(self, params: dict, obs: jax.Array, key: jax.Array, steps: int) -> jax.Array:
        """Actions from noise in `steps` network evaluations, clipped into the action box."""
        e = jax.random.normal(key, obs.shape[:-1] + (self.action_size,))
        u = self.field(params, obs)
        if self.variant == "r":
            x = flows.euler(lambda z, t: u(z, t, t), e, steps)
        else:
            x = flows.one_step(u, e) if steps == 1 else flows.mean_flow_steps(u, e, steps)
        return jnp.clip(x, -1.0, 1.0)

    def policy_sample(self, state: FPMDState, obs: jax.Array, key: jax.Array) -> jax.Array:
        """A draw from the learned policy as deployed (one step, no best-of-N, no extra noise)."""
        return self.sample_x(state.actor_params, obs, key, 1)

    def explore_std(self, updates: jax.Array) -> jax.Array:
        cfg = self.cfg
        frac = jnp.clip(updates / max(cfg.explore_decay_updates, 1), 0.0, 1.0)
        return cfg.explore_std_start + frac * (cfg.explore_std_end - cfg.explore_std_start)

    def particles(self, state: FPMDState, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """N particles per state from the current policy, without gradient, and their min Q."""
        obs_n = repeat(obs, self.cfg.num_particles)
        a = jax.lax.stop_gradient(self.sample_x(state.actor_params, obs_n, key, self.train_steps))
        return a, self.critic.min_q(state.critic.params, obs_n, a)

    def act(self, state: FPMDState, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic:
            return self.policy_sample(state, obs, key)
        particle_key, noise_key = jax.random.split(key)
        a, q = self.particles(state, obs, particle_key)
        noise = self.explore_std(state.updates) * jax.random.normal(noise_key, obs.shape[:-1] + (self.action_size,))
        return jnp.clip(best_of_n(a, q) + noise, -1.0, 1.0)

    def actor_terms(self, params: dict, state: FPMDState, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, ...]:
        """(particles x (N, B, d), their min Q, weights softmax_j(Q / lambda) with Q standardised per
        state unless weight_scale is raw, regression error),
        the last three of shape (N, B). md_samples M > 0 regresses M particles per state drawn by
        weight (N -> M) and md_states f < 1 a random ceil(f B) of the states (B -> that subset),
        as in SMFP: each an unbiased estimate of the full weighted loss."""
        cfg = self.cfg
        particle_key, noise_key, time_key = jax.random.split(key, 3)
        obs = state_subset(jax.random.fold_in(key, 2), obs, cfg.md_states)
        x, q = self.particles(state, obs, particle_key)
        w = jax.lax.stop_gradient(exp_weights(q, cfg.md_lambda, cfg.weight_scale))
        obs_n = repeat(obs, cfg.num_particles)
        if cfg.md_samples > 0:
            x, q, w = resample(jax.random.fold_in(key, 1), x, q, w, cfg.md_samples)
            obs_n = repeat(obs, cfg.md_samples)
        e = jax.random.normal(noise_key, x.shape)
        u = self.field(params, obs_n)
        if self.variant == "r":  # flow matching, t ~ U[0, 1]
            t = jax.random.uniform(time_key, q.shape)
            z, v = flows.interpolate(x, e, t)
            err = jnp.sum((u(z, t, t) - v) ** 2, axis=-1)
        else:  # MeanFlow with the JVP target
            times = self.cfg.times
            r, t = flows.sample_rt(time_key, q.shape, times.dist, times.mu, times.sigma, times.frac_r_neq_t)
            z, v = flows.interpolate(x, e, t)
            err = jnp.sum((u(z, r, t) - flows.meanflow_target(u, z, r, t, v)) ** 2, axis=-1)
        return x, q, w, err

    def actor_loss(self, params: dict, state: FPMDState, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """sum_j w_j * regression error, w = softmax_j(Q(s, a_j) / lambda) over the particles."""
        _, q, w, err = self.actor_terms(params, state, obs, key)
        loss = jnp.mean(jnp.sum(w * err, axis=0))
        return loss, {"actor/loss": loss, "actor/weight_max": jnp.mean(jnp.max(w, axis=0)), "actor/q_particles": jnp.mean(q)}

    def update(self, state: FPMDState, batch: Batch, key: jax.Array) -> tuple[FPMDState, dict]:
        next_key, actor_key = jax.random.split(key)
        next_action = self.sample_x(state.actor_params, batch.next_obs, next_key, self.train_steps)
        critic, critic_info = self.critic.update(state.critic, batch, next_action, 0.0)
        state = state.replace(critic=critic)
        actor_params, actor_opt, info = gradient_step(self.actor_loss, self.actor_opt, state.actor_params, state.actor_opt,
                                                      state, batch.obs, actor_key)
        new_state = FPMDState(actor_params=actor_params, actor_opt=actor_opt, critic=critic, updates=state.updates + 1)
        return new_state, {**critic_info, **info, "explore/std": self.explore_std(new_state.updates)}


def auto_explore_decay(cfg: FPMDConfig, gradient_updates: int) -> FPMDConfig:
    """The scale rule of FPMD's own auto option (docs/TRAINING.md): the exploration noise decays over
    the first half of the run's gradient updates, at most MAX_EXPLORE_DECAY."""
    if cfg.explore_decay_updates is not None:
        return cfg
    return dataclasses.replace(cfg, explore_decay_updates=max(1, min(MAX_EXPLORE_DECAY, gradient_updates // 2)))


SPEC = AgentSpec(
    group="fpmd", config=FPMDConfig, variants={"fpmd-r": "r", "fpmd-m": "m"}, check=check_fpmd,
    build=lambda variant, cfg, critic, obs_size, action_size, check: FPMD(variant, cfg, critic, obs_size, action_size, check),
    doc="FPMD-R / FPMD-M hyper-parameters (used when --agent fpmd-r or fpmd-m).",
    sweepable=("actor_lr", "md_lambda"), auto=auto_explore_decay, auto_fields=("explore_decay_updates",),
)
