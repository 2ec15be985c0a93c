"""MuJoCo Playground's DM Control suite tasks (`--env CheetahRun`, ...), by their registry names.

Each task is loaded through `mujoco_playground.registry.load(name, config_overrides={"impl": ...})`
with MJX's `jax` implementation by default (`--physics warp` selects MuJoCo Warp, for GPUs), and
goes through the same episode wrapper as the brax tasks (auto-reset keeping the true final
observation, time limits bootstrapped). From Playground's own config of the task come its episode
length and action repeat: one step of the adapter repeats the action `action_repeat` times,
summing the rewards (stopping the sum at a termination), and the default episode length is
`episode_length / action_repeat` of those steps. A dict observation is flattened by concatenating
its entries in sorted key order (every suite task gives a flat array today).

Playground's reset returns weakly typed values (a Python float as `data.time`, some info
entries); the adapter gives every leaf a fixed type (float32 for floats) after reset and step, so
the step function is compiled once for reset states and stepped states alike.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import jax
import jax.numpy as jnp

from mjxflow.envs.base import EnvState
from mjxflow.envs.catalogue import tasks

PLAYGROUND_TASKS: tuple[str, ...] = tasks("playground")  # the DM Control suite (mjxflow.envs.catalogue)
PHYSICS = ("jax", "warp")


def _quiet_import():
    """mujoco_playground and MJX print notices and warnings when imported; none concern us."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from mujoco_playground import registry
    return registry


def _quiet_warp(env) -> None:
    """MuJoCo Warp announces itself and every kernel module it loads on stdout, and prints a line
    from inside the step whenever the constraint solver uses all its iterations. Playground's
    suite tasks run a solver with one or a few iterations by design (the `jax` implementation
    does the same silently), so that line would come every step: both are turned off."""
    import warp

    warp.config.log_level = warp.LOG_WARNING
    m = env._mjx_model
    env._mjx_model = m.replace(opt=m.opt.replace(_impl=m.opt._impl.replace(warn_overflow=0)))


def strongly_typed(tree):
    """Every leaf as an array of a fixed (not weak) type: Playground's reset leaves Python floats
    and weakly typed values (data.time, some info entries) that a step returns as float32 arrays,
    and jit would compile the step twice, once per kind of input."""
    def strong(x):
        if isinstance(x, (float, int, bool)) or getattr(x, "weak_type", False):
            x = jnp.asarray(x)
            return jnp.asarray(x, jnp.float32 if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype)
        return x

    return jax.tree.map(strong, tree)


def flatten_obs(obs) -> jax.Array:
    """A dict observation's entries, raveled and concatenated in sorted key order; arrays as they are."""
    if isinstance(obs, dict):
        return jnp.concatenate([jnp.ravel(obs[k]) for k in sorted(obs)])
    return obs


class PlaygroundEnv:
    """Adapter over a MuJoCo Playground DM Control suite task (build it with mjxflow.envs.make_env,
    which checks the name and the physics first)."""

    def __init__(self, name: str, physics: str = "jax"):
        registry = _quiet_import()
        self.config = registry.get_default_config(name)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self._env = registry.load(name, config_overrides={"impl": physics})
        if physics == "warp":
            _quiet_warp(self._env)
        self.name = name
        self.physics = physics
        self.action_repeat = int(self.config.get("action_repeat", 1))
        self.default_episode_length = int(self.config.episode_length) // self.action_repeat
        self.action_size = int(self._env.action_size)
        self.obs_size = int(jax.eval_shape(lambda k: self.reset(k).obs, jax.random.PRNGKey(0)).shape[-1])

    def reset(self, key: jax.Array) -> EnvState:
        s = strongly_typed(self._env.reset(key))
        return EnvState(inner=s, obs=flatten_obs(s.obs), reward=jnp.asarray(s.reward, jnp.float32),
                        terminated=jnp.asarray(s.done, jnp.float32))

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        s, reward, done = state.inner, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
        for _ in range(self.action_repeat):
            s = strongly_typed(self._env.step(s, action))
            reward = reward + jnp.where(done > 0, 0.0, s.reward)
            done = jnp.maximum(done, jnp.asarray(s.done, jnp.float32))
        return EnvState(inner=s, obs=flatten_obs(s.obs), reward=reward, terminated=done)

    # ---- what mjxflow.render needs ----
    def render_model(self):
        return self._env.mj_model

    def render_qpos(self, state: EnvState) -> jax.Array:
        return state.inner.data.qpos

    @property
    def render_dt(self) -> float:
        return float(self._env.dt) * self.action_repeat
