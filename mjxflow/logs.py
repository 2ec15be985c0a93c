"""Host-side logging: per-seed metric rows (jsonl + csv), a progress line, and the final summary."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from typing import Callable

import numpy as np

from mjxflow import rundir


def chunk_rows(metrics: dict, end_iteration: int, num_envs: int, wall_time: float, last_eval: np.ndarray) -> list[dict]:
    """One row per seed summarising a chunk's per-iteration metrics of shape (iters, seeds).

    `eval_return` is the evaluation at the chunk's end, present only on the rows of a chunk that
    ran one (NaN when the evaluation itself gave NaN); `last_eval` is updated with it. Losses are chunk means over the
    iterations that learned, `train_return` is the mean return of the training episodes that ended
    in this chunk.
    """
    evals = metrics["eval/return"]
    evaluated = np.asarray(metrics["check/evaluated"], bool)
    num_seeds = evals.shape[1]
    rows = []
    for s in range(num_seeds):
        done = np.flatnonzero(evaluated[:, s])
        if done.size:
            last_eval[s] = evals[done[-1], s]
        episodes = metrics["train/episodes"][:, s].sum()
        row = {
            "seed": s,
            "env_steps": end_iteration * num_envs,
            "wall_time": round(wall_time, 3),
            **({"eval_return": float(last_eval[s])} if done.size else {}),
            "train_return": float(metrics["train/return_sum"][:, s].sum() / episodes) if episodes else math.nan,
            "train_episodes": int(episodes),
            "reused_starts": int(metrics["train/reused_starts"][:, s].sum()),  # episodes begun from an already used spare
        }
        for key in sorted(metrics):
            if key.startswith(("train/", "eval/", "check/")):
                continue
            col = metrics[key][:, s]
            row[key] = float(np.nanmean(col)) if np.any(~np.isnan(col)) else math.nan
        rows.append(row)
    return rows


def _jsonable(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


class MetricsWriter:
    """Appends rows to run_dir/metrics.jsonl and run_dir/metrics.csv (a resumed run continues them),
    and with `tensorboard` to TensorBoard event files in run_dir/tb/ (TensorBoardWriter)."""

    def __init__(self, run_dir: str, tensorboard: bool = False, resume_step: int | None = None):
        self.jsonl_path = os.path.join(run_dir, rundir.METRICS)
        self.csv_path = os.path.join(run_dir, rundir.METRICS_CSV)
        self.tb = TensorBoardWriter(run_dir, resume_step) if tensorboard else None
        self.fields: list[str] | None = None
        if os.path.exists(self.csv_path) and os.path.getsize(self.csv_path):
            with open(self.csv_path) as f:
                self.fields = next(csv.reader(f))

    def write(self, rows: list[dict]) -> None:
        with open(self.jsonl_path, "a") as f:
            for row in rows:
                f.write(json.dumps(_jsonable(row)) + "\n")
        new_file = self.fields is None
        if new_file:
            self.fields = list(dict.fromkeys(k for row in rows for k in row))
        with open(self.csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerows(rows)
        if self.tb is not None:
            self.tb.write(rows)

    def sync(self) -> None:
        """Every row written so far on the disk: TensorBoard's events flushed and the metrics files
        fsynced. Called at each checkpoint, so that a kill after it loses no row before it (and a
        resume, which purges what follows the checkpoint, leaves each logged step exactly once)."""
        if self.tb is not None:
            self.tb.flush()
        for path in (self.jsonl_path, self.csv_path):
            if os.path.exists(path):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class TensorBoardWriter:
    """The same scalars as metrics.jsonl as TensorBoard event files in run_dir/tb/: one series per
    seed (`eval_return/seed_0`, `critic/loss/seed_0`, ...) and their mean over seeds
    (`eval_return/mean`), against env steps per seed. A resumed run purges the events after the
    checkpoint it continues from (they are logged again)."""

    def __init__(self, run_dir: str, resume_step: int | None = None):
        self.folder, self.part = os.path.join(run_dir, "tb"), 0
        self.writer = self._open(None if resume_step is None else resume_step + 1)

    def _open(self, purge_step: int | None = None):
        """A new event file (TensorBoard reads a folder's files in name order: a timestamp, then
        this part number)."""
        from tensorboardX import SummaryWriter

        self.part += 1
        return SummaryWriter(self.folder, purge_step=purge_step, flush_secs=30, filename_suffix=f".{self.part:04d}")

    def flush(self) -> None:
        """Every event added so far written to the file. tensorboardX's flush() leaves the events
        still queued for its writer thread unwritten; close() drains the queue, so the file is
        closed and the next events go to a new one."""
        self.writer.close()
        self.writer = self._open()

    def write(self, rows: list[dict]) -> None:
        by_step: dict[int, list[dict]] = {}
        for row in rows:
            by_step.setdefault(row["env_steps"], []).append(row)
        for step, group in sorted(by_step.items()):
            for key in (k for k in group[0] if k not in ("seed", "env_steps", "wall_time", "point")):
                finite = [(r["seed"], float(r[key])) for r in group
                          if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool) and math.isfinite(r[key])]
                for seed, value in finite:
                    self.writer.add_scalar(f"{key}/seed_{seed}", value, step)
                if finite:
                    self.writer.add_scalar(f"{key}/mean", float(np.mean([v for _, v in finite])), step)

    def close(self) -> None:
        self.writer.close()


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_jsonl(path: str, warn: Callable[[str], object] = _warn) -> list[dict]:
    """Rows of a metrics jsonl file. A last line cut short by a crash is skipped silently; any other
    line that is not a JSON object with `seed` and `env_steps` is skipped with a warning."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not (isinstance(row, dict) and isinstance(row.get("seed"), int) and isinstance(row.get("env_steps"), int)):
                    raise ValueError("not a metrics row")
            except ValueError:  # json.JSONDecodeError is a ValueError
                if line.endswith("\n"):  # a crash cuts only the last line short
                    warn(f"{path} line {number} is damaged ({line.strip()[:60]!r}); skipped")
                continue
            rows.append(row)
    return rows


