"""Every MuJoCo Playground DM Control suite task, compiled and stepped through mjxflow's wrappers.

One test per task (about 20-45 s of tracing and XLA compilation each on a 2-core CPU); this file
holds nothing else, so pytest-xdist runs it beside the rest of the suite. The programs are
compiled with XLA's cheaper backend settings: what is tested is the wrappers and the state types,
not the speed of the generated code, and it saves about a quarter of the compile time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.envs import EpisodeEnv, PLAYGROUND_TASKS, make_env
from mjxflow.scale import PRESETS

CHEAP = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def avals(tree) -> list[str]:
    """Each leaf's path, shape, dtype and weak type: what jit's cache key sees of a state."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [f"{jax.tree_util.keystr(path)} {x.shape} {x.dtype} weak={getattr(x, 'weak_type', False)}" for path, x in leaves]


@pytest.mark.parametrize("name", PLAYGROUND_TASKS)
def test_playground_task_steps_through_the_wrappers_without_recompiling(name):
    """The preset sizes and episode length (known before any env is built) are the loaded task's.
    Four steps of two envs through the episode wrapper with a time limit of 3 (the fourth follows
    an auto-reset): the jitted step compiles once, for the reset state and stepped states alike
    (without the adapter's strong typing, Playground's weakly typed reset values make the second
    call compile again, e.g. on CheetahRun), the episodes end where the limit says, and every
    value is finite."""
    env = make_env(name)
    preset = PRESETS[name]
    assert (env.obs_size, env.action_size, env.default_episode_length) == \
        (preset.obs_size, preset.action_size, preset.episode_length)
    episodes = EpisodeEnv(env, 3)
    step = jax.jit(jax.vmap(episodes.step), compiler_options=CHEAP)
    state = jax.jit(jax.vmap(episodes.reset), compiler_options=CHEAP)(jax.random.split(jax.random.PRNGKey(0), 2))
    first = avals(state)
    act = jnp.full((2, env.action_size), 0.3)
    dones = []
    for _ in range(4):
        state, out = step(state, act)
        dones.append(np.asarray(out.done))
    assert avals(state) == first
    assert step._cache_size() == 1, f"{name}: the step function was compiled {step._cache_size()} times"
    assert np.all(dones[2]) and not np.any(dones[3])
    assert state.env.obs.shape == (2, env.obs_size) and np.all(np.isfinite(np.asarray(state.env.obs)))
    assert np.all(np.isfinite(np.asarray(out.transition.reward)))
