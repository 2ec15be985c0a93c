"""Networks: MLP, the critic ensemble as one parameter tree, and the Gaussian actor head."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense layers with ReLU; `layer_norm` puts a LayerNorm between each hidden Dense and its ReLU."""

    hidden: Sequence[int]
    out: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = nn.relu(x)
        return nn.Dense(self.out)(x)


class EnsembleQ(nn.Module):
    """`num` independent Q networks sharing one call; parameters stacked on a leading axis. With
    `atoms` > 1 each outputs that many logits (a distributional critic): shape (num, batch, atoms)."""

    hidden: Sequence[int]
    num: int = 2
    layer_norm: bool = False
    atoms: int = 1

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0, axis_size=self.num
        )
        q = ensemble(self.hidden, self.atoms, self.layer_norm)(jnp.concatenate([obs, action], axis=-1))
        return q[..., 0] if self.atoms == 1 else q  # (num, batch) or (num, batch, atoms)


class GaussianActor(nn.Module):
    """Mean and bounded log standard deviation of a diagonal Gaussian over pre-squash actions."""

    hidden: Sequence[int]
    action_size: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden, 2 * self.action_size)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        # tanh keeps log_std inside its bounds with a smooth gradient (no clipping dead zones)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(raw) + 1.0)
        return mean, log_std


class FlowActor(nn.Module):
    """f(s, z, r, t) -> u (and log_sigma when `with_sigma`): a (mean-)velocity field over
    pre-squash actions, conditioned on the state. Times enter as (t, t - r); a plain velocity
    field v(s, z, t) is the same network called with r = t."""

    hidden: Sequence[int]
    action_size: int
    with_sigma: bool = False
    log_sigma_min: float = -5.0
    log_sigma_max: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array, r: jax.Array, t: jax.Array):
        h = jnp.concatenate([obs, z, t[..., None], (t - r)[..., None]], axis=-1)
        out = MLP(self.hidden, (2 if self.with_sigma else 1) * self.action_size)(h)
        if not self.with_sigma:
            return out
        u, raw = jnp.split(out, 2, axis=-1)
        log_sigma = self.log_sigma_min + 0.5 * (self.log_sigma_max - self.log_sigma_min) * (jnp.tanh(raw) + 1.0)
        return u, log_sigma
