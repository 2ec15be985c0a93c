"""Every MuJoCo Playground DM Control suite task, compiled and stepped through mjxflow's wrappers.

Each task is its own test (about 10-60 s of XLA compilation each on a 2-core CPU), so pytest-xdist
spreads them over the workers; this file holds nothing else, so its tests can run beside the
rest of the suite."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.envs import EpisodeEnv, PLAYGROUND_TASKS, make_env


pytestmark = pytest.mark.slow  # until CI spreads the suite over workers


@pytest.mark.parametrize("name", PLAYGROUND_TASKS)
def test_playground_task_steps_through_the_wrappers_without_recompiling(name):
    """Four steps of two envs through the episode wrapper with a time limit of 3 (the fourth
    follows an auto-reset): the jitted step compiles once, for reset states and stepped states
    alike, the episodes end where the limit says, and every value is finite."""
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
    assert np.all(dones[2]) and not np.any(dones[3])
    assert state.env.obs.shape == (2, env.obs_size) and np.all(np.isfinite(np.asarray(state.env.obs)))
    assert np.all(np.isfinite(np.asarray(out.transition.reward)))
