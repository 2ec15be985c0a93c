"""`python -m mjxflow.bench`: throughput, the floor under it, inference latency, seed sweeps.

Every measurement runs after compilation and warm-up, repeats, and reports the median with the
spread (min-max). Tables are printed as markdown and saved to runs/bench/<name>.json and .md.

- train:   env steps/s and gradient updates/s of the fused training loop, per agent.
- floor:   the raw stepping rate of the same batched env (random actions, envs well past their
           resets) and the cost of the agent's updates alone; overhead ratio = time of a training
           iteration / (time of its env step + time of its updates). 1.0: the loop adds nothing.
           The loop and its three parts are timed side by side, round by round (at least
           FLOOR_ROUNDS rounds), and each ratio is the median of its per-round ratios.
- latency: one jitted action batch (1 and 4096 states by default), deterministic policy; FPMD-R
           also with latency_steps (20) Euler steps, the sampler its paper trains with.
- sweep:   wall time of S vmapped seeds against S times one seed (efficiency = S * t(1) / t(S)).
- devices: one seed sweep (S = every device, or --seeds' largest value if larger) on 1, 2, ... all
           devices (each count that splits S), then one seed with its envs and minibatch split
           (--shard envs) over each count that divides --num-envs and --batch-size: env steps/s of
           all seeds, the speed-up over one device and the scaling efficiency (speed-up / devices),
           per --shard. Not in the default set.
- headline: the config `python -m mjxflow.train --env E --agent A --num-envs N` resolves to, for a
           few iterations: env steps/s, updates/s, one evaluation's time and its share of a whole
           run (all its evaluations against all its iterations), and peak memory (the device's
           peak_bytes_in_use where it reports one, else the process's peak resident memory).
- update:  one jitted gradient update (critic, actor and temperature: the agent's whole `update`)
           per agent and --batch-size, on a random batch after compilation, median of repeats, and
           its ratio to SAC's at the same batch, measured in the same run (not in the default set).
           SMFP also gets a row `smfp-full`: its full mirror-descent step and conditional surrogate.
- peer:    brax's own SAC trainer (brax.training.agents.sac) on the same env, num_envs, batch size
           and updates per iteration, against our SAC. brax.training needs jax < 0.8, so it runs in
           a second virtual environment (peer_venv, which you create once from
           benchmarks/peer/requirements.txt: see docs/BENCHMARKS.md) and reports back as JSON; the
           project's jax is untouched. Without that environment the section says how to make it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
import typing
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from mjxflow import rundir
from mjxflow.agents import check_agent_name, make_agent, registry
from mjxflow.loop import build_loop
from mjxflow.parallel import working_counts
from mjxflow.cli import enable_compile_cache, parse, run_command
from mjxflow.errors import ConfigError
from mjxflow import config
from mjxflow.config import EnvName, TrainConfig
from mjxflow.envs import check_env_name, check_physics, make_env
from mjxflow.scale import resolve
from mjxflow import roofline
from mjxflow.roofline import AcceleratorName

Measure = Literal["train", "floor", "latency", "sweep", "peer", "headline", "update", "devices", "roofline"]  # = SECTIONS' keys
MEASURES: tuple[str, ...] = typing.get_args(Measure)
DEFAULT_MEASURES: tuple[Measure, ...] = ("train", "floor", "latency", "sweep", "peer")
CriticVariant = Literal["ln", "c51", "wide"]  # = CRITIC_VARIANTS' keys


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark the fused loop, its floor, inference latency and seed sweeps side by side."""

    env: EnvName = "inverted_pendulum"
    """Environment name (see mjxflow.envs.ENV_NAMES)."""
    physics: Literal["jax", "warp"] = "jax"
    """MJX implementation of a Playground task: jax or warp (see `train --physics`)."""
    num_envs: tuple[int, ...] = (16,)
    """Training environment counts to measure (each is its own row)."""
    agents: tuple[str, ...] = ()
    """Agents to measure."""  # bench_config_class() types it: the registered agents, all by default
    seeds: tuple[int, ...] = (1, 2, 4, 8)
    """Seed counts S of the seed-sweep table."""
    sweep_agent: str = "sac"
    """Agent of the seed-sweep table."""
    measure: tuple[Measure, ...] = DEFAULT_MEASURES
    """Which tables: train, floor, latency, sweep, peer; headline (not in the default set) runs the
    full auto-scaled training config of each --num-envs and agent (as `mjxflow.train` would: its
    batch, updates, replay, evaluation episodes and seeds; --batch-size, --updates-per-iter and
    --hidden do not apply) for --iters x --repeats timed iterations and one evaluation; roofline
    (not in the default set) counts what one iteration of that same config computes and moves, part
    by part, and the least time it takes on --accelerator (mjxflow.roofline; nothing is run)."""
    batch_size: tuple[int, ...] = (256,)
    """Minibatch sizes: the update table measures each; the other tables use the first."""
    updates_per_iter: int = 4
    """Gradient updates per iteration."""
    iters: int = 20
    """Iterations per timed chunk."""
    repeats: int = 3
    """Timed chunks (or calls) per measurement; the median is reported."""
    latency_batch: tuple[int, ...] = (1, 4096)
    """State batch sizes of the inference-latency table."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of every actor and critic network."""
    critic_variants: tuple[CriticVariant, ...] = ()
    """Critic variants the update table also times with SAC, each beside SAC's default critic: ln
    (LayerNorm), c51 (distributional, 101 atoms, the auto range), wide (1024 x 1024)."""
    fpmd_particles: int = 32
    """FPMD particles N (the paper's default; lower it for a cheaper CPU run)."""
    fpmd_train_steps: int = 20
    """FPMD-R Euler steps K of its particle sampling in training."""
    latency_steps: int = 20
    """Euler steps of FPMD-R's multi-step row in the latency table (its paper's K)."""
    accelerator: AcceleratorName = "h200"
    """Accelerator of the roofline table: h200 or h100-sxm (peak dense TF32 rate and memory
    bandwidth from their datasheets, mjxflow.roofline.ACCELERATORS)."""
    peak_tflops: float | None = None
    """The roofline's peak rate in TFLOPS instead of the accelerator's."""
    bandwidth_tbps: float | None = None
    """The roofline's memory bandwidth in TB/s instead of the accelerator's."""
    peer_venv: str = "~/.cache/mjxflow/peer-venv"
    """Virtual environment of brax's trainer (create it from benchmarks/peer/requirements.txt)."""
    peer_timeout: int = 1800
    """Seconds allowed for setting up and running the peer, per num_envs setting."""
    name: str | None = None
    """Output name under out_dir; default: ENV-TIMESTAMP."""
    out_dir: str = "runs/bench"
    """Folder for <name>.json and <name>.md."""
    compile_cache: str | None = "~/.cache/mjxflow/jax"
    """Folder of JAX's persistent compilation cache (None turns it off)."""


