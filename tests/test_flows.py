import jax
import jax.numpy as jnp
import numpy as np

from mjxflow import flows

C = jnp.array([0.3, -0.7])


def point_mass_u(z, r, t):
    """Exact mean velocity of the straight-line flow carrying N(0, I) to the point c: every path
    z_t = c + t (e - c) has the constant velocity (z - c) / t, so u = v."""
    del r
    return (z - C) / t[..., None]


def smooth_u(z, r, t):
    w = jnp.array([[0.7, -0.3], [0.2, 0.9]])
    return jnp.tanh(z @ w + 0.5 * r[..., None] - 1.3 * t[..., None] ** 2) * (1 + z**2)


def draws(n=64, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.normal(k1, (n, 2))
    e = jax.random.normal(k2, (n, 2))
    r, t = flows.sample_rt(k3, (n,))
    return x, e, r, t


def test_interpolation_ends_and_velocity():
    x, e, _, t = draws()
    z0, v = flows.interpolate(x, e, jnp.zeros_like(t))
    z1, _ = flows.interpolate(x, e, jnp.ones_like(t))
    np.testing.assert_allclose(z0, x)
    np.testing.assert_allclose(z1, e)
    np.testing.assert_allclose(v, e - x)
    h = 1e-3
    zp, _ = flows.interpolate(x, e, t + h)
    zm, _ = flows.interpolate(x, e, t - h)
    np.testing.assert_allclose((zp - zm) / (2 * h), v, rtol=1e-2, atol=1e-2)


def test_jvp_target_equals_finite_difference():
    x, e, r, t = draws()
    z, v = flows.interpolate(x, e, t)
    jvp = flows.meanflow_target(smooth_u, z, r, t, v)
    fd = flows.meanflow_target_fd(smooth_u, z, r, t, v, h=1e-3)
    np.testing.assert_allclose(jvp, fd, rtol=2e-3, atol=2e-3)
    # and the target is not trivially v for this field
    assert np.abs(np.asarray(jvp - v)).max() > 0.1


def test_target_equals_v_when_velocity_is_constant_along_paths():
    _, e, r, t = draws()
    z, v = flows.interpolate(jnp.broadcast_to(C, e.shape), e, t)
    np.testing.assert_allclose(point_mass_u(z, r, t), v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flows.meanflow_target(point_mass_u, z, r, t, v), v, rtol=1e-4, atol=1e-4)


def test_one_step_and_many_steps_agree_on_straight_flow():
    _, e, _, _ = draws()
    one = flows.one_step(point_mass_u, e)
    many = flows.mean_flow_steps(point_mass_u, e, 10)
    v_fn = lambda z, t: point_mass_u(z, t, t)
    euler = flows.euler(v_fn, e, 20)
    for out in (one, many, euler):
        np.testing.assert_allclose(out, jnp.broadcast_to(C, e.shape), rtol=1e-4, atol=1e-4)


def test_time_samplers():
    key = jax.random.PRNGKey(3)
    r, t = flows.sample_rt(key, (20000,), frac_r_neq_t=0.25)
    assert np.all(r <= t) and np.all((r > 0) & (t < 1))
    np.testing.assert_allclose(np.mean(np.asarray(r) != np.asarray(t)), 0.25, atol=0.02)
    t_ln = flows.sample_times(key, (20000,))
    np.testing.assert_allclose(np.median(np.asarray(t_ln)), jax.nn.sigmoid(-0.4), atol=0.01)
    t_u = flows.sample_times(key, (20000,), dist="uniform")
    np.testing.assert_allclose(np.mean(np.asarray(t_u)), 0.5, atol=0.01)


def test_sample_rt_passes_its_spread_to_both_draws():
    r, t = flows.sample_rt(jax.random.PRNGKey(4), (20000,), mu=0.0, sigma=0.2)
    logit = lambda p: np.log(np.asarray(p) / (1 - np.asarray(p)))
    assert np.abs(logit(r)).max() < 1.0 and np.abs(logit(t)).max() < 1.0  # 5 sigma of N(0, 0.2^2)
