"""`python -m mjxflow.train`: the host loop around the compiled training chunk.

The host only logs, draws progress and checkpoints between chunks; everything else runs inside
one jitted call per logging interval (see mjxflow.loop).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np
import tyro

from mjxflow import checkpoint
from mjxflow.agents import check_agent_name
from mjxflow.cli import ConfigError, enable_compile_cache, run_command
from mjxflow.config import TrainConfig, load_json, save_json
from mjxflow.envs import check_env_name
from mjxflow.logs import MetricsWriter, Progress, chunk_rows, read_jsonl, summary_table
from mjxflow.plot import plot_runs


# Fields a resumed run may change: they affect logging, evaluation and saving, not training.
RESUMABLE_CHANGES = frozenset(
    {"total_steps", "resume", "overwrite", "eval_every", "eval_envs", "checkpoint_every", "keep_checkpoints",
     "save_replay", "compile_cache", "run_name", "runs_dir"}
)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first bad value and what is allowed."""
    try:
        check_env_name(cfg.env)
        check_agent_name(cfg.agent)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for name in ("num_envs", "num_seeds", "total_steps", "eval_every", "eval_envs", "checkpoint_every",
                 "replay_size", "batch_size", "updates_per_iter", "keep_checkpoints"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if cfg.min_replay < 0:
        raise ConfigError(f"--min-replay must be >= 0, got {cfg.min_replay}")
    if cfg.episode_length is not None and cfg.episode_length <= 0:
        raise ConfigError(f"--episode-length must be a positive integer, got {cfg.episode_length}")
    if cfg.replay_size < cfg.num_envs:
        raise ConfigError(f"--replay-size {cfg.replay_size} is smaller than one iteration's transitions (--num-envs {cfg.num_envs})")
    if cfg.replay_size < cfg.min_replay:
        raise ConfigError(f"--min-replay {cfg.min_replay} exceeds --replay-size {cfg.replay_size}")
    if cfg.batch_size > max(cfg.min_replay, cfg.num_envs):
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the replay's minimum fill --min-replay {cfg.min_replay}; "
            f"use a batch size <= {max(cfg.min_replay, cfg.num_envs)} or a larger --min-replay"
        )


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Top-level fields (nested configs compared whole) that differ, as 'name: old -> new'."""
    diffs = []
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            diffs.append(f"{f.name}: {a!r} -> {b!r}")
    return diffs


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """tyro parse; with --resume the saved config is the default, so flags given override it."""
    cfg = tyro.cli(TrainConfig, args=argv)
    if cfg.resume is None:
        return cfg
    path = os.path.join(cfg.resume, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"--resume {cfg.resume!r} is not a run directory (no config.json)")
    saved = load_json(path)
    cfg = tyro.cli(TrainConfig, args=argv, default=saved)
    changed = [d for d in config_differences(saved, cfg) if d.split(":")[0] not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"cannot resume {cfg.resume} with a different setup: {'; '.join(changed)}")
    return cfg


def run_dir_for(cfg: TrainConfig) -> str:
    if cfg.resume is not None:
        return cfg.resume
    name = cfg.run_name or f"{cfg.env}-{cfg.agent}-{time.strftime('%Y%m%d-%H%M%S')}"
    return os.path.join(cfg.runs_dir, name)


def prepare_run_dir(cfg: TrainConfig) -> str:
    run_dir = run_dir_for(cfg)
    if cfg.resume is None:
        if os.path.exists(run_dir):
            if not cfg.overwrite:
                raise ConfigError(f"run directory {run_dir} already exists; pick another --run-name, or pass --resume {run_dir} or --overwrite")
            shutil.rmtree(run_dir)
        os.makedirs(run_dir)
    save_json(cfg, os.path.join(run_dir, "config.json"))
    return run_dir


@dataclass
class TrainResult:
    run_dir: str
    final_eval: np.ndarray  # per seed
    best_eval: np.ndarray
    env_steps: int
    wall_time: float


def train(cfg: TrainConfig, log=print) -> TrainResult:
    """Run (or resume) training to cfg.total_steps; returns the final per-seed evaluation."""
    validate(cfg)
    enable_compile_cache(cfg.compile_cache)
    run_dir = prepare_run_dir(cfg)
    loop = checkpoint.build_loop(cfg)
    total_steps = loop.total_iters * cfg.num_envs
    mb = loop.replay_bytes_per_seed() / 2**20
    log(f"mjxflow: {cfg.agent} on {cfg.env} | {cfg.num_seeds} seeds x {cfg.num_envs} envs | obs {loop.env.obs_size}, "
        f"action {loop.env.action_size} | {total_steps:,} env steps per seed | run {run_dir}")
    log(f"replay buffer: {cfg.replay_size:,} transitions = {mb:,.1f} MiB per seed ({mb * cfg.num_seeds:,.1f} MiB in all)")

    mngr = checkpoint.manager(run_dir, cfg.keep_checkpoints)
    writer = MetricsWriter(run_dir)
    wall_offset, best = 0.0, np.full(cfg.num_seeds, -np.inf)
    last_eval = np.full(cfg.num_seeds, np.nan)
    if cfg.resume is not None and mngr.latest_step() is not None:
        step = mngr.latest_step()
        state, had_replay = checkpoint.restore(mngr, step, loop)
        log(f"resumed from checkpoint at {step:,} env steps" + ("" if had_replay else " (without replay buffer)"))
        rows = [r for r in read_jsonl(writer.jsonl_path) if r["env_steps"] <= step] if os.path.exists(writer.jsonl_path) else []
        for r in rows:
            wall_offset = max(wall_offset, r["wall_time"])
            if r["eval_return"] is not None:
                last_eval[r["seed"]] = r["eval_return"]
                best[r["seed"]] = max(best[r["seed"]], r["eval_return"])
    else:
        state = jax.jit(loop.init)()

    t = time.perf_counter()
    chunk = loop.make_train_chunk().lower(state).compile()
    log(f"compiled the training chunk ({cfg.chunk_iters} iterations) in {time.perf_counter() - t:.1f} s")

    start_steps = state.env_steps(cfg.num_envs)
    progress = Progress(total_steps, start_steps, cfg.num_seeds)
    pending = []
    if start_steps == 0:  # the initial policy's return: the first point of every learning curve
        last_eval[:] = np.asarray(loop.make_evaluate_all(cfg.eval_envs)(state)).mean(axis=1)
        pending = [{"seed": s, "env_steps": 0, "wall_time": 0.0, "eval_return": float(r)} for s, r in enumerate(last_eval)]
        best = np.fmax(best, last_eval)
        progress.update(0, last_eval)
    t0 = time.perf_counter()
    while int(state.iteration) < loop.total_iters:
        state, metrics = chunk(state)
        metrics = jax.device_get(metrics)
        iteration = int(state.iteration)
        wall = wall_offset + time.perf_counter() - t0
        rows = chunk_rows(metrics, iteration, cfg.num_envs, wall, last_eval)
        writer.write(pending + rows)
        pending = []
        best = np.fmax(best, last_eval)
        progress.update(iteration * cfg.num_envs, last_eval)
        chunks_done = iteration // cfg.chunk_iters
        if chunks_done % cfg.checkpoint_every_chunks == 0 or iteration >= loop.total_iters:
            checkpoint.save(mngr, iteration * cfg.num_envs, state, cfg.save_replay)
    mngr.close()
    wall = wall_offset + time.perf_counter() - t0
    log(summary_table(last_eval, best))
    plot_runs([run_dir], os.path.join(run_dir, "curve.png"))
    steps = state.env_steps(cfg.num_envs)
    log(f"done: {steps:,} env steps per seed in {wall:.1f} s; run directory {run_dir}")
    return TrainResult(run_dir=run_dir, final_eval=last_eval.copy(), best_eval=best, env_steps=steps, wall_time=wall)


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: train(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
