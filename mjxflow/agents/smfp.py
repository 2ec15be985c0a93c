"""SMFP: Stochastic MeanFlow Policy trained by entropic mirror descent (docs/ALGORITHMS.md, our spec).

Policy: e, xi ~ N(0, I); x = e - u(s, e, 0, 1) + sigma(s, e, 0, 1) * xi; a = tanh(x).
Actor loss = entropic step (reparameterised, on the entropy surrogate) + beta_md * weighted
MeanFlow regression onto particles of the old policy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from mjxflow import flows
from mjxflow.agents.base import Batch, gradient_step
from mjxflow.agents.critic import Critic, CriticState
from mjxflow.agents.temperature import Temperature, TemperatureState
from mjxflow.agents.generative import exp_weights, linear_weights, repeat, resample, state_subset
from mjxflow.distributions import gaussian_log_prob, mixture_log_prob, tanh_log_det
from mjxflow.networks import FlowActor
from mjxflow.agents.registry import AgentSpec
from mjxflow.options import (CriticConfig, FlowTimeConfig, MDBaseline, check_positive, check_times, check_typed,
                             check_widths, require)


@dataclass(frozen=True)
class SMFPConfig:
    """Stochastic MeanFlow Policy (our specification, docs/ALGORITHMS.md): one-step MeanFlow actor with
    a learned Gaussian perturbation, an entropy surrogate and entropic mirror descent."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor f(s, z, r, t) -> (u, log_sigma)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    init_alpha: float | None = None
    """Initial entropy temperature; auto: 1.0 when the run's gradient updates let log(alpha) fall
    from there to 1% of it within half the run at alpha_lr per update (updates x alpha_lr / 2 >=
    ln 100: ~30,700 updates at 3e-4, e.g. ant at 256 envs and 1M steps), else 0.2 (short runs and
    the probes, whose alpha must come down within a few thousand updates; also whenever alpha is
    not tuned). mjxflow.scale."""
    autotune_alpha: bool = True
    """Tune alpha so the entropy surrogate tracks the target; False keeps alpha at init_alpha."""
    target_entropy_scale: float | None = None
    """Target entropy = -action_dim * target_entropy_scale; auto: 0 (target entropy 0, FastSAC's
    ratio) on the runs that start alpha at 1.0 (the long ones, see init_alpha), else 1.0 (target
    -action_dim, SAC's). On ant at 256 envs and 1M steps the target 0 left the standing plateau
    ~300k env steps sooner; on the short probes it spreads the policy between the goals
    (docs/RESULTS.md). mjxflow.scale."""
    log_sigma_min: float = -5.0
    """Lower bound of log sigma (pre-squash)."""
    log_sigma_max: float = 1.0
    """Upper bound of log sigma (pre-squash)."""
    entropy: bool = True
    """Entropy term on; off: sigma fixed at fixed_sigma, alpha = 0, no entropy bonus in the critic."""
    fixed_sigma: float = 0.1
    """sigma used when --smfp.no-entropy (0 gives the deterministic MeanFlow ablation, FPMD-M-like)."""
    entropy_draws: int = 4
    """K: draws of the noise e per state for the entropy estimate. 1: the conditional surrogate
    log N(x; e - u, sigma^2) of each draw (blind to the spread across e: modes collapse). K > 1:
    each draw's density is the mean over the K draws' Gaussians (a semi-implicit bound), a
    tighter lower bound on the policy's entropy that counts the spread across e; the actor's
    step takes it on a random 1/K of the states, the critic's bonus costs K actor evaluations."""
    beta_md: float = 1.0
    """Weight of the mirror-descent MeanFlow regression in the actor loss (0 turns it off)."""
    num_particles: int = 8
    """Particles per state drawn from the old policy for the mirror-descent step."""
    md_samples: int = 4
    """0: regress every particle with its weight. M > 0: regress only M particles per state, drawn
    in proportion to their weights (same expected loss, M / num_particles of the regression cost)."""
    md_states: float = 0.125
    """Fraction of each minibatch's states that the mirror-descent step uses (a random subset;
    1: all). Its expected loss is the full batch's, at about this fraction of the step's cost."""
    weights: Literal["linear", "exp"] = "linear"
    """Particle weights: linear, truncated (Q - V)+; or exp, softmax(Q / md_lambda) as in FPMD."""
    md_baseline: MDBaseline = "mean"
    """For linear weights: mean, (Q - mean Q)+ normalised to sum 1; max, the same normalised by
    their largest value (the best particle gets weight 1)."""
    md_lambda: float = 1.0
    """Temperature of exp weights."""
    old_policy: Literal["copy", "ema"] = "copy"
    """Old policy of the mirror-descent step: copy, a frozen copy refreshed every md_period
    updates; ema, a Polyak average with rate old_tau."""
    md_period: int = 1000
    """Updates between refreshes of the frozen old policy (old_policy copy)."""
    old_tau: float = 0.005
    """Polyak rate of the old policy (old_policy ema)."""
    times: FlowTimeConfig = field(default_factory=FlowTimeConfig)
    """(r, t) sampling of the MeanFlow regression."""


