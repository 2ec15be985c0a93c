"""`python -m mjxflow.study`: a grid of training runs (variants x envs, each a seed-vmapped run)
and its report.

    python -m mjxflow.study --name S --agents sac smfp --envs bandit multigoal --num-seeds 3 [train options]
    python -m mjxflow.study --name S --report          # the report again, from saved metrics only
    python -m mjxflow.study --preset fpmd-table1 --name T --print-plan

Every cell is `python -m mjxflow.train` in `runs/S/ENV/VARIANT/`, run one after another. Running
the same command again skips finished cells and resumes a stopped one (exact resume), so a killed
study continues where it stopped. Options the study does not know are train options, given to every
cell; an agent's own options (`--smfp.*`) only to that agent's cells, and `--sweep` entries to the
cells whose agent has the swept option (a swept cell is one run; the report gives each grid point a
row of its own).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import shlex
import sys
from dataclasses import dataclass

import numpy as np

from mjxflow import parallel, rundir
from mjxflow import stats
from mjxflow.agents import agent_names, registry
from mjxflow.cli import run_command
from mjxflow.errors import ConfigError, InUse, TrainingStopped
from mjxflow.config import option_group, parse_sweep, sweep_groups
from mjxflow.envs import ENV_NAMES

# The FPMD paper's Table 1 (best mean return over 5 seeds, Gym MuJoCo v4, 1M env steps; Humanoid 5M).
# A different simulator: brax's MJX tasks are close analogues, not the same MDPs.
FPMD_TABLE1 = {
    "halfcheetah": {"sac": 8981, "fpmd-r": 9345, "fpmd-m": 8549},
    "ant": {"sac": 2500, "fpmd-r": 5376, "fpmd-m": 5350},
    "hopper": {"sac": 3197, "fpmd-r": 3278, "fpmd-m": 2076},
    "walker2d": {"sac": 3233, "fpmd-r": 4760, "fpmd-m": 3253},
    "humanoid": {"sac": 2858, "fpmd-r": 6124, "fpmd-m": 3930},
    "reacher": {"sac": -65.35, "fpmd-r": -3.30, "fpmd-m": -3.48},
    "pusher": {"sac": -31.22, "fpmd-r": -23.66, "fpmd-m": -24.63},
    "swimmer": {"sac": 63.5, "fpmd-r": 53.5, "fpmd-m": 46.5},
    "inverted_pendulum": {"sac": 1000, "fpmd-r": 1000, "fpmd-m": 1000},
    "inverted_double_pendulum": {"sac": 9359, "fpmd-r": 9359, "fpmd-m": 9357},
}


@dataclass(frozen=True)
class Preset:
    """A named study: agents, envs, seeds, labelled variants, train options per env."""

    agents: tuple[str, ...]
    envs: tuple[str, ...]
    num_seeds: int
    variants: tuple[str, ...] = ()
    env_options: dict = dataclasses.field(default_factory=dict)  # env -> train options for its cells
    paper: dict | None = None  # env -> agent -> the paper's number, printed beside ours
    about: str = ""


PRESETS = {
    "smfp-ablations": Preset(
        agents=("smfp", "sac"), envs=("multigoal", "inverted_pendulum", "hopper"), num_seeds=5,
        variants=("no-entropy=--smfp.no-entropy", "exp-weights=--smfp.weights exp", "no-md=--smfp.beta-md 0",
                  "deterministic=--smfp.no-entropy --smfp.fixed-sigma 0"),
        about="SMFP and the ablations its referee asked for (no entropy term, exp instead of truncated-linear "
              "weights, no mirror-descent term, deterministic MeanFlow), SAC as the Gaussian baseline"),
    "fpmd-table1": Preset(
        agents=("sac", "smfp", "fpmd-r", "fpmd-m"), envs=tuple(FPMD_TABLE1), num_seeds=5,
        env_options={env: ["--total-steps", str(5_000_000 if env == "humanoid" else 1_000_000)] for env in FPMD_TABLE1},
        paper=FPMD_TABLE1,
        about="the FPMD paper's Table 1 set-up (its 10 tasks, 1M env steps, 5M for humanoid, 5 seeds) with our four "
              "agents; the paper's numbers are Gym MuJoCo v4, another simulator"),
}

STUDY_FILE = "study.json"


@dataclass
class Cell:
    """One training run of the grid."""

    env: str
    label: str  # the variant: an agent name, or a --variant label
    agent: str
    argv: list[str]  # train options, without --run-name / --runs-dir / --resume
    run_dir: str

    @property
    def name(self) -> str:
        return f"{self.env} / {self.label}"


# ---- the command line ---------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mjxflow.study", allow_abbrev=False,
        description="Train a grid of runs (variants x envs x seeds) and write its report; options not listed "
                    "here are train options (python -m mjxflow.train --help), given to every cell.")
    p.add_argument("--name", help="the study's folder under --runs-dir (runs/NAME)")
    p.add_argument("--agents", nargs="+", default=None, help=f"agents, one cell each per env: {', '.join(agent_names())}")
    p.add_argument("--envs", nargs="+", default=None, help="environments (any train --env)")
    p.add_argument("--num-seeds", type=int, default=None, help="seeds of every cell (one vmapped run); default 5")
    p.add_argument("--variant", action="append", default=[], metavar='LABEL="OPTIONS"',
                   help="a named cell per env with extra train options (repeatable); its agent is its own --agent, "
                        "else the agent its options belong to, else one cell per --agents entry")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named study: " +
                   "; ".join(f"{k}: {v.about}" for k, v in PRESETS.items()))
    p.add_argument("--runs-dir", default="runs", help="folder that holds studies")
    p.add_argument("--report", action="store_true", help="only write the report from the saved metrics")
    p.add_argument("--print-plan", action="store_true", help="list the cells, budgets and states; train nothing")
    return p


def split_options(tokens: list[str]) -> list[list[str]]:
    """Train options as groups: each flag with the values that follow it."""
    groups: list[list[str]] = []
    for token in tokens:
        if token.startswith("--") or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def options_for(agent: str, groups: list[list[str]]) -> list[str]:
    """The shared train options and those of this agent's group; --sweep keeps only the entries
    this agent has."""
    out: list[str] = []
    for group in groups:
        flag = group[0].split("=", 1)[0]
        if flag == "--sweep":
            values = group[1:] if group[0] == "--sweep" else [group[0].split("=", 1)[1]]
            mine = [v for v in values if sweep_group(v) in sweep_groups(agent) + (None,)]
            if mine:
                out += ["--sweep", *mine]
            continue
        owner = option_group(flag)
        if owner is None or owner == registry.group_of(agent):
            out += group
    return out


def sweep_group(entry: str) -> str | None:
    """The option group of a --sweep entry (critic, sac, smfp, fpmd); None when malformed (the
    cell's own check then names it)."""
    try:
        return parse_sweep((entry,))[0][0].split(".")[0]
    except ValueError:
        return None


def parse_variant(text: str) -> tuple[str, list[str]]:
    label, eq, options = text.partition("=")
    label = label.strip()
    if not eq or not label or "/" in label or label in (".", ".."):
        raise ConfigError(f'--variant must be LABEL="TRAIN OPTIONS" with a plain label, got {text!r}')
    try:
        return label, shlex.split(options)
    except ValueError as e:  # an unbalanced quote
        raise ConfigError(f"--variant {text!r}: its options cannot be split ({e})") from None


def variant_agents(label: str, argv: list[str], agents: list[str]) -> list[str]:
    """Its own --agent; else the agent whose options it sets; else every agent of the study."""
    groups = split_options(argv)
    for group in groups:
        if group[0].split("=", 1)[0] == "--agent":
            value = group[0].split("=", 1)[1] if "=" in group[0] else (group[1] if len(group) > 1 else "")
            return [value]
    owners = {option_group(g[0]) for g in groups} - {None}
    if len(owners) > 1:
        raise ConfigError(f"--variant {label} sets options of several agents ({', '.join(sorted(owners))})")
    if owners:
        (group,) = owners
        names = registry.agents_of_group(group)
        if len(names) > 1:
            raise ConfigError(f"--variant {label} sets --{group}.* options: give it "
                              + " or ".join(f"--agent {n}" for n in names))
        return list(names)
    return agents


@dataclass
class Plan:
    name: str
    root: str
    cells: list[Cell]
    num_seeds: int
    paper: dict | None


def make_plan(args: argparse.Namespace, train_tokens: list[str]) -> Plan:
    """The cells of the study, every option checked (nothing is built or compiled)."""
    if not args.name:
        raise ConfigError("--name is required: the study's folder under --runs-dir")
    if "/" in args.name or args.name in (".", ".."):
        raise ConfigError(f"--name must be a name, not a path, got {args.name!r}")
    preset = PRESETS[args.preset] if args.preset else None
    agents = list(args.agents or (preset.agents if preset else ("smfp", "sac")))
    envs = list(args.envs or (preset.envs if preset else ("inverted_pendulum",)))
    num_seeds = args.num_seeds if args.num_seeds is not None else (preset.num_seeds if preset else 5)
    variants = [parse_variant(v) for v in ((preset.variants if preset else ()) + tuple(args.variant))]
    for agent in agents:
        if agent not in agent_names():
            raise ConfigError(f"unknown agent {agent!r}; valid agents: {', '.join(agent_names())}")
    for env in envs:
        if env not in ENV_NAMES:
            raise ConfigError(f"unknown env {env!r}; valid envs: {', '.join(ENV_NAMES)}")
    if num_seeds <= 0:
        raise ConfigError(f"--num-seeds must be a positive integer, got {num_seeds}")
    for flag in ("--env", "--agent", "--num-seeds", "--run-name", "--runs-dir", "--resume", "--overwrite", "--restart"):
        if any(t.split("=", 1)[0] == flag for t in train_tokens):
            raise ConfigError(f"{flag} is set by the study for each cell; use --envs / --agents / --name / --runs-dir")
    groups = split_options(train_tokens)
    root = os.path.join(args.runs_dir, args.name)
    labels = [(a, a, []) for a in agents]
    for label, argv in variants:
        for agent in variant_agents(label, argv, agents):
            own = [t for g in split_options(argv) if g[0].split("=", 1)[0] != "--agent" for t in g]
            labels.append((label, agent, own))
    names = [lab if sum(1 for x in labels if x[0] == lab) == 1 else f"{agent}-{lab}" for lab, agent, _ in labels]
    if len(set(names)) != len(names):
        raise ConfigError(f"two cells share a label: {', '.join(sorted(n for n in names if names.count(n) > 1))}")
    cells = []
    for env in envs:
        env_options = preset.env_options.get(env, []) if preset else []
        for name, (_, agent, own) in zip(names, labels):
            argv = ["--env", env, "--agent", agent, "--num-seeds", str(num_seeds), *env_options,
                    *options_for(agent, groups), *own]
            cells.append(Cell(env=env, label=name, agent=agent, argv=argv, run_dir=os.path.join(root, env, name)))
    plan = Plan(name=args.name, root=root, cells=cells, num_seeds=num_seeds, paper=preset.paper if preset else None)
    for cell in cells:
        cell_config(cell)  # every cell's options checked before anything trains
    return plan


def cell_config(cell: Cell, resume: bool = False, restart: bool = False):
    """The cell's TrainConfig, its auto options resolved (ConfigError naming the cell for a bad
    option; nothing is built or compiled)."""
    from mjxflow import train

    argv = cell.argv + ["--runs-dir", os.path.dirname(cell.run_dir), "--run-name", os.path.basename(cell.run_dir)]
    if resume:
        argv += ["--resume", cell.run_dir] + (["--restart"] if restart else [])
    try:
        return train.resolve_config(train.parse_args(argv))
    except ConfigError as e:
        raise ConfigError(f"cell {cell.name}: {e}") from None


# ---- state of a cell ----------------------------------------------------------------------------

def cell_state(cell: Cell) -> tuple[str, int, int, str | None]:
    """(state, env steps saved, env steps wanted, why): state todo (nothing to resume), partial,
    done (its last checkpoint reaches the budget and reads back: its policy and the train state's
    layout) or unreadable (why says what cannot be read; the study leaves such a cell alone)."""
    from mjxflow import checkpoint
    from mjxflow.loop import build_loop

    if not os.path.exists(rundir.path(cell.run_dir, rundir.CONFIG)):
        cfg = cell_config(cell)
        return "todo", 0, cfg.iterations * cfg.num_envs, None
    try:
        cfg = cell_config(cell, resume=True)
    except ConfigError as e:  # a damaged config.json, or options this release no longer takes
        fresh = cell_config(cell)
        return "unreadable", 0, fresh.iterations * fresh.num_envs, str(e)
    want = cfg.iterations * cfg.num_envs
    try:
        steps = checkpoint.checkpoint_steps(cell.run_dir)
    except FileNotFoundError:
        steps = []
    if not steps or steps[-1] < want:
        return "partial", max(steps, default=0), want, None
    loop = build_loop(cfg)  # nothing is compiled: the checkpoint's arrays are checked against the loop's shapes
    with checkpoint.QuietReads() as quiet:
        try:
            checkpoint.restore_policy(cell.run_dir, steps[-1], loop)
            why = checkpoint.incompatibility(cell.run_dir, steps[-1], loop.state_shapes())
        except checkpoint.UnreadableCheckpoint as e:
            why = str(e)
        quiet.failed = why is not None
    if why:
        return "unreadable", steps[-1], want, f"its checkpoint at {steps[-1]:,} env steps cannot be read: {why}"
    return "done", steps[-1], want, None


def leave_alone(cell: Cell, why: str, restartable: bool) -> str:
    """The line naming a cell the study does not train, and the command that restarts it."""
    restart = f"; to train it again from the start: python -m mjxflow.train --resume {cell.run_dir} --restart"
    return f"{cell.name}: {why}" + (restart if restartable else "")


def initialize(plan: Plan) -> bool:
    """jax.distributed from the cells' --distributed.* options (the same in every cell: they are
    the study's train options), once, before anything touches JAX; True on process 0 (and without
    them), the process that holds the study's lock, writes its files and logs."""
    first = cell_config(plan.cells[0])
    parallel.initialize(first.distributed, first.shard, first.devices)
    return parallel.is_main()


def print_plan(plan: Plan, log=print) -> None:
    if not initialize(plan):
        return
    log(f"study {plan.name}: {len(plan.cells)} cells in {plan.root}")
    log("| # | env | variant | agent | seeds | env steps per seed | state | train options |")
    log("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, cell in enumerate(plan.cells, 1):
        state, saved, want, _ = cell_state(cell)
        shown = f"{state} ({saved:,})" if state == "partial" else state
        extra = " ".join(cell.argv[6:])
        log(f"| {i} | {cell.env} | {cell.label} | {cell.agent} | {plan.num_seeds} | {want:,} | {shown} | {extra} |")


def run_plan(plan: Plan, log=print) -> tuple[bool, list[str], dict[str, str]]:
    """Train every cell not finished, holding the study's lock; (False when a signal stopped a
    cell (saved, resumable), the cells left alone because they cannot be read, each with the
    command that restarts it, {cell name: "done"} for the cells known done: skipped as done or
    trained to the end here, so the report need not read their checkpoints again). No cell is ever
    wiped or restarted unasked."""
    from mjxflow import train

    main = initialize(plan)  # under --distributed.*: every process runs every cell on the whole mesh
    if not main:
        log = lambda *args, **kwargs: None  # noqa: E731
    with rundir.Lock(plan.root, "study") if main else contextlib.nullcontext():  # process 0 holds it, writes, logs
        if main:
            os.makedirs(plan.root, exist_ok=True)
            rundir.write_json(os.path.join(plan.root, STUDY_FILE), {"name": plan.name, "num_seeds": plan.num_seeds, "paper": plan.paper,
                                                                    "cells": [dataclasses.asdict(c) for c in plan.cells]})
        left: list[str] = []
        known: dict[str, str] = {}
        n = len(plan.cells)
        for i, cell in enumerate(plan.cells, 1):
            parallel.barrier(f"study cell {i}")  # every process sees the cell as the last one left it
            state, saved, want, why = cell_state(cell)
            head = f"[cell {i}/{n}] {cell.name} ({cell.agent}, {plan.num_seeds} seeds, {want:,} env steps)"
            if state == "done":
                log(f"{head}: done, skipped")
                known[cell.name] = "done"
                continue
            if state == "unreadable":
                left.append(leave_alone(cell, why, True))
                log(f"{head}: left alone: {left[-1]}")
                continue
            log(f"{head}: " + ("starting" if state == "todo" else f"resuming from {saved:,} env steps"))
            if main and state == "todo" and os.path.exists(cell.run_dir) and not os.listdir(cell.run_dir):
                os.rmdir(cell.run_dir)  # a start killed before its config was written left it empty
            os.makedirs(os.path.dirname(cell.run_dir), exist_ok=True)
            try:
                # a partial cell with no checkpoint yet (killed before its first) starts over: nothing is lost
                cfg = cell_config(cell, resume=state == "partial", restart=state == "partial" and saved == 0)
                result = train.train(cfg, log=lambda *a, **k: log("    ", *a, **k), resolved=True)
            except TrainingStopped as e:
                log(f"{head}: stopped ({e}); the other cells go on")
                continue
            except ConfigError as e:  # no checkpoint of a partial cell reads back, or another process holds it
                left.append(leave_alone(cell, str(e), not isinstance(e, InUse)))
                log(f"{head}: left alone: {left[-1]}")
                continue
            if result.interrupted:
                log(f"study stopped during {cell.name}; run the same command again to continue")
                return False, left, known
            known[cell.name] = "done"
        return True, left, known


# ---- the report ---------------------------------------------------------------------------------

@dataclass
class Row:
    env: str
    label: str
    agent: str
    steps: np.ndarray  # (T,) env steps per seed of the evaluations
    returns: np.ndarray  # (seeds, T)
    wall: np.ndarray  # (T,) training wall time of the evaluations (seconds; across resumes)
    state: str
    frozen: list[str]  # "seed 1 at 12,000 (critic/loss)"
    paper: float | None = None


def load_rows(plan_data: dict, known: dict[str, str] | None = None) -> tuple[list[Row], list[str]]:
    """One row per cell (per grid point in a sweep) from its metrics.jsonl; the cells with no
    metrics yet are listed as missing. A cell's state is `known`'s (run_plan's) or read by cell_state."""
    from mjxflow.plot import load_point_curves

    rows, missing = [], []
    paper = plan_data.get("paper") or {}
    for c in plan_data["cells"]:
        cell = Cell(**c)
        if not os.path.exists(rundir.path(cell.run_dir, rundir.METRICS)):
            missing.append(cell.name)
            continue
        try:
            state = (known or {}).get(cell.name) or cell_state(cell)[0]
        except ConfigError:
            state = "?"
        frozen_path = rundir.path(cell.run_dir, rundir.FROZEN)
        frozen = rundir.read_json(frozen_path) if os.path.exists(frozen_path) else {}
        for point, curves in load_point_curves(cell.run_dir):
            marks = [f"seed {e['seed']} at {e['env_step']:,} ({e['quantity']})" for e in frozen.values()
                     if point is None or e["point"] == point]
            label = cell.label if not curves.name.startswith("[") else f"{cell.label} {curves.name}"
            rows.append(Row(env=cell.env, label=label, agent=cell.agent, steps=curves.steps, returns=curves.returns, wall=curves.wall,
                            state=state, frozen=marks, paper=paper.get(cell.env, {}).get(cell.agent)))
    return rows, missing


def _num(x: float, scale: float) -> str:
    """A return with the decimals its env's scale needs (3 below 10, else 1)."""
    return f"{x:.3f}" if scale < 10 else f"{x:.1f}"


def _ms(x: np.ndarray, scale: float) -> str:
    x = x[np.isfinite(x)]
    return f"{_num(x.mean(), scale)} ± {_num(x.std(), scale)}" if x.size else "n/a"


def normalisers(rows: list[Row]) -> dict[str, tuple[float, float]]:
    """Per env: (the initial policies' mean return over every row, the best final return of any
    row's mean): scores are 0 at the untrained policy and 1 at the study's best variant."""
    out = {}
    for env in dict.fromkeys(r.env for r in rows):
        mine = [r for r in rows if r.env == env]
        low = float(np.nanmean(np.concatenate([r.returns[:, 0] for r in mine])))
        high = float(max(np.nanmean(r.returns[:, -1]) for r in mine))
        out[env] = (low, high)
    return out


def report_table(rows: list[Row], missing: list[str], paper: bool) -> str:
    lines = ["| env | variant | seeds | env steps | final return | best return | IQM final (95% CI) | wall time (h) | state |"
             + (" paper (Gym v4, other simulator) |" if paper else ""),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if paper else "")]
    for r in rows:
        final, best = r.returns[:, -1], np.nanmax(r.returns, axis=1)
        lo, hi = stats.stratified_bootstrap_ci([final])
        scale = max(float(np.nanmax(np.abs(x.returns))) for x in rows if x.env == r.env)
        state = r.state + (f"; frozen: {', '.join(r.frozen)}" if r.frozen else "")
        lines.append(f"| {r.env} | {r.label} | {r.returns.shape[0]} | {int(r.steps[-1]):,} | {_ms(final, scale)} | "
                     f"{_ms(best, scale)} | {_num(stats.iqm(final), scale)} [{_num(lo, scale)}, {_num(hi, scale)}] | "
                     f"{r.wall[-1] / 3600:.2f} | {state} |"
                     + (f" {r.paper if r.paper is not None else '-'} |" if paper else ""))
    norms = normalisers(rows)
    envs = list(norms)
    lines += ["", f"Aggregate over {len(envs)} env(s) ({', '.join(envs)}), final returns normalised per env: 0 = the "
              "initial policies' mean return, 1 = the best variant's mean final return. IQM over every (env, seed) "
              "run with a 95% stratified bootstrap CI (seeds resampled within each env, 2,000 resamples).", "",
              "| variant | envs | runs | IQM normalised (95% CI) | mean normalised |", "| --- | --- | --- | --- | --- |"]
    for label in dict.fromkeys(r.label for r in rows):
        mine = [r for r in rows if r.label == label]
        scores = [stats.normalise(r.returns[:, -1], *norms[r.env]) for r in mine]
        lo, hi = stats.stratified_bootstrap_ci(scores)
        pooled = np.concatenate(scores)
        lines.append(f"| {label} | {len(mine)} | {pooled.size} | {stats.iqm(pooled):.3f} [{lo:.3f}, {hi:.3f}] | "
                     f"{np.nanmean(pooled):.3f} |")
    unfinished = [f"{r.env} / {r.label}" for r in rows if r.state != "done"]
    listed = lambda names: f"{len(names)} ({', '.join(names)})" if names else "0"  # noqa: E731
    lines += ["", f"Missing cells (no metrics yet): {listed(missing)}. Unfinished cells: {listed(unfinished)}."]
    return "\n".join(lines)


def plot_report(rows: list[Row], out_dir: str) -> list[str]:
    """curves.png (a panel per env, a band per variant: mean ± std over seeds) and profile.png
    (the performance profile of normalised final returns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mjxflow.plot import _band

    envs = list(dict.fromkeys(r.env for r in rows))
    labels = list(dict.fromkeys(r.label for r in rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {label: colors[i % len(colors)] for i, label in enumerate(labels)}
    cols = min(len(envs), 4)
    grid_rows = math.ceil(len(envs) / cols)  # a grid of panels against env steps, the same against wall time
    fig, axes = plt.subplots(2 * grid_rows, cols, figsize=(4.2 * cols, 3.4 * 2 * grid_rows), squeeze=False,
                             constrained_layout=True)
    for half, (x_of, xlabel) in enumerate([(lambda r: r.steps, "env steps per seed"),
                                           (lambda r: r.wall / 3600, "training wall time (h)")]):
        panels = axes[half * grid_rows:(half + 1) * grid_rows].ravel()
        for ax, env in zip(panels, envs):
            for r in rows:
                if r.env == env:
                    _band(ax, x_of(r), r.returns, r.label, color[r.label])
            ax.set_title(env)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("evaluation return")
            ax.grid(alpha=0.3)
        for ax in panels[len(envs):]:
            ax.axis("off")
        panels[0].legend(fontsize=7)
    fig.suptitle("evaluation return (mean ± std over seeds)")
    curves = os.path.join(out_dir, "curves.png")
    fig.savefig(curves, dpi=80)
    plt.close(fig)

    norms = normalisers(rows)
    taus = np.linspace(-0.25, 1.25, 121)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    for label in labels:
        scores = np.concatenate([stats.normalise(r.returns[:, -1], *norms[r.env]) for r in rows if r.label == label])
        ax.plot(taus, stats.performance_profile(scores, taus), label=label, color=color[label])
    ax.set_xlabel("normalised final return tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title(f"performance profile over {len(envs)} env(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    profile = os.path.join(out_dir, "profile.png")
    fig.savefig(profile, dpi=80)
    plt.close(fig)
    return [curves, profile]


def write_report(root: str, log=print, known: dict[str, str] | None = None) -> str:
    """runs/NAME/table.md, curves.png and profile.png from the saved metrics (cell states: see
    load_rows); returns the table."""
    path = os.path.join(root, STUDY_FILE)
    if not os.path.exists(path):
        raise ConfigError(f"{root} is not a study folder (no {STUDY_FILE}); run the study first")
    data = rundir.read_json(path)
    rows, missing = load_rows(data, known)
    if not rows:
        raise ConfigError(f"study {data['name']} has no cell with metrics yet")
    table = report_table(rows, missing, bool(data.get("paper")))
    rundir.write_text(os.path.join(root, "table.md"), f"# Study {data['name']}\n\n{table}\n")
    figures = plot_report(rows, root)
    log(table)
    log(f"wrote {os.path.join(root, 'table.md')}, {', '.join(figures)}")
    return table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)

    def command():
        args, train_tokens = parser().parse_known_args(argv)
        if args.report:
            if not args.name:
                raise ConfigError("--report needs --name")
            write_report(os.path.join(args.runs_dir, args.name))
            return 0
        plan = make_plan(args, train_tokens)
        if args.print_plan:
            print_plan(plan)
            return 0
        finished, left, known = run_plan(plan)
        if not parallel.is_main():  # process 0 writes the report
            return 130 if not finished else 0
        write_report(plan.root, known=known)
        for line in left:
            print(f"cell {line}", file=sys.stderr)
        return 130 if not finished else (1 if left else 0)

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