def validate(cfg: BenchConfig) -> None:
    try:
        check_env_name(cfg.env)
        check_physics(cfg.env, cfg.physics)
        for a in cfg.agents + (cfg.sweep_agent,):
            check_agent_name(a)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for m in cfg.measure:
        if m not in MEASURES:
            raise ConfigError(f"unknown measure {m!r}; valid: {', '.join(MEASURES)}")
    for v in cfg.critic_variants:
        if v not in CRITIC_VARIANTS:
            raise ConfigError(f"unknown critic variant {v!r}; valid: {', '.join(CRITIC_VARIANTS)}")
    for name in ("num_envs", "seeds", "latency_batch", "batch_size"):
        values = getattr(cfg, name)
        if not values or any(v <= 0 for v in values):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive integers, got {values}")
    for name in ("updates_per_iter", "iters", "repeats", "fpmd_particles", "fpmd_train_steps", "latency_steps",
                 "peer_timeout"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    from mjxflow.train import INT32_MAX

    for name in ("num_envs", "seeds", "latency_batch", "batch_size", "updates_per_iter", "iters", "repeats",
                 "fpmd_particles", "fpmd_train_steps", "latency_steps"):
        value = getattr(cfg, name)
        if max(value if isinstance(value, tuple) else (value,)) > INT32_MAX:
            raise ConfigError(f"--{name.replace('_', '-')} must be at most {INT32_MAX:,} (2^31 - 1), got {value}")
    for name in ("peak_tflops", "bandwidth_tbps"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if cfg.name is not None and (cfg.name in ("", ".", "..") or "/" in cfg.name or os.sep in cfg.name):
        raise ConfigError(f"--name must be a name, not a path, got {cfg.name!r} (use --out-dir for the folder)")
    check_train_configs(cfg)


def check_train_configs(cfg: BenchConfig) -> None:
    """Train's own checks (mjxflow.train.resolve_config) on every training config the tables
    build, so that a bad --hidden, --fpmd-particles or batch is the one-line error train gives."""
    from mjxflow.train import resolve_config

    configs = [(f"--agents {a} --num-envs {n} --batch-size {b}",
                train_config(dataclasses.replace(cfg, batch_size=(b,)), a, n))
               for a in cfg.agents for n in cfg.num_envs for b in cfg.batch_size]
    if "sweep" in cfg.measure:
        configs += [(f"--sweep-agent {cfg.sweep_agent} --seeds {s}", train_config(cfg, cfg.sweep_agent, cfg.num_envs[0], s))
                    for s in cfg.seeds]
    for where, tc in configs:
        try:
            resolve_config(tc)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None


def train_config(cfg: BenchConfig, agent: str, num_envs: int, num_seeds: int = 1) -> TrainConfig:
    """A run whose replay is past its minimum fill after one chunk and that never evaluates."""
    base, batch = config.TrainConfig(), cfg.batch_size[0]
    actors = {s.group: dataclasses.replace(getattr(base, s.group), actor_hidden=cfg.hidden) for s in registry.specs()
              if hasattr(getattr(base, s.group), "actor_hidden")}  # --hidden: every agent's actor
    if "fpmd" in actors:
        actors["fpmd"] = dataclasses.replace(actors["fpmd"], num_particles=cfg.fpmd_particles, train_steps=cfg.fpmd_train_steps)
    return dataclasses.replace(
        base, env=cfg.env, physics=cfg.physics, agent=agent, num_envs=num_envs, num_seeds=num_seeds, batch_size=batch,
        updates_per_iter=cfg.updates_per_iter, min_replay=max(batch, num_envs),
        replay_size=max(10_000, 4 * cfg.iters * num_envs), total_steps=10**9,
        critic=dataclasses.replace(base.critic, hidden=cfg.hidden), **actors,
        compile_cache=None,
    )


def peak_memory() -> tuple[int | None, str]:
    """Peak bytes in use on the device (GPU) or, where it keeps no statistics, the process's peak
    resident memory (CPU)."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "host RSS"


def headline_loop(cfg: BenchConfig, agent: str, num_envs: int):
    """The loop of `mjxflow.train --env E --agent A --num-envs N` with every other option auto (the
    headline and roofline tables)."""
    return build_loop(config.TrainConfig(env=cfg.env, agent=agent, num_envs=num_envs, compile_cache=None))


def measure_headline(cfg: BenchConfig, agent: str, num_envs: int, log=print) -> dict:
    """The resolved training config of (env, agent, num_envs): warm-up past the replay's minimum
    fill, then timed chunks of cfg.iters iterations and one timed evaluation."""
    from mjxflow.scale import derived

    loop = headline_loop(cfg, agent, num_envs)
    tc = loop.cfg
    fill = -(-tc.min_replay // num_envs) + 1  # the first iteration that learns, included
    chunk = loop.make_train_chunk(max(fill, cfg.iters))  # one program for the warm-up and the timed chunks
    timed = lambda st: chunk(st, cfg.iters)
    t = time.perf_counter()
    state, _ = jax.block_until_ready(chunk(loop.initial_state(), fill))
    state, _ = jax.block_until_ready(timed(state))  # past the envs' first steps
    evaluate = loop.make_evaluate_all(tc.eval_episodes)
    jax.block_until_ready(evaluate(state))
    compile_s = time.perf_counter() - t
    run = Stateful(timed, state)
    times = time_calls(run, cfg.repeats)
    eval_s = float(np.median(time_calls(lambda: evaluate(run.state), max(1, min(cfg.repeats, 2)))))
    per_iter = float(np.median(times)) / cfg.iters
    d = derived(tc, loop.env.obs_size, loop.env.action_size)
    train_total, eval_total = per_iter * d["iterations"], eval_s * (d["num_evals"] + 1)  # + the initial one
    peak, where = peak_memory()
    return {
        "agent": agent, "num_envs": num_envs, "seeds": tc.num_seeds, "batch_size": tc.batch_size,
        "updates_per_iter": tc.updates_per_iter, "sample_reuse": d["sample_reuse"], "eval_episodes": tc.eval_episodes,
        "compile_s": compile_s,
        "env_steps_per_s": rate_spread(times, cfg.iters * num_envs * tc.num_seeds),
        "updates_per_s": rate_spread(times, cfg.iters * tc.updates_per_iter * tc.num_seeds),
        "iteration_s": per_iter, "eval_s": eval_s, "eval_share": eval_total / (eval_total + train_total),
        "run_hours": (train_total + eval_total) / 3600, "iterations": d["iterations"], "num_evals": d["num_evals"],
        "peak_bytes": peak, "peak_where": where,
    }


def headline_table(rows: list[dict]) -> str:
    lines = ["| agent | envs x seeds | batch x updates (reuse) | env steps/s (all seeds) | updates/s | one evaluation (s) | "
             "evaluation share of a run | whole run (h) | peak memory |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['agent']} | {r['num_envs']} x {r['seeds']} | {r['batch_size']} x {r['updates_per_iter']} ({r['sample_reuse']:g}) | "
            f"{_fmt_rate(r['env_steps_per_s'])} | {_fmt_rate(r['updates_per_s'])} | {r['eval_s']:.1f} "
            f"({r['eval_episodes']} episodes) | {100 * r['eval_share']:.0f}% of {r['num_evals'] + 1} | {r['run_hours']:.2f} | "
            f"{r['peak_bytes'] / 2**30:.2f} GiB ({r['peak_where']}) |")
    return "\n".join(lines)


def time_calls(fn: Callable[[], object], repeats: int) -> np.ndarray:
    """Seconds of `repeats` calls of fn (each blocked until its results are ready)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return np.array(times)


def rate_spread(times: np.ndarray, work: float = 1.0) -> dict:
    """Median and spread of a rate (work / time) or, with work=1, of a duration."""
    rates = work / times
    return {"median": float(np.median(rates)), "min": float(np.min(rates)), "max": float(np.max(rates))}


class Stateful:
    """A donated state threaded through repeated calls of a jitted step."""

    def __init__(self, fn, state):
        self.fn, self.state = fn, state

    def __call__(self):
        out = self.fn(self.state)
        self.state = out[0] if isinstance(out, tuple) else out
        return self.state


def measure_training(cfg: BenchConfig, agent: str, num_envs: int, num_seeds: int = 1, with_floor: bool = False,
                     devices: int | None = 1, shard: str = "seeds") -> dict:
    """Fused-loop throughput; with_floor adds the env-only and updates-only times per iteration.
    The seeds (or with shard="envs" each seed's envs and minibatch) are placed on `devices`
    devices (1 by default; None: every device that splits them)."""
    tc = dataclasses.replace(train_config(cfg, agent, num_envs, num_seeds), devices=devices, shard=shard)
    if shard == "envs":  # replay rows of one transition per env: a whole number of rows
        tc = dataclasses.replace(tc, replay_size=-(-tc.replay_size // num_envs) * num_envs)
    loop = build_loop(tc)
    chunk = loop.make_train_chunk(cfg.iters)
    state = loop.initial_state()
    t = time.perf_counter()
    state, _ = jax.block_until_ready(chunk(state))  # compile, fill the replay past its minimum
    compile_s = time.perf_counter() - t
    run = Stateful(chunk, state)
    run()  # envs leave their reset states; learning is on from here
    if with_floor:  # the loop and its parts timed side by side, round by round
        seeds = run.state.seeds
        parts = [_env_only_runner(loop, seeds, cfg), _env_only_runner(loop, seeds, cfg, raw=True),
                 _updates_only_runner(loop, seeds, cfg)]
        all_times = time_interleaved([run] + parts, max(cfg.repeats, FLOOR_ROUNDS))
        times, (env_t, raw_t, upd_t) = all_times[0], all_times[1:] / cfg.iters
    else:
        times = time_calls(run, cfg.repeats)
    per_iter = float(np.median(times)) / cfg.iters
    out = {
        "agent": agent, "num_envs": num_envs, "seeds": num_seeds, "compile_s": compile_s,
        "env_steps_per_s": rate_spread(times, cfg.iters * num_envs * num_seeds),
        "updates_per_s": rate_spread(times, cfg.iters * cfg.updates_per_iter * num_seeds),
        "iteration_s": per_iter,
    }
    if with_floor:
        loop_t = times / cfg.iters
        env_s, raw_s, upd_s = (float(np.median(t)) for t in (env_t, raw_t, upd_t))
        rounds = {"loop": loop_t, "env": env_t, "raw_env": raw_t, "updates": upd_t}  # seconds per iteration, per round
        out.update(env_step_s=env_s, raw_env_step_s=raw_s, updates_s=upd_s,
                   floor_rounds={k: v.tolist() for k, v in rounds.items()},
                   env_over_raw=float(np.median(env_t / raw_t)),  # per round: a slow spell cancels
                   overhead_ratio=float(np.median(loop_t / (env_t + upd_t))),
                   raw_env_steps_per_s=num_envs * num_seeds / raw_s)
    return out


FLOOR_ROUNDS = 15  # rounds of the floor's side-by-side timing at least (each round: loop, env, raw env, updates)


def _env_only_runner(loop, seeds, cfg: BenchConfig, raw: bool = False) -> Stateful:
    """A warmed call of `cfg.iters` steps of every env of every seed with random actions: the
    loop's env step (time limit, resets and spares as the run has them) or, `raw`, the bare batched
    env.step (no episode wrapper, no resets). It works on a copy of the seeds' envs."""
    ep, every = loop.episode_env, loop.cfg.reset_every
    shape = seeds.envs.env.obs.shape[:2] + (loop.env.action_size,)  # (members, envs, action)

    def step(envs, actions, t):  # -> (envs, rewards)
        if raw:
            nxt = jax.vmap(jax.vmap(loop.env.step))(envs, actions)
            return nxt, nxt.reward
        envs, out = jax.vmap(lambda s, act: ep.step_batch(s, act, every, t))(envs, actions)
        return envs, out.transition.reward

    def steps(carry):
        envs, key = carry

        def body(c, t):
            envs, key = c
            key, k = jax.random.split(key)
            actions = jax.random.uniform(k, shape, minval=-1.0, maxval=1.0)
            envs, r = step(envs, actions, t)
            return (envs, key), jnp.sum(r)

        (envs, key), r = jax.lax.scan(body, (envs, key), jnp.arange(cfg.iters))
        return (envs, key), r

    fn = jax.jit(steps, donate_argnums=0)
    envs = seeds.envs.env if raw else seeds.envs
    run = Stateful(fn, (jax.tree.map(jnp.copy, envs), jax.random.PRNGKey(0)))
    run()  # two warm-ups: the key comes back with the seeds' sharding, a second program
    jax.block_until_ready(run())
    return run


def _updates_only_runner(loop, seeds, cfg: BenchConfig) -> Stateful:
    """A warmed call of `cfg.iters` iterations' G gradient updates alone (every seed), on a copy of
    the seeds (their filled replay)."""
    learn = jax.vmap(loop.learn)

    def body(seeds):
        def one(s, _):
            s, info = learn(s)
            return s, info["critic/loss"] if "critic/loss" in info else 0.0
        return jax.lax.scan(one, seeds, None, length=cfg.iters)

    fn = jax.jit(body, donate_argnums=0)
    run = Stateful(fn, jax.tree.map(jnp.copy, seeds))
    run()  # warm-up: whatever comes back with other shardings compiles here
    jax.block_until_ready(run())
    return run


def measure_latency(cfg: BenchConfig, agent: str, batch: int, steps: int | None = None) -> dict:
    """Seconds per jitted deterministic action batch; `steps` overrides FPMD's sampler steps."""
    env = make_env(cfg.env, cfg.physics)
    ag = make_agent(resolve(train_config(cfg, agent, 1), env.obs_size, env.action_size), env.obs_size, env.action_size)
    state = ag.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (batch, env.obs_size))
    if steps is None:
        fn = jax.jit(lambda st, o, k: ag.act(st, o, k, True))
    else:
        fn = jax.jit(lambda st, o, k: ag.sample_x(st.actor_params, o, k, steps))
    key = jax.random.PRNGKey(2)
    jax.block_until_ready(fn(state, obs, key))
    calls = max(20, cfg.repeats)
    times = time_calls(lambda: fn(state, obs, key), calls)
    return {"agent": agent, "batch": batch, "nfe": steps or 1, "ms": 1e3 * float(np.median(times)),
            "ms_min": 1e3 * float(np.min(times)), "ms_max": 1e3 * float(np.max(times))}


# The update table's variants beside each agent's defaults: SMFP's full mirror-descent step (every
# particle of every state regressed, the conditional entropy surrogate), the reference of its cheap default.
UPDATE_VARIANTS = {"smfp": {"smfp-full": dict(md_samples=0, md_states=1.0, entropy_draws=1)}}
# Critic variants the update table times with SAC when asked (--critic-variants), beside SAC's
# default critic: what each of the critic recipes compared on Ant costs per update.
CRITIC_VARIANTS = {"ln": dict(layer_norm=True), "c51": dict(distributional=True), "wide": dict(hidden=(1024, 1024))}


UPDATE_CALLS = 21  # timed calls of each update at least: one update is milliseconds, its median needs many


def update_runner(cfg: BenchConfig, agent: str, batch: int, smfp: dict | None = None,
                  critic: dict | None = None) -> Stateful:
    """One jitted `update` (critic, actor, temperature) of `agent` on a random batch of `batch`
    transitions of the env's sizes, compiled and called once: each later call runs on the state
    the last one returned. `smfp` overrides SMFP options, `critic` the critic's (a distributional
    critic gets the auto value range of `train`)."""
    from mjxflow.replay import Transition

    env = make_env(cfg.env, cfg.physics)
    tc = train_config(cfg, agent, 1)
    tc = dataclasses.replace(tc, critic=dataclasses.replace(tc.critic, **(critic or {})),
                             smfp=dataclasses.replace(tc.smfp, **(smfp or {})))
    ag = make_agent(resolve(tc, env.obs_size, env.action_size), env.obs_size, env.action_size)  # train's auto values
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    data = Transition(
        obs=jax.random.normal(k[0], (batch, env.obs_size)), action=jax.random.uniform(k[1], (batch, env.action_size), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (batch,)), next_obs=jax.random.normal(k[3], (batch, env.obs_size)), terminated=jnp.zeros(batch),
    )
    step = jax.jit(lambda st: ag.update(st, data, k[0]))  # one key serves: the key does not change the cost
    return Stateful(step, jax.block_until_ready(step(ag.init(jax.random.PRNGKey(1))))[0])


def time_interleaved(runs: list[Callable[[], object]], calls: int) -> np.ndarray:
    """Seconds of each of `runs`, (len(runs), calls): `calls` rounds, each calling every run once in
    turn, so that a slow spell of the machine falls on all of them alike and their ratios hold."""
    times = np.zeros((len(runs), calls))
    for c in range(calls):
        for i, run in enumerate(runs):
            times[i, c] = time_calls(run, 1)[0]
    return times


def measure_updates(cfg: BenchConfig, log=print) -> list[dict]:
    """The update of every agent and batch size, SAC first (measured even when not asked for: it
    is the reference of the ratio), each agent's variants after it: SMFP's full step, and SAC with
    each of --critic-variants (`sac [c51]`). A batch size's rows are timed side by side
    (time_interleaved, max(--repeats, UPDATE_CALLS) rounds): the median of each, and its ratio to SAC's."""
    agents = ("sac",) + tuple(a for a in cfg.agents if a != "sac")
    variants = {a: [(a, None, None)] + [(label, opts, None) for label, opts in UPDATE_VARIANTS.get(a, {}).items()]
                for a in agents}
    variants["sac"] += [(f"sac [{v}]", None, CRITIC_VARIANTS[v]) for v in cfg.critic_variants]
    rows = []
    for batch in cfg.batch_size:
        labels, runs = [], []
        for a in agents:
            for label, smfp, critic in variants[a]:
                log(f"  compiling one update of {label} at batch {batch} ...", flush=True)
                labels.append(label)
                runs.append(update_runner(cfg, a, batch, smfp, critic))
        log(f"  timing them side by side at batch {batch} ...", flush=True)
        times = time_interleaved(runs, max(cfg.repeats, UPDATE_CALLS))
        sac_s = float(np.median(times[0]))
        for label, t in zip(labels, times):
            med = float(np.median(t))
            rows.append({"agent": label, "batch_size": batch, "seconds": med, "seconds_min": float(np.min(t)),
                         "seconds_max": float(np.max(t)), "ratio_to_sac": med / sac_s})
    return rows


def update_table(rows: list[dict]) -> str:
    lines = ["| agent | batch | ms per update (min-max) | / SAC |", "| --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['agent']} | {r['batch_size']} | {1e3 * r['seconds']:.1f} ({1e3 * r['seconds_min']:.1f}-"
                     f"{1e3 * r['seconds_max']:.1f}) | {r['ratio_to_sac']:.2f} |")
    return "\n".join(lines)


def _fmt_rate(s: dict) -> str:
    return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def train_table(rows: list[dict]) -> str:
    lines = ["| agent | num_envs | env steps/s | updates/s | compile (s) |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['agent']} | {r['num_envs']} | {_fmt_rate(r['env_steps_per_s'])} | "
                     f"{_fmt_rate(r['updates_per_s'])} | {r['compile_s']:.1f} |")
    return "\n".join(lines)


def md_table(columns: list[str], rows: list[list]) -> str:
    """A markdown table: a header of `columns`, then one line per row of already formatted cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def floor_table(rows: list[dict]) -> str:
    return md_table(["agent", "num_envs", "raw env steps/s", "raw env step (ms/iter)", "env step (ms/iter)", "env / raw",
                     "updates (ms/iter)", "loop (ms/iter)", "overhead ratio"],
                    [[r["agent"], r["num_envs"], f"{r['raw_env_steps_per_s']:,.0f}", f"{1e3 * r['raw_env_step_s']:.2f}",
                      f"{1e3 * r['env_step_s']:.2f}", f"{r['env_over_raw']:.2f}", f"{1e3 * r['updates_s']:.2f}",
                      f"{1e3 * r['iteration_s']:.2f}", f"{r['overhead_ratio']:.2f}"] for r in rows])


def latency_table(rows: list[dict]) -> str:
    sac = {r["batch"]: r["ms"] for r in rows if r["agent"] == "sac" and r["nfe"] == 1}
    lines = ["| agent | NFE | states | ms per action batch (min-max) | / SAC |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        ratio = f"{r['ms'] / sac[r['batch']]:.2f}" if r["batch"] in sac else "-"
        lines.append(f"| {r['agent']} | {r['nfe']} | {r['batch']} | {r['ms']:.3f} ({r['ms_min']:.3f}-{r['ms_max']:.3f}) | {ratio} |")
    return "\n".join(lines)


def measure_devices(cfg: BenchConfig, log=print) -> list[dict]:
    """The same seed sweep on each device count that splits it, then one seed's envs and minibatch
    split over each device count that divides both (--shard envs; see the module docstring)."""
    seeds = max(jax.device_count(), max(cfg.seeds))
    n, batch = cfg.num_envs[0], cfg.batch_size[0]
    plans = [("seeds", seeds, d) for d in working_counts(seeds, jax.device_count())]
    plans += [("envs", 1, d) for d in working_counts(n, jax.device_count()) if batch % d == 0]
    rows = []
    for shard, num_seeds, d in plans:
        what = f"{num_seeds} seeds" if shard == "seeds" else "1 seed's envs"
        log(f"  measuring {what} of {cfg.sweep_agent} at {n} envs on {d} device{'s' * (d > 1)} ...", flush=True)
        r = measure_training(cfg, cfg.sweep_agent, n, num_seeds, devices=d, shard=shard)
        r["devices"], r["shard"] = d, shard
        rows.append(r)
    for shard in ("seeds", "envs"):
        mine = [r for r in rows if r["shard"] == shard]
        for r in mine:
            r["speedup"] = r["env_steps_per_s"]["median"] / mine[0]["env_steps_per_s"]["median"]
            r["efficiency"] = r["speedup"] / r["devices"]
    return rows


def devices_table(rows: list[dict]) -> str:
    return md_table(["--shard", "devices", "seeds", "env steps/s (all seeds)", "speed-up over 1 device", "scaling efficiency"],
                    [[r["shard"], r["devices"], r["seeds"], _fmt_rate(r["env_steps_per_s"]), f"{r['speedup']:.2f}",
                      f"{r['efficiency']:.2f}"] for r in rows])


def sweep_table(rows: list[dict]) -> str:
    t1 = next((r["chunk_s"] for r in rows if r["seeds"] == 1), None)
    lines = ["| seeds S | wall per chunk (s) | S x one seed (s) | efficiency S*t(1)/t(S) | env steps/s (all seeds) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        alone = f"{r['seeds'] * t1:.2f}" if t1 else "-"
        eff = f"{r['seeds'] * t1 / r['chunk_s']:.2f}" if t1 else "-"
        lines.append(f"| {r['seeds']} | {r['chunk_s']:.2f} | {alone} | {eff} | {r['env_steps_per_s']['median']:,.0f} |")
    return "\n".join(lines)


# brax's trainer and its pinned requirements live beside the package, in the repository
PEER_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "peer")


def peer_python(cfg: BenchConfig, log=print) -> str:
    """The peer environment's interpreter (set up beforehand, from benchmarks/peer/requirements.txt:
    nothing is installed at run time)."""
    venv = os.path.expanduser(cfg.peer_venv)
    python = os.path.join(venv, "bin", "python")
    if not os.path.isdir(PEER_DIR):
        raise OSError(f"{PEER_DIR} is missing: the peer runs from a checkout of the repository")
    if not os.path.exists(python):
        requirements = os.path.relpath(os.path.join(PEER_DIR, "requirements.txt"))
        raise OSError(f"no peer environment at {venv}; create it once with: python3 -m venv {venv} && "
                      f"{python} -m pip install -r {requirements}")
    return python


def measure_peer(cfg: BenchConfig, ours: list[dict], log=print) -> list[dict]:
    """brax's SAC against ours at each num_envs; `ours` may already hold our SAC's train rows."""
    rows = []
    try:
        python = peer_python(cfg, log)
    except (subprocess.SubprocessError, OSError) as e:
        log(f"peer: unavailable, the peer environment could not be set up ({e})")
        return rows
    for n in cfg.num_envs:
        mine = next((r for r in ours if r["agent"] == "sac" and r["num_envs"] == n), None) or measure_training(cfg, "sac", n)
        cmd = [python, os.path.join(PEER_DIR, "brax_sac.py"), "--env", cfg.env, "--num-envs", str(n),
               "--batch-size", str(cfg.batch_size[0]), "--updates-per-iter", str(cfg.updates_per_iter),
               "--iters", str(cfg.iters), "--repeats", str(cfg.repeats), "--hidden", *map(str, cfg.hidden)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=cfg.peer_timeout, env=env)
        except subprocess.TimeoutExpired:
            log(f"peer: brax's SAC at {n} envs ran past {cfg.peer_timeout} s")
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            log(f"peer: brax's SAC at {n} envs failed: {tail}")
            continue
        theirs = json.loads(lines[-1])
        sps = np.array(theirs["env_steps_per_s"])
        brax_rate = {"median": float(np.median(sps)), "min": float(np.min(sps)), "max": float(np.max(sps))}
        rows.append({"num_envs": n, "ours": mine["env_steps_per_s"], "brax": brax_rate,
                     "ratio": mine["env_steps_per_s"]["median"] / brax_rate["median"], "brax_jax": theirs["jax"]})
    return rows


def peer_table(rows: list[dict]) -> str:
    lines = ["| num_envs | our SAC env steps/s | brax SAC env steps/s | ours / brax |", "| --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['num_envs']} | {_fmt_rate(r['ours'])} | {_fmt_rate(r['brax'])} | {r['ratio']:.2f} |")
    return "\n".join(lines)


# ---- the sections: each measures its rows (cfg, log, the rows of earlier sections) ----------------

def _training_rows(cfg: BenchConfig, log, done: dict) -> list[dict]:
    """The fused loop of every agent at every num_envs, its floor too when asked: train and floor
    report the same measurements, made once."""
    if "_training" not in done:
        done["_training"] = []
        for n in cfg.num_envs:
            for a in cfg.agents:
                log(f"  measuring the training loop of {a} at {n} envs ...", flush=True)
                done["_training"].append(measure_training(cfg, a, n, 1, with_floor="floor" in cfg.measure))
    return done["_training"]


def _train(cfg: BenchConfig, log, done: dict):
    rows = _training_rows(cfg, log, done)
    return "Training throughput (fused loop, one seed)", rows, train_table(rows)


def _floor(cfg: BenchConfig, log, done: dict):
    rows = _training_rows(cfg, log, done)
    return "The floor: env stepping alone, updates alone, fused-loop overhead ratio", rows, floor_table(rows)


def _latency(cfg: BenchConfig, log, done: dict):
    rows = []
    for b in cfg.latency_batch:
        for a in cfg.agents:
            rows.append(measure_latency(cfg, a, b))
            if a == "fpmd-r":
                rows.append(measure_latency(cfg, a, b, cfg.latency_steps))
    return "Inference latency (jitted, deterministic policy)", rows, latency_table(rows)


def _sweep(cfg: BenchConfig, log, done: dict):
    n, rows = cfg.num_envs[0], []
    for s in sorted(set(cfg.seeds) | {1}):
        r = measure_training(cfg, cfg.sweep_agent, n, s)
        r["chunk_s"] = r["iteration_s"] * cfg.iters
        rows.append(r)
    return f"Seed sweep ({cfg.sweep_agent}, {n} envs per seed, vmapped seeds)", rows, sweep_table(rows)


def _devices(cfg: BenchConfig, log, done: dict):
    rows = measure_devices(cfg, log)
    return (f"Seeds, then one seed's envs, over devices ({cfg.sweep_agent}, {cfg.num_envs[0]} envs per seed, "
            f"{jax.devices()[0].platform})",
            rows, devices_table(rows))


def _headline(cfg: BenchConfig, log, done: dict):
    rows = []
    for n in cfg.num_envs:
        for a in cfg.agents:
            log(f"  measuring the headline config of {a} at {n} envs ...", flush=True)
            rows.append(measure_headline(cfg, a, n, log))
    return f"Headline config ({cfg.env}, auto-scaled as mjxflow.train resolves it)", rows, headline_table(rows)


def _roofline(cfg: BenchConfig, log, done: dict):
    acc = roofline.accelerator(cfg.accelerator, cfg.peak_tflops, cfg.bandwidth_tbps)
    rows = []
    for n in cfg.num_envs:
        for a in cfg.agents:
            log(f"  counting one iteration of {a} at {n} envs ...", flush=True)
            rows.append(roofline.roofline(headline_loop(cfg, a, n), acc))
    return (f"Roofline of one iteration ({cfg.env}, the config mjxflow.train resolves) on {acc.name}: "
            f"{acc.tflops:g} TFLOPS, {acc.tbps:g} TB/s ({acc.source})"), rows, roofline.roofline_table(rows)


def _update(cfg: BenchConfig, log, done: dict):
    rows = measure_updates(cfg, log)
    return f"One gradient update ({cfg.env} sizes, after compilation)", rows, update_table(rows)


def _peer(cfg: BenchConfig, log, done: dict):
    rows = measure_peer(cfg, done.get("_training", []), log)
    return (f"The peer: brax's SAC trainer against ours ({cfg.env}, batch {cfg.batch_size[0]}, "
            f"{cfg.updates_per_iter} updates/iter)"), rows, peer_table(rows)


SECTIONS: dict[str, Callable] = {"train": _train, "floor": _floor, "latency": _latency, "sweep": _sweep,
                                 "devices": _devices, "headline": _headline, "update": _update, "peer": _peer,
                                 "roofline": _roofline}


def run_bench(cfg: BenchConfig, log=print) -> dict:
    if not cfg.agents:  # BenchConfig built in Python: every agent, as on the command line
        cfg = dataclasses.replace(cfg, agents=registry.names())
    validate(cfg)
    enable_compile_cache(cfg.compile_cache)
    name = cfg.name or f"{cfg.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = {"config": dataclasses.asdict(cfg), "machine": machine(), "tables": {}}
    sections = []

    def section(title: str, key: str, rows: list[dict], table: str):
        result[key] = rows
        result["tables"][key] = table
        text = f"## {title}\n\n{table}\n"
        sections.append(text)
        log(text)

    log(f"mjxflow bench: {cfg.env} | num_envs {list(cfg.num_envs)} | batch {list(cfg.batch_size)} | "
        f"{cfg.updates_per_iter} updates/iter | {cfg.iters} iterations x {cfg.repeats} repeats | {result['machine']['device']}")
    shared: dict[str, list[dict]] = {}  # the training rows, measured once for train, floor and peer
    for key, measure in SECTIONS.items():  # the order of the report
        if key in cfg.measure:
            title, rows, table = measure(cfg, log, shared)
            section(title, key, rows, table)

    os.makedirs(cfg.out_dir, exist_ok=True)
    base = os.path.join(cfg.out_dir, name)
    rundir.write_json(base + ".json", result)
    rundir.write_text(base + ".md", f"# mjxflow bench: {name}\n\nMachine: {result['machine']['device']}, "
                      f"{result['machine']['cpus']} CPUs, jax {jax.__version__}.\n\n" + "\n".join(sections))
    log(f"wrote {base}.json and {base}.md")
    return result


def machine() -> dict:
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    if dev.platform == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                kind = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            kind = platform.processor() or kind
    return {"device": f"{dev.platform}: {kind}", "cpus": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__}


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: run_bench(parse(bench_config_class(), argv)))


def bench_config_class() -> type:
    """BenchConfig with --agents and --sweep-agent typed as the registered agents' names."""
    return config.with_agent_choices(BenchConfig, one=("sweep_agent",), many=("agents",))


if __name__ == "__main__":
    sys.exit(main())
