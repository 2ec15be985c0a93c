"""The fused training loop: acting, MJX stepping, replay, updates and evaluation in one jitted chunk.

Layout of one chunk (`Loop.make_train_chunk`): a `lax.while_loop` over a given number of
iterations whose body is vmapped over seeds. The flags that decide what an iteration does (random
warm-up actions, whether to learn) depend only on counters that every seed shares, so they are
computed outside the vmap and `lax.cond` stays a real branch. Evaluation is a separate compiled call
(`Loop.make_evaluate_all`) that the host makes at the iterations of its schedule (mjxflow.scale), so
its cost is measured apart from training and the chunk length is free of it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from mjxflow import normalizer, parallel, replay as replay_lib
from mjxflow.agents import Agent, make_agent
from mjxflow.config import TrainConfig, parse_sweep, with_values
from mjxflow.envs import Env, EpisodeEnv, EpisodeState, make_env, member_rollout_returns
from mjxflow.normalizer import RunningStats
from mjxflow.replay import Replay, Transition
from mjxflow.scale import resolve, transition_bytes, transition_example, unresolved


def all_finite(tree) -> jax.Array:
    """True when every floating-point value in the tree is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class SeedState(struct.PyTreeNode):
    """Everything one seed of a run owns; the loop stacks these on a leading seed axis."""

    agent: Any
    norm: RunningStats
    envs: EpisodeState  # num_envs training environments
    replay: Replay | None  # None only inside checkpoints saved without the buffer
    key: jax.Array
    eval_key: jax.Array  # evaluation at iteration i uses fold_in(eval_key, i): reproducible
    frozen_at: jax.Array | None = None  # -1; else the iteration whose update made it non-finite (frozen since)
    hyper: jax.Array | None = None  # this member's values of the swept options (cfg.sweep order); None: no sweep


class PolicyState(struct.PyTreeNode):
    """What acting needs, per member (leading axis in a run): the actor's parameters, the
    observation statistics and the evaluation key. Checkpoints hold it as an item of its own, so a
    policy loads without the replay buffer or optimiser states (mjxflow.policy)."""

    actor_params: Any
    norm: RunningStats
    eval_key: jax.Array


class ActorOnly(struct.PyTreeNode):
    """An agent state reduced to its actor: enough for `act(..., deterministic=True)` and
    `policy_sample` of every agent."""

    actor_params: Any


def policy_state(seeds: SeedState) -> PolicyState:
    return PolicyState(actor_params=seeds.agent.actor_params, norm=seeds.norm, eval_key=seeds.eval_key)


class TrainState(struct.PyTreeNode):
    seeds: SeedState
    iteration: jax.Array  # completed iterations, shared by every seed

    def env_steps(self, num_envs: int) -> int:
        return int(self.iteration) * num_envs


