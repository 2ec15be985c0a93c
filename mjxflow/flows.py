"""Flow and MeanFlow maths shared by the generative agents.

One convention everywhere (MeanFlow's): noise e at t = 1, data x at t = 0, straight paths
z_t = (1 - t) x + t e with velocity v = dz_t/dt = e - x. Sampling runs from t = 1 down to t = 0.
The FPMD paper writes the mirror image (noise at 0, data at 1); substituting t -> 1 - t maps one
onto the other, so its losses are the same losses here.

Velocity fields have the signature v(z, t) and mean-velocity fields u(z, r, t), with z of shape
(..., d) and r, t of shape (...,); conditioning on the state is closed over by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from mjxflow.options import TimeDist

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]
MeanVelocityFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def interpolate(x: jax.Array, e: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Straight path z_t = (1 - t) x + t e and its constant velocity v = e - x."""
    t = t[..., None]
    return (1.0 - t) * x + t * e, e - x


def sample_times(key: jax.Array, shape: tuple[int, ...], dist: TimeDist = "logit_normal", mu: float = -0.4, sigma: float = 1.0) -> jax.Array:
    """t in (0, 1): logit-normal (sigmoid of N(mu, sigma^2)) or uniform."""
    if dist == "uniform":
        return jax.random.uniform(key, shape)
    return jax.nn.sigmoid(mu + sigma * jax.random.normal(key, shape))


def sample_rt(
    key: jax.Array, shape: tuple[int, ...], dist: TimeDist = "logit_normal", mu: float = -0.4, sigma: float = 1.0,
    frac_r_neq_t: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """(r, t) with r <= t: the sorted pair of two independent draws; a fraction 1 - frac_r_neq_t
    of the batch gets r = t (plain flow matching on those samples)."""
    k1, k2, k3 = jax.random.split(key, 3)
    a, b = sample_times(k1, shape, dist, mu, sigma), sample_times(k2, shape, dist, mu, sigma)
    r, t = jnp.minimum(a, b), jnp.maximum(a, b)
    equal = jax.random.uniform(k3, shape) >= frac_r_neq_t
    return jnp.where(equal, t, r), t


def meanflow_target(u_fn: MeanVelocityFn, z: jax.Array, r: jax.Array, t: jax.Array, v: jax.Array) -> jax.Array:
    """MeanFlow identity target u_tgt = v - (t - r) (v . d_z u + d_t u), under stop_gradient.

    The total derivative du/dt along the path is one forward-mode product with tangents
    (v, 0, 1) for (z, r, t).
    """
    u, dudt = jax.jvp(u_fn, (z, r, t), (v, jnp.zeros_like(r), jnp.ones_like(t)))
    return jax.lax.stop_gradient(v - (t - r)[..., None] * dudt)


def meanflow_target_fd(u_fn: MeanVelocityFn, z: jax.Array, r: jax.Array, t: jax.Array, v: jax.Array, h: float = 1e-3) -> jax.Array:
    """The same target with du/dt by a central finite difference (for tests)."""
    dudt = (u_fn(z + h * v, r, t + h) - u_fn(z - h * v, r, t - h)) / (2 * h)
    return v - (t - r)[..., None] * dudt


def one_step(u_fn: MeanVelocityFn, e: jax.Array) -> jax.Array:
    """x = z_0 = e - u(e, r=0, t=1): the whole path in one network evaluation."""
    ones = jnp.ones(e.shape[:-1])
    return e - u_fn(e, jnp.zeros_like(ones), ones)


def mean_flow_steps(u_fn: MeanVelocityFn, e: jax.Array, num_steps: int) -> jax.Array:
    """K mean-velocity jumps z_r = z_t - (t - r) u(z_t, r, t) on a uniform grid from 1 to 0."""
    grid = jnp.linspace(1.0, 0.0, num_steps + 1)
    ones = jnp.ones(e.shape[:-1])

    def jump(z, k):
        t, r = grid[k], grid[k + 1]
        return z - (t - r) * u_fn(z, r * ones, t * ones), None

    return jax.lax.scan(jump, e, jnp.arange(num_steps))[0]


def euler(v_fn: VelocityFn, e: jax.Array, num_steps: int) -> jax.Array:
    """K Euler steps of dz/dt = v(z, t) from t = 1 (noise) to t = 0 (action)."""
    dt = 1.0 / num_steps
    ones = jnp.ones(e.shape[:-1])

    def step(z, k):
        t = 1.0 - k * dt
        return z - dt * v_fn(z, t * ones), None

    return jax.lax.scan(step, e, jnp.arange(num_steps))[0]
