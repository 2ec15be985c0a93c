import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.agents.fpmd import FPMD
from mjxflow.agents.generative import best_of_n
from mjxflow.agents.fpmd import FPMDConfig
from mjxflow.options import CriticConfig

CFG = FPMDConfig(actor_hidden=(16,), num_particles=8, train_steps=4, explore_std_start=0.4, explore_std_end=0.1, explore_decay_updates=100)


@pytest.fixture(scope="module", params=["r", "m"])
def agent(request):
    agent = FPMD(request.param, CFG, CriticConfig(distributional=False, tau=0.005, hidden=(16,)), 3, 2)
    return agent, agent.init(jax.random.PRNGKey(0))


def test_exploration_std_schedule(agent):
    a, _ = agent
    for updates, std in [(0, 0.4), (50, 0.25), (100, 0.1), (1000, 0.1)]:
        np.testing.assert_allclose(a.explore_std(jnp.asarray(updates)), std, rtol=1e-6)


def test_training_action_is_best_of_n(agent):
    a, state = agent
    quiet = FPMD(a.variant, dataclasses.replace(CFG, explore_std_start=0.0, explore_std_end=0.0), a.critic.cfg, 3, 2)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    key = jax.random.PRNGKey(2)
    action = quiet.act(state, obs, key, deterministic=False)
    particles, q = quiet.particles(state, obs, jax.random.split(key)[0])
    np.testing.assert_allclose(action, best_of_n(particles, q), rtol=1e-6)
    # every other particle has a lower or equal Q than the chosen one
    chosen_q = quiet.critic.min_q(state.critic.params, obs, action)
    assert np.all(np.asarray(q) <= np.asarray(chosen_q)[None] + 1e-6)


def test_actions_stay_in_the_box_and_evaluation_is_one_step(agent):
    a, state = agent
    obs = 10 * jax.random.normal(jax.random.PRNGKey(3), (64, 3))
    for det in (True, False):
        act = np.asarray(a.act(state, obs, jax.random.PRNGKey(4), det))
        assert act.shape == (64, 2) and np.all(np.abs(act) <= 1.0)
    np.testing.assert_allclose(a.act(state, obs, jax.random.PRNGKey(4), True), a.sample_x(state.actor_params, obs, jax.random.PRNGKey(4), 1))
    assert a.train_steps == (4 if a.variant == "r" else 1)


def test_update_reduces_weighted_loss_on_fixed_particles(agent):
    """Repeated updates on one batch lower the weighted regression loss (the gradient path works)."""
    from mjxflow.envs import Transition

    a, state = agent
    batch = Transition(obs=jax.random.normal(jax.random.PRNGKey(5), (32, 3)), action=jnp.zeros((32, 2)),
                       reward=jnp.ones(32), next_obs=jnp.zeros((32, 3)), terminated=jnp.ones(32))
    key = jax.random.PRNGKey(6)
    before = a.actor_loss(state.actor_params, state, batch.obs, key)[0]
    update = jax.jit(a.update)
    for _ in range(30):
        state, info = update(state, batch, key)
    after = a.actor_loss(state.actor_params, state, batch.obs, key)[0]
    assert float(after) < float(before)
    assert {"critic/loss", "actor/loss", "explore/std"} <= set(info)
