"""The agent boundary: what the training loop needs from every algorithm."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import optax

from mjxflow.replay import Transition

Batch = Transition  # a minibatch of transitions with normalised observations


class Agent(Protocol):
    """An off-policy agent. Its state is a pytree (vmapped over seeds by the loop); the agent
    object itself holds only static configuration and network definitions.

    Observations passed in are already normalised by the loop.
    """

    name: str

    def init(self, key: jax.Array) -> Any:
        """Fresh agent state: parameters, target parameters, optimiser states, temperature."""

    def act(self, state: Any, obs: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
        """Actions in [-1, 1]^d for a batch of observations (batch, obs_size)."""

    def policy_sample(self, state: Any, obs: jax.Array, key: jax.Array) -> jax.Array:
        """A draw from the learned policy itself, without exploration extras (mode coverage)."""

    def update(self, state: Any, batch: Batch, key: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        """One gradient step of every learner; info holds scalar diagnostics keyed 'group/name'."""


def gradient_step(
    loss_fn: Callable[..., tuple[jax.Array, Any]], opt: optax.GradientTransformation, params: Any, opt_state: optax.OptState, *args
) -> tuple[Any, optax.OptState, Any]:
    """One optimiser step on loss_fn(params, *args) -> (loss, aux): (new params, new optimiser
    state, aux). The one place every learner (critic, actors, temperature) takes its step."""
    grads, aux = jax.grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, aux
