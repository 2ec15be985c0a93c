"""`python -m mjxflow.evaluate --run runs/NAME`: restore a checkpoint and evaluate every seed.

With `--episodes` equal to the run's `eval_episodes` (the default) the episodes are exactly those of the
run's own evaluation at the checkpoint's step (a compiled call between training chunks), so the
training log's return is reproduced.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mjxflow import rundir
from mjxflow import parallel
from mjxflow.policy import Policies, load_policies
from mjxflow.cli import enable_compile_cache, parse, run_command
from mjxflow.errors import ConfigError


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a trained run from its checkpoint."""

    run: str
    """Run directory (runs/NAME)."""
    step: int | None = None
    """Checkpoint step (env steps per seed); default: the latest."""
    episodes: int | None = None
    """Evaluation episodes per seed; default: the run's eval_episodes (reproduces its logged return)."""
    mode_samples: int = 2000
    """Policy samples per seed for mode coverage (tasks with known optimal modes, e.g. multigoal)."""
    compile_cache: str | None = "~/.cache/mjxflow/jax"
    """Folder of JAX's persistent compilation cache (None turns it off)."""
    video: bool = False
    """Also render one deterministic episode per seed to runs/NAME/videos/ (mjxflow.render)."""
    video_seeds: tuple[int, ...] = ()
    """Seeds to render (default: all)."""
    video_format: str = "mp4"
    """mp4 (ffmpeg's wheel) or gif (fallback without ffmpeg)."""
    save: bool = True
    """Write the result to the run directory (evals/STEP.json, one per evaluated step, and eval.json,
    the latest), holding the run's lock; --no-save only prints it and takes no lock, so a run still
    training can be evaluated."""


def mode_coverage(run: Policies, num_samples: int, key: jax.Array) -> np.ndarray:
    """Fraction of policy samples (stochastic policy, at initial states) in each optimal mode,
    shape (seeds, modes); the rest fell in no mode."""
    env, loop = run.loop.env, run.loop
    obs_key, act_key = jax.random.split(key)
    obs = jax.vmap(env.reset)(jax.random.split(obs_key, num_samples)).obs

    @jax.jit
    def fractions(policies):
        actions = jax.vmap(lambda ps: loop.acting(ps, False)(obs, act_key))(policies)
        modes = env.mode_of(actions)  # (seeds, samples)
        return jnp.stack([jnp.mean(modes == k, axis=-1) for k in range(len(env.goals))], axis=-1)

    return np.asarray(parallel.to_host(fractions(run.state)))


def modes_kept(coverage: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Per seed, how many optimal modes hold at least `threshold` of the policy's samples."""
    return np.sum(np.asarray(coverage) >= threshold, axis=-1)


def validate(cfg: EvalConfig) -> None:
    """ConfigError naming the first bad value, before anything is loaded or compiled."""
    for name in ("episodes", "mode_samples"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if cfg.step is not None and cfg.step < 0:
        raise ConfigError(f"--step must be a checkpoint's env step count (>= 0), got {cfg.step}")
    if not os.path.exists(rundir.path(cfg.run, rundir.CONFIG)):
        raise ConfigError(f"{cfg.run} is not a run directory (no config.json)")
    if cfg.video_format not in ("mp4", "gif"):
        raise ConfigError(f"--video-format {cfg.video_format!r} is not one of: mp4, gif")
    env = rundir.read_json(rundir.path(cfg.run, rundir.CONFIG)).get("env")  # damaged: one line, before anything runs
    if cfg.video:
        from mjxflow.envs import check_renderable

        try:
            check_renderable(env)
        except ValueError as e:
            raise ConfigError(str(e)) from None


def evaluate_run(cfg: EvalConfig, log=print) -> dict:
    validate(cfg)
    if not cfg.save:
        return _evaluate(cfg, log)
    with rundir.Lock(cfg.run, "evaluate"):  # refused while the run trains: one line, before anything is built
        return _evaluate(cfg, log)


def _evaluate(cfg: EvalConfig, log) -> dict:
    enable_compile_cache(cfg.compile_cache)
    run = load_policies(cfg.run, cfg.step)  # the policy item alone: no replay buffer, no optimiser states
    episodes = run.cfg.eval_episodes if cfg.episodes is None else cfg.episodes
    evaluate = run.loop.make_evaluate_policies(episodes)
    returns = np.asarray(parallel.to_host(evaluate(run.state, jnp.asarray(run.iteration, jnp.int32))))  # (seeds, episodes)
    per_seed_mean, per_seed_std = returns.mean(axis=1), returns.std(axis=1)
    result = {
        "run": cfg.run,
        "env": run.cfg.env,
        "agent": run.cfg.agent,
        "step": run.step,
        "episodes_per_seed": episodes,
        "episode_return_mean": float(per_seed_mean.mean()),
        "episode_return_std": float(per_seed_mean.std()),
        "per_seed": [
            {"seed": s, "episode_return_mean": float(m), "episode_return_std": float(sd)}
            for s, (m, sd) in enumerate(zip(per_seed_mean, per_seed_std))
        ],
    }
    if run.cfg.sweep:  # rows are members (mjxflow.rundir)
        for row in result["per_seed"]:
            point = rundir.point_of(row["seed"], run.cfg.num_seeds)
            row.update({"point": point, **run.loop.points[point]})
    log(f"{run.cfg.agent} on {run.cfg.env}, checkpoint at {run.step:,} env steps, {episodes} episodes per seed")
    log("| seed | return mean | return std |\n| --- | --- | --- |")
    for row in result["per_seed"]:
        log(f"| {row['seed']} | {row['episode_return_mean']:.2f} | {row['episode_return_std']:.2f} |")
    log(f"over seeds: {result['episode_return_mean']:.2f} ± {result['episode_return_std']:.2f} (std of the seed means)")
    if hasattr(run.loop.env, "mode_of"):
        coverage = mode_coverage(run, cfg.mode_samples, jax.random.PRNGKey(0))
        result["mode_coverage"] = coverage.tolist()
        result["mode_samples_per_seed"] = cfg.mode_samples
        modes = coverage.shape[1]
        log(f"mode coverage ({cfg.mode_samples} policy samples per seed; fraction in each optimal mode):")
        log("| seed | " + " | ".join(f"mode {k}" for k in range(modes)) + " | in no mode | modes with >= 10% |")
        log("| --- " * (modes + 3) + "|")
        for s, (row, kept) in enumerate(zip(coverage, modes_kept(coverage))):
            cells = " | ".join(f"{f:.3f}" for f in row)
            log(f"| {s} | {cells} | {1 - row.sum():.3f} | {int(kept)} |")
    if cfg.save:
        per_step, latest = os.path.join(rundir.path(cfg.run, rundir.EVALS), f"{run.step}.json"), rundir.path(cfg.run, rundir.EVAL)
        os.makedirs(os.path.dirname(per_step), exist_ok=True)
        rundir.write_json(per_step, result)
        rundir.write_json(latest, result)
        log(f"wrote {per_step} and {latest} (latest)")
    if cfg.video:
        from mjxflow.render import render_in_child

        render_in_child(cfg.run, run.step, list(cfg.video_seeds), cfg.video_format, log=log)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: evaluate_run(parse(EvalConfig, argv)))


if __name__ == "__main__":
    sys.exit(main())