def check_smfp(cfg: SMFPConfig) -> None:
    check_widths("smfp.actor_hidden", cfg.actor_hidden)
    check_typed("smfp", cfg)
    check_positive("smfp", cfg, "actor_lr", "alpha_lr", "md_lambda")
    require(cfg.init_alpha is None or cfg.init_alpha > 0, "smfp.init_alpha", cfg.init_alpha, "> 0")
    require(cfg.log_sigma_min < cfg.log_sigma_max, "smfp.log_sigma_min", cfg.log_sigma_min,
             f"< --smfp.log-sigma-max {cfg.log_sigma_max}")
    require(cfg.fixed_sigma >= 0, "smfp.fixed_sigma", cfg.fixed_sigma, ">= 0")
    require(cfg.beta_md >= 0, "smfp.beta_md", cfg.beta_md, ">= 0 (0 turns the mirror-descent term off)")
    require(cfg.num_particles >= 2, "smfp.num_particles", cfg.num_particles,
             ">= 2 (the weights compare particles of the same state)")
    require(cfg.entropy_draws >= 1, "smfp.entropy_draws", cfg.entropy_draws, ">= 1 (1: the conditional surrogate)")
    require(cfg.md_samples >= 0, "smfp.md_samples", cfg.md_samples, ">= 0 (0 regresses every particle)")
    require(0.0 < cfg.md_states <= 1.0, "smfp.md_states", cfg.md_states, "in (0, 1] (1 uses every state)")
    require(cfg.md_period >= 1, "smfp.md_period", cfg.md_period, ">= 1")
    require(0.0 < cfg.old_tau <= 1.0, "smfp.old_tau", cfg.old_tau, "in (0, 1]")
    check_times("smfp", cfg.times)


class SMFPState(struct.PyTreeNode):
    actor_params: dict
    actor_opt: optax.OptState
    old_params: dict  # the old policy of the mirror-descent step
    critic: CriticState
    temperature: TemperatureState
    updates: jax.Array


class Sample(struct.PyTreeNode):
    action: jax.Array  # tanh(x)
    x: jax.Array  # pre-squash action
    logp: jax.Array  # surrogate log-density log p~(a | s, e)


class MDTerms(struct.PyTreeNode):
    """Per regressed particle j and state b, shape (N, B) (or (M, B) with md_samples M): the
    old-policy particle x (pre-squash, with a trailing action axis), its min Q, its weight, the
    times (r, t) of its regression pair and the squared error of u against the MeanFlow target."""

    x: jax.Array
    q: jax.Array
    w: jax.Array
    r: jax.Array
    t: jax.Array
    err: jax.Array
    w_max: jax.Array  # (B,): each state's largest weight among all N particles (before any resampling)


def surrogate_log_prob(x: jax.Array, loc: jax.Array, log_sigma: jax.Array) -> jax.Array:
    """log p~(a | s, e) = log N(x; e - u, sigma^2) - sum_i log(1 - tanh(x_i)^2), a = tanh(x).

    Given the noise e the pre-squash action is Gaussian, so this is the exact conditional
    log-density; -E[log p~] (the entropy surrogate) lower-bounds the policy's entropy.
    """
    return gaussian_log_prob(x, loc, log_sigma) - tanh_log_det(x)


