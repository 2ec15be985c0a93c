"""Every MuJoCo Playground DM Control suite task through mjxflow's wrappers.

The 25 tasks are 14 task classes: the others differ from the first task of their class only in a
constructor value (a target speed, radius or size, sparse rewards), the same code and state types.
Every task is loaded, its sizes checked, and its reset and step traced (no XLA compilation: about a
quarter of the cost); the first task of each class is also compiled and stepped (about 20-45 s of
tracing and compilation each on a 2-core CPU). This file holds nothing else, so pytest-xdist runs
it beside the rest of the suite (compiled, like every test's programs, with XLA's cheaper backend
settings: conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.envs import EpisodeEnv, PLAYGROUND_TASKS, make_env
from mjxflow.envs import CATALOGUE


def task_class(name: str):
    """The class Playground's registry builds the task from (a partial's function, else itself)."""
    from mjxflow.envs.playground import _quiet_import

    made = _quiet_import().dm_control_suite._envs[name]
    return getattr(made, "func", made)


FIRST_OF_CLASS = tuple(n for i, n in enumerate(PLAYGROUND_TASKS)
                       if all(task_class(m) is not task_class(n) for m in PLAYGROUND_TASKS[:i]))
OTHERS = tuple(n for n in PLAYGROUND_TASKS if n not in FIRST_OF_CLASS)


def avals(tree) -> list[str]:
    """Each leaf's path, shape, dtype and weak type: what jit's cache key sees of a state."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [f"{jax.tree_util.keystr(path)} {x.shape} {x.dtype} weak={getattr(x, 'weak_type', False)}" for path, x in leaves]


def loaded(name):
    """The task through the episode wrapper (time limit 3), after checking that the preset's sizes
    and episode length (known before any env is built) are the loaded task's."""
    env = make_env(name)
    preset = CATALOGUE[name]
    assert (env.obs_size, env.action_size, env.default_episode_length) == \
        (preset.obs_size, preset.action_size, preset.episode_length)
    return env, EpisodeEnv(env, 3)


def test_the_classes_cover_every_task_once():
    assert len(FIRST_OF_CLASS) == 14 and set(FIRST_OF_CLASS) | set(OTHERS) == set(PLAYGROUND_TASKS)
    assert {"CheetahRun", "HumanoidStand", "CartpoleBalance"} <= set(FIRST_OF_CLASS)


@pytest.mark.parametrize("name", OTHERS)
def test_playground_task_has_the_same_state_types_after_a_step_traced(name):
    """Traced, not compiled: the state a step returns has the reset state's types (shape, dtype,
    weak type of every leaf), so jit would compile the step once for both."""
    env, episodes = loaded(name)
    state = jax.eval_shape(jax.vmap(episodes.reset), jax.random.split(jax.random.PRNGKey(0), 2))
    stepped, out = jax.eval_shape(jax.vmap(episodes.step), state, jax.ShapeDtypeStruct((2, env.action_size), jnp.float32))
    assert avals(stepped) == avals(state)
    assert stepped.env.obs.shape == (2, env.obs_size) and out.transition.reward.shape == (2,)


@pytest.mark.parametrize("name", FIRST_OF_CLASS)
def test_playground_task_steps_through_the_wrappers_without_recompiling(name):
    """Four steps of two envs through the episode wrapper with a time limit of 3 (the fourth follows
    an auto-reset): the jitted step compiles once, for the reset state and stepped states alike
    (without the adapter's strong typing, Playground's weakly typed reset values make the second
    call compile again, e.g. on CheetahRun), the episodes end where the limit says, and every
    value is finite."""
    env, episodes = loaded(name)
    step = jax.jit(jax.vmap(episodes.step))
    state = jax.jit(jax.vmap(episodes.reset))(jax.random.split(jax.random.PRNGKey(0), 2))
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
