"""`python -m mjxflow.plot RUN_DIR [RUN_DIR ...] --out FILE.png`: learning curves and a summary.

For every run: evaluation return against env steps and against training wall time (mean over
seeds, shaded +- one std), and the best-so-far return per seed averaged over seeds (the summary the
SMFP paper reports). Prints a markdown table of final and best return (mean +- std over seeds).
Training writes each run's own `curve.png` through `plot_runs` as well.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import tyro

from mjxflow import rundir
from mjxflow.cli import parse, run_command
from mjxflow.errors import ConfigError
from mjxflow.logs import read_jsonl


@dataclass(frozen=True)
class PlotConfig:
    """Plot learning curves of one or more runs and print their summary table."""

    runs: Annotated[tuple[str, ...], tyro.conf.Positional]
    """Run directories (runs/NAME), each with metrics.jsonl and config.json."""
    out: str = "curves.png"
    """Image file to write (png, pdf or svg by its extension)."""
    labels: tuple[str, ...] = ()
    """One legend label per run; default: the agent name, or the run directory's name when two
    runs share an agent."""
    title: str | None = None
    """Figure title; default: the environment name(s)."""
    table: str | None = None
    """Also write the summary table (markdown) to this file."""


@dataclass
class Curves:
    """One run's evaluation curves: env steps (T,), wall time (T,), returns (seeds, T)."""

    name: str
    agent: str
    env: str
    steps: np.ndarray
    wall: np.ndarray
    returns: np.ndarray

    @property
    def best_so_far(self) -> np.ndarray:
        return np.fmax.accumulate(self.returns, axis=1)


def load_curves(run_dir: str) -> Curves:
    """Read a run's evaluation rows; a resumed run's repeated steps keep their latest row."""
    metrics = rundir.path(run_dir, rundir.METRICS)
    if not os.path.exists(metrics):
        raise FileNotFoundError(f"{run_dir} is not a run directory with metrics (no metrics.jsonl)")
    cfg_path = rundir.path(run_dir, rundir.CONFIG)
    cfg = rundir.read_json(cfg_path) if os.path.exists(cfg_path) else {}
    by_step: dict[int, dict[int, tuple[float, float]]] = {}
    for row in read_jsonl(metrics):
        if "eval_return" not in row:  # a log point between evaluations
            continue
        value = row["eval_return"]
        by_step.setdefault(int(row["env_steps"]), {})[int(row["seed"])] = (
            math.nan if value is None else float(value), float(row.get("wall_time") or 0.0))
    if not by_step:
        raise ConfigError(f"{run_dir} has no evaluation rows yet")
    steps = np.array(sorted(by_step))
    seeds = sorted({s for rows in by_step.values() for s in rows})
    returns = np.array([[by_step[t].get(s, (math.nan, 0.0))[0] for t in steps] for s in seeds])
    wall = np.array([max(w for _, w in by_step[t].values()) for t in steps])
    return Curves(os.path.basename(os.path.normpath(run_dir)), cfg.get("agent", "?"), cfg.get("env", "?"), steps, wall, returns)


def load_point_curves(run_dir: str) -> list[tuple[int | None, Curves]]:
    """A run's curves, one per sweep grid point ((point, curves), named `[smfp.beta_md=1]`), or the
    run's own ((None, curves)) without a sweep."""
    curves = load_curves(run_dir)
    cfg_path = rundir.path(run_dir, rundir.CONFIG)
    cfg = rundir.read_json(cfg_path) if os.path.exists(cfg_path) else {}
    if not cfg.get("sweep"):
        return [(None, curves)]
    from mjxflow.config import from_dict, point_label

    points, seeds = from_dict(cfg).sweep_points, int(cfg["num_seeds"])
    out = []
    for p, point in enumerate(points):
        part = curves.returns[p * seeds:(p + 1) * seeds]
        out.append((p, Curves(f"[{point_label(point)}]", curves.agent, curves.env, curves.steps, curves.wall, part)))
    return out


def _labels(curves: list[Curves], labels: tuple[str, ...]) -> list[str]:
    if labels:
        if len(labels) != len(curves):
            raise ConfigError(f"--labels gives {len(labels)} labels for {len(curves)} runs")
        return list(labels)
    agents = [c.agent for c in curves]
    return [c.agent if agents.count(c.agent) == 1 else c.name for c in curves]


def summary_table(curves: list[Curves], labels: list[str]) -> str:
    """Markdown: final and best evaluation return per run, mean +- std over seeds."""
    lines = ["| run | env | seeds | env steps | train wall time (s) | final return | best return |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for c, label in zip(curves, labels):
        final = c.returns[:, -1]
        best = np.nanmax(c.returns, axis=1)
        lines.append(
            f"| {label} | {c.env} | {c.returns.shape[0]} | {int(c.steps[-1]):,} | {c.wall[-1]:.0f} | "
            f"{np.nanmean(final):.1f} ± {np.nanstd(final):.1f} | {np.nanmean(best):.1f} ± {np.nanstd(best):.1f} |")
    return "\n".join(lines)


def _band(ax, x, ys, label, color):
    mean, std = np.nanmean(ys, axis=0), np.nanstd(ys, axis=0)
    ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)


def plot_runs(run_dirs: list[str] | tuple[str, ...], out: str, labels: tuple[str, ...] = (), title: str | None = None) -> str:
    """Write the three-panel figure for `run_dirs` to `out`; returns the summary table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [load_curves(d) for d in run_dirs]
    names = _labels(curves, labels)
    split = [load_point_curves(d) for d in run_dirs]  # a swept run: a curve per grid point
    if any(len(s) > 1 for s in split):
        names = [f"{n} {c.name}" if len(s) > 1 else n for n, s in zip(names, split) for _, c in s]
        curves = [c for s in split for _, c in s]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (c, label) in enumerate(zip(curves, names)):
        color = colors[i % len(colors)]
        _band(axes[0], c.steps, c.returns, label, color)
        _band(axes[1], c.wall, c.returns, label, color)
        _band(axes[2], c.steps, c.best_so_far, label, color)
    for ax, xlabel, ylabel in zip(axes, ("env steps per seed", "training wall time (s)", "env steps per seed"),
                                  ("evaluation return", "evaluation return", "best-so-far return")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    envs = sorted({c.env for c in curves})
    fig.suptitle(title or ", ".join(envs) + " (mean ± std over seeds)")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return summary_table(curves, names)


def main(argv: list[str] | None = None) -> int:
    def command():
        cfg = parse(PlotConfig, argv)
        if not cfg.runs:
            raise ConfigError("give at least one run directory")
        table = plot_runs(cfg.runs, cfg.out, cfg.labels, cfg.title)
        print(table)
        print(f"wrote {cfg.out}")
        if cfg.table:
            with open(cfg.table, "w") as f:
                f.write(table + "\n")

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
