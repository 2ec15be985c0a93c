"""Episodes over an Env: time limit, auto-reset that keeps the true final observation, and
evaluation rollouts. All functions act on one environment; vmap them for a batch."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from mjxflow.envs.base import Env, EnvState


class Transition(struct.PyTreeNode):
    """What the replay buffer stores. `next_obs` is the observation the action led to, also when
    the episode ended there (never the reset observation that replaces it)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


class EpisodeState(struct.PyTreeNode):
    env: EnvState
    steps: jax.Array  # steps taken in the current episode
    ret: jax.Array  # return accumulated in the current episode
    key: jax.Array  # for the resets of this environment


class StepOutcome(struct.PyTreeNode):
    transition: Transition
    done: jax.Array  # episode ended here (terminated or truncated)
    truncated: jax.Array  # ended by the time limit only (the critic bootstraps)
    episode_return: jax.Array  # return of the episode that ended here (0 where not done)


class EpisodeEnv:
    """Adds a time limit and auto-reset to an Env.

    Termination (the task's rule) stops bootstrapping; truncation (the time limit) does not, and
    the transition keeps the true final observation either way. Every reset draws a fresh initial
    state from the environment's own distribution.
    """

    def __init__(self, env: Env, episode_length: int | None = None):
        self.env = env
        self.episode_length = int(episode_length or env.default_episode_length)

    def reset(self, key: jax.Array) -> EpisodeState:
        key, reset_key = jax.random.split(key)
        return EpisodeState(env=self.env.reset(reset_key), steps=jnp.zeros((), jnp.int32), ret=jnp.zeros(()), key=key)

    def step(self, state: EpisodeState, action: jax.Array) -> tuple[EpisodeState, StepOutcome]:
        key, reset_key = jax.random.split(state.key)
        nxt = self.env.step(state.env, action)
        steps = state.steps + 1
        ret = state.ret + nxt.reward
        terminated = nxt.terminated > 0
        truncated = (steps >= self.episode_length) & ~terminated
        done = terminated | truncated
        transition = Transition(
            obs=state.env.obs, action=action, reward=nxt.reward, next_obs=nxt.obs,
            terminated=terminated.astype(jnp.float32),
        )
        fresh = self.env.reset(reset_key)
        env_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, nxt)
        new_state = EpisodeState(
            env=env_state,
            steps=jnp.where(done, 0, steps),
            ret=jnp.where(done, 0.0, ret),
            key=key,
        )
        outcome = StepOutcome(transition=transition, done=done, truncated=truncated, episode_return=jnp.where(done, ret, 0.0))
        return new_state, outcome


def rollout_returns(
    env: Env, policy: Callable[[jax.Array, jax.Array], jax.Array], key: jax.Array, num_episodes: int, episode_length: int
) -> jax.Array:
    """Undiscounted returns of `num_episodes` parallel episodes, each run until it terminates or
    reaches `episode_length` steps. `policy(obs, key)` maps a batch of raw observations to
    actions; step t gets fold_in(key, t), so a policy that draws noise draws it afresh each step.

    A while loop stops as soon as every episode has ended, so short episodes cost little.
    """
    reset_key, act_key = jax.random.split(key)
    states = jax.vmap(env.reset)(jax.random.split(reset_key, num_episodes))

    def cond(carry):
        t, _, alive, _ = carry
        return (t < episode_length) & jnp.any(alive)

    def body(carry):
        t, s, alive, total = carry
        s = jax.vmap(env.step)(s, policy(s.obs, jax.random.fold_in(act_key, t)))
        total = total + jnp.where(alive, s.reward, 0.0)
        alive = alive & (s.terminated <= 0)
        return t + 1, s, alive, total

    init = (jnp.zeros((), jnp.int32), states, jnp.ones((num_episodes,), bool), jnp.zeros((num_episodes,)))
    return jax.lax.while_loop(cond, body, init)[3]