def _replace(path: str, write) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def truncate_metrics(run_dir: str, max_env_steps: int, write: bool = True) -> list[dict]:
    """Keep only the rows up to `max_env_steps` (the checkpoint a run resumes from) in
    metrics.jsonl and metrics.csv, so rows a crashed run logged after its last checkpoint are not
    doubled when the resumed run logs them again. The csv is rebuilt from the jsonl. Returns the
    rows kept (`write` False: only returns them, changing nothing)."""
    writer = MetricsWriter(run_dir)
    if not os.path.exists(writer.jsonl_path):
        return []
    rows = [r for r in read_jsonl(writer.jsonl_path) if r["env_steps"] <= max_env_steps]
    if not write:
        return rows
    _replace(writer.jsonl_path, lambda f: f.writelines(json.dumps(r) + "\n" for r in rows))
    fields = writer.fields or list(dict.fromkeys(k for r in rows for k in r))

    def write_csv(f):
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows({k: (math.nan if v is None else v) for k, v in r.items()} for r in rows)

    if rows:
        _replace(writer.csv_path, write_csv)
    elif os.path.exists(writer.csv_path):
        os.remove(writer.csv_path)
    return rows


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _fmt_rate(rate: float) -> str:
    return f"{rate:8,.0f}" if math.isfinite(rate) else f"{'--':>8}"


class Progress:
    """The progress display: env steps, throughput, latest evaluation, ETA.

    On a terminal a live bar (rich) moves after every compiled chunk and its clock between them;
    each evaluation is also kept as a line above it. Into a file or pipe (CI, logs), plain lines are
    written at evaluations and otherwise at most every `file_every` of the run, so a log holds a few
    dozen lines, not one per chunk.
    """

    def __init__(self, total_steps: int, start_steps: int, num_seeds: int, stream=sys.stdout, file_every: float = 0.05):
        self.total = total_steps
        self.start_steps = start_steps
        self.num_seeds = num_seeds
        self.stream = stream
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.file_every = file_every
        self.last_written = -math.inf
        self.bar = None  # the rich display on a terminal, started at the first update

    def figures(self, steps: int, eval_returns: np.ndarray) -> tuple[float, float, str]:
        """(env steps/s over all seeds, ETA in seconds, the evaluation as mean ± std)."""
        elapsed = time.perf_counter() - self.t0
        done = steps - self.start_steps
        rate = done / elapsed if elapsed > 0 and done > 0 else math.nan
        eta = (self.total - steps) / rate if rate > 0 else math.nan
        finite = eval_returns[np.isfinite(eval_returns)]
        ev = f"{finite.mean():9.2f} ± {finite.std():.2f}" if finite.size else "      n/a"
        return rate * self.num_seeds, eta, ev

    def line(self, steps: int, eval_returns: np.ndarray) -> str:
        rate, eta, ev = self.figures(steps, eval_returns)
        return (
            f"[{100 * steps / self.total:5.1f}%] {steps:>10,}/{self.total:,} steps | "
            f"{_fmt_rate(rate)} steps/s (all seeds) | eval {ev} | ETA {_fmt_time(eta)}"
        )

    def short(self, steps: int, eval_returns: np.ndarray) -> str:
        """The bar's text: what line() says, in under 60 characters."""
        rate, eta, ev = self.figures(steps, eval_returns)
        return f"{steps:,}/{self.total:,} | {_fmt_rate(rate).strip()}/s | eval {ev.strip()} | ETA {_fmt_time(eta)}"

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

        console = Console(file=self.stream, force_terminal=True)
        self.bar = RichProgress(BarColumn(bar_width=16), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                console=console, redirect_stdout=self.stream is sys.stdout,
                                redirect_stderr=False)
        self.task = self.bar.add_task("train", total=self.total, completed=self.start_steps, info="")
        self.bar.start()

    def update(self, steps: int, eval_returns: np.ndarray, evaluated: bool = True) -> str | None:
        """Draw the progress; `evaluated` marks a step with a fresh evaluation (always kept as a
        line). Returns the line when one was drawn."""
        line = self.line(steps, eval_returns)
        keep = evaluated or steps >= self.total
        if self.tty:
            if self.bar is None:
                self._start_bar()
            self.bar.update(self.task, completed=steps, info=self.short(steps, eval_returns))
            if keep:
                self.bar.console.print(line, highlight=False, soft_wrap=True)
            self.bar.refresh()
            return line
        if keep or (steps - self.last_written) >= self.file_every * self.total:
            print(line, file=self.stream, flush=True)
            self.last_written = steps
            return line
        return None

    def close(self) -> None:
        """Stop the live bar (it stays on screen) so that what is printed next has its own lines."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def seed_table(final: np.ndarray, best: np.ndarray) -> str:
    lines = ["| seed | final eval return | best eval return |", "| --- | --- | --- |"]
    for s, (f, b) in enumerate(zip(final, best)):
        lines.append(f"| {s} | {f:.2f} | {b:.2f} |")
    lines.append(f"| mean ± std | {np.mean(final):.2f} ± {np.std(final):.2f} | {np.mean(best):.2f} ± {np.std(best):.2f} |")
    return "\n".join(lines)
