import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.agents.generative import best_of_n, exp_weights, linear_weights
from mjxflow.agents.smfp import SMFP, surrogate_log_prob
from mjxflow.agents.smfp import SMFPConfig
from mjxflow.options import CriticConfig

from conftest import SMFP_SHORT


@pytest.fixture(scope="module")
def agent_1d():
    agent = SMFP(SMFPConfig(actor_hidden=(32, 32), **SMFP_SHORT), CriticConfig(distributional=False, tau=0.005, hidden=(16,)), 2, 1)
    return agent, agent.init(jax.random.PRNGKey(0))


def test_surrogate_equals_monte_carlo_conditional_density(agent_1d):
    """Given e, the histogram of a = tanh(e - u + sigma xi) matches exp(log p~(a | s, e))."""
    agent, state = agent_1d
    obs, e = jnp.array([[0.5, -0.2]]), jnp.array([[0.3]])
    loc, log_sigma = agent.loc_and_log_sigma(state.actor_params, obs, e)
    xi = jax.random.normal(jax.random.PRNGKey(1), (400_000, 1))
    a = np.asarray(jnp.tanh(loc + jnp.exp(log_sigma) * xi))[:, 0]
    hist, edges = np.histogram(a, bins=60)
    centres = (edges[:-1] + edges[1:]) / 2
    mc_density = hist / (a.size * np.diff(edges))
    x = jnp.arctanh(jnp.asarray(centres))[:, None]
    closed = np.exp(np.asarray(surrogate_log_prob(x, loc, log_sigma)))
    keep = hist > 2000  # bins with enough samples for a 3% Monte Carlo error
    assert keep.sum() > 20
    np.testing.assert_allclose(mc_density[keep], closed[keep], rtol=0.06)


def test_surrogate_entropy_does_not_exceed_true_entropy(agent_1d):
    """-E[log p~(a|s,e)] <= H(a|s), with H estimated by Monte Carlo over the noise mixture."""
    agent, state = agent_1d
    obs = jnp.zeros((1, 2))
    key_a, key_m = jax.random.split(jax.random.PRNGKey(2))
    samples = agent.sample(state.actor_params, jnp.broadcast_to(obs, (4000, 2)), key_a)
    surrogate_entropy = -float(jnp.mean(samples.logp))
    # p(a|s) = E_e[p(a|s,e)], estimated with 4000 fresh noise draws for every sampled a
    e = jax.random.normal(key_m, (4000, 1))
    loc, log_sigma = agent.loc_and_log_sigma(state.actor_params, jnp.broadcast_to(obs, (4000, 2)), e)
    cond = jax.vmap(lambda x: jnp.mean(jnp.exp(surrogate_log_prob(jnp.broadcast_to(x, loc.shape), loc, log_sigma))))(samples.x)
    true_entropy = -float(jnp.mean(jnp.log(cond)))
    # the mixture estimate agrees with a plain histogram estimate of the samples' entropy
    a = np.asarray(samples.action)[:, 0]
    hist, edges = np.histogram(a, bins=40)
    p = hist[hist > 0] / a.size
    histogram_entropy = -np.sum(p * np.log(p / np.diff(edges)[hist > 0]))
    assert abs(true_entropy - histogram_entropy) < 0.1, (true_entropy, histogram_entropy)
    assert surrogate_entropy <= true_entropy + 0.02, (surrogate_entropy, true_entropy)


def test_linear_weights_truncate_and_normalise():
    q = jnp.array([[1.0, 5.0], [2.0, 5.0], [6.0, 5.0]])  # 3 particles, 2 states
    w = np.asarray(linear_weights(q))
    np.testing.assert_allclose(w[:, 0], [0.0, 0.0, 1.0], atol=1e-6)  # mean 3: only 6 is above
    np.testing.assert_allclose(w[:, 1], 0.0)  # all equal: nothing to prefer
    q = jnp.array([[0.0], [2.0], [4.0], [6.0]])  # mean 3 -> advantages 0, 0, 1, 3
    np.testing.assert_allclose(np.asarray(linear_weights(q))[:, 0], [0, 0, 0.25, 0.75], atol=1e-6)
    np.testing.assert_allclose(np.asarray(linear_weights(q, "max"))[:, 0], [0, 0, 1 / 3, 1.0], atol=1e-6)
    # scale-free: multiplying Q by a constant leaves the weights unchanged
    np.testing.assert_allclose(linear_weights(100 * q), linear_weights(q), atol=1e-6)


def test_linear_weights_stay_in_the_unit_interval_for_tiny_spreads():
    """Q values closer than the normaliser's epsilon: weights still lie in [0, 1] and sum to at most 1."""
    q = jnp.array([[0.0, 1.0], [4e-9, 1.0 + 3e-7], [2e-9, 1.0]])
    for baseline in ("mean", "max"):
        w = np.asarray(linear_weights(q, baseline))
        assert np.all((w >= 0) & (w <= 1)) and np.all(w.sum(0) <= 1 + 1e-6), (baseline, w)


def test_choices_outside_their_literal_are_refused_by_the_config_checks():
    """The command line's choices are checked by tyro; a config built in Python or read from JSON
    is checked against the same Literal types, naming the flag and the choices."""
    from mjxflow.agents.fpmd import FPMDConfig, check_fpmd
    from mjxflow.agents.smfp import check_smfp

    times = dataclasses.replace(SMFPConfig().times, dist="beta")
    with pytest.raises(ValueError, match="--smfp.times.dist 'beta' is not one of: logit_normal, uniform"):
        check_smfp(dataclasses.replace(SMFPConfig(), times=times))
    with pytest.raises(ValueError, match="--fpmd.weight-scale 'softmax' is not one of: std, raw"):
        check_fpmd(dataclasses.replace(FPMDConfig(), weight_scale="softmax"))
    with pytest.raises(ValueError, match="--smfp.md-baseline 'median' is not one of: mean, max"):
        check_smfp(dataclasses.replace(SMFPConfig(), md_baseline="median"))


