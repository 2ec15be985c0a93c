"""MuJoCo Playground's DM Control suite through mjxflow's wrappers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.envs import EpisodeEnv, PLAYGROUND_TASKS, make_env
from mjxflow.scale import PRESETS


def avals(tree) -> list[str]:
    """Each leaf's path, shape, dtype and weak type: what jit's cache key sees of a state."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [f"{jax.tree_util.keystr(path)} {x.shape} {x.dtype} weak={getattr(x, 'weak_type', False)}" for path, x in leaves]


def test_the_task_list_is_playgrounds_suite():
    from mjxflow.envs.playground import _quiet_import

    assert PLAYGROUND_TASKS == tuple(_quiet_import().dm_control_suite.ALL_ENVS)


def test_every_playground_task_has_its_preset_sizes_and_keeps_its_state_types_through_a_step():
    """For all 25 tasks, traced only (no compilation): the sizes and episode length the presets give
    before any env is built are the loaded task's, and the adapter's step returns a state of exactly
    the types (shapes, dtypes, weak types) its reset gave, so jit compiles a step once for reset
    states and stepped states alike (the episode wrapper's own fields are typed by mjxflow; the
    compiled test below goes through it)."""
    for name in PLAYGROUND_TASKS:
        env = make_env(name)
        preset = PRESETS[name]
        assert (env.obs_size, env.action_size, env.default_episode_length) == \
            (preset.obs_size, preset.action_size, preset.episode_length), name
        reset = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        stepped = jax.eval_shape(env.step, reset, jnp.zeros(env.action_size))
        assert jax.tree.structure(stepped) == jax.tree.structure(reset) and avals(stepped) == avals(reset), name


def step_tasks(names):
    """Four steps of two envs of each task through the episode wrapper (a time limit of 3: the
    fourth follows an auto-reset); the step function must compile once and give finite values."""
    for name in names:
        env = make_env(name)
        episodes = EpisodeEnv(env, 3)
        step = jax.jit(jax.vmap(episodes.step))
        state = jax.jit(jax.vmap(episodes.reset))(jax.random.split(jax.random.PRNGKey(0), 2))
        act = jnp.full((2, env.action_size), 0.3)
        dones = []
        for _ in range(4):
            state, out = step(state, act)
            dones.append(np.asarray(out.done))
        assert step._cache_size() == 1, f"{name}: the step function was compiled {step._cache_size()} times"
        assert np.all(dones[2]) and not np.any(dones[3]), name
        assert state.env.obs.shape == (2, env.obs_size) and np.all(np.isfinite(np.asarray(state.env.obs))), name
        assert np.all(np.isfinite(np.asarray(out.transition.reward))), name


def test_playground_tasks_step_through_the_wrappers_without_recompiling():
    step_tasks(["CartpoleBalance", "PendulumSwingup"])  # two of the cheapest to compile on a CPU


@pytest.mark.slow
def test_every_playground_task_steps_through_the_wrappers_without_recompiling():
    step_tasks(PLAYGROUND_TASKS)  # about 10 minutes of XLA compilation on 2 CPU cores


@pytest.mark.parametrize("env", ["CheetahRun", "hopper"])
def test_warp_physics_is_refused_before_anything_runs(env, capsys):
    from mjxflow import train

    assert train.main(["--env", env, "--physics", "warp", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--physics warp is not available yet" in err
