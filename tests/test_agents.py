import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import optax

from mjxflow import scale
from mjxflow.agents import make_agent
from mjxflow.agents.critic import Critic
from mjxflow.config import CriticConfig
from mjxflow.distributions import gaussian_log_prob, tanh_log_det
from mjxflow.envs import Transition

from conftest import tiny_config


def test_tanh_log_det_matches_direct_formula_and_stays_finite():
    x = jnp.linspace(-4, 4, 41)[:, None]
    np.testing.assert_allclose(tanh_log_det(x), np.log(1 - np.tanh(np.asarray(x[:, 0])) ** 2), rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(tanh_log_det(jnp.array([[50.0], [-50.0]]))))


def test_gaussian_log_prob_closed_form():
    x, m, ls = jnp.array([[0.3, -1.0]]), jnp.array([[0.1, 0.5]]), jnp.array([[-0.5, 0.2]])
    expected = sum(
        -0.5 * ((xi - mi) / math.exp(li)) ** 2 - li - 0.5 * math.log(2 * math.pi)
        for xi, mi, li in zip([0.3, -1.0], [0.1, 0.5], [-0.5, 0.2])
    )
    np.testing.assert_allclose(gaussian_log_prob(x, m, ls), [expected], rtol=1e-6)


def test_sac_log_prob_is_the_density_of_its_samples():
    """exp(logp) of the tanh-Gaussian integrates to one over the action interval (1-D)."""
    cfg = tiny_config()
    agent = make_agent(scale.resolve(cfg), 2, 1)
    state = agent.init(jax.random.PRNGKey(0))
    mean, log_std = agent.actor.apply(state.actor_params, jnp.ones((1, 2)))
    xs = jnp.linspace(-8, 8, 20001)[:, None]
    logp = gaussian_log_prob(xs, mean, log_std) - tanh_log_det(xs)
    a = np.tanh(np.asarray(xs[:, 0]))
    mass = np.trapezoid(np.exp(np.asarray(logp)), a)
    np.testing.assert_allclose(mass, 1.0, rtol=1e-3)


def make_batch(terminated):
    return Transition(
        obs=jnp.zeros((2, 3)), action=jnp.zeros((2, 1)), reward=jnp.array([1.0, 2.0]),
        next_obs=jnp.ones((2, 3)), terminated=jnp.asarray(terminated, jnp.float32),
    )


def test_td_target_closed_form_and_truncation():
    critic = Critic(CriticConfig(distributional=False, tau=0.005, hidden=(8,), gamma=0.9), 3, 1)
    state = critic.init(jax.random.PRNGKey(0))
    next_action, next_logp, alpha = jnp.full((2, 1), 0.3), jnp.array([-1.0, 0.5]), jnp.asarray(0.2)
    q_next = np.asarray(critic.q(state.target_params, jnp.ones((2, 3)), next_action))
    soft_v = q_next.min(axis=0) - 0.2 * np.array([-1.0, 0.5])
    y = critic.td_target(state, make_batch([0.0, 1.0]), next_action, -alpha * next_logp)
    np.testing.assert_allclose(y, [1.0 + 0.9 * soft_v[0], 2.0], rtol=1e-6)


def test_critic_loss_is_the_summed_squared_td_error_of_both_critics():
    """loss = mean over the batch of sum over the twin critics of (Q_k(s, a) - y)^2, and the logged
    means are those of Q and y (a wrong sign, power or axis changes the value)."""
    critic = Critic(CriticConfig(distributional=False, tau=0.005, hidden=(8,)), 3, 1)
    params = critic.init(jax.random.PRNGKey(1)).params
    obs = jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    batch = Transition(obs=obs, action=jnp.array([[-0.5], [0.1], [0.9]]), reward=jnp.zeros(3), next_obs=obs,
                       terminated=jnp.zeros(3))
    target = jnp.array([0.7, -1.3, 2.0])
    loss, info = critic.loss(params, batch, target)
    q = np.asarray(critic.q(params, batch.obs, batch.action))  # (2, 3)
    expected = np.mean(((q[0] - target) ** 2) + ((q[1] - target) ** 2))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    want = {"critic/loss": expected, "critic/q_mean": q.mean(), "critic/target_mean": float(np.mean(target))}
    assert {k: float(v) for k, v in info.items()} == pytest.approx({k: float(v) for k, v in want.items()}, rel=1e-6)


def test_critic_update_is_adam_step_then_polyak():
    cfg = CriticConfig(hidden=(8,), tau=0.1, lr=1e-2, distributional=False)
    critic = Critic(cfg, 3, 1)
    state = critic.init(jax.random.PRNGKey(0))
    state = state.replace(target_params=jax.tree.map(lambda p: p + 1.0, state.params))
    batch = make_batch([0.0, 0.0])
    na, bonus = jnp.zeros((2, 1)), jnp.array([0.3, -0.2])
    new, info = critic.update(state, batch, na, bonus)
    target = critic.td_target(state, batch, na, bonus)
    grads = jax.grad(lambda p: critic.loss(p, batch, target)[0])(state.params)
    updates, _ = optax.adam(1e-2).update(grads, optax.adam(1e-2).init(state.params), state.params)
    expected = optax.apply_updates(state.params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new.params, expected)
    jax.tree.map(
        lambda t, p, old_t: np.testing.assert_allclose(t, 0.1 * p + 0.9 * old_t, rtol=1e-6),
        new.target_params, new.params, state.target_params,
    )
    assert set(info) >= {"critic/loss", "critic/q_mean"}


def test_twin_critics_are_independent():
    critic = Critic(CriticConfig(distributional=False, tau=0.005, hidden=(8,)), 3, 1)
    state = critic.init(jax.random.PRNGKey(0))
    q = critic.q(state.params, jnp.ones((4, 3)), jnp.ones((4, 1)))
    assert q.shape == (2, 4) and not np.allclose(q[0], q[1])


def test_critic_ensemble_size_and_layer_norm():
    """--critic.num-q sets the members (the min is over all of them) and --critic.layer-norm puts a
    LayerNorm (scale and bias) after every hidden layer of each member."""
    obs, action = jax.random.normal(jax.random.PRNGKey(1), (5, 3)), jnp.full((5, 1), 0.2)
    critic = Critic(CriticConfig(distributional=False, tau=0.005, hidden=(8, 8), num_q=3, layer_norm=True), 3, 1)
    params = critic.init(jax.random.PRNGKey(0)).params
    q = np.asarray(critic.q(params, obs, action))
    assert q.shape == (3, 5)
    np.testing.assert_allclose(critic.min_q(params, obs, action), q.min(axis=0))
    inner = params["params"]["VmapMLP_0"]
    assert sorted(k for k in inner if k.startswith("LayerNorm")) == ["LayerNorm_0", "LayerNorm_1"]
    assert inner["LayerNorm_0"]["scale"].shape == (3, 8)
    # the hidden activations are normalised: shifting an input feature by a huge constant leaves
    # LayerNorm's output (and so Q) bounded, unlike the plain MLP
    plain = Critic(CriticConfig(distributional=False, tau=0.005, hidden=(8, 8), num_q=3), 3, 1)
    plain_params = plain.init(jax.random.PRNGKey(0)).params
    big = obs.at[:, 0].add(1e4)
    assert np.abs(np.asarray(critic.q(params, big, action))).max() < 100
    assert np.abs(np.asarray(plain.q(plain_params, big, action))).max() > 100
    with pytest.raises(ValueError, match="--critic.num-q must be >= 1"):
        Critic(CriticConfig(distributional=False, tau=0.005, num_q=0), 3, 1)