def test_exp_weights_and_best_of_n():
    q = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    w = np.asarray(exp_weights(q, 0.5))
    np.testing.assert_allclose(w[:, 0], [1 / (1 + np.e**2), np.e**2 / (1 + np.e**2)], rtol=1e-6)
    actions = jnp.array([[[1.0], [2.0]], [[3.0], [4.0]]])  # (N=2, B=2, d=1)
    np.testing.assert_allclose(best_of_n(actions, q), [[3.0], [2.0]])


def test_old_policy_copy_refreshes_every_period():
    agent = SMFP(SMFPConfig(actor_hidden=(8,), md_period=3, **SMFP_SHORT), CriticConfig(distributional=False, tau=0.005, hidden=(8,)), 2, 1)
    new, old = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    for n, refreshed in [(1, False), (2, False), (3, True), (6, True), (7, False)]:
        out = agent.refresh_old(new, old, jnp.asarray(n))
        assert np.array_equal(out["w"], new["w"] if refreshed else old["w"])
    ema = SMFP(SMFPConfig(actor_hidden=(8,), old_policy="ema", old_tau=0.1, **SMFP_SHORT), CriticConfig(distributional=False, tau=0.005, hidden=(8,)), 2, 1)
    np.testing.assert_allclose(ema.refresh_old(new, old, jnp.asarray(1))["w"], 0.1)


def test_entropy_off_fixes_sigma_and_zeroes_alpha():
    cfg = SMFPConfig(actor_hidden=(8,), entropy=False, fixed_sigma=0.0, **SMFP_SHORT)
    agent = SMFP(cfg, CriticConfig(distributional=False, tau=0.005, hidden=(8,)), 2, 1)
    state = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((5, 2))
    a1 = agent.act(state, obs, jax.random.PRNGKey(1), False)
    a2 = agent.act(state, obs, jax.random.PRNGKey(1), True)
    np.testing.assert_allclose(a1, a2)  # sigma = 0: sampling is deterministic given e
    assert float(agent.alpha(state)) == 0.0
    assert np.all(agent.sample(state.actor_params, obs, jax.random.PRNGKey(1)).logp == 0)


@pytest.mark.parametrize("field, value", [("weights", "softmax"), ("md_baseline", "median"), ("old_policy", "target")])
def test_unknown_switch_values_are_refused(field, value):
    with pytest.raises(ValueError, match=value):
        SMFP(dataclasses.replace(SMFPConfig(**SMFP_SHORT), **{field: value}), CriticConfig(distributional=False, tau=0.005), 2, 1)


def test_mixture_entropy_bound_rises_with_draws_towards_the_true_entropy():
    """x = e + s xi, e ~ N(0, 1): the marginal is N(0, 1 + s^2), whose entropy is known. Minus the
    mean of mixture_log_prob over K draws is a lower bound that grows with K and reaches it; K = 1
    is the conditional density (entropy of N(0, s^2))."""
    from mjxflow.distributions import gaussian_log_prob, mixture_log_prob

    s, n = 0.3, 4000
    true = 0.5 * np.log(2 * np.pi * np.e * (1 + s**2))
    bounds = []
    for k in (1, 2, 8, 64):
        e = jax.random.normal(jax.random.PRNGKey(k), (k, n, 1))
        log_s = jnp.full_like(e, np.log(s))
        x = e + s * jax.random.normal(jax.random.PRNGKey(100 + k), e.shape)
        if k == 1:
            np.testing.assert_allclose(mixture_log_prob(x, e, log_s), gaussian_log_prob(x, e, log_s), rtol=1e-6)
        bounds.append(-float(jnp.mean(mixture_log_prob(x, e, log_s))))
    np.testing.assert_allclose(bounds[0], 0.5 * np.log(2 * np.pi * np.e * s**2), atol=0.03)
    assert all(b1 < b2 for b1, b2 in zip(bounds, bounds[1:])), bounds
    assert bounds[-1] <= true + 0.01 and true - bounds[-1] < 0.06, (bounds, true)


def test_entropy_draws_tighten_the_policy_entropy_estimate(agent_1d):
    """With entropy_draws K > 1 the estimate counts the spread across e: on the same parameters it
    is larger than the conditional surrogate's and no larger than the policy's entropy."""
    agent, state = agent_1d
    obs = jnp.zeros((2000, 2))
    many = SMFP(dataclasses.replace(agent.cfg, entropy_draws=16), CriticConfig(distributional=False, tau=0.005, hidden=(16,)), 2, 1)
    one = -float(jnp.mean(agent.sample_draws(state.actor_params, obs, jax.random.PRNGKey(1)).logp))
    draws = many.sample_draws(state.actor_params, obs, jax.random.PRNGKey(1))
    assert draws.logp.shape == (16, 2000) and draws.action.shape == (16, 2000, 1)
    sixteen = -float(jnp.mean(draws.logp))
    # the policy's entropy, from a 4000-component mixture per sample (as in the test above)
    e = jax.random.normal(jax.random.PRNGKey(3), (4000, 1))
    loc, log_sigma = agent.loc_and_log_sigma(state.actor_params, jnp.zeros((4000, 2)), e)
    x = draws.x[0, :500]
    cond = jax.vmap(lambda xi: jnp.mean(jnp.exp(surrogate_log_prob(jnp.broadcast_to(xi, loc.shape), loc, log_sigma))))(x)
    true = -float(jnp.mean(jnp.log(cond)))
    assert one + 0.05 < sixteen <= true + 0.05, (one, sixteen, true)
