"""`python -m mjxflow.train`: the host loop around the compiled training chunk.

The host only logs, draws progress and checkpoints between chunks; everything else runs inside
one jitted call per logging interval (see mjxflow.loop).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass

import jax
import numpy as np

from mjxflow import checkpoint
from mjxflow.agents import check_agent_name
from mjxflow.cli import ConfigError, TrainingStopped, enable_compile_cache, parse, run_command
from mjxflow.config import TrainConfig, check_options, load_json, save_json
from mjxflow.envs import check_env_name
from mjxflow.health import describe, first_nonfinite
from mjxflow.logs import MetricsWriter, Progress, chunk_rows, summary_table, truncate_metrics
from mjxflow.loop import Loop
from mjxflow.plot import plot_runs


# Fields a resumed run may change: they affect logging, evaluation and saving, not training.
RESUMABLE_CHANGES = frozenset(
    {"total_steps", "resume", "overwrite", "restart", "eval_every", "eval_envs", "checkpoint_every", "keep_checkpoints",
     "save_replay", "compile_cache", "run_name", "runs_dir"}
)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first bad value and what is allowed."""
    try:
        check_env_name(cfg.env)
        check_agent_name(cfg.agent)
        check_options(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for name in ("num_envs", "num_seeds", "total_steps", "eval_every", "eval_envs", "checkpoint_every",
                 "replay_size", "batch_size", "updates_per_iter", "keep_checkpoints"):
        value = getattr(cfg, name)
        if value is None and name == "checkpoint_every":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if cfg.restart and cfg.resume is None:
        raise ConfigError("--restart only applies with --resume RUN_DIR")
    if cfg.min_replay < 0:
        raise ConfigError(f"--min-replay must be >= 0, got {cfg.min_replay}")
    if cfg.episode_length is not None and cfg.episode_length <= 0:
        raise ConfigError(f"--episode-length must be a positive integer, got {cfg.episode_length}")
    if cfg.replay_size < cfg.num_envs:
        raise ConfigError(f"--replay-size {cfg.replay_size} is smaller than one iteration's transitions (--num-envs {cfg.num_envs})")
    if cfg.replay_size < cfg.min_replay:
        raise ConfigError(f"--min-replay {cfg.min_replay} exceeds --replay-size {cfg.replay_size}")
    if cfg.eval_every > cfg.total_steps:
        raise ConfigError(f"--eval-every {cfg.eval_every} never fires within --total-steps {cfg.total_steps}; "
                          f"use a value <= {cfg.total_steps}")
    if cfg.checkpoint_every is not None and cfg.checkpoint_every > cfg.total_steps:
        raise ConfigError(f"--checkpoint-every {cfg.checkpoint_every} never fires within --total-steps {cfg.total_steps} "
                          f"(only the final checkpoint would be saved); use a value <= {cfg.total_steps}")
    if cfg.batch_size > max(cfg.min_replay, cfg.num_envs):
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the replay's minimum fill --min-replay {cfg.min_replay}; "
            f"use a batch size <= {max(cfg.min_replay, cfg.num_envs)} or a larger --min-replay"
        )


def config_differences(old, new, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object, object]]:
    """Fields that differ as (path, old, new), nested configs field by field (("critic", "hidden"), ...)."""
    diffs = []
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            diffs += config_differences(a, b, prefix + (f.name,))
        elif a != b:
            diffs.append((prefix + (f.name,), a, b))
    return diffs


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """tyro parse; with --resume the saved config is the default, so flags given override it."""
    cfg = parse(TrainConfig, argv)
    if cfg.resume is None:
        return cfg
    path = os.path.join(cfg.resume, "config.json")
    if not os.path.exists(path):
        raise ConfigError(f"--resume {cfg.resume!r} is not a run directory (no config.json)")
    saved = load_json(path)
    cfg = parse(TrainConfig, argv, default=saved)
    changed = [f"{'.'.join(path)}: {a!r} -> {b!r}" for path, a, b in config_differences(saved, cfg)
               if path[0] not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"cannot resume {cfg.resume}: these settings differ from the run's ({'; '.join(changed)}); "
                          f"only {', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'overwrite', 'restart'}))} may change")
    return cfg


