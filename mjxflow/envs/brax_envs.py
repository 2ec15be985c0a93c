"""brax's MJX locomotion and manipulation tasks behind the mjxflow Env interface."""

from __future__ import annotations

import contextlib
import io
import warnings

import jax
import jax.numpy as jnp

from mjxflow.envs.base import EnvState
from mjxflow.envs.catalogue import tasks

BRAX_TASKS = tasks("brax")


def _mjx_swimmer():
    """brax's swimmer (same model, reward and defaults) built on MJX: brax allows it only on its
    `generalized` pipeline, which no longer runs on current JAX (it calls jnp.clip(a_min=...))."""
    from brax.envs import swimmer
    from brax.envs.base import PipelineEnv
    from brax.io import mjcf
    from etils import epath

    class MJXSwimmer(swimmer.Swimmer):
        def __init__(self):
            sys = mjcf.load(epath.resource_path("brax") / "envs/assets/swimmer.xml")
            PipelineEnv.__init__(self, sys=sys, backend="mjx", n_frames=4)
            self._forward_reward_weight = 1.0
            self._ctrl_cost_weight = 1e-4
            self._reset_noise_scale = 0.1
            self._exclude_current_positions_from_observation = True

    return MJXSwimmer()


class BraxEnv:
    """Adapter over `brax.envs.get_environment(name, backend="mjx")` (swimmer: see _mjx_swimmer).

    brax's own episode and auto-reset wrappers are not used: they overwrite the final observation
    of an episode, which the critic needs to bootstrap through a time limit.
    """

    default_episode_length = 1000

    def __init__(self, name: str):
        # mujoco.mjx prints a notice when the optional warp backend is missing; we never use it
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            from brax import envs as brax_envs

            self._env = _mjx_swimmer() if name == "swimmer" else brax_envs.get_environment(name, backend="mjx")
        self.name = name
        # brax's observation_size runs a reset op by op (a minute for ant on a CPU); tracing is enough
        self.obs_size = int(jax.eval_shape(self._env.reset, jax.random.PRNGKey(0)).obs.shape[-1])
        self.action_size = int(self._env.action_size)

    # ---- what mjxflow.render needs ----
    def render_model(self):
        """The MuJoCo model (mujoco.MjModel) the renderer draws."""
        return self._env.sys.mj_model

    def render_qpos(self, state: EnvState) -> jax.Array:
        """Joint positions of a state: with the model, all a frame needs."""
        return state.inner.pipeline_state.q

    @property
    def render_dt(self) -> float:
        """Seconds per control step (one video frame each)."""
        return float(self._env.dt)

    def reset(self, key: jax.Array) -> EnvState:
        s = self._env.reset(key)
        return EnvState(inner=s, obs=s.obs, reward=s.reward, terminated=s.done)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        s = self._env.step(state.inner, action)
        return EnvState(inner=s, obs=s.obs, reward=s.reward, terminated=jnp.asarray(s.done, jnp.float32))