class SMFP:
    name = "smfp"

    def __init__(self, cfg: SMFPConfig, critic_cfg: CriticConfig, obs_size: int, action_size: int, check: bool = True):
        check and check_smfp(cfg)
        for field in ("init_alpha", "target_entropy_scale"):
            if getattr(cfg, field) is None:
                raise ValueError(f"SMFP needs its --smfp.{field.replace('_', '-')} "
                                 "(auto: mjxflow.scale.resolve sets it from the run's updates)")
        self.cfg = cfg
        self.obs_size = obs_size
        self.action_size = action_size
        self.actor = FlowActor(tuple(cfg.actor_hidden), action_size, True, cfg.log_sigma_min, cfg.log_sigma_max)
        self.critic = Critic(critic_cfg, obs_size, action_size, check)
        self.actor_opt = optax.adam(cfg.actor_lr)
        self.temperature = Temperature(cfg.init_alpha, cfg.alpha_lr, -action_size * cfg.target_entropy_scale,
                                       cfg.autotune_alpha, enabled=cfg.entropy)

    def init(self, key: jax.Array) -> SMFPState:
        actor_key, critic_key = jax.random.split(key)
        d = self.action_size
        params = self.actor.init(actor_key, jnp.zeros((1, self.obs_size)), jnp.zeros((1, d)), jnp.zeros((1,)), jnp.ones((1,)))
        return SMFPState(
            actor_params=params, actor_opt=self.actor_opt.init(params), old_params=params,
            critic=self.critic.init(critic_key), temperature=self.temperature.init(), updates=jnp.zeros((), jnp.int32),
        )

    def alpha(self, state: SMFPState) -> jax.Array:
        return self.temperature.value(state.temperature)

    def u_fn(self, params: dict, obs: jax.Array) -> flows.MeanVelocityFn:
        return lambda z, r, t: self.actor.apply(params, obs, z, r, t)[0]

    def loc_and_log_sigma(self, params: dict, obs: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean e - u(s, e, 0, 1) and log sigma of the Gaussian over x given the noise e."""
        ones = jnp.ones(e.shape[:-1])
        u, log_sigma = self.actor.apply(params, obs, e, jnp.zeros_like(ones), ones)
        if not self.cfg.entropy:
            log_sigma = jnp.full_like(log_sigma, math.log(max(self.cfg.fixed_sigma, 1e-30)))
        return e - u, log_sigma

    def draw(self, params: dict, obs: jax.Array, key: jax.Array, noise_scale: float = 1.0) -> tuple[jax.Array, ...]:
        """One-step stochastic pre-squash sample x (one network evaluation) with the mean and log
        sigma of its Gaussian given the noise e."""
        e_key, xi_key = jax.random.split(key)
        e = jax.random.normal(e_key, obs.shape[:-1] + (self.action_size,))
        loc, log_sigma = self.loc_and_log_sigma(params, obs, e)
        sigma = jnp.exp(log_sigma) if (self.cfg.entropy or self.cfg.fixed_sigma > 0) else jnp.zeros_like(loc)
        return loc + noise_scale * sigma * jax.random.normal(xi_key, loc.shape), loc, log_sigma

    def sample(self, params: dict, obs: jax.Array, key: jax.Array, noise_scale: float = 1.0) -> Sample:
        """One-step stochastic sample (one network evaluation) and its surrogate log-density."""
        x, loc, log_sigma = self.draw(params, obs, key, noise_scale)
        logp = surrogate_log_prob(x, loc, log_sigma) if self.cfg.entropy else jnp.zeros(x.shape[:-1])
        return Sample(action=jnp.tanh(x), x=x, logp=logp)

    def sample_draws(self, params: dict, obs: jax.Array, key: jax.Array) -> Sample:
        """entropy_draws K samples per state, shapes (K, B, ...), each with the entropy estimate's
        log-density: K = 1 the surrogate log p~(a | s, e); K > 1 the log of the mean over the K
        draws' Gaussians (mixture_log_prob) minus the tanh log-Jacobian, so -E[logp] is a lower
        bound on the entropy of the policy itself (over e and sigma alike), tighter as K grows."""
        k = self.cfg.entropy_draws if self.cfg.entropy else 1
        obs_k = repeat(obs, k)
        if k == 1:
            return self.sample(params, obs_k, key)
        x, loc, log_sigma = self.draw(params, obs_k, key)
        return Sample(action=jnp.tanh(x), x=x, logp=mixture_log_prob(x, loc, log_sigma) - tanh_log_det(x))

    def act(self, state: SMFPState, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """Stochastic: the policy sample. Deterministic: the same map without the sigma
        perturbation (still one draw of e, so a multimodal policy keeps its modes)."""
        return self.sample(state.actor_params, obs, key, 0.0 if deterministic else 1.0).action

    def policy_sample(self, state: SMFPState, obs: jax.Array, key: jax.Array) -> jax.Array:
        return self.sample(state.actor_params, obs, key).action

    def md_terms(self, params: dict, old_params: dict, critic_params: dict, obs: jax.Array, key: jax.Array) -> MDTerms:
        """The pieces of the mirror-descent regression: N old-policy particles per state and their
        weights, each regressed particle paired with fresh noise e' at times (r, t) (docs/ALGORITHMS.md,
        SMFP step 3).

        With md_samples = M > 0 only M particles per state are regressed: drawn with replacement in
        proportion to their weights, each weighted sum_j w_j / M. The expected loss equals the full
        weighted sum over the N particles (an unbiased estimate) at M / N of the regression cost.
        With md_states = f < 1 the step uses a random ceil(f B) of the B states (the B axis of the
        terms is then that subset): an unbiased estimate of the mean over states at ~f of the cost.
        """
        cfg = self.cfg
        particle_key, noise_key, time_key = jax.random.split(key, 3)
        obs = state_subset(jax.random.fold_in(key, 2), obs, cfg.md_states)
        obs_n = repeat(obs, cfg.num_particles)
        particles = self.sample(jax.lax.stop_gradient(old_params), obs_n, particle_key)
        x = jax.lax.stop_gradient(particles.x)
        q = jax.lax.stop_gradient(self.critic.min_q(critic_params, obs_n, particles.action))  # (N, B)
        w = exp_weights(q, cfg.md_lambda) if cfg.weights == "exp" else linear_weights(q, cfg.md_baseline)
        w_max = jnp.max(w, axis=0)
        if cfg.md_samples > 0:
            x, q, w = resample(jax.random.fold_in(key, 1), x, q, w, cfg.md_samples)
            obs_n = repeat(obs, cfg.md_samples)
        e = jax.random.normal(noise_key, x.shape)
        r, t = flows.sample_rt(time_key, q.shape, cfg.times.dist, cfg.times.mu, cfg.times.sigma, cfg.times.frac_r_neq_t)
        z, v = flows.interpolate(x, e, t)
        u_fn = self.u_fn(params, obs_n)
        target = flows.meanflow_target(u_fn, z, r, t, v)
        err = jnp.sum((u_fn(z, r, t) - target) ** 2, axis=-1)
        return MDTerms(x=x, q=q, w=w, r=r, t=t, err=err, w_max=w_max)

    def md_loss(self, params: dict, old_params: dict, critic_params: dict, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
        """sum_j w_j ||u(s, z_t, r, t) - sg(u_tgt)||^2 over the particles, averaged over states."""
        terms = self.md_terms(params, old_params, critic_params, obs, key)
        loss = jnp.mean(jnp.sum(terms.w * terms.err, axis=0))
        return loss, {"actor/md_loss": loss, "actor/md_weight_max": jnp.mean(terms.w_max)}

    def actor_loss(self, params: dict, state: SMFPState, critic_params: dict, obs: jax.Array, key: jax.Array):
        """Entropic step E[alpha log p~ - min_k Q_k(s, a)] + beta_md * mirror-descent step."""
        sample_key, md_key = jax.random.split(key)
        s = self.sample(params, obs, sample_key)
        logp = s.logp
        if self.cfg.entropy and self.cfg.entropy_draws > 1:
            # the entropy estimate: K draws on a random B / K of the states (as many actor
            # evaluations as the Q term's B); each term's mean is unbiased for the whole batch
            k = self.cfg.entropy_draws
            sub = state_subset(jax.random.fold_in(key, 3), obs, 1.0 / k)
            logp = self.sample_draws(params, sub, jax.random.fold_in(key, 4)).logp
        entropic = self.alpha(state) * jnp.mean(logp) - jnp.mean(self.critic.min_q(critic_params, obs, s.action))
        info = {"actor/entropic_loss": entropic, "actor/entropy": -jnp.mean(logp)}
        loss = entropic
        if isinstance(self.cfg.beta_md, jax.Array) or self.cfg.beta_md > 0:  # swept (traced): always computed
            md, md_info = self.md_loss(params, state.old_params, critic_params, obs, md_key)
            loss = loss + self.cfg.beta_md * md
            info.update(md_info)
        info["actor/loss"] = loss
        return loss, (logp, info)

    def refresh_old(self, params: dict, old: dict, updates: jax.Array) -> dict:
        if self.cfg.old_policy == "ema":
            return optax.incremental_update(params, old, self.cfg.old_tau)
        refresh = updates % self.cfg.md_period == 0
        return jax.tree.map(lambda p, o: jnp.where(refresh, p, o), params, old)

    def update(self, state: SMFPState, batch: Batch, key: jax.Array) -> tuple[SMFPState, dict]:
        next_key, actor_key = jax.random.split(key)
        nxt = self.sample_draws(state.actor_params, batch.next_obs, next_key)  # the first draw's action and its logp
        critic, critic_info = self.critic.update(state.critic, batch, nxt.action[0], -self.alpha(state) * nxt.logp[0])

        params, actor_opt, (logp, actor_info) = gradient_step(
            self.actor_loss, self.actor_opt, state.actor_params, state.actor_opt, state, critic.params, batch.obs, actor_key)
        temperature = self.temperature.update(state.temperature, logp)

        n = state.updates + 1
        new_state = SMFPState(
            actor_params=params, actor_opt=actor_opt, old_params=self.refresh_old(params, state.old_params, n),
            critic=critic, temperature=temperature, updates=n,
        )
        return new_state, {**critic_info, **actor_info, "alpha/value": self.alpha(new_state)}


HIGH_ALPHA, LOW_ALPHA = 1.0, 0.2  # the auto initial temperatures (auto_temperature)
ALPHA_FALL = math.log(100.0)  # how far log(alpha) must be able to fall within half the run for the high start
LONG_TARGET_SCALE, SHORT_TARGET_SCALE = 0.0, 1.0  # the auto target entropy scales (auto_temperature)


def auto_temperature(cfg: SMFPConfig, gradient_updates: int) -> SMFPConfig:
    """The scale rule of SMFP's own auto options (docs/TRAINING.md). Adam moves log(alpha) by about
    alpha_lr per update at most, so a run of U updates can bring alpha down by a factor of
    exp(U alpha_lr / 2) in its first half. Where that reaches 100, alpha starts at 1.0 as SAC's
    does: on ant at 256 envs and 1M steps SMFP's start from 0.2 let the entropy reach its target
    in the first ~100k steps and the critic's mean Q stay negative, returns ~0 for 250k steps,
    where 1.0 learned from the first evaluations (docs/RESULTS.md). Shorter runs keep 0.2: from
    1.0 the multigoal probe's 3,504 updates end with alpha still high and every mode diffuse.

    The same long runs take the target entropy 0 (scale 0) rather than -action_dim: on ant at 256
    envs and 1M steps (a Gaussian's entropy 0 is ~0.24 of noise per dimension, -1 is ~0.09) the one
    seed screened left the standing gait at ~400k env steps instead of ~700k; on the short
    unevengoal probe the target 0 spreads the policy into the space between the goals
    (deterministic return 0.67 against 0.99). Each field is filled in only where it is None: an
    explicit value wins."""
    long = cfg.autotune_alpha and gradient_updates * cfg.alpha_lr / 2 >= ALPHA_FALL
    init_alpha = cfg.init_alpha if cfg.init_alpha is not None else (HIGH_ALPHA if long else LOW_ALPHA)
    target_scale = cfg.target_entropy_scale if cfg.target_entropy_scale is not None else (
        LONG_TARGET_SCALE if long else SHORT_TARGET_SCALE)
    return dataclasses.replace(cfg, init_alpha=init_alpha, target_entropy_scale=target_scale)


SPEC = AgentSpec(
    group="smfp", config=SMFPConfig, variants={"smfp": None}, check=check_smfp,
    build=lambda _, cfg, critic, obs_size, action_size, check: SMFP(cfg, critic, obs_size, action_size, check),
    doc="SMFP hyper-parameters (used when --agent smfp).",
    sweepable=("actor_lr", "alpha_lr", "init_alpha", "target_entropy_scale", "beta_md", "md_lambda", "old_tau"),
    auto=auto_temperature, auto_fields=("init_alpha", "target_entropy_scale"),
)