def available_memory() -> tuple[int | None, str]:
    """Bytes free on the device that holds the run, and its name (None when unknown)."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{dev.platform} device {dev.id}"
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024, "host (CPU) memory"
    except (OSError, KeyError, ValueError):
        return None, "host (CPU) memory"


def check_memory(cfg: TrainConfig, loop: Loop, free: int | None = None, where: str | None = None) -> None:
    """ConfigError when the replay buffers of all seeds would not fit in the device's free memory.
    On the CPU a checkpoint copies the buffer once more while it is written."""
    if free is None:
        free, where = available_memory()
    if free is None:
        return
    per_seed = loop.replay_bytes_per_seed()
    copies = 2 if cfg.save_replay and jax.devices()[0].platform == "cpu" else 1
    need = per_seed * cfg.num_seeds * copies
    if need > free:
        gib = 2**30
        raise ConfigError(
            f"--replay-size {cfg.replay_size:,} needs {need / gib:,.1f} GiB for {cfg.num_seeds} seeds "
            f"({per_seed / gib:,.2f} GiB per seed{', x2 while a checkpoint copies it' if copies == 2 else ''}), "
            f"more than the {free / gib:,.1f} GiB free in {where}; lower --replay-size or --num-seeds"
            + (" or pass --no-save-replay" if copies == 2 else "")
        )


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
    save_json(dataclasses.replace(cfg, restart=False), os.path.join(run_dir, "config.json"))  # a one-time choice
    return run_dir


@dataclass
class TrainResult:
    run_dir: str
    final_eval: np.ndarray  # per seed
    best_eval: np.ndarray
    env_steps: int
    wall_time: float
    interrupted: bool = False  # stopped early by SIGINT / SIGTERM, after saving a checkpoint


class StopSignals:
    """SIGINT and SIGTERM ask the run to stop after the current chunk (which is then saved); a
    second SIGINT stops at once. Only installed from the main thread."""

    def __init__(self, log):
        self.log, self.received, self.previous = log, None, {}

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        self.log(f"{self.received} received: finishing the current chunk, then saving a checkpoint "
                 "(Ctrl-C again stops at once, without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(cfg: TrainConfig, log=print) -> TrainResult:
    """Run (or resume) training to cfg.total_steps; returns the final per-seed evaluation.

    Raises ConfigError for bad input before anything is compiled or written, and TrainingStopped
    when a seed's losses, Q values or parameters become non-finite (nothing is saved over the last
    good checkpoint). SIGINT / SIGTERM finish the current chunk, save and return interrupted=True."""
    validate(cfg)
    loop = checkpoint.build_loop(cfg)  # builds the env and agent; compiles nothing
    check_memory(cfg, loop)
    enable_compile_cache(cfg.compile_cache)
    restored = None
    if cfg.resume is not None:  # before anything in the run directory is touched
        restored = checkpoint.restore_latest(cfg.resume, cfg.keep_checkpoints, loop, log, restart=cfg.restart)
    run_dir = prepare_run_dir(cfg)
    total_steps = loop.total_iters * cfg.num_envs
    mb = loop.replay_bytes_per_seed() / 2**20
    log(f"mjxflow: {cfg.agent} on {cfg.env} | {cfg.num_seeds} seeds x {cfg.num_envs} envs | obs {loop.env.obs_size}, "
        f"action {loop.env.action_size} | {total_steps:,} env steps per seed | run {run_dir}")
    log(f"replay buffer: {cfg.replay_size:,} transitions = {mb:,.1f} MiB per seed ({mb * cfg.num_seeds:,.1f} MiB in all)")

    wall_offset, best = 0.0, np.full(cfg.num_seeds, -np.inf)
    last_eval = np.full(cfg.num_seeds, np.nan)
    step = None
    if restored is not None:
        mngr, step, state, had_replay = restored
    else:
        mngr = checkpoint.manager(run_dir, cfg.keep_checkpoints)
    if step is not None:
        log(f"resumed from checkpoint at {step:,} env steps" + ("" if had_replay else " (without replay buffer)"))
        for r in truncate_metrics(run_dir, step):  # drop rows logged after the checkpoint
            wall_offset = max(wall_offset, r["wall_time"])
            if r["eval_return"] is not None:
                last_eval[r["seed"]] = r["eval_return"]
                best[r["seed"]] = max(best[r["seed"]], r["eval_return"])
    else:
        if cfg.resume is not None:
            log(f"{run_dir} has no readable checkpoint: starting the run over (--restart)")
            truncate_metrics(run_dir, -1)
        state = jax.jit(loop.init)()
    writer = MetricsWriter(run_dir)

    t = time.perf_counter()
    chunk = loop.make_train_chunk().lower(state).compile()
    log(f"compiled the training chunk ({cfg.chunk_iters} iterations) in {time.perf_counter() - t:.1f} s")

    start_steps = state.env_steps(cfg.num_envs)
    progress = Progress(total_steps, start_steps, cfg.num_seeds)
    pending = []
    if start_steps == 0:  # the initial policy's return: the first point of every learning curve
        last_eval[:] = np.asarray(loop.make_evaluate_all(cfg.eval_envs)(state)).mean(axis=1)
        pending = [{"seed": s, "env_steps": 0, "wall_time": 0.0, "eval_return": float(r)} for s, r in enumerate(last_eval)]
        if not np.all(np.isfinite(last_eval)):
            writer.write(pending)
            mngr.close()
            bad = {s: (0, "eval/return") for s in np.flatnonzero(~np.isfinite(last_eval))}
            raise TrainingStopped(f"non-finite values ({describe(bad)}) in the initial policy's evaluation; "
                                  f"run directory {run_dir}")
        best = np.fmax(best, last_eval)
        progress.update(0, last_eval)
    t0 = time.perf_counter()
    interrupted = None
    with StopSignals(log) as stop:
        while int(state.iteration) < loop.total_iters:
            state, metrics = chunk(state)
            metrics = jax.device_get(metrics)
            iteration = int(state.iteration)
            wall = wall_offset + time.perf_counter() - t0
            rows = chunk_rows(metrics, iteration, cfg.num_envs, wall, last_eval)
            writer.write(pending + rows)
            pending = []
            bad = first_nonfinite(metrics, iteration, cfg.num_envs)
            if bad:
                good = mngr.latest_step()
                mngr.close()
                kept = f"the last good checkpoint ({good:,} env steps) is kept" if good is not None else "no checkpoint was saved yet"
                raise TrainingStopped(
                    f"non-finite values ({describe(bad)}); this state was not saved, {kept}; "
                    f"run directory {run_dir}")
            best = np.fmax(best, last_eval)
            progress.update(iteration * cfg.num_envs, last_eval)
            chunks_done = iteration // cfg.chunk_iters
            interrupted = stop.received
            if chunks_done % cfg.checkpoint_every_chunks == 0 or iteration >= loop.total_iters or interrupted:
                checkpoint.save(mngr, iteration * cfg.num_envs, state, cfg.save_replay)
            if interrupted:
                log(f"stopped by {interrupted} at {iteration * cfg.num_envs:,} env steps per seed, checkpoint saved; "
                    f"continue with: python -m mjxflow.train --resume {run_dir}")
                break
    mngr.close()
    wall = wall_offset + time.perf_counter() - t0
    log(summary_table(last_eval, best))
    plot_runs([run_dir], os.path.join(run_dir, "curve.png"))
    steps = state.env_steps(cfg.num_envs)
    if not interrupted:
        log(f"done: {steps:,} env steps per seed in {wall:.1f} s; run directory {run_dir}")
    return TrainResult(run_dir=run_dir, final_eval=last_eval.copy(), best_eval=best, env_steps=steps, wall_time=wall,
                       interrupted=bool(interrupted))


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 1 stopped on non-finite values, 2 bad input, 130 stopped by a signal."""
    return run_command(lambda: 130 if train(parse_args(argv)).interrupted else 0)


if __name__ == "__main__":
    sys.exit(main())
