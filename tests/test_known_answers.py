"""Known-answer tests of the core: each compares against a closed form and fails on the bug it names
(docs/TESTING.md lists the bug each was shown to catch)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow import flows, normalizer
from mjxflow.agents import make_agent
from mjxflow.policy import Policies
from mjxflow.agents.fpmd import FPMDConfig
from mjxflow.agents.sac import SACConfig
from mjxflow.agents.smfp import SMFPConfig
from mjxflow.options import CriticConfig
from mjxflow.envs import EnvState
from mjxflow.envs.probes import MultiGoal
from mjxflow.evaluate import mode_coverage, modes_kept
from mjxflow.loop import Loop, PolicyState
from mjxflow.scale import resolve

from conftest import SMFP_SHORT, tiny_config

# ---- truncation through the fused loop ------------------------------------------------------------


class EndlessConstant:
    """Reward 1 on every step, never terminates; the observation is noise that says nothing of time.
    With a time limit that bootstraps, Q(s, a) = 1 / (1 - gamma) for every s and a."""

    name = "endless"
    obs_size = 2
    action_size = 2
    default_episode_length = 4

    def reset(self, key):
        return EnvState(inner=key, obs=jax.random.uniform(key, (2,), minval=-1, maxval=1), reward=jnp.zeros(()),
                        terminated=jnp.zeros(()))

    def step(self, state, action):
        key = jax.random.fold_in(state.inner, 1)
        return EnvState(inner=key, obs=jax.random.uniform(key, (2,), minval=-1, maxval=1), reward=jnp.ones(()),
                        terminated=jnp.zeros(()))


GAMMA, LIMIT = 0.5, 4
Q_BOOTSTRAP = 1.0 / (1.0 - GAMMA)  # 2.0
# Were the limit a termination, the Q of step k of 4 would be sum_{i < 5 - k} gamma^i; the noise
# observation cannot tell the steps apart, so the critic would fit their average.
Q_IF_TERMINATED = np.mean([sum(GAMMA**i for i in range(n)) for n in range(1, LIMIT + 1)])  # 1.53

SMALL = (32, 32)


def truncation_config(agent: str):
    return tiny_config(
        agent=agent, num_seeds=1, num_envs=8, episode_length=LIMIT, total_steps=8 * 200, num_evals=1,
        eval_episodes=2, min_replay=64, batch_size=64, updates_per_iter=4, replay_size=1024,
        critic=CriticConfig(hidden=SMALL, gamma=GAMMA, tau=0.05, lr=1e-3),
        # the entropy bonus is made negligible so Q has the closed form above
        sac=SACConfig(actor_hidden=SMALL, init_alpha=1e-6, autotune_alpha=False),
        smfp=SMFPConfig(actor_hidden=SMALL, init_alpha=1e-6, target_entropy_scale=1.0, autotune_alpha=False, num_particles=4),
        # near-uniform weights (raw, lambda 1: the setting these bounds were measured with) keep the
        # policy, and so the replay's actions, spread over the square the critic is checked on
        fpmd=FPMDConfig(actor_hidden=SMALL, num_particles=4, train_steps=2, weight_scale="raw", md_lambda=1.0),
    )


@pytest.mark.parametrize("agent", ["sac", "smfp", "fpmd-r", "fpmd-m", "sac-distributional"])
def test_time_limit_bootstraps_through_the_fused_loop(agent):
    env = EndlessConstant()
    cfg = truncation_config(agent.removesuffix("-distributional"))
    if agent.endswith("-distributional"):  # the same known answer through the categorical projection
        cfg = dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, distributional=True, num_atoms=41,
                                                                  v_min=-1.0, v_max=3.0))
    cfg = resolve(cfg, env.obs_size, env.action_size)
    loop = Loop(cfg, env, make_agent(cfg, env.obs_size, env.action_size))
    state, metrics = loop.make_train_chunk(loop.total_iters)(loop.initial_state())
    assert int(np.sum(metrics["train/episodes"])) == 8 * 200 // LIMIT  # every episode ended by the limit
    seed = jax.tree.map(lambda x: x[0], state.seeds)
    obs_key, act_key = jax.random.split(jax.random.PRNGKey(7))
    obs = jax.random.uniform(obs_key, (512, 2), minval=-1, maxval=1)
    actions = jax.random.uniform(act_key, (512, 2), minval=-1, maxval=1)
    q = np.asarray(loop.agent.critic.q(seed.agent.critic.params, normalizer.normalize(seed.norm, obs), actions))
    # measured: means 1.91 (smfp) to 1.98 (fpmd-r); the termination bug gives 1.53
    assert abs(q.mean() - Q_BOOTSTRAP) < 0.15, (q.mean(), Q_BOOTSTRAP, Q_IF_TERMINATED)
    assert np.median(np.abs(q - Q_BOOTSTRAP)) < 0.15


# ---- MeanFlow target against an analytic mean velocity ---------------------------------------------
# Data x ~ N(m, s^2 I), noise e ~ N(0, I), z_t = (1 - t) x + t e. The marginal of z_t is
# N(mu_t, sig_t^2) with mu_t = (1 - t) m, sig_t^2 = (1 - t)^2 s^2 + t^2; the flow of the marginal
# velocity maps z_t to z_r = mu_r + (sig_r / sig_t)(z_t - mu_t), so the mean velocity over [r, t] is
# u(z, r, t) = (z - z_r) / (t - r) and the marginal velocity is v(z, t) = mu_t' + sig_t'/sig_t (z - mu_t).

M = jnp.array([1.5, -0.5])
S = 0.3


def _mu(t):
    return (1.0 - t)[..., None] * M


def _sig(t):
    return jnp.sqrt((1.0 - t) ** 2 * S**2 + t**2)[..., None]


def exact_u(z, r, t):
    z_r = _mu(r) + _sig(r) / _sig(t) * (z - _mu(t))
    return (z - z_r) / (t - r)[..., None]


def marginal_v(z, t):
    dsig = (t - (1.0 - t) * S**2)[..., None] / _sig(t)
    return -M + dsig / _sig(t) * (z - _mu(t))


def gaussian_path(n=256, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = M + S * jax.random.normal(k1, (n, 2))
    e = jax.random.normal(k2, (n, 2))
    r, t = flows.sample_rt(k3, (n,))
    z, _ = flows.interpolate(x, e, t)
    return z, r, t


def test_meanflow_target_is_the_exact_mean_velocity_for_gaussian_data():
    z, r, t = gaussian_path()
    assert float(jnp.min(t - r)) > 1e-3  # r != t on every pair
    u = exact_u(z, r, t)
    # the mean velocity over [r, t] is not the instantaneous one: the (t - r) term matters here
    assert float(jnp.max(jnp.abs(u - marginal_v(z, t)))) > 0.2
    target = flows.meanflow_target(exact_u, z, r, t, marginal_v(z, t))
    np.testing.assert_allclose(target, u, rtol=1e-3, atol=1e-3)


def test_one_step_and_mean_flow_steps_carry_noise_to_the_data_distribution():
    e = jax.random.normal(jax.random.PRNGKey(3), (20000, 2))
    for x in (flows.one_step(exact_u, e), flows.mean_flow_steps(exact_u, e, 3)):
        np.testing.assert_allclose(x, M + S * e, rtol=1e-4, atol=1e-4)  # the exact transport map
    # particle-shaped noise (N, B, d), as the agents sample it
    e3 = e[:600].reshape(3, 200, 2)
    for x in (flows.one_step(exact_u, e3), flows.mean_flow_steps(exact_u, e3, 3)):
        np.testing.assert_allclose(x, M + S * e3, rtol=1e-4, atol=1e-4)
    # Euler on the marginal velocity reaches the same distribution
    x = flows.euler(marginal_v, e, 200)
    np.testing.assert_allclose(np.mean(x, axis=0), M, atol=0.02)
    np.testing.assert_allclose(np.std(x, axis=0), [S, S], atol=0.02)


# ---- mode coverage against a policy whose mode fractions are known ---------------------------------


class KnownModes:
    """A stand-in agent: its state is, per seed, the probability of each of the 4 goals and of
    'no mode' (the origin); samples land within 0.05 of the chosen point."""

    name = "known"

    def __init__(self, goals):
        self.points = jnp.concatenate([goals, jnp.zeros((1, 2))])

    def policy_sample(self, state, obs, key):
        probs = state.actor_params
        pick_key, jitter_key = jax.random.split(key)
        idx = jax.random.choice(pick_key, len(self.points), (obs.shape[0],), p=probs)
        jitter = jax.random.uniform(jitter_key, (obs.shape[0], 2), minval=-0.035, maxval=0.035)
        return self.points[idx] + jitter


def test_mode_coverage_recovers_known_fractions():
    env = MultiGoal()
    probs = np.array([[0.5, 0.25, 0.125, 0.0, 0.125], [0.25, 0.25, 0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 0.05, 0.95]])
    cfg = resolve(tiny_config(env="multigoal", num_seeds=3, normalize_obs=False), env.obs_size, env.action_size)
    loop = Loop(cfg, env, KnownModes(env.goals))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    policies = PolicyState(actor_params=jnp.asarray(probs, jnp.float32), norm=None, eval_key=keys)
    run = Policies(cfg=cfg, loop=loop, state=policies, step=0)
    n = 4000
    coverage = mode_coverage(run, n, jax.random.PRNGKey(1))
    assert coverage.shape == (3, 4)
    tol = 4 * np.sqrt(0.25 / n)  # four binomial standard deviations at p = 0.5
    np.testing.assert_allclose(coverage, probs[:, :4], atol=tol)
    assert list(modes_kept(coverage)) == [3, 4, 0]


# ---- SMFP switches change what they claim -----------------------------------------------------------


def smfp(**switches):
    """A small SMFP with the full mirror-descent step and the conditional surrogate unless switched."""
    switches = {"md_samples": 0, "md_states": 1.0, "entropy_draws": 1, **switches}
    cfg = SMFPConfig(actor_hidden=(16, 16), num_particles=8, **SMFP_SHORT, **switches)
    return make_agent(dataclasses.replace(tiny_config(agent="smfp"), smfp=cfg, critic=CriticConfig(distributional=False, tau=0.005, hidden=(16,))), 2, 2)


OBS = jax.random.normal(jax.random.PRNGKey(11), (32, 2))


def trained_actor(agent, steps=5):
    """Parameters moved away from their initial values by a few updates (so old != current)."""
    state = agent.init(jax.random.PRNGKey(0))
    from mjxflow.envs import Transition

    batch = Transition(obs=OBS, action=jnp.zeros((32, 2)), reward=jnp.sum(OBS, -1), next_obs=OBS, terminated=jnp.ones(32))
    update = jax.jit(agent.update)
    for i in range(steps):
        state, _ = update(state, batch, jax.random.PRNGKey(100 + i))
    return state


def test_no_entropy_fixes_sigma_and_removes_the_entropy_terms():
    agent = smfp(entropy=False, fixed_sigma=0.3)
    state = trained_actor(agent)
    obs = jnp.broadcast_to(OBS[:1], (20000, 2))
    for params in (state.actor_params, agent.init(jax.random.PRNGKey(5)).actor_params):
        s = agent.sample(params, obs, jax.random.PRNGKey(2))
        e = jax.random.normal(jax.random.split(jax.random.PRNGKey(2))[0], (20000, 2))
        loc, log_sigma = agent.loc_and_log_sigma(params, obs, e)
        np.testing.assert_allclose(np.exp(log_sigma), 0.3, rtol=1e-6)
        np.testing.assert_allclose(np.std(np.asarray(s.x - loc), axis=0), [0.3, 0.3], rtol=0.03)
        assert np.all(np.asarray(s.logp) == 0)
    assert float(agent.alpha(state)) == 0.0


def _actor_grad(agent, state):
    return jax.grad(lambda p: agent.actor_loss(p, state, state.critic.params, OBS, jax.random.PRNGKey(3))[0])(state.actor_params)


@pytest.mark.parametrize("draws", [1, 4])
def test_beta_md_scales_exactly_the_mirror_descent_gradient(draws):
    """grad(L_entropic + beta L_md) for beta = 0, 1, 2: beta 0 is the entropic gradient alone, and the
    difference is linear in beta. The entropic term written out: alpha E[log p] - E[min Q], with log p
    the surrogate (1 draw) or, for K draws on a random 1/K of the states, the mean of the K Gaussians."""
    from mjxflow.agents.generative import state_subset
    from mjxflow.distributions import mixture_log_prob, tanh_log_det

    agents = {b: smfp(beta_md=b, entropy_draws=draws) for b in (0.0, 1.0, 2.0)}
    state = trained_actor(agents[1.0])
    g = {b: _actor_grad(a, state) for b, a in agents.items()}
    a0 = agents[0.0]
    key = jax.random.PRNGKey(3)
    sample_key, md_key = jax.random.split(key)

    def entropic(p):
        s = a0.sample(p, OBS, sample_key)
        logp = s.logp
        if draws > 1:
            sub = jnp.broadcast_to(state_subset(jax.random.fold_in(key, 3), OBS, 1 / draws), (draws, 32 // draws, 2))
            e_key, xi_key = jax.random.split(jax.random.fold_in(key, 4))
            e = jax.random.normal(e_key, (draws, 32 // draws, 2))
            loc, log_sigma = a0.loc_and_log_sigma(p, sub, e)
            x = loc + jnp.exp(log_sigma) * jax.random.normal(xi_key, loc.shape)
            logp = mixture_log_prob(x, loc, log_sigma) - tanh_log_det(x)
        return a0.alpha(state) * jnp.mean(logp) - jnp.mean(a0.critic.min_q(state.critic.params, OBS, s.action))

    def md(p):
        return a0.md_loss(p, state.old_params, state.critic.params, OBS, md_key)[0]

    g_ent, g_md = jax.grad(entropic)(state.actor_params), jax.grad(md)(state.actor_params)
    for b in (0.0, 1.0, 2.0):
        jax.tree.map(lambda x, y, z: np.testing.assert_allclose(x, y + b * z, rtol=1e-4, atol=1e-6), g[b], g_ent, g_md)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g_md)) > 1e-4  # the MD term is not nothing


def _terms(agent, state):
    return agent.md_terms(state.actor_params, state.old_params, state.critic.params, OBS, jax.random.PRNGKey(4))


@pytest.mark.parametrize("switches", [dict(), dict(md_baseline="max"), dict(weights="exp", md_lambda=0.3)])
def test_weights_are_the_configured_function_of_the_particles_q(switches):
    from mjxflow.agents.generative import exp_weights

    agent = smfp(**switches)
    state = trained_actor(agent)
    terms = _terms(agent, state)
    q, w = np.asarray(terms.q), np.asarray(terms.w)
    assert q.shape == w.shape == (8, 32) and np.ptp(q, axis=0).min() > 0
    if switches.get("weights") == "exp":
        np.testing.assert_allclose(w, exp_weights(terms.q, 0.3), rtol=1e-5)
        np.testing.assert_allclose(w.sum(0), 1.0, rtol=1e-5)
    else:
        adv = np.maximum(q - q.mean(0), 0)
        norm = adv.max(0) if switches.get("md_baseline") == "max" else adv.sum(0)
        np.testing.assert_allclose(w, adv / (norm + 1e-8), rtol=1e-4, atol=1e-6)
        assert np.all(w[q <= q.mean(0)] == 0)  # particles below the baseline get nothing


def test_md_particles_come_from_the_old_policy_and_q_from_the_critic():
    agent = smfp(md_period=1000)
    state = trained_actor(agent)
    state = state.replace(old_params=agent.init(jax.random.PRNGKey(9)).actor_params)  # old != current
    terms = _terms(agent, state)
    particle_key = jax.random.split(jax.random.PRNGKey(4), 3)[0]
    obs_n = jnp.broadcast_to(OBS, (8,) + OBS.shape)
    from_old = agent.sample(state.old_params, obs_n, particle_key)
    from_new = agent.sample(state.actor_params, obs_n, particle_key)
    np.testing.assert_allclose(terms.x, from_old.x, rtol=1e-6)
    assert not np.allclose(terms.x, from_new.x, atol=1e-3)
    np.testing.assert_allclose(terms.q, agent.critic.min_q(state.critic.params, obs_n, from_old.action), rtol=1e-6)


def test_std_scaled_weights_do_not_change_with_the_scale_or_offset_of_q():
    from mjxflow.agents.generative import exp_weights

    q = jax.random.normal(jax.random.PRNGKey(0), (16, 5)) * jnp.array([0.1, 1.0, 10.0, 100.0, 1000.0])
    w = exp_weights(q, 0.5, "std")
    np.testing.assert_allclose(exp_weights(37.0 * q - 5.0, 0.5, "std"), w, rtol=1e-3, atol=1e-6)
    assert not np.allclose(exp_weights(37.0 * q - 5.0, 0.5, "raw"), exp_weights(q, 0.5, "raw"), atol=1e-3)
    # the same spread gives the same weights whatever the scale: columns of q differ only by scale
    np.testing.assert_allclose(exp_weights(jnp.outer(q[:, 0], jnp.array([1.0, 0.1, 1e3])), 0.5, "std"),
                               jnp.repeat(w[:, :1], 3, axis=1), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(exp_weights(jnp.ones((8, 3)), 0.5, "std"), 1 / 8, rtol=1e-6)  # equal Q: uniform


def test_resampled_particles_are_an_unbiased_estimate_of_the_weighted_sum():
    """resample(M): E[sum_i w'_i f(x'_i)] = sum_j w_j f(x_j) for any f; only particles with weight
    are drawn; a state whose weights are all zero keeps total weight zero."""
    from mjxflow.agents.generative import resample

    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 2))
    w = jnp.array([[0.2, 0.0, 0.0], [0.0, 0.0, 0.0], [1.2, 0.5, 0.0], [0.6, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.3, 0.0]])
    q = jnp.arange(18.0).reshape(6, 3)
    f = jnp.sum(x**2, -1) + jnp.sin(q)  # any function of the particle
    full = jnp.sum(w * f, axis=0)

    def estimate(key):
        xs, qs, ws = resample(key, x, q, w, 2)
        return jnp.sum(ws * (jnp.sum(xs**2, -1) + jnp.sin(qs)), axis=0), qs, ws

    est, qs, ws = jax.vmap(estimate)(jax.random.split(jax.random.PRNGKey(1), 20000))
    se = est.std(0) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(0) - full) <= 4 * se + 1e-6), (est.mean(0), full, se)
    assert est.std(0)[0] > 0.1  # a real estimate, not the sum itself
    drawn = np.asarray(qs)[:, :, :2].astype(int)  # states 0 and 1: the indices drawn (q = 3 j + b)
    assert set(np.unique(drawn[..., 0] // 3)) == {0, 2, 3} and set(np.unique(drawn[..., 1] // 3)) == {2, 4, 5}
    np.testing.assert_allclose(ws[0], [[1.0, 0.5, 0.0]] * 2)  # sum_j w_j / M (weights need not sum to 1)


def test_state_subset_draws_distinct_states_and_is_unbiased_for_the_mean():
    from mjxflow.agents.generative import num_subset, state_subset

    obs = jnp.arange(40.0).reshape(20, 2)
    assert state_subset(jax.random.PRNGKey(0), obs, 1.0) is obs
    assert [num_subset(20, f) for f in (0.25, 0.26, 0.01, 1.0)] == [5, 6, 1, 20]
    subsets = jax.vmap(lambda k: state_subset(k, obs, 0.25))(jax.random.split(jax.random.PRNGKey(1), 4000))
    assert subsets.shape == (4000, 5, 2)
    rows = np.asarray(subsets[..., 0]) / 2
    assert all(len(set(r)) == 5 for r in rows[:200])  # without replacement
    counts = np.bincount(rows.astype(int).ravel(), minlength=20) / rows.size
    np.testing.assert_allclose(counts, 1 / 20, atol=0.01)  # every state equally likely


@pytest.mark.parametrize("cheap", [dict(md_samples=2), dict(md_states=0.25), dict(md_samples=4, md_states=0.25)])
def test_smfp_cheap_md_step_gives_the_full_weighted_loss_in_expectation(cheap):
    """--smfp.md-samples M regresses M of the N particles, --smfp.md-states f uses a random f of the
    states: averaged over keys the loss equals the full weighted loss (a tolerance of a few standard
    errors), and the gradient points the same way."""
    full_agent, sampled_agent = smfp(), smfp(**cheap)
    state = trained_actor(full_agent)
    state = state.replace(old_params=full_agent.init(jax.random.PRNGKey(9)).actor_params)
    keys = jax.random.split(jax.random.PRNGKey(3), 3000)

    def losses(agent):
        loss = lambda k: agent.md_loss(state.actor_params, state.old_params, state.critic.params, OBS, k)[0]
        return np.asarray(jax.jit(jax.vmap(loss))(keys))

    full, sampled = losses(full_agent), losses(sampled_agent)
    se = np.sqrt(full.var() / len(full) + sampled.var() / len(sampled))
    assert abs(full.mean() - sampled.mean()) < 4 * se, (full.mean(), sampled.mean(), se)
    assert sampled.std() > full.std()  # it is an estimate with its own noise, not the same sum
    grad = lambda agent: jax.jit(jax.vmap(jax.grad(
        lambda p, k: agent.md_loss(p, state.old_params, state.critic.params, OBS, k)[0]), in_axes=(None, 0)))
    g_full = jax.tree.map(lambda g: g.mean(0), grad(full_agent)(state.actor_params, keys[:500]))
    g_samp = jax.tree.map(lambda g: g.mean(0), grad(sampled_agent)(state.actor_params, keys[:500]))
    flat = lambda g: np.concatenate([np.ravel(a) for a in jax.tree.leaves(g)])
    cos = flat(g_full) @ flat(g_samp) / np.linalg.norm(flat(g_full)) / np.linalg.norm(flat(g_samp))
    assert cos > 0.9, cos


@pytest.mark.parametrize("dist, frac", [("logit_normal", 1.0), ("uniform", 0.25)])
def test_md_times_follow_the_configured_sampler(dist, frac):
    agent = make_agent(dataclasses.replace(tiny_config(agent="smfp"), critic=CriticConfig(distributional=False, tau=0.005, hidden=(16,)), smfp=SMFPConfig(
        actor_hidden=(16,), **SMFP_SHORT, num_particles=64, md_samples=0, md_states=1.0, times=dataclasses.replace(SMFPConfig().times, dist=dist, frac_r_neq_t=frac))), 2, 2)
    state = agent.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (256, 2))
    terms = agent.md_terms(state.actor_params, state.old_params, state.critic.params, obs, jax.random.PRNGKey(2))
    r, t = np.asarray(terms.r).ravel(), np.asarray(terms.t).ravel()
    assert np.all(r <= t)
    np.testing.assert_allclose(np.mean(r != t), frac, atol=0.02)
    # t is the larger of two draws: its median is that of max(X1, X2), i.e. the draw's 1/sqrt(2) quantile
    quantile = 2**-0.5
    expected = quantile if dist == "uniform" else float(jax.nn.sigmoid(-0.4 + 1.0 * 0.5449))  # Phi^-1(0.7071)
    np.testing.assert_allclose(np.median(t), expected, atol=0.015)


# ---- FPMD's weights and particles ---------------------------------------------------------------------


@pytest.mark.parametrize("variant, cheap", [("r", dict(md_samples=2)), ("m", dict(md_samples=2, md_states=0.25))])
def test_fpmd_cheap_actor_step_gives_the_full_weighted_loss_in_expectation(variant, cheap):
    from mjxflow.agents.fpmd import FPMD

    base = FPMDConfig(actor_hidden=(16,), num_particles=8, train_steps=3, md_lambda=0.3, explore_decay_updates=50_000)
    full, cheap_agent = (FPMD(variant, c, CriticConfig(distributional=False, tau=0.005, hidden=(16,)), 2, 2) for c in (base, dataclasses.replace(base, **cheap)))
    state = full.init(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(3), 3000)
    losses = lambda agent: np.asarray(jax.jit(jax.vmap(lambda k: agent.actor_loss(state.actor_params, state, OBS, k)[0]))(keys))
    a, b = losses(full), losses(cheap_agent)
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)
    assert np.mean(np.abs(a - b)) > 0.05 * np.abs(a).mean()  # with the same key: an estimate, not the same sum


@pytest.mark.parametrize("variant, scale", [("r", "raw"), ("m", "std")])
def test_fpmd_weights_use_lambda_and_particles_use_k_steps(variant, scale):
    from mjxflow.agents.fpmd import FPMD
    from mjxflow.agents.generative import repeat

    cfg = FPMDConfig(actor_hidden=(16,), num_particles=8, train_steps=5, md_lambda=0.2, weight_scale=scale,
                     explore_decay_updates=50_000)
    agent = FPMD(variant, cfg, CriticConfig(distributional=False, tau=0.005, hidden=(16,)), 2, 2)
    state = agent.init(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(3)
    x, q, w, _ = agent.actor_terms(state.actor_params, state, OBS, key)
    q = np.asarray(q, np.float64)
    z = q if scale == "raw" else (q - q.mean(0)) / (q.std(0) + 1e-6)
    np.testing.assert_allclose(w, jax.nn.softmax(z / 0.2, axis=0), rtol=1e-4, atol=1e-7)
    e = jax.random.normal(jax.random.split(key, 3)[0], (8, 32, 2))
    field = agent.field(state.actor_params, repeat(OBS, 8))
    if variant == "r":  # K = 5 Euler steps of the velocity field
        expected = flows.euler(lambda z, t: field(z, t, t), e, 5)
    else:  # one MeanFlow step
        expected = flows.one_step(field, e)
    np.testing.assert_allclose(x, jnp.clip(expected, -1, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q, agent.critic.min_q(state.critic.params, repeat(OBS, 8), x), rtol=1e-6)
