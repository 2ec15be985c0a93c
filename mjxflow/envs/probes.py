"""Pure-JAX probe environments with known answers, for tests and diagnosis.

Both are one-step tasks (every episode ends with termination after one action), so the optimal
Q-function equals the reward: Q*(s, a) = r(s, a).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mjxflow.envs.base import EnvState


class Bandit:
    """Contextual bandit: s ~ U[-1, 1]^2, r(s, a) = 1 - ||a - s / 2||^2, a in [-1, 1]^2.

    Optimal action a*(s) = s / 2, optimal value 1, and Q*(s, a) = r(s, a) exactly.
    """

    name = "bandit"
    obs_size = 2
    action_size = 2
    default_episode_length = 1

    @staticmethod
    def optimal_action(obs: jax.Array) -> jax.Array:
        return obs / 2.0

    @staticmethod
    def reward(obs: jax.Array, action: jax.Array) -> jax.Array:
        return 1.0 - jnp.sum((action - obs / 2.0) ** 2, axis=-1)

    def reset(self, key: jax.Array) -> EnvState:
        obs = jax.random.uniform(key, (self.obs_size,), minval=-1.0, maxval=1.0)
        return EnvState(inner=jnp.zeros(()), obs=obs, reward=jnp.zeros(()), terminated=jnp.zeros(()))

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        r = self.reward(state.obs, action)
        return EnvState(inner=state.inner, obs=state.obs, reward=r, terminated=jnp.ones(()))


class MultiGoal:
    """One-step task whose optimal actions form `num_goals` equal, well-separated modes.

    The state is constant; the reward is a sum of Gaussian bumps of height 1 and width `width`
    centred on goals spaced evenly on a circle of radius `radius` in the 2-D action square:
    r(a) = sum_k exp(-||a - g_k||^2 / (2 width^2)). Goals are far apart relative to the width,
    so each bump's peak value is 1 up to a negligible overlap and all modes are equally good.
    A policy that covers one goal earns as much as one that covers all; what tells them apart is
    the spread of its samples over the modes (see `mode_of`).
    """

    name = "multigoal"
    obs_size = 2
    action_size = 2
    default_episode_length = 1

    def __init__(self, num_goals: int = 4, radius: float = 0.6, width: float = 0.2, mode_radius: float = 0.25):
        angles = [2 * math.pi * (k + 0.5) / num_goals for k in range(num_goals)]
        self.goals = jnp.array([[radius * math.cos(t), radius * math.sin(t)] for t in angles], jnp.float32)
        self.widths = jnp.full((num_goals,), width, jnp.float32)
        self.mode_radii = jnp.full((num_goals,), mode_radius, jnp.float32)

    def reward(self, action: jax.Array) -> jax.Array:
        d2 = jnp.sum((action[..., None, :] - self.goals) ** 2, axis=-1)
        return jnp.sum(jnp.exp(-d2 / (2 * self.widths**2)), axis=-1)

    def mode_of(self, actions: jax.Array) -> jax.Array:
        """Index of the goal whose mode radius holds each action (the nearest such goal), or -1."""
        d = jnp.linalg.norm(actions[..., None, :] - self.goals, axis=-1)
        inside = d < self.mode_radii
        nearest = jnp.argmin(jnp.where(inside, d, jnp.inf), axis=-1)
        return jnp.where(jnp.any(inside, axis=-1), nearest, -1)

    def reset(self, key: jax.Array) -> EnvState:
        del key
        return EnvState(inner=jnp.zeros(()), obs=jnp.zeros((self.obs_size,)), reward=jnp.zeros(()), terminated=jnp.zeros(()))

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        return EnvState(inner=state.inner, obs=state.obs, reward=self.reward(action), terminated=jnp.ones(()))


class UnevenGoal(MultiGoal):
    """Multigoal with modes that are not alike: three goals of peak reward 1 at unequal distances
    from the centre and of unequal widths (wide and far, narrow and near, medium), each counted
    within twice its width. Every goal is optimal, but a soft-optimal policy exp(Q / alpha) gives
    each a mass that grows with its width (about 54%, 16% and 29% in the small-alpha limit), so a
    method tuned to four identical, symmetric bumps meets basins of different sizes here."""

    name = "unevengoal"

    def __init__(self):
        self.goals = jnp.array([[0.55, 0.35], [-0.2, 0.45], [-0.35, -0.55]], jnp.float32)
        self.widths = jnp.array([0.22, 0.12, 0.16], jnp.float32)
        self.mode_radii = 2.0 * self.widths


PROBES = {"bandit": Bandit, "multigoal": MultiGoal, "unevengoal": UnevenGoal}