class Loop:
    """Static pieces of a run (config, env, agent) and the pure functions built from them."""

    def __init__(self, cfg: TrainConfig, env: Env, agent: Agent, placement: parallel.Placement | None = None):
        left = unresolved(cfg)
        if left:
            raise ValueError(f"Loop needs a resolved config (mjxflow.scale.resolve); unset: {', '.join(left)}")
        self.cfg = cfg
        self.env = env
        self.agent = agent
        self.episode_env = EpisodeEnv(env, cfg.episode_length, spares=cfg.reset_every > 1)
        self.total_iters = cfg.iterations  # exactly ceil(total_steps / num_envs)
        self.sweep_names = [path for path, _ in parse_sweep(cfg.sweep)]
        self.points = cfg.sweep_points  # grid points; member m is point m // num_seeds, seed m % num_seeds
        self.num_members = cfg.num_members
        if placement is None:
            placement = (parallel.EnvPlacement if cfg.shard == "envs" else parallel.Placement)(parallel.devices_for(cfg))
        self.placement = placement  # the seed (or env) axis over devices (mjxflow.parallel)
        self._state_shapes = None

    # ---- state ---------------------------------------------------------------------------------
    def replay_bytes_per_seed(self) -> int:
        """Bytes of one seed's replay buffer, from shapes alone (nothing is traced or allocated)."""
        return self.cfg.replay_size * transition_bytes(self.env.obs_size, self.env.action_size)

    def init_replay(self) -> Replay:
        width = self.cfg.num_envs if self.cfg.shard == "envs" else 0  # rows of one transition per env
        return replay_lib.init(self.cfg.replay_size, transition_example(self.env.obs_size, self.env.action_size), width)

    def agent_for(self, hyper: jax.Array | None) -> Agent:
        """The agent of one member: the run's own, or one whose swept options are this member's
        (traced) values; every grid point's options were checked before (config.check_sweep)."""
        if hyper is None:
            return self.agent
        cfg = with_values(self.cfg, {name: hyper[i] for i, name in enumerate(self.sweep_names)})
        return make_agent(cfg, self.env.obs_size, self.env.action_size, check=False)

    def init_seed(self, key: jax.Array, hyper: jax.Array | None = None) -> SeedState:
        agent_key, env_key, eval_key, key = jax.random.split(key, 4)
        envs = jax.vmap(self.episode_env.reset)(jax.random.split(env_key, self.cfg.num_envs))
        norm = normalizer.update(normalizer.init(self.env.obs_size), envs.env.obs)
        return SeedState(
            agent=self.agent_for(hyper).init(agent_key), norm=norm, envs=envs, replay=self.init_replay(), key=key,
            eval_key=eval_key, frozen_at=jnp.full((), -1, jnp.int32), hyper=hyper,
        )

    def seed_keys(self) -> jax.Array:
        """Member m starts from split(PRNGKey(cfg.seed), num_seeds)[m % num_seeds]: seed i of every
        grid point starts as seed i of a run without the sweep."""
        return jnp.tile(jax.random.split(jax.random.PRNGKey(self.cfg.seed), self.cfg.num_seeds), (len(self.points), 1))

    def hyper_table(self) -> jax.Array | None:
        """(members, swept options) float32: each member's values; None without a sweep."""
        if not self.sweep_names:
            return None
        rows = [[p[name] for name in self.sweep_names] for p in self.points for _ in range(self.cfg.num_seeds)]
        return jnp.asarray(rows, jnp.float32)

    def init_seeds(self, keys: jax.Array, hyper: jax.Array | None = None) -> TrainState:
        """The fresh state of the members whose keys (and swept values) are given (all of them, or
        one device's share)."""
        return TrainState(seeds=jax.vmap(self.init_seed)(keys, hyper), iteration=jnp.zeros((), jnp.int32))

    def init(self) -> TrainState:
        """The state of a fresh run, every member in one program (see initial_state for the placed one)."""
        return self.init_seeds(self.seed_keys(), self.hyper_table())

    @property
    def state_specs(self):
        return self.placement.state_specs(self.state_shapes())

    def state_shapes(self) -> TrainState:
        """ShapeDtypeStructs of the run's state, each with its sharding (checkpoint restore targets)."""
        if self._state_shapes is None:
            self._state_shapes = self.placement.shapes(jax.eval_shape(self.init))
        return self._state_shapes

    def initial_state(self) -> TrainState:
        """The fresh state built on the run's devices, each device initialising its own seeds."""
        keys = self.placement.from_host(jax.device_get(self.seed_keys()))  # every process computes the same keys
        hyper = self.hyper_table()
        hyper = None if hyper is None else self.placement.from_host(jax.device_get(hyper))
        seeds = parallel.P(parallel.SEED)
        return jax.jit(self.placement.per_device(self.init_seeds, (seeds, seeds), self.state_specs))(keys, hyper)

    # ---- per-seed pieces -------------------------------------------------------------------------
    def normalize(self, norm: RunningStats, obs: jax.Array) -> jax.Array:
        return normalizer.normalize(norm, obs) if self.cfg.normalize_obs else obs

    def policy(self, seed: SeedState, deterministic: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """(raw observations, key) -> actions, with this seed's normaliser and agent."""
        agent = self.agent_for(seed.hyper)
        return lambda obs, key: agent.act(seed.agent, self.normalize(seed.norm, obs), key, deterministic)

    def acting(self, ps: PolicyState, deterministic: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """(raw observations, key) -> actions of a loaded policy: deterministic, the agent's
        evaluation action; else a draw from the learned policy itself (no exploration extras)."""
        actor = ActorOnly(actor_params=ps.actor_params)
        if deterministic:
            return lambda obs, key: self.agent.act(actor, self.normalize(ps.norm, obs), key, True)
        return lambda obs, key: self.agent.policy_sample(actor, self.normalize(ps.norm, obs), key)

    def collect(self, seed: SeedState, random_actions: jax.Array, iteration: jax.Array) -> tuple[SeedState, dict]:
        """One step of every training environment (its spares redrawn when `iteration` is a
        multiple of reset_every); the transitions go into the replay buffer."""
        key, act_key, random_key = jax.random.split(seed.key, 3)
        obs = seed.envs.env.obs
        action = jax.lax.cond(
            random_actions,
            lambda: jax.random.uniform(random_key, (self.cfg.num_envs, self.env.action_size), minval=-1.0, maxval=1.0),
            lambda: self.policy(seed, False)(obs, act_key),
        )
        envs, out = self.episode_env.step_batch(seed.envs, action, self.cfg.reset_every, iteration)
        seed = seed.replace(
            envs=envs,
            replay=replay_lib.add(seed.replay, out.transition),
            norm=normalizer.update(seed.norm, out.transition.next_obs),
            key=key,
        )
        info = {"train/return_sum": jnp.sum(out.episode_return), "train/episodes": jnp.sum(out.done.astype(jnp.float32)),
                "train/reused_starts": jnp.sum(out.reused.astype(jnp.float32))}
        return seed, info

    def update_on(self, learner: Agent, norm: RunningStats, agent, batch: Transition, key: jax.Array):
        """One gradient update of `learner` on a raw minibatch, its observations normalised first."""
        batch = batch.replace(obs=self.normalize(norm, batch.obs), next_obs=self.normalize(norm, batch.next_obs))
        return learner.update(agent, batch, key)

    def learn(self, seed: SeedState) -> tuple[SeedState, dict]:
        """G gradient updates of the agent on minibatches from this seed's replay buffer."""
        key, learn_key = jax.random.split(seed.key)
        learner = self.agent_for(seed.hyper)

        def one_update(carry, _):
            agent, k = carry
            k, sample_key, update_key = jax.random.split(k, 3)
            batch = jax.tree.map(self.placement.rows, replay_lib.sample(seed.replay, sample_key, self.cfg.batch_size))
            agent, info = self.update_on(learner, seed.norm, agent, batch, update_key)
            return (agent, k), info

        (agent, _), infos = jax.lax.scan(one_update, (seed.agent, learn_key), None, length=self.cfg.updates_per_iter)
        return seed.replace(agent=agent, key=key), jax.tree.map(jnp.mean, infos)

    def evaluate(self, ps: PolicyState, iteration: jax.Array, num_episodes: int) -> jax.Array:
        """Returns (members, num_episodes) of deterministic-policy episodes on fresh evaluation
        envs, for the policies of every member in `ps`; member i's episodes are drawn from its own
        eval_key folded with the iteration."""
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(ps.eval_key, iteration)
        policy = jax.vmap(lambda p, obs, key: self.acting(p, True)(obs, key))
        return member_rollout_returns(self.env, lambda obs, key: policy(ps, obs, key), keys, num_episodes,
                                      self.episode_env.episode_length)

    # ---- the fused iteration ----------------------------------------------------------------------
    @staticmethod
    def freeze(before: SeedState, after: SeedState, iteration: jax.Array) -> SeedState:
        """One member's guard against non-finite values: when its agent or observation statistics
        stop being finite, they go back to `before` and stay there (frozen_at records the
        iteration); the other members train on."""
        frozen = before.frozen_at >= 0
        healthy = all_finite((after.agent, after.norm))
        keep = frozen | ~healthy
        agent, norm = jax.tree.map(lambda b, a: jnp.where(keep, b, a), (before.agent, before.norm), (after.agent, after.norm))
        frozen_at = jnp.where(frozen | healthy, before.frozen_at, iteration)
        return after.replace(agent=agent, norm=norm, frozen_at=frozen_at)

    def iterate(self, ts: TrainState) -> tuple[TrainState, dict]:
        """One iteration for every member: collect, and learn once the replay holds min_replay; a
        member whose state turns non-finite is frozen (Loop.freeze)."""
        random_actions = ts.seeds.replay.size[0] < self.cfg.min_replay
        seeds, info = jax.vmap(self.collect, in_axes=(0, None, None))(ts.seeds, random_actions, ts.iteration)

        ready = seeds.replay.size[0] >= self.cfg.min_replay
        learn = jax.vmap(self.learn)
        learn_shape = jax.eval_shape(learn, seeds)[1]
        skip = lambda s: (s, jax.tree.map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), learn_shape))
        seeds, learn_info = jax.lax.cond(ready, learn, skip, seeds)

        it = ts.iteration + 1
        was_frozen = ts.seeds.frozen_at >= 0  # (members,): a frozen member's losses are not reported
        learn_info = jax.tree.map(lambda x: jnp.where(was_frozen, jnp.nan, x), learn_info)
        seeds = jax.vmap(self.freeze, in_axes=(0, 0, None))(ts.seeds, seeds, it)
        learned = jnp.broadcast_to(ready, info["train/episodes"].shape) & ~was_frozen  # (members,)
        metrics = {**info, **learn_info, "check/learned": learned}
        return TrainState(seeds=seeds, iteration=it), metrics

    def make_train_chunk(self, max_iters: int | None = None) -> Callable[..., tuple[TrainState, dict]]:
        """jit((state, n) -> (state, metrics)): n iterations (a traced integer, at most `max_iters`,
        default chunk_iters; omitted: max_iters), so one compiled program serves every chunk length.

        The input state is donated; metrics are stacked per iteration with shape (max_iters, seeds),
        rows past n filled with NaN (False for flags), except `check/state_finite` (seeds,): whether
        every parameter, optimiser and temperature value and the observation statistics of each
        seed are finite at the end of the chunk.
        """
        length = max_iters or self.cfg.chunk_iters

        def chunk(ts: TrainState, n: jax.Array) -> tuple[TrainState, dict]:
            shapes = jax.eval_shape(self.iterate, ts)[1]
            blank = lambda x: jnp.zeros((length,) + x.shape, x.dtype) if x.dtype == jnp.bool_ else \
                jnp.full((length,) + x.shape, jnp.nan, x.dtype)
            buf = jax.tree.map(blank, shapes)

            def body(carry):
                i, ts, buf = carry
                ts, m = self.iterate(ts)
                buf = jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, i, 0), buf, m)
                return i + 1, ts, buf

            n = jnp.minimum(n, length)
            _, ts, metrics = jax.lax.while_loop(lambda c: c[0] < n, body, (jnp.zeros((), jnp.int32), ts, buf))
            metrics["check/state_finite"] = jax.vmap(all_finite)((ts.seeds.agent, ts.seeds.norm))
            return ts, metrics

        shapes = jax.eval_shape(chunk, self.state_shapes(), jnp.zeros((), jnp.int32))[1]
        seed_axis = lambda x: parallel.P(None, parallel.SEED) if x.ndim == 2 else parallel.P(parallel.SEED)
        metric_specs = jax.tree.map(seed_axis, shapes)  # (iterations, seeds); check/state_finite (seeds,)
        jitted = jax.jit(self.placement.per_device(chunk, (self.state_specs, parallel.P()), (self.state_specs, metric_specs)),
                         donate_argnums=0)
        full = jnp.asarray(length, jnp.int32)  # on the device already: a full chunk moves nothing

        def run(ts: TrainState, n: int | jax.Array | None = None):
            return jitted(ts, full if n is None else jnp.asarray(n, jnp.int32))

        run.lower = lambda ts: jitted.lower(ts, full)
        run._cache_size = jitted._cache_size
        return run

    def make_evaluate_all(self, num_episodes: int) -> Callable[[TrainState], jax.Array]:
        """jit(state -> returns (seeds, num_episodes)) at the state's own iteration: the same
        episodes as the run's evaluation at that iteration when num_episodes == cfg.eval_episodes."""

        def evaluate_all(ts: TrainState) -> jax.Array:
            return self.evaluate(policy_state(ts.seeds), ts.iteration, num_episodes)

        return jax.jit(self.placement.per_device(evaluate_all, (self.state_specs,), parallel.P(parallel.SEED)))

    def make_evaluate_policies(self, num_episodes: int) -> Callable[[PolicyState, jax.Array], jax.Array]:
        """jit((policies of every member, iteration) -> returns (members, num_episodes)): the same
        episodes as make_evaluate_all on the state they came from."""
        seeds = parallel.P(parallel.SEED)
        evaluate = lambda ps, it: self.evaluate(ps, it, num_episodes)  # noqa: E731
        return jax.jit(self.placement.per_device(evaluate, (seeds, parallel.P()), seeds))


def build_loop(cfg: TrainConfig, placement: parallel.Placement | None = None) -> Loop:
    """The env, agent and loop of a config (nothing is compiled); its seeds placed by `placement`
    (default: over the devices `cfg.devices` asks for, auto: all). A config with auto options left
    is resolved here with the env's sizes; train, evaluate and study pass one resolved already
    (train.resolve_config: the only resolution of their command)."""
    env = make_env(cfg.env, cfg.physics)
    if unresolved(cfg):
        cfg = resolve(cfg, env.obs_size, env.action_size)
    return Loop(cfg, env, make_agent(cfg, env.obs_size, env.action_size), placement)
