"""Episodes over an Env: time limit, auto-reset that keeps the true final observation, and
evaluation rollouts. All functions act on one environment; vmap them for a batch."""

from __future__ import annotations

import sys
from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from mjxflow.envs.base import Env, EnvState
from mjxflow.replay import Transition  # the record a step yields, as the replay stores it


class EpisodeState(struct.PyTreeNode):
    env: EnvState
    steps: jax.Array  # steps taken in the current episode
    ret: jax.Array  # return accumulated in the current episode
    key: jax.Array  # for the resets of this environment
    spare: EnvState | None = None  # with spares: a fresh initial state drawn ahead, the next episode's start
    stale: jax.Array | None = None  # with spares: the spare started an episode and waits for its refill


class StepOutcome(struct.PyTreeNode):
    transition: Transition
    done: jax.Array  # episode ended here (terminated or truncated)
    truncated: jax.Array  # ended by the time limit only (the critic bootstraps)
    episode_return: jax.Array  # return of the episode that ended here (0 where not done)
    reused: jax.Array  # the next episode starts from a spare that already started one (not yet refilled)


def select_state(done: jax.Array, fresh: EnvState, nxt: EnvState) -> EnvState:
    """`fresh` where `done`, else `nxt` (inside the vmap over environments), leaf by leaf, except
    that MJX physics state merges with MJX's own `Data.where`: under MuJoCo Warp some of its leaves
    (contact and constraint buffers, their counts) belong to the whole batch of worlds and are kept
    from `nxt`; under the jax implementation it is the same leaf-by-leaf merge."""
    mjx = sys.modules.get("mujoco.mjx")  # not imported: no state can hold MJX Data
    data = getattr(mjx, "Data", ())

    def merge(a, b):
        return b.where(done, a) if isinstance(b, data) else jnp.where(done, a, b)

    return jax.tree.map(merge, fresh, nxt, is_leaf=lambda x: isinstance(x, data))


class EpisodeEnv:
    """Adds a time limit and auto-reset to an Env.

    Termination (the task's rule) stops bootstrapping; truncation (the time limit) does not, and
    the transition keeps the true final observation either way. Every reset draws a fresh initial
    state from the environment's own distribution.

    Without spares every step computes a reset for every environment and keeps it where the
    episode ended. With `spares`, each environment holds a fresh initial state drawn ahead (its
    spare): an ended episode restarts from it, and `refill` (on the batch) redraws every spare once
    every `every` steps, so a step costs 1 / every of the resets. An environment that ends again
    before the next redraw restarts from the same state once more (StepOutcome.reused counts it).
    """

    def __init__(self, env: Env, episode_length: int | None = None, spares: bool = False):
        self.env = env
        self.episode_length = int(episode_length or env.default_episode_length)
        self.spares = spares

    def reset(self, key: jax.Array) -> EpisodeState:
        key, reset_key = jax.random.split(key)
        state = EpisodeState(env=self.env.reset(reset_key), steps=jnp.zeros((), jnp.int32), ret=jnp.zeros(()), key=key)
        if self.spares:
            state = state.replace(spare=self.env.reset(jax.random.fold_in(key, 1)), stale=jnp.zeros((), bool))
        return state

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
        if state.spare is None:
            fresh, stale, reused = self.env.reset(reset_key), None, jnp.zeros((), bool)
        else:
            fresh, stale, reused = state.spare, state.stale | done, done & state.stale
        env_state = select_state(done, fresh, nxt)
        new_state = EpisodeState(
            env=env_state,
            steps=jnp.where(done, 0, steps),
            ret=jnp.where(done, 0.0, ret),
            key=key,
            spare=state.spare,
            stale=stale,
        )
        outcome = StepOutcome(transition=transition, done=done, truncated=truncated, episode_return=jnp.where(done, ret, 0.0),
                              reused=reused)
        return new_state, outcome

    def refill(self, states: EpisodeState, every: int, tick: jax.Array) -> EpisodeState:
        """Every `every` ticks (the loop's iteration; tick % every == 0) a new spare for every
        environment of the batch (states with a leading env axis), each from its environment's
        own key; between those ticks nothing is computed (a conditional, so the resets cost
        1 / every of a reset per env per step). A new draw replacing an unused spare keeps the
        same distribution."""
        if states.spare is None:
            return states

        def redraw(s: EpisodeState) -> EpisodeState:
            fresh = jax.vmap(self.env.reset)(jax.vmap(lambda k: jax.random.fold_in(k, 1))(s.key))
            fresh = jax.tree.map(lambda old, new: new.astype(old.dtype), s.spare, fresh)
            return s.replace(spare=fresh, stale=jnp.zeros_like(s.stale))

        return jax.lax.cond(tick % every == 0, redraw, lambda s: s, states)

    def step_batch(self, states: EpisodeState, actions: jax.Array, every: int, tick: jax.Array) -> tuple[EpisodeState, StepOutcome]:
        """`step` of every environment of a batch (leading env axis), then `refill` at `tick`."""
        states, out = jax.vmap(self.step)(states, actions)
        return self.refill(states, every, tick), out


def rollout_returns(
    env: Env, policy: Callable[[jax.Array, jax.Array], jax.Array], key: jax.Array, num_episodes: int, episode_length: int
) -> jax.Array:
    """Undiscounted returns of `num_episodes` parallel episodes, each run until it terminates or
    reaches `episode_length` steps. `policy(obs, key)` maps a batch of raw observations to
    actions; step t gets fold_in(key, t), so a policy that draws noise draws it afresh each step."""
    single = lambda obs, keys: policy(obs[0], keys[0])[None]  # noqa: E731
    return member_rollout_returns(env, single, key[None], num_episodes, episode_length)[0]


def member_rollout_returns(
    env: Env, policy: Callable[[jax.Array, jax.Array], jax.Array], keys: jax.Array, num_episodes: int, episode_length: int
) -> jax.Array:
    """rollout_returns for several policies at once: `keys` holds one key per member (members, 2),
    `policy` maps observations (members, num_episodes, obs) and keys (members, 2) to actions, and
    the returns are (members, num_episodes), each member's as its own rollout_returns would give.

    The members sit inside the loop rather than in a vmap around it, so the loop's condition stays
    a single value: under a vmap it would be batched and every carried leaf with it, which MuJoCo
    Warp's batch-wide buffers do not allow. A while loop stops as soon as every episode has ended,
    so short episodes cost little.
    """
    reset_key, act_key = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    reset_keys = jax.vmap(lambda k: jax.random.split(k, num_episodes))(reset_key)
    states = jax.vmap(jax.vmap(env.reset))(reset_keys)

    def cond(carry):
        t, _, alive, _ = carry
        return (t < episode_length) & jnp.any(alive)

    def body(carry):
        t, s, alive, total = carry
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(act_key, t)
        s = jax.vmap(jax.vmap(env.step))(s, policy(s.obs, step_keys))
        total = total + jnp.where(alive, s.reward, 0.0)
        alive = alive & (s.terminated <= 0)
        return t + 1, s, alive, total

    shape = reset_keys.shape[:-1]
    init = (jnp.zeros((), jnp.int32), states, jnp.ones(shape, bool), jnp.zeros(shape))
    return jax.lax.while_loop(cond, body, init)[3]
