"""`python -m mjxflow.train`: the host loop around the compiled training chunk.

The host only logs, draws progress and checkpoints between chunks; everything else runs inside
one jitted call per logging interval (see mjxflow.loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass

import jax
import numpy as np

from mjxflow import config, rundir
from mjxflow import checkpoint, parallel
from mjxflow.agents import check_agent_name, registry
from mjxflow.cli import enable_compile_cache, parse, run_command
from mjxflow.errors import ConfigError, TrainingStopped
from mjxflow.config import (DistributedConfig, TrainConfig, check_options, load_json, option_group, point_label, save_json,
                            to_dict)
from mjxflow.envs import check_env_name, check_physics, check_renderable
from mjxflow.health import describe, first_nonfinite
from mjxflow.logs import MetricsWriter, Progress, chunk_rows, seed_table, truncate_metrics
from mjxflow.loop import Loop, build_loop
from mjxflow.plot import plot_runs
from mjxflow.scale import derived, derived_table, resolve, schedule


# Fields a resumed run may change: they affect evaluation, logging and saving, not training.
RESUMABLE_CHANGES = frozenset(
    {"total_steps", "resume", "overwrite", "restart", "print_config", "num_evals", "eval_episodes", "chunk_iters",
     "num_checkpoints", "keep_checkpoints", "save_replay", "compile_cache", "run_name", "runs_dir", "replay_gib_per_seed",
     "devices", "distributed", "tensorboard", "video"}
)

INT32_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
POSITIVE_INTS = ("num_envs", "num_seeds", "total_steps", "num_evals", "eval_episodes", "chunk_iters", "num_checkpoints",
                 "replay_size", "batch_size", "updates_per_iter", "keep_checkpoints", "episode_length", "reset_every")


def check_agent_flags(agent: str, argv: list[str]) -> None:
    """ConfigError when argv sets an option of an agent other than `agent` (it would be ignored)."""
    for token in argv:
        group = option_group(token)
        if group is not None and group != registry.group_of(agent):
            owners = " or ".join(f"--agent {a}" for a in registry.agents_of_group(group))
            raise ConfigError(f"{token.split('=', 1)[0]} is an option of {owners}, and this run uses --agent {agent}")


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first bad value and what is allowed (auto options may be None)."""
    try:
        check_env_name(cfg.env)
        check_physics(cfg.env, cfg.physics)
        if cfg.video:
            check_renderable(cfg.env)
        check_agent_name(cfg.agent)
        check_options(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for name in POSITIVE_INTS:
        value = getattr(cfg, name)
        if value is None and name not in ("num_envs", "num_seeds", "keep_checkpoints"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if value > INT32_MAX and name != "total_steps":  # counters and sizes are int32 on the device (total_steps: below)
            raise ConfigError(f"--{name.replace('_', '-')} must be at most {INT32_MAX:,} (2^31 - 1), got {value:,}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool) or not 0 <= cfg.seed <= SEED_MAX:
        raise ConfigError(f"--seed must be an integer in 0 .. {SEED_MAX:,} (2^32 - 1: JAX's 32-bit keys; a larger one "
                          f"would repeat a smaller one's draws), got {cfg.seed!r}")
    iterations = -(-cfg.total_steps // cfg.num_envs) if cfg.total_steps is not None else 0  # None: the preset's
    if iterations > INT32_MAX:
        raise ConfigError(f"--total-steps {cfg.total_steps:,} is {iterations:,} iterations of --num-envs {cfg.num_envs}; "
                          f"the iteration counter is int32: at most {INT32_MAX * cfg.num_envs:,} env steps")
    if cfg.restart and cfg.resume is None:
        raise ConfigError("--restart only applies with --resume RUN_DIR")
    if cfg.min_replay is not None and cfg.min_replay < 0:
        raise ConfigError(f"--min-replay must be >= 0, got {cfg.min_replay}")
    if not (cfg.replay_gib_per_seed > 0 and math.isfinite(cfg.replay_gib_per_seed)):
        raise ConfigError(f"--replay-gib-per-seed must be > 0, got {cfg.replay_gib_per_seed!r}")
    if cfg.run_name is not None and (cfg.run_name in ("", ".", "..") or "/" in cfg.run_name or os.sep in cfg.run_name):
        raise ConfigError(f"--run-name must be a name, not a path, got {cfg.run_name!r} (use --runs-dir for the folder)")


def validate_resolved(cfg: TrainConfig) -> None:
    """The checks that need every auto option resolved (mjxflow.scale.resolve)."""
    if cfg.replay_size < cfg.num_envs:
        raise ConfigError(f"--replay-size {cfg.replay_size} is smaller than one iteration's transitions (--num-envs {cfg.num_envs})")
    if cfg.replay_size < cfg.min_replay:
        raise ConfigError(f"--min-replay {cfg.min_replay} exceeds --replay-size {cfg.replay_size}")
    if cfg.critic.distributional and not cfg.critic.v_min < cfg.critic.v_max:
        raise ConfigError(f"--critic.v-min {cfg.critic.v_min:g} must be < --critic.v-max {cfg.critic.v_max:g} "
                          "(one of them auto: the env's reward scale / (1 - gamma))")
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
    """tyro parse; with --resume the saved config is the default, so flags given override it.
    Options of an agent other than the chosen one are an error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse(config.TrainConfig, argv)  # the class of the agents registered now
    if cfg.resume is not None:
        cfg = _with_saved_config(cfg, argv)
    check_agent_flags(cfg.agent, argv)
    return cfg


def _with_saved_config(cfg: TrainConfig, argv: list[str]) -> TrainConfig:
    """The resumed run's saved config with the flags given applied; ConfigError when they change
    anything but RESUMABLE_CHANGES."""
    path = rundir.path(cfg.resume, rundir.CONFIG)
    if not os.path.exists(path):
        raise ConfigError(f"--resume {cfg.resume!r} is not a run directory (no config.json)")
    # the devices and processes of this launch, unless given again
    saved = dataclasses.replace(load_json(path), devices=None, distributed=DistributedConfig())
    cfg = parse(config.TrainConfig, argv, default=saved)
    changed = [f"{'.'.join(path)}: {a!r} -> {b!r}" for path, a, b in config_differences(saved, cfg)
               if path[0] not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"cannot resume {cfg.resume}: these settings differ from the run's ({'; '.join(changed)}); "
                          f"only {', '.join(sorted(RESUMABLE_CHANGES - {'resume', 'overwrite', 'restart'}))} may change")
    return cfg


def available_memory() -> tuple[int | None, str]:
    """Bytes free on the device that holds the run, and its name (None when unknown)."""
    dev = jax.local_devices()[0]
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
    """ConfigError when the replay buffers of the seeds one device holds would not fit in its free
    memory. On the CPU every device shares the host's memory, and a checkpoint copies the buffer
    once more while it is written."""
    if free is None:
        free, where = available_memory()
    if free is None:
        return
    per_seed = loop.replay_bytes_per_seed()
    cpu = jax.local_devices()[0].platform == "cpu"
    copies = 2 if cfg.save_replay and cpu else 1
    split = loop.placement.num_devices
    seeds_here = loop.num_members if cpu or cfg.shard == "envs" else loop.num_members // split
    if cfg.shard == "envs" and not cpu:
        per_seed //= split  # each device holds its envs' rows of every member's buffer
    need = per_seed * seeds_here * copies
    if need > free:
        gib = 2**30
        raise ConfigError(
            f"--replay-size {cfg.replay_size:,} needs {need / gib:,.1f} GiB for {seeds_here} seeds "
            f"({per_seed / gib:,.2f} GiB per seed{', x2 while a checkpoint copies it' if copies == 2 else ''}"
            f"{f'; {seeds_here} counts every sweep point' if cfg.sweep else ''}), "
            f"more than the {free / gib:,.1f} GiB free in {where}; lower --replay-size or --num-seeds"
            + (" or pass --no-save-replay" if copies == 2 else "")
        )


def run_dir_for(cfg: TrainConfig) -> str:
    if cfg.resume is not None:
        return cfg.resume
    name = cfg.run_name or f"{cfg.env}-{cfg.agent}-{time.strftime('%Y%m%d-%H%M%S')}"
    return os.path.join(cfg.runs_dir, name)


def prepare_run_dir(cfg: TrainConfig, run_dir: str, derived_figures: dict) -> bool:
    """Create (or clear, with --overwrite) the run directory and write config.json: process 0
    alone, holding the run's lock; the others wait for it. True when this call created it."""
    if not parallel.is_main():
        parallel.barrier("run directory ready")
        return False
    created = cfg.resume is None

    def write_config(folder: str) -> None:
        save_json(dataclasses.replace(cfg, restart=False, print_config=False), rundir.path(folder, rundir.CONFIG),
                  extra={"derived": derived_figures})  # restart is a one-time choice

    if created:
        if cfg.overwrite and os.path.exists(run_dir):
            shutil.rmtree(run_dir)  # the lock is ours: no other process is using it
        rundir.make_dir(run_dir, fill=write_config)  # appears with its config.json, or not at all ("already exists")
    else:
        write_config(run_dir)
    parallel.barrier("run directory ready")
    return created


@dataclass
class TrainResult:
    run_dir: str
    final_eval: np.ndarray  # per seed
    best_eval: np.ndarray
    env_steps: int
    wall_time: float
    interrupted: bool = False  # stopped early by SIGINT / SIGTERM, after saving a checkpoint
    timings: dict | None = None  # seconds spent compiling, training, evaluating, checkpointing


class StopSignals:
    """SIGINT and SIGTERM ask the run to stop after the current chunk (which is then saved); a
    second SIGINT stops at once. Only installed from the main thread. With several processes,
    SIGTERM is left to jax.distributed's preemption service (parallel.preempted), which sees it
    on any process at any time and stops them all after the same chunk."""

    def __init__(self, log):
        self.log, self.received, self.previous = log, None, {}
        self.signals = (signal.SIGINT,) if parallel.preemption_service() else (signal.SIGINT, signal.SIGTERM)

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        self.log(f"{self.received} received: finishing the current chunk, then saving a checkpoint "
                 "(Ctrl-C again stops at once, without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# ---- setup -----------------------------------------------------------------------------------------

def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Validate, fill in the auto options (the env's sizes come from its preset, so no env is
    built) and check the result. Compiles nothing."""
    validate(cfg)
    cfg = resolve(cfg)
    validate_resolved(cfg)
    return cfg


def grid_figures(cfg: TrainConfig) -> dict:
    """With --sweep: its points and the members of the vmapped axis (points x seeds)."""
    return {"sweep_points": len(cfg.sweep_points), "members": cfg.num_members} if cfg.sweep else {}


def print_config(cfg: TrainConfig) -> None:
    """--print-config: the resolved config and its derived figures as JSON (as in config.json)."""
    cfg = resolve_config(cfg)
    devices = parallel.devices_for(cfg)
    data = to_dict(dataclasses.replace(cfg, print_config=False))
    print(json.dumps({**data, "derived": {"devices": devices, **grid_figures(cfg), **derived(cfg)}}, indent=2))


@dataclass
class Run:
    """An opened run: resolved config, loop, directory, checkpoint manager, state and history."""

    cfg: TrainConfig
    loop: Loop
    run_dir: str
    mngr: object
    state: object
    last_eval: np.ndarray  # latest evaluation per member (seed x sweep point; NaN before the first)
    best: np.ndarray
    wall_offset: float  # wall time of the run before this process (resume)
    frozen: dict = dataclasses.field(default_factory=dict)  # member -> its frozen.json entry
    resumed_from: int | None = None  # env steps of the checkpoint this process continued from
    lock: rundir.Lock | None = None  # held by process 0 until train() returns
    created: bool = False  # this process made the run directory (a failed start removes it)


def open_run(cfg: TrainConfig, log) -> Run:
    """From a resolved config (resolve_config): take the run's lock, restore or initialise the
    state, prepare the run directory. Everything that can reject the input happens before the run
    directory is touched; a start that fails after it was made removes it (with the lock released)."""
    loop = build_loop(cfg)  # builds the env and agent and places the seeds; the config is resolved already
    figures = {"devices": loop.placement.num_devices, **grid_figures(cfg), **derived(cfg, loop.env.obs_size, loop.env.action_size)}
    check_memory(cfg, loop)
    enable_compile_cache(cfg.compile_cache)
    run_dir = run_dir_for(cfg)
    lock = rundir.Lock(run_dir, "training").acquire() if parallel.is_main() else None
    run = Run(cfg=cfg, loop=loop, run_dir=run_dir, mngr=None, state=None, last_eval=np.full(loop.num_members, np.nan),
              best=np.full(loop.num_members, -np.inf), wall_offset=0.0, lock=lock)
    try:
        _open(run, figures, log)
    except BaseException:
        discard_failed_start(run)
        raise
    return run


def discard_failed_start(run: Run) -> None:
    """After a failure: a run directory this process made and that holds no checkpoint yet is
    removed (nothing in it can be resumed; a retry would find it "already exists"); the lock is
    released."""
    if run.created and parallel.is_main() and not checkpoint.sizes(run.run_dir):
        if run.mngr is not None:
            try:
                run.mngr.close()
            except Exception:  # the failure being reported matters, not this one
                pass
        shutil.rmtree(run.run_dir, ignore_errors=True)
    if run.lock is not None:
        run.lock.release()


def _open(run: Run, figures: dict, log) -> None:
    cfg, loop, run_dir = run.cfg, run.loop, run.run_dir
    restored = None
    if cfg.resume is not None:  # before anything in the run directory is touched
        restored = checkpoint.restore_latest(cfg.resume, cfg.keep_checkpoints, loop, log, restart=cfg.restart,
                                             background=True)
    run.created = prepare_run_dir(cfg, run_dir, figures)
    grid = f" x {len(loop.points)} sweep points" if cfg.sweep else ""
    log(f"mjxflow: {cfg.agent} on {cfg.env} | {cfg.num_seeds} seeds{grid} x {cfg.num_envs} envs on {loop.placement.describe()} | "
        f"obs {loop.env.obs_size}, "
        f"action {loop.env.action_size} | run {run_dir}")
    log(derived_table(figures))
    note = (parallel.auto_note(loop.num_members, loop.placement.num_devices, jax.device_count())
            if cfg.devices is None and cfg.shard == "seeds" else None)
    if note:
        log(note)

    step = None
    if restored is not None:
        run.mngr, step, run.state, had_replay = restored
    else:
        run.mngr = checkpoint.manager(run_dir, cfg.keep_checkpoints, background=True, writer=True)
    if step is not None:
        run.resumed_from = step
        log(f"resumed from checkpoint at {step:,} env steps" + ("" if had_replay else " (without replay buffer)"))
        run.frozen = read_frozen(run_dir, step, write=parallel.is_main())
        for r in truncate_metrics(run_dir, step, write=parallel.is_main()):  # drop rows logged after the checkpoint
            run.wall_offset = max(run.wall_offset, r["wall_time"])
            if r.get("eval_return") is not None:
                run.last_eval[r["seed"]] = r["eval_return"]
                run.best[r["seed"]] = max(run.best[r["seed"]], r["eval_return"])
    else:
        if cfg.resume is not None:
            log(f"{run_dir} has no readable checkpoint: starting the run over (--restart)")
            truncate_metrics(run_dir, -1, write=parallel.is_main())
            read_frozen(run_dir, -1, write=parallel.is_main())
        run.state = loop.initial_state()


# ---- driving the compiled loop ---------------------------------------------------------------------

class Timings:
    """Wall time of the run split by what it was spent on."""

    PARTS = ("compile", "training", "evaluation", "checkpointing")

    def __init__(self):
        self.seconds = dict.fromkeys(self.PARTS, 0.0)

    @contextlib.contextmanager
    def __call__(self, part: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t

    def summary(self, wall: float) -> str:
        other = max(0.0, wall - sum(self.seconds.values()))
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return f"wall time {wall:.1f} s: {parts}, other {other:.1f} s"


def with_evaluation(metrics: dict, returns: np.ndarray | None) -> dict:
    """Add `eval/return` and `check/evaluated` rows, (iters, seeds), to a chunk's metrics: the
    evaluation the host ran after the chunk's last iteration, if any."""
    iters, seeds = np.asarray(metrics["check/learned"]).shape
    evals = np.full((iters, seeds), np.nan, np.float32)
    evaluated = np.zeros((iters, seeds), bool)
    if returns is not None:
        evals[-1], evaluated[-1] = returns, True
    return {**metrics, "eval/return": evals, "check/evaluated": evaluated}


def read_frozen(run_dir: str, max_env_steps: int, write: bool = True) -> dict[int, dict]:
    """The members frozen up to `max_env_steps` (the checkpoint a run resumes from), from
    frozen.json; later entries are dropped (the resumed run meets them again)."""
    path = rundir.path(run_dir, rundir.FROZEN)
    if not os.path.exists(path):
        return {}
    kept = {int(m): e for m, e in rundir.read_json(path).items() if e["env_step"] <= max_env_steps}
    if write:
        write_frozen(run_dir, kept)
    return kept


def write_frozen(run_dir: str, frozen: dict[int, dict]) -> None:
    rundir.write_json(rundir.path(run_dir, rundir.FROZEN), {str(m): e for m, e in sorted(frozen.items())})


def member_name(loop: Loop, member: int) -> str:
    """`seed 3`, or `seed 1 of point smfp.beta_md=10` in a sweep."""
    seed, point = member % loop.cfg.num_seeds, member // loop.cfg.num_seeds
    return f"seed {seed}" + (f" of point {point_label(loop.points[point])}" if loop.cfg.sweep else "")


def freeze_members(run: Run, frozen_at: np.ndarray, bad: dict, log) -> dict:
    """Record the members the loop froze in this chunk (frozen.json, one log line each) and return
    the non-finite findings that no freeze explains."""
    cfg = run.cfg
    for m in map(int, np.flatnonzero(frozen_at >= 0)):
        if m in run.frozen:
            continue
        step, quantity = bad.get(m, ((int(frozen_at[m])) * cfg.num_envs, "learner state (parameters or statistics)"))
        run.frozen[m] = {"seed": rundir.seed_of(m, cfg.num_seeds), "point": rundir.point_of(m, cfg.num_seeds), "env_step": step, "quantity": quantity}
        log(f"warning: {member_name(run.loop, m)} froze at env step {step:,} ({quantity} non-finite); it keeps its last "
            f"finite state and the other members train on")
    if parallel.is_main() and run.frozen:
        write_frozen(run.run_dir, run.frozen)
    return {m: v for m, v in bad.items() if m not in run.frozen}


def stop_on_nonfinite(run: Run, bad: dict) -> None:
    run.mngr.close()  # a background write finishes first
    good = run.mngr.latest_step()
    kept = f"the last good checkpoint ({good:,} env steps) is kept" if good is not None else "no checkpoint was saved yet"
    raise TrainingStopped(f"non-finite values ({describe(bad)}); this state was not saved, {kept}; "
                          f"run directory {run.run_dir}")


def label_rows(loop: Loop, rows: list[dict]) -> list[dict]:
    """In a sweep, each row (keyed by member in `seed`) also names its grid point: `point` (its
    index) and the swept options' values."""
    if not loop.cfg.sweep:
        return rows
    for row in rows:
        point = row["seed"] // loop.cfg.num_seeds
        row.update({"point": point, **loop.points[point]})
    return rows


def compile_evaluation(loop: Loop, state, episodes: int):
    """state -> returns (seeds, episodes) of the deterministic policy at the state's iteration."""
    return loop.make_evaluate_all(episodes).lower(state).compile()


def drive(run: Run, log, timings: Timings) -> str | None:
    """Run the schedule's chunks, evaluations and checkpoints to the end of training; returns the
    name of the signal that stopped it early, if any."""
    cfg, loop = run.cfg, run.loop
    sched = schedule(cfg)
    main = parallel.is_main()  # the other processes compute, checkpoint with it, and write nothing
    writer = MetricsWriter(run.run_dir, tensorboard=cfg.tensorboard, resume_step=run.resumed_from) if main else None
    with timings("compile"):
        chunk = loop.make_train_chunk().lower(run.state).compile()
        evaluate = compile_evaluation(loop, run.state, cfg.eval_episodes)
    log(f"compiled the training chunk (up to {cfg.chunk_iters} iterations per call) and the evaluation "
        f"({cfg.eval_episodes} episodes per seed) in {timings.seconds['compile']:.1f} s")

    try:
        return _run_schedule(run, log, timings, sched, chunk, evaluate, writer)
    finally:
        main and writer.close()  # TensorBoard's events reach the disk even when the run stops


def _run_schedule(run: Run, log, timings: Timings, sched, chunk, evaluate, writer) -> str | None:
    """drive()'s loop over the schedule with compiled `chunk` and `evaluate`; `writer` None on the
    processes that write nothing."""
    cfg, loop = run.cfg, run.loop
    main = writer is not None
    iteration = int(run.state.iteration)
    progress = Progress(sched.total * cfg.num_envs, iteration * cfg.num_envs, loop.num_members,
                        **({} if main else {"stream": open(os.devnull, "w")}))
    t0 = time.perf_counter()
    elapsed = lambda: run.wall_offset + time.perf_counter() - t0
    if iteration == 0:  # the initial policy's return: the first point of every learning curve
        with timings("evaluation"):
            run.last_eval[:] = parallel.to_host(evaluate(run.state)).mean(axis=1)
        main and writer.write(label_rows(loop, [{"seed": s, "env_steps": 0, "wall_time": 0.0, "eval_return": float(r)}
                                                for s, r in enumerate(run.last_eval)]))
        if not np.all(np.isfinite(run.last_eval)):
            run.mngr.close()
            bad = {s: (0, "eval/return") for s in np.flatnonzero(~np.isfinite(run.last_eval))}
            raise TrainingStopped(f"non-finite values ({describe(bad)}) in the initial policy's evaluation; "
                                  f"run directory {run.run_dir}")
        run.best = np.fmax(run.best, run.last_eval)
        progress.update(0, run.last_eval)

    interrupted = None
    chunks = 0  # the same count on every process: the preemption sync point's step
    with StopSignals(log) as stop:
        while iteration < sched.total:
            end = sched.next_stop(iteration)
            n = end - iteration
            with timings("training"):
                run.state, metrics = chunk(run.state, np.int32(n))
                metrics = parallel.to_host(metrics)
            metrics = {k: (v if k == "check/state_finite" else v[:n]) for k, v in metrics.items()}
            iteration = end
            returns = None
            if end in sched.evals:
                with timings("evaluation"):
                    returns = parallel.to_host(evaluate(run.state)).mean(axis=1)
            metrics = with_evaluation(metrics, returns)
            main and writer.write(label_rows(loop, chunk_rows(metrics, iteration, cfg.num_envs, elapsed(), run.last_eval)))
            bad = first_nonfinite(metrics, iteration, cfg.num_envs)
            if bad or not np.all(np.asarray(metrics["check/state_finite"])):
                progress.close()
                frozen_at = parallel.to_host(run.state.seeds.frozen_at)
                bad = freeze_members(run, frozen_at, bad, log)
                if bad or len(run.frozen) == loop.num_members:
                    stop_on_nonfinite(run, bad or {m: (e["env_step"], e["quantity"]) for m, e in run.frozen.items()})
            run.best = np.fmax(run.best, run.last_eval)
            progress.update(iteration * cfg.num_envs, run.last_eval, evaluated=returns is not None)
            interrupted = parallel.any_signal(stop.received) or ("SIGTERM" if parallel.preempted(chunks) else None)
            chunks += 1  # every process stops after the same chunk
            if interrupted:
                progress.close()
            if end in sched.checkpoints or interrupted:  # the schedule's last checkpoint is the end
                main and writer.sync()  # the rows up to this checkpoint reach the disk with it
                with timings("checkpointing"):
                    checkpoint.save(run.mngr, iteration * cfg.num_envs, run.state, cfg.save_replay, wait=False)
            if interrupted:
                break
    progress.close()
    with timings("checkpointing"):
        run.mngr.close()  # waits for a write still running in the background
    if interrupted:
        log(f"stopped by {interrupted} at {iteration * cfg.num_envs:,} env steps per seed, checkpoint saved; "
            f"continue with: python -m mjxflow.train --resume {run.run_dir}")
    return interrupted


def checkpoint_summary(run_dir: str, seconds: float) -> str:
    """The kept checkpoints' sizes and the time training lost to saving (the host copies and any
    wait for a background write: the writes themselves overlap training)."""
    kept = checkpoint.sizes(run_dir)
    listing = ", ".join(f"{step:,} ({size / 2**20:,.1f} MiB)" for step, size in kept.items()) or "none"
    return f"checkpoints kept (env steps): {listing}; training time lost to saving {seconds:.1f} s"


def train(cfg: TrainConfig, log=print, resolved: bool = False) -> TrainResult:
    """Run (or resume) training to cfg.total_steps; returns the final per-seed evaluation.
    `resolved`: cfg comes from resolve_config already (the study's cells), so it is not checked
    and resolved a second time.

    Raises ConfigError for bad input before anything is compiled or written, and TrainingStopped
    when a seed's losses, Q values or parameters become non-finite (nothing is saved over the last
    good checkpoint). SIGINT / SIGTERM finish the current chunk, save and return interrupted=True."""
    t = time.perf_counter()
    if not resolved:
        cfg = resolve_config(cfg)  # the command's one validation and resolution (nothing touches JAX)
    parallel.initialize(cfg.distributed, cfg.shard, cfg.devices)  # before anything else touches JAX
    if not parallel.is_main():
        log = lambda *args, **kwargs: None  # noqa: E731
    run = open_run(cfg, log)
    try:
        return _train(run, log, t)
    except TrainingStopped:  # its metrics and frozen records say what went wrong: kept
        raise
    except BaseException as e:
        full = disk_full(e)
        if full is None:
            discard_failed_start(run)
            raise
        raise TrainingStopped(out_of_space(run, full)) from None
    finally:
        run.lock and run.lock.release()


def disk_full(e: BaseException | None) -> OSError | None:
    """The 'no space left on device' error behind `e` (raised directly, or by a background
    checkpoint write and re-raised by orbax), or None."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e
        e = e.__cause__ or e.__context__
    return None


def out_of_space(run: Run, error: OSError) -> str:
    """The one line that stops a run whose disk filled up; the run's last complete checkpoint is
    left as it is (orbax writes each into a temporary folder and renames it whole)."""
    if run.mngr is not None:
        try:
            run.mngr.close()
        except Exception:  # the same error again, from the write still pending
            pass
    where = f" writing {error.filename}" if error.filename else ""
    kept = checkpoint.sizes(run.run_dir) if os.path.isdir(run.run_dir) else {}
    if not kept:
        discard_failed_start(run)
        return f"no space left on device{where}, before the run's first checkpoint; free some space and start it again"
    return (f"no space left on device{where}; the last complete checkpoint, at {max(kept):,} env steps, is intact: "
            f"free some space, then continue with: python -m mjxflow.train --resume {run.run_dir}")


def _train(run: Run, log, t: float) -> TrainResult:
    cfg = run.cfg
    timings = Timings()
    interrupted = drive(run, log, timings)
    wall = time.perf_counter() - t
    log(seed_table(run.last_eval, run.best))
    for m, e in sorted(run.frozen.items()):
        log(f"frozen: {member_name(run.loop, m)} since env step {e['env_step']:,} ({e['quantity']})")
    log(timings.summary(wall))
    log(checkpoint_summary(run.run_dir, timings.seconds["checkpointing"]))
    if parallel.is_main():
        plot_runs([run.run_dir], os.path.join(run.run_dir, "curve.png"))
    steps = run.state.env_steps(run.cfg.num_envs)
    if not interrupted:
        log(f"done: {steps:,} env steps per seed in {run.wall_offset + wall:.1f} s; run directory {run.run_dir}")
    if cfg.video and not interrupted and parallel.is_main():
        from mjxflow.render import render_in_child

        try:
            render_in_child(run.run_dir, None, [], "mp4", log=log)
        except ConfigError as e:  # the run itself is complete and saved
            log(f"warning: no video: {e}")
    return TrainResult(run_dir=run.run_dir, final_eval=run.last_eval.copy(), best_eval=run.best, env_steps=steps,
                       wall_time=run.wall_offset + wall, interrupted=bool(interrupted), timings=dict(timings.seconds))


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done (or --print-config), 1 stopped on non-finite values, 2 bad input, 130
    stopped by a signal."""
    def command():
        cfg = parse_args(argv)
        if cfg.print_config:
            print_config(cfg)
            return 0
        return 130 if train(cfg).interrupted else 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
