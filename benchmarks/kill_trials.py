"""Kill -9 a small study at random moments, again and again, and check after every kill that
nothing it left stops `train --resume`, `evaluate` or `study --report`, and that no metrics row
before the last complete checkpoint was lost (against an uninterrupted reference run).

    python benchmarks/kill_trials.py --trials 20 --out /tmp/kill-trials

Each trial re-runs the same study command (which resumes its cell) and SIGKILLs it after a random
delay drawn between 0 and the reference run's wall time; then it checks:
  - every JSON file under the study parses (config.json, study.json, frozen.json, eval.json ...);
  - `python -m mjxflow.study ... --report` exits 0 (or says that no cell has metrics yet);
  - `python -m mjxflow.evaluate --run CELL --no-save` exits 0 (or says the run has no checkpoint yet);
  - the cell's metrics rows up to its last complete checkpoint equal the reference's (wall time aside).
A launch that finishes before its kill lands (a resumed study has less left to do) is not a trial:
it is reported as such, checked the same way, and the next launches kill a new study, until
--trials kills have landed. After the last trial the study is run to its end, and the metrics of
every study must equal the reference's. Prints one row per launch and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num-envs", "8", "--chunk-iters", "25", "--eval-episodes", "8", "--min-replay", "256", "--batch-size", "64",
        "--replay-size", "4000", "--updates-per-iter", "2"]


def study_cmd(runs: str, name: str) -> list[str]:
    return [sys.executable, "-m", "mjxflow.study", "--name", name, "--runs-dir", runs, "--agents", "sac", "--envs",
            "bandit", "--num-seeds", "2", "--total-steps", "4000", "--num-evals", "10", "--num-checkpoints", "5", *TINY]


def rows_of(cell: str) -> list[dict]:
    out = []
    path = os.path.join(cell, "metrics.jsonl")
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a last line cut by the kill: resume drops it
                continue
            out.append({k: v for k, v in row.items() if k != "wall_time"})
    return out


def complete_checkpoints(cell: str) -> list[int]:
    folder = os.path.join(cell, "checkpoints")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def json_problems(root: str) -> list[str]:
    bad = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "checkpoints"]  # orbax's own files are checked by evaluate
        for name in files:
            if name.endswith(".json"):
                try:
                    json.load(open(os.path.join(folder, name)))
                except (ValueError, OSError) as e:
                    bad.append(f"{os.path.relpath(os.path.join(folder, name), root)}: {e}")
    return bad


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--out", default="/tmp/kill-trials")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    t = time.perf_counter()
    ref = run(study_cmd(args.out, "ref"))
    wall = time.perf_counter() - t
    if ref.returncode != 0:
        print(ref.stdout[-2000:], ref.stderr[-2000:])
        return 1
    ref_cell = os.path.join(args.out, "ref", "bandit", "sac")
    reference = rows_of(ref_cell)
    print(f"reference study: {wall:.1f} s, {len(reference)} rows, checkpoints {complete_checkpoints(ref_cell)}")
    print("| launch | trial | study | killed after (s) | last checkpoint | rows kept | rows lost before it | bad JSON | report | "
          "evaluate | ok |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failures, study, done, kills, launch = 0, 1, [], 0, 0
    while kills < args.trials:
        launch += 1
        if launch > 3 * args.trials:
            print(f"only {kills} kills landed in {launch - 1} launches")
            return 1
        name = f"K{study}"
        cell = os.path.join(args.out, name, "bandit", "sac")
        delay = rng.uniform(0.0, wall)  # some kills land in the start-up, some in training or a save
        proc = subprocess.Popen(study_cmd(args.out, name), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            finished = proc.returncode == 0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finished = False
        steps = complete_checkpoints(cell)
        last = steps[-1] if steps else 0
        rows = rows_of(cell)
        want = [r for r in reference if r["env_steps"] <= last] if steps else []  # no checkpoint: nothing to keep yet
        lost = sum(1 for r in want if r not in rows)
        bad = json_problems(os.path.join(args.out, name))
        report = run([*study_cmd(args.out, name), "--report"])
        report_ok = report.returncode == 0 or "has no cell with metrics yet" in report.stderr \
            or ("is not a study folder" in report.stderr and not os.path.exists(os.path.join(args.out, name, "study.json")))
        ev = run([sys.executable, "-m", "mjxflow.evaluate", "--run", cell, "--no-save"])
        ev_ok = ev.returncode == 0 or (not steps and ("has no checkpoints" in ev.stderr or "is not a run directory" in ev.stderr))
        ok = report_ok and ev_ok and not lost and not bad
        failures += not ok
        kills += not finished
        note = f"finished before {delay:.1f}" if finished else f"{delay:.1f}"
        print(f"| {launch} | {'-' if finished else kills} | {name} | {note} | {last:,} | {len(rows)} | {lost} | {len(bad)} | {report.returncode} | "
              f"{ev.returncode} | {'yes' if ok else 'NO: ' + (report.stderr + ev.stderr).strip()[-300:] + ' ' + ' '.join(bad)} |",
              flush=True)
        if finished:  # the next trials kill a new study
            done.append(cell)
            study += 1
    last_cell = os.path.join(args.out, f"K{study}", "bandit", "sac")
    final = run(study_cmd(args.out, f"K{study}"))
    done.append(last_cell)
    same = final.returncode == 0 and all(rows_of(c) == reference for c in done)
    print(f"after the last trial, K{study} run to its end: exit {final.returncode}; the metrics of every study "
          f"(K1 .. K{study}) equal the reference's: {same}")
    failures += not same
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
