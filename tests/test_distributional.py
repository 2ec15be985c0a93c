"""The distributional (categorical, C51-style) critic: the projection against its closed forms,
one critic step against a hand-written reference, clipped double Q on the distribution, and the
option's resolution (docs/ALGORITHMS.md, "Distributional critic")."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mjxflow import scale, train
from mjxflow.agents import make_agent
from mjxflow.agents.critic import Critic, categorical_projection
from mjxflow.config import CriticConfig, TrainConfig
from mjxflow.envs import Transition

from conftest import tiny_config

ATOMS = jnp.linspace(-2.0, 2.0, 5)  # -2, -1, 0, 1, 2; dz = 1


def point_mass(i, k=5):
    return jnp.zeros(k).at[i].set(1.0)


def project(probs, reward, discount, bonus=0.0):
    """The target of r + discount (z + bonus) for one transition, through the projection."""
    return np.asarray(categorical_projection(probs[None], (reward + discount * (ATOMS + bonus))[None], ATOMS)[0])


def test_a_point_mass_landing_on_an_atom_stays_a_point_mass():
    # mass at z = 1, r = 0.5, gamma 0.5: r + gamma z = 1.0, atom 3
    np.testing.assert_allclose(project(point_mass(3), 0.5, 0.5), point_mass(3), atol=1e-6)
    # mass at z = -2, r = 1, gamma 1: lands on -1, atom 1
    np.testing.assert_allclose(project(point_mass(0), 1.0, 1.0), point_mass(1), atol=1e-6)


def test_a_point_mass_between_atoms_splits_linearly():
    # mass at z = 0, r = 0.3: lands at 0.3, 70% on atom 2 (0), 30% on atom 3 (1)
    np.testing.assert_allclose(project(point_mass(2), 0.3, 0.9), [0, 0, 0.7, 0.3, 0], atol=1e-6)
    # negative side: z = 1, r = -1.75, gamma 1 -> -0.75: 75% on atom 1 (-1), 25% on atom 2 (0)
    np.testing.assert_allclose(project(point_mass(3), -1.75, 1.0), [0, 0.75, 0.25, 0, 0], atol=1e-6)


def test_a_shifted_distribution_moves_by_whole_atoms_and_piles_on_the_edge():
    probs = jnp.array([0.1, 0.2, 0.3, 0.25, 0.15])
    # a shift of +1 with gamma 1: every atom moves one up, the top two meet on the edge atom
    np.testing.assert_allclose(project(probs, 1.0, 1.0), [0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)
    # a shift of -2: the lowest three pile on atom 0
    np.testing.assert_allclose(project(probs, -2.0, 1.0), [0.6, 0.25, 0.15, 0, 0], atol=1e-6)
    # the agent's bonus enters inside the discount: r + gamma (z + bonus) = 0 + 1 (z + 1)
    np.testing.assert_allclose(project(probs, 0.0, 1.0, bonus=1.0), [0, 0.1, 0.2, 0.3, 0.4], atol=1e-6)


def test_values_beyond_the_range_go_to_the_edge_atoms_and_termination_to_the_reward():
    probs = jnp.array([0.1, 0.2, 0.3, 0.25, 0.15])
    np.testing.assert_allclose(project(probs, 10.0, 0.9), point_mass(4), atol=1e-6)
    np.testing.assert_allclose(project(probs, -10.0, 0.9), point_mass(0), atol=1e-6)
    # terminated (discount 0): all mass at clip(r); r = 0.5 splits between atoms 2 and 3
    np.testing.assert_allclose(project(probs, 0.5, 0.0), [0, 0, 0.5, 0.5, 0], atol=1e-6)
    np.testing.assert_allclose(project(probs, 7.0, 0.0), point_mass(4), atol=1e-6)


def test_the_projected_mass_sums_to_one_and_keeps_the_mean_inside_the_range():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    atoms = jnp.linspace(-10.0, 10.0, 51)
    probs = jax.nn.softmax(jax.random.normal(k1, (64, 51)) * 3, axis=-1)
    reward = jax.random.normal(k2, (64,)) * 4
    discount = jax.random.uniform(k3, (64,))
    values = reward[:, None] + discount[:, None] * atoms
    m = np.asarray(categorical_projection(probs, values, atoms))
    np.testing.assert_allclose(m.sum(axis=-1), 1.0, rtol=1e-5)
    assert (m >= 0).all()
    # where nothing is clipped the projection keeps the mean exactly (the split is linear)
    inside = np.asarray(jnp.all((values >= -10) & (values <= 10), axis=-1))
    mean_before = np.asarray(jnp.sum(probs * values, axis=-1))
    np.testing.assert_allclose((m * np.asarray(atoms)).sum(-1)[inside], mean_before[inside], rtol=1e-4, atol=1e-4)
    assert inside.sum() > 5


# ---- one critic step against a hand-written reference ---------------------------------------------

def reference_projection(p, r, discount, bonus, atoms):
    """The split as the specification writes it: floor / ceil, and l == u gets all the mass."""
    v_min, v_max, k = atoms[0], atoms[-1], len(atoms)
    dz = (v_max - v_min) / (k - 1)
    m = np.zeros(k)
    for j in range(k):
        tz = min(max(r + discount * (atoms[j] + bonus), v_min), v_max)
        b = (tz - v_min) / dz
        lo, hi = int(np.floor(b)), int(np.ceil(b))
        if lo == hi:
            m[lo] += p[j]
        else:
            m[lo] += p[j] * (hi - b)
            m[hi] += p[j] * (b - lo)
    return m


def fixed_batch():
    key = jax.random.PRNGKey(3)
    obs = jax.random.normal(key, (6, 3))
    return Transition(obs=obs, action=jnp.linspace(-0.9, 0.9, 6)[:, None], reward=jnp.array([0.2, -1.3, 0.7, 3.1, 0.0, -0.4]),
                      next_obs=obs[::-1] * 4, terminated=jnp.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0]))


CFG = CriticConfig(hidden=(8,), gamma=0.9, tau=0.1, lr=1e-2, distributional=True, num_atoms=11, v_min=-3.0, v_max=3.0)


def test_the_target_is_the_projection_under_the_target_member_of_lowest_expected_value():
    critic = Critic(CFG, 3, 1)
    state = critic.init(jax.random.PRNGKey(0))
    # different targets than online, so taking the wrong parameters changes the answer
    state = state.replace(target_params=critic.init(jax.random.PRNGKey(12)).params)
    batch, next_action = fixed_batch(), jnp.linspace(-1.0, 1.0, 6)[:, None]
    bonus = jnp.array([0.1, -0.2, 0.3, 0.0, 0.5, -0.1])
    probs = np.asarray(jax.nn.softmax(critic.logits(state.target_params, batch.next_obs, next_action), axis=-1))  # (2, 6, 11)
    atoms = np.linspace(-3.0, 3.0, 11)
    expected_q = (probs * atoms).sum(-1)
    # each member is the lower one for some samples, so choosing per sample is what is checked
    assert set(np.argmin(expected_q, axis=0)) == {0, 1}
    want = np.stack([
        reference_projection(probs[np.argmin(expected_q[:, i]), i], float(batch.reward[i]),
                             0.9 * (1 - float(batch.terminated[i])), float(bonus[i]), atoms)
        for i in range(6)])
    got = np.asarray(critic.td_target(state, batch, next_action, bonus))
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(critic.q(state.target_params, batch.next_obs, next_action), expected_q, rtol=1e-5)


def test_one_distributional_critic_step_equals_the_hand_written_reference():
    """loss = mean over the batch of sum over members of -sum_i m_i log p_i; one Adam step on it,
    then Polyak; the logged means are of the expected values."""
    critic = Critic(CFG, 3, 1)
    state = critic.init(jax.random.PRNGKey(0))
    state = state.replace(target_params=critic.init(jax.random.PRNGKey(5)).params)
    batch, next_action, bonus = fixed_batch(), jnp.full((6, 1), -0.2), jnp.zeros(6)
    atoms = np.linspace(-3.0, 3.0, 11)
    target = np.asarray(critic.td_target(state, batch, next_action, bonus))

    def reference_loss(params):
        log_p = jax.nn.log_softmax(critic.net.apply(params, batch.obs, batch.action), axis=-1)  # (2, 6, 11)
        return jnp.mean(-jnp.sum(target[None] * log_p, axis=(-1, 0)))

    log_p = np.asarray(jax.nn.log_softmax(critic.logits(state.params, batch.obs, batch.action), axis=-1))
    loss_by_hand = sum(-(target[i] * log_p[k, i]).sum() for i in range(6) for k in range(2)) / 6
    np.testing.assert_allclose(reference_loss(state.params), loss_by_hand, rtol=1e-6)

    new, info = critic.update(state, batch, next_action, bonus)
    grads = jax.grad(reference_loss)(state.params)
    opt = optax.adam(1e-2)
    updates, _ = opt.update(grads, opt.init(state.params), state.params)
    expected = optax.apply_updates(state.params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), new.params, expected)
    jax.tree.map(lambda t, p, old: np.testing.assert_allclose(t, 0.1 * p + 0.9 * old, rtol=1e-5, atol=1e-7),
                 new.target_params, new.params, state.target_params)
    q = (np.exp(log_p) * atoms).sum(-1)
    assert float(info["critic/loss"]) == pytest.approx(loss_by_hand, rel=1e-5)
    assert float(info["critic/q_mean"]) == pytest.approx(q.mean(), rel=1e-5, abs=1e-6)
    assert float(info["critic/target_mean"]) == pytest.approx((target * atoms).sum(-1).mean(), rel=1e-5, abs=1e-6)


def test_an_unresolved_range_is_refused():
    with pytest.raises(ValueError, match="--critic.v-min and --critic.v-max"):
        Critic(CriticConfig(tau=0.005, distributional=True), 3, 1)


# ---- the option: resolution, --print-config, every agent ------------------------------------------

def test_auto_range_from_the_reward_scale_and_gamma_and_explicit_values_win():
    cfg = scale.resolve(TrainConfig(env="ant", num_envs=256, critic=CriticConfig(distributional=True)))
    assert (cfg.critic.v_min, cfg.critic.v_max) == (-1000.0, 1000.0)  # ant's reward scale 10, gamma 0.99
    cfg = scale.resolve(TrainConfig(env="ant", num_envs=256, critic=CriticConfig(distributional=True, gamma=0.97)))
    assert cfg.critic.v_max == pytest.approx(333.333, rel=1e-5)
    cfg = scale.resolve(TrainConfig(env="CheetahRun", critic=CriticConfig(distributional=True, v_min=0.0)))
    assert (cfg.critic.v_min, cfg.critic.v_max) == (0.0, 100.0)  # Playground's rewards in [0, 1]
    assert scale.resolve(TrainConfig(env="ant")).critic.v_max is None  # a scalar critic has no range


def test_the_auto_critic_is_distributional_from_256_envs_and_an_explicit_choice_wins(capsys):
    """`--critic.distributional` alone turns it on, `False` off, `auto` (the default) leaves it to
    the scale rules; a bad value is refused before anything runs."""
    def critic(*args):
        assert train.main(["--env", "ant", *args, "--print-config"]) == 0
        return json.loads(capsys.readouterr().out)["critic"]

    assert critic("--num-envs", "255")["distributional"] is False and critic("--num-envs", "256")["distributional"] is True
    assert critic("--num-envs", "256", "--critic.distributional", "False")["distributional"] is False
    assert critic("--num-envs", "256", "--critic.distributional", "false")["v_max"] is None
    assert critic("--num-envs", "16", "--critic.distributional")["distributional"] is True
    assert critic("--num-envs", "16", "--critic.distributional", "True")["distributional"] is True
    assert critic("--num-envs", "256", "--critic.distributional", "auto")["distributional"] is True
    assert train.main(["--critic.distributional", "maybe", "--print-config"]) == 2
    assert "expected nothing (on), True, False or auto, got 'maybe'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--critic.distributional True or False"):
        Critic(CriticConfig(tau=0.005), 3, 1)  # the agents get resolved values only


def test_print_config_shows_the_critic_options(capsys):
    assert train.main(["--env", "ant", "--num-envs", "256", "--critic.distributional", "--critic.num-atoms", "51",
                       "--critic.gamma", "0.97", "--print-config"]) == 0
    critic = json.loads(capsys.readouterr().out)["critic"]
    assert critic["distributional"] is True and critic["num_atoms"] == 51
    assert critic["v_min"] == pytest.approx(-333.333, rel=1e-5) and critic["v_max"] == pytest.approx(333.333, rel=1e-5)
    assert train.main(["--env", "ant", "--critic.distributional", "--critic.v-min", "5000", "--print-config"]) == 2
    assert "--critic.v-min 5000 must be < --critic.v-max 1000" in capsys.readouterr().err
    assert train.main(["--critic.num-atoms", "1", "--print-config"]) == 2
    assert "--critic.num-atoms must be >= 2" in capsys.readouterr().err


@pytest.mark.parametrize("agent", ["sac", "smfp", "fpmd-r", "fpmd-m"])
def test_every_agent_reads_the_expected_value_of_a_distributional_critic(agent):
    """An update with a distributional critic runs for each agent, and what the agent minimises
    over is the critic's expected value (min_q of the expected values)."""
    critic_cfg = CriticConfig(tau=0.005, hidden=(16,), distributional=True, num_atoms=21, v_min=-5.0, v_max=5.0)
    cfg = tiny_config(agent=agent, critic=critic_cfg)
    agent_ = make_agent(scale.resolve(cfg), 2, 2)
    state = agent_.init(jax.random.PRNGKey(0))
    obs, action = jax.random.normal(jax.random.PRNGKey(1), (8, 2)), jnp.zeros((8, 2))
    logits = agent_.critic.logits(state.critic.params, obs, action)
    assert logits.shape == (2, 8, 21)
    expected = jnp.sum(jax.nn.softmax(logits, -1) * jnp.linspace(-5, 5, 21), -1).min(0)
    np.testing.assert_allclose(agent_.critic.min_q(state.critic.params, obs, action), expected, rtol=1e-5)
    batch = Transition(obs=obs, action=jnp.full((8, 2), 0.1), reward=jnp.ones(8), next_obs=obs, terminated=jnp.zeros(8))
    new, info = jax.jit(agent_.update)(state, batch, jax.random.PRNGKey(2))
    assert all(np.isfinite(float(v)) for v in info.values())
    assert float(info["critic/loss"]) > 0
