"""SAC: tanh-squashed diagonal Gaussian actor, reparameterised, with automatic temperature."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow.agents.base import Batch, gradient_step
from mjxflow.agents.critic import Critic, CriticState
from mjxflow.agents.temperature import Temperature, TemperatureState
from mjxflow.distributions import gaussian_log_prob, tanh_log_det
from mjxflow.networks import GaussianActor
from mjxflow.agents.registry import AgentSpec
from mjxflow.options import CriticConfig, check_positive, check_typed, check_widths, require


@dataclass(frozen=True)
class SACConfig:
    """Gaussian SAC: tanh-squashed diagonal Gaussian actor with automatic temperature."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    autotune_alpha: bool = True
    """Tune alpha so the policy entropy tracks the target; False keeps alpha at init_alpha."""
    target_entropy_scale: float = 1.0
    """Target entropy = -action_dim * target_entropy_scale."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log standard deviation."""


def check_sac(cfg: SACConfig) -> None:
    check_typed("sac", cfg)
    check_widths("sac.actor_hidden", cfg.actor_hidden)
    check_positive("sac", cfg, "actor_lr", "alpha_lr", "init_alpha")
    require(cfg.log_std_min < cfg.log_std_max, "sac.log_std_min", cfg.log_std_min, f"< --sac.log-std-max {cfg.log_std_max}")


class SACState(struct.PyTreeNode):
    actor_params: dict
    actor_opt: optax.OptState
    critic: CriticState
    temperature: TemperatureState


class SAC:
    name = "sac"

    def __init__(self, cfg: SACConfig, critic_cfg: CriticConfig, obs_size: int, action_size: int, check: bool = True):
        check and check_sac(cfg)
        self.cfg = cfg
        self.obs_size = obs_size
        self.action_size = action_size
        self.actor = GaussianActor(tuple(cfg.actor_hidden), action_size, cfg.log_std_min, cfg.log_std_max)
        self.critic = Critic(critic_cfg, obs_size, action_size, check)
        self.actor_opt = optax.adam(cfg.actor_lr)
        self.temperature = Temperature(cfg.init_alpha, cfg.alpha_lr, -action_size * cfg.target_entropy_scale, cfg.autotune_alpha)

    def init(self, key: jax.Array) -> SACState:
        actor_key, critic_key = jax.random.split(key)
        actor_params = self.actor.init(actor_key, jnp.zeros((1, self.obs_size)))
        return SACState(actor_params=actor_params, actor_opt=self.actor_opt.init(actor_params),
                        critic=self.critic.init(critic_key), temperature=self.temperature.init())

    def sample(self, actor_params: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reparameterised action a = tanh(mean + std * eps) and its log-density."""
        mean, log_std = self.actor.apply(actor_params, obs)
        x = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return jnp.tanh(x), gaussian_log_prob(x, mean, log_std) - tanh_log_det(x)

    def act(self, state: SACState, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic:
            return jnp.tanh(self.actor.apply(state.actor_params, obs)[0])
        return self.sample(state.actor_params, obs, key)[0]

    def policy_sample(self, state: SACState, obs: jax.Array, key: jax.Array) -> jax.Array:
        return self.sample(state.actor_params, obs, key)[0]

    def actor_loss(self, actor_params: dict, critic_params: dict, obs: jax.Array, alpha: jax.Array, key: jax.Array):
        """E[alpha logp(a|s) - min_k Q_k(s, a)], a reparameterised."""
        action, logp = self.sample(actor_params, obs, key)
        q = self.critic.min_q(critic_params, obs, action)
        loss = jnp.mean(alpha * logp - q)
        return loss, (logp, {"actor/loss": loss, "actor/entropy": -jnp.mean(logp)})

    def update(self, state: SACState, batch: Batch, key: jax.Array) -> tuple[SACState, dict]:
        next_key, actor_key = jax.random.split(key)
        alpha = self.temperature.value(state.temperature)

        next_action, next_logp = self.sample(state.actor_params, batch.next_obs, next_key)
        critic, critic_info = self.critic.update(state.critic, batch, next_action, -alpha * next_logp)

        actor_params, actor_opt, (logp, actor_info) = gradient_step(
            self.actor_loss, self.actor_opt, state.actor_params, state.actor_opt, critic.params, batch.obs, alpha, actor_key)
        temperature = self.temperature.update(state.temperature, logp)

        info = {**critic_info, **actor_info, "alpha/value": self.temperature.value(temperature)}
        return SACState(actor_params=actor_params, actor_opt=actor_opt, critic=critic, temperature=temperature), info


SPEC = AgentSpec(
    group="sac", config=SACConfig, variants={"sac": None}, check=check_sac,
    build=lambda _, cfg, critic, obs_size, action_size, check: SAC(cfg, critic, obs_size, action_size, check),
    doc="SAC hyper-parameters (used when --agent sac).",
    sweepable=("actor_lr", "alpha_lr", "init_alpha", "target_entropy_scale"),
)
