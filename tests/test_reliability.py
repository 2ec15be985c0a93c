"""Crashes, signals, damaged checkpoints, non-finite values and determinism, through the real
command line (in-process where that is enough, a subprocess where a process must die)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mjxflow import evaluate, health, train
from mjxflow.logs import read_jsonl

from conftest import snapshot

TINY = ["--env", "bandit", "--num-envs", "8", "--num-seeds", "2", "--chunk-iters", "50", "--eval-episodes", "8",
        "--min-replay", "256", "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def args(runs, name, *extra):
    return ["--runs-dir", str(runs), "--run-name", name, "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"], *TINY, *extra]


def without_wall_time(rows):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]


def python(code: str, **popen):
    """A fresh interpreter running `code` from the project root."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True, **popen)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2400-step run with checkpoints every 800 steps."""
    runs = tmp_path_factory.mktemp("ref")
    assert train.main(args(runs, "ref", "--total-steps", "2400", "--num-checkpoints", "3", "--num-evals", "6")) == 0
    return runs / "ref"


def test_same_seed_same_metrics_other_seed_differs(reference, tmp_path):
    # the first 1200 steps of the reference run, again and with another base seed
    assert train.main(args(tmp_path, "again", "--total-steps", "1200", "--num-evals", "3")) == 0
    assert train.main(args(tmp_path, "seed1", "--total-steps", "1200", "--num-evals", "3", "--seed", "1")) == 0
    ref = [r for r in without_wall_time(read_jsonl(reference / "metrics.jsonl")) if r["env_steps"] <= 1200]
    assert without_wall_time(read_jsonl(tmp_path / "again" / "metrics.jsonl")) == ref
    other = without_wall_time(read_jsonl(tmp_path / "seed1" / "metrics.jsonl"))
    assert len(other) == len(ref)
    assert all(a["eval_return"] != b["eval_return"] for a, b in zip(other, ref))  # every log point differs
    assert [a["critic/loss"] for a in other[2:]] != [b["critic/loss"] for b in ref[2:]]


def test_sigkill_during_a_save_then_resume_loses_nothing(reference, tmp_path):
    # Kill the process (SIGKILL, no clean-up possible) in the middle of saving the 1600-step checkpoint:
    # its files are written to orbax's temporary directory but not yet renamed into place.
    crash = python(f"""
        import os, signal, sys
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        async def killing_finalize(self, *a, **k):
            if self._final_path.name == "1600":
                os.kill(os.getpid(), signal.SIGKILL)
            return await finalize(self, *a, **k)
        atomicity.AtomicRenameTemporaryPath.finalize = killing_finalize
        from mjxflow import train
        sys.exit(train.main({args(tmp_path, "crash", "--total-steps", "2400", "--num-checkpoints", "3", "--num-evals", "6")!r}))
    """, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = crash.communicate(timeout=600)
    assert crash.returncode == -signal.SIGKILL, err
    run = tmp_path / "crash"
    names = os.listdir(run / "checkpoints")
    assert "800" in names and "1600" not in names
    assert any(n.startswith("1600") and "tmp" in n for n in names), names  # the half-written save
    # logged past the last whole checkpoint (800); the save runs in the background, so a chunk may follow it
    assert max(r["env_steps"] for r in read_jsonl(run / "metrics.jsonl")) >= 1600
    # a reader leaves an unfinished save alone (a live run's would be in progress): evaluate --no-save
    # reads the 800 checkpoint and the temporary folder is still there a second later
    assert evaluate.main(["--run", str(run), "--no-save", "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]) == 0
    time.sleep(1.0)
    assert sorted(os.listdir(run / "checkpoints")) == sorted(names)

    assert train.main(["--resume", str(run)]) == 0
    assert sorted(os.listdir(run / "checkpoints")) == ["1600", "2400", "800"]  # no temporary left
    assert without_wall_time(read_jsonl(run / "metrics.jsonl")) == without_wall_time(read_jsonl(reference / "metrics.jsonl"))
    csv_ref = [line.split(",")[:2] + line.split(",")[3:] for line in open(reference / "metrics.csv")]
    csv_run = [line.split(",")[:2] + line.split(",")[3:] for line in open(run / "metrics.csv")]
    assert csv_run == csv_ref


def tb_scalars(run, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))  # TensorBoard's own reader (it applies the resume's purge)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_sigkill_right_after_a_checkpoint_then_resume_logs_every_step_once(reference, tmp_path):
    """Killed (SIGKILL) the moment the 1600-step checkpoint is complete: the metrics rows and the
    TensorBoard events up to it are on the disk (they are synced at each checkpoint), and after the
    resume tb/ holds every logged step exactly once, with the values of metrics.jsonl."""
    crash = python(f"""
        import os, signal, sys
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        async def finalize_then_kill(self, *a, **k):
            out = await finalize(self, *a, **k)
            if self._final_path.name == "1600":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        atomicity.AtomicRenameTemporaryPath.finalize = finalize_then_kill
        from mjxflow import train
        sys.exit(train.main({args(tmp_path, "tb", "--total-steps", "2400", "--num-checkpoints", "3", "--num-evals", "6")!r}))
    """, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = crash.communicate(timeout=600)
    assert crash.returncode == -signal.SIGKILL, err
    run = tmp_path / "tb"
    assert "1600" in os.listdir(run / "checkpoints")
    assert [s for s, _ in tb_scalars(run, "eval_return/seed_0")][:5] == [0, 400, 800, 1200, 1600]
    assert train.main(["--resume", str(run)]) == 0
    rows = read_jsonl(run / "metrics.jsonl")
    for tag, key in (("eval_return/seed_0", "eval_return"), ("critic/loss/seed_1", "critic/loss")):
        seed = int(tag[-1])
        logged = [(r["env_steps"], r[key]) for r in rows if r["seed"] == seed and r.get(key) is not None]
        got = tb_scalars(run, tag)
        assert [s for s, _ in got] == [s for s, _ in logged], (tag, got)
        np.testing.assert_allclose([v for _, v in got], [v for _, v in logged], rtol=1e-6)


def test_a_full_disk_during_a_checkpoint_stops_in_one_line_and_resumes(reference, tmp_path):
    """The 1600-step checkpoint's write fails for lack of space (inside orbax's background save):
    the run stops with one line naming the last complete checkpoint, exit 1; that checkpoint is
    intact and the resume continues exactly."""
    crash = python(f"""
        import errno, sys
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        async def full(self, *a, **k):
            if self._final_path.name == "1600":
                raise OSError(errno.ENOSPC, "No space left on device")
            return await finalize(self, *a, **k)
        atomicity.AtomicRenameTemporaryPath.finalize = full
        from mjxflow import train
        sys.exit(train.main({args(tmp_path, "full", "--total-steps", "2400", "--num-checkpoints", "3", "--num-evals", "6")!r}))
    """, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = crash.communicate(timeout=600)
    run = tmp_path / "full"
    lines = [line for line in err.strip().splitlines() if not line.startswith("[")]  # the progress lines aside
    assert crash.returncode == 1 and lines == [f"stopped: no space left on device; the last complete checkpoint, at "
                                               f"800 env steps, is intact: free some space, then continue with: "
                                               f"python -m mjxflow.train --resume {run}"], err
    assert train.main(["--resume", str(run)]) == 0
    assert without_wall_time(read_jsonl(run / "metrics.jsonl")) == without_wall_time(read_jsonl(reference / "metrics.jsonl"))


def test_a_full_disk_while_logging_stops_in_one_line(tmp_path, capsys, monkeypatch):
    from mjxflow import logs

    real, calls = logs.MetricsWriter.write, []

    def write(self, rows):
        calls.append(1)
        if len(calls) == 4:  # after the 800-step checkpoint
            raise OSError(28, "No space left on device", str(tmp_path / "full" / "metrics.jsonl"))
        return real(self, rows)

    monkeypatch.setattr(logs.MetricsWriter, "write", write)
    assert train.main(args(tmp_path, "full", "--total-steps", "2400", "--num-checkpoints", "3", "--num-evals", "6")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"stopped: no space left on device writing {tmp_path / 'full' / 'metrics.jsonl'}; the last "
                       f"complete checkpoint, at 800 env steps, is intact: free some space, then continue with: "
                       f"python -m mjxflow.train --resume {tmp_path / 'full'}"), err


# The options whose auto value follows the run's budget, pinned at the reference's: the stopped run
# is started with a budget of 400,000 steps so that the signal lands mid-run (its config then keeps
# them on resume). On the bandit the critic's tau has no effect (every episode ends after one step).
BUDGET_FREE = ("--smfp.init-alpha", "0.2", "--smfp.target-entropy-scale", "1.0")


def test_sigint_finishes_the_chunk_saves_and_exits(reference, tmp_path):
    proc = python(f"""
        import sys
        from mjxflow import train
        sys.exit(train.main({args(tmp_path, "int", "--total-steps", "400000", "--num-checkpoints", "2", "--num-evals", "1000",
                                  *BUDGET_FREE)!r}))
    """, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "800/" in line and "steps/s" in line:  # two chunks done: training is under way
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.communicate(timeout=600)[0]
    assert proc.returncode == 130, out
    assert "SIGINT received: finishing the current chunk" in out
    stopped = [line for line in out.splitlines() if line.startswith("stopped by SIGINT at ")]
    assert len(stopped) == 1 and "checkpoint saved; continue with: python -m mjxflow.train --resume" in stopped[0], out
    step = int(stopped[0].split(" at ")[1].split(" env steps")[0].replace(",", ""))
    assert 800 <= step < 400000 and step % 400 == 0
    run = tmp_path / "int"
    assert os.listdir(run / "checkpoints") == [str(step)]  # saved although the interval had not come
    assert max(r["env_steps"] for r in read_jsonl(run / "metrics.jsonl")) == step
    assert "Traceback" not in out
    # and it resumes from there to the same place as an uninterrupted run (the reference's 2400 steps,
    # or, when the signal landed later, a fresh run 800 steps past the stop; an evaluation every 400)
    total = 2400 if step < 2400 else step + 800
    if total != 2400:
        assert train.main(args(tmp_path, "ref2", "--total-steps", str(total), "--num-checkpoints", "3",
                               "--num-evals", str(total // 400))) == 0
        reference = tmp_path / "ref2"
    assert train.main(["--resume", str(run), "--total-steps", str(total), "--num-checkpoints", "3",
                       "--num-evals", str(total // 400)]) == 0
    ref = without_wall_time(read_jsonl(reference / "metrics.jsonl"))
    assert without_wall_time(read_jsonl(run / "metrics.jsonl")) == ref


def test_damaged_latest_checkpoint_is_reported_and_the_previous_used(reference, tmp_path, capsys):
    assert train.main(args(tmp_path, "dmg", "--total-steps", "2400", "--num-checkpoints", "3", "--num-evals", "6")) == 0
    run = tmp_path / "dmg"
    for folder, _, files in os.walk(run / "checkpoints" / "2400"):
        for name in files:  # every data file cut to half its size
            path = os.path.join(folder, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--total-steps", "3200", "--num-evals", "8"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint at 2,400 env steps cannot be read: damaged (" in out
    assert "resumed from checkpoint at 1,600 env steps" in out
    assert os.path.isdir(run / "unreadable-checkpoints" / "2400")
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["env_steps"] for r in rows if r["seed"] == 0] == [0, 400, 800, 1200, 1600, 2000, 2400, 2800, 3200]
    # the redone steps up to 2400 match the uninterrupted run exactly
    ref = without_wall_time(read_jsonl(reference / "metrics.jsonl"))
    assert without_wall_time(rows)[: len(ref)] == ref


def test_resume_without_a_checkpoint_stops_unless_restart(tmp_path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"seed": 0, "env_steps": 400, "wall_time": 1.0, "eval_return": 5.0}\n{"seed": 0, "env')
    from mjxflow.config import save_json
    from conftest import tiny_config
    save_json(tiny_config(total_steps=800, num_evals=2, num_checkpoints=1), str(run / "config.json"))
    before = snapshot(run)
    assert train.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot resume {run}: no checkpoint can be read (it has none); nothing was changed") and "--restart" in err
    assert len(err.splitlines()) == 1 and snapshot(run) == before
    assert train.main(["--restart"]) == 2
    assert "--restart only applies with --resume" in capsys.readouterr().err
    assert train.main(["--resume", str(run), "--restart"]) == 0
    assert "has no readable checkpoint: starting the run over (--restart)" in capsys.readouterr().out
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["env_steps"] for r in rows if r["seed"] == 0] == [0, 400, 800]  # the old rows are gone
    assert '"restart": false' in (run / "config.json").read_text()  # a later resume does not start over again


def test_resume_with_only_unreadable_checkpoints_changes_nothing(reference, tmp_path):
    """Damaged checkpoints, and checkpoints of an incompatible setup, are named as such; the resume
    exits 2 and leaves the metrics and the checkpoints exactly as they were."""
    run = tmp_path / "bad"
    shutil.copytree(reference, run)
    for folder, _, files in os.walk(run / "checkpoints" / "2400"):  # damage the newest one
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)
    # the older ones hold 256-unit critics; this config asks for 32 (as a release whose state layout
    # changed would)
    cfg = json.loads((run / "config.json").read_text())
    cfg["critic"]["hidden"] = [32, 32]
    (run / "config.json").write_text(json.dumps(cfg))
    before = snapshot(run)
    # a real process: orbax's failed reads print from its threads too, past Python's sys.stderr
    proc = subprocess.run([sys.executable, "-m", "mjxflow.train", "--resume", str(run)], cwd=ROOT, text=True,
                          capture_output=True, timeout=600)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert "no checkpoint can be read (2,400 env steps: damaged (" in err
    assert "1,600 env steps: written by an incompatible release or setup (mjxflow " in err
    assert "800 env steps: written by an incompatible release or setup" in err and "expected" in err
    assert "nothing was changed" in err and "--restart" in err
    assert snapshot(run) == before


def test_checkpoint_without_a_format_record_is_named_as_an_older_release(reference, tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(reference, run)
    for step in os.listdir(run / "checkpoints"):
        shutil.rmtree(run / "checkpoints" / step / "meta")  # as saved before checkpoints carried one
    assert evaluate.main(["--run", str(run)]) == 0  # still readable: nothing is wrong with it
    cfg = json.loads((run / "config.json").read_text())
    cfg["critic"]["hidden"] = [32, 32]  # the train state no longer fits; evaluate reads the policy alone
    (run / "config.json").write_text(json.dumps(cfg))
    assert evaluate.main(["--run", str(run)]) == 0
    assert train.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "written by an incompatible release or setup (a release without a format record; state array 25: " in err, err
    cfg[cfg["agent"].split("-")[0]]["actor_hidden"] = [32, 32]  # now the policy does not fit either
    (run / "config.json").write_text(json.dumps(cfg))
    assert evaluate.main(["--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "written by an incompatible release or setup (a release without a format record; policy array 0: " in err, err


def test_damaged_metrics_line_is_skipped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"seed": 0, "env_steps": 0, "eval_return": 1.0}\n'
                    '{"seed": 0, "env_st@#!\n'
                    '[1, 2]\n'
                    '{"seed": 0, "env_steps": 400, "eval_return": 2.0}\n'
                    '{"seed": 0, "env_steps": 8')
    rows = read_jsonl(str(path))
    assert [r["env_steps"] for r in rows] == [0, 400]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("warning: ") and "line 2 is damaged" in err[0] and "line 3" in err[1]


@pytest.mark.parametrize("where", ["loop", "initial"])
def test_non_finite_evaluation_return_stops_the_run(tmp_path, capsys, monkeypatch, where):
    """An evaluation that returns NaN stops the run (exit 1, one line) instead of logging the previous
    value in its place: at the first evaluation after training started, or at the initial one."""
    real, calls = train.compile_evaluation, []

    def poisoned(*a, **k):
        evaluate = real(*a, **k)

        def run(state):
            calls.append(1)
            poison = (len(calls) == 2) == (where == "loop")
            return evaluate(state) * (np.nan if poison else 1.0)

        return run

    monkeypatch.setattr(train, "compile_evaluation", poisoned)
    code = train.main(args(tmp_path, "nan-eval", "--total-steps", "1200", "--num-checkpoints", "3", "--num-evals", "3"))
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    run = tmp_path / "nan-eval"
    if where == "loop":
        assert "seed 0: eval/return at env step 400; seed 1: eval/return at env step 400" in err
        rows = read_jsonl(run / "metrics.jsonl")
        assert [r["eval_return"] for r in rows if r["env_steps"] == 400] == [None, None]  # logged as it came
    else:
        assert "seed 0: eval/return at env step 0" in err and "initial policy's evaluation" in err
    assert not os.listdir(run / "checkpoints")


def test_nan_evaluation_inside_the_loop_is_reported():
    iters, seeds = 4, 2
    evaluated = np.zeros((iters, seeds), bool)
    evaluated[3] = True
    evals = np.full((iters, seeds), np.nan)
    evals[3, 0] = 5.0  # seed 1's evaluation came back NaN
    metrics = {"check/learned": np.zeros((iters, seeds), bool), "check/evaluated": evaluated, "eval/return": evals,
               "train/return_sum": np.zeros((iters, seeds)), "train/episodes": np.ones((iters, seeds)),
               "train/reused_starts": np.zeros((iters, seeds)),
               "check/state_finite": np.array([True, True])}
    assert health.first_nonfinite(metrics, 8, 10) == {1: (80, "eval/return")}
    from mjxflow.logs import chunk_rows
    last = np.array([1.0, 2.0])
    rows = chunk_rows(metrics, 8, 10, 0.0, last)
    assert rows[0]["eval_return"] == 5.0 and np.isnan(rows[1]["eval_return"])  # not the previous 2.0


def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, capsys):
    # A critic learning rate of 1e30 blows the Q values up to inf, then NaN, as soon as learning starts
    # (after 808 transitions, in the third 400-step chunk); checkpoints come every 400 steps.
    code = train.main(args(tmp_path, "nan", "--total-steps", "4000", "--num-checkpoints", "10", "--num-evals", "10", "--min-replay", "808",
                           "--critic.lr", "1e30"))
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith("stopped: non-finite values (seed 0: ")
    assert "seed 1: " in err and "at env step 8" in err  # the first learning steps are 808 and on
    assert "this state was not saved, the last good checkpoint (800 env steps) is kept" in err
    assert sorted(os.listdir(tmp_path / "nan" / "checkpoints")) == ["400", "800"]


def test_first_nonfinite_names_seed_step_and_quantity():
    iters, seeds = 10, 3
    learned = np.zeros((iters, seeds), bool)
    learned[4:] = True
    loss = np.full((iters, seeds), np.nan)  # NaN before learning starts is normal
    loss[4:] = 1.0
    q = np.ones((iters, seeds))
    loss[6, 1] = np.nan
    q[8, 1] = np.inf
    evals = np.full((iters, seeds), np.nan)  # NaN: no evaluation on that iteration
    evals[9] = 3.0
    evals[9, 2] = -np.inf
    evaluated = np.zeros((iters, seeds), bool)
    evaluated[9] = True
    metrics = {"check/learned": learned, "check/evaluated": evaluated, "critic/loss": loss, "critic/q_mean": q, "eval/return": evals,
               "train/return_sum": np.zeros((iters, seeds)), "check/state_finite": np.array([True, True, True])}
    # the chunk ended at iteration 30 with 8 envs: its iterations are 21..30
    assert health.first_nonfinite(metrics, 30, 8) == {1: (8 * 27, "critic/loss"), 2: (8 * 30, "eval/return")}
    metrics["check/state_finite"] = np.array([False, True, True])
    found = health.first_nonfinite(metrics, 30, 8)
    assert found[0] == (240, "learner state (parameters, optimiser or temperature)")
    assert health.describe(found).startswith("seed 0: learner state (parameters, optimiser or temperature) at env step 240; seed 1: critic/loss at env step 216")
    metrics["check/state_finite"][:] = True
    metrics["critic/loss"][6, 1] = 1.0
    metrics["critic/q_mean"][8, 1] = 1.0
    metrics["eval/return"][9, 2] = 3.0
    assert health.first_nonfinite(metrics, 30, 8) == {}


def test_progress_into_a_file_writes_evaluations_and_a_line_per_five_percent():
    import io

    from mjxflow.logs import Progress

    out = io.StringIO()
    p = Progress(total_steps=1000, start_steps=0, num_seeds=2, stream=out)
    returns = np.array([1.0, 2.0])
    drawn = [p.update(steps, returns, evaluated=steps in (0, 500)) for steps in range(0, 1001, 10)]
    lines = out.getvalue().splitlines()
    assert len(lines) == sum(d is not None for d in drawn) == 21  # every 50 steps, the evaluations among them
    assert "1.50 ± 0.50" in lines[0] and lines[-1].startswith("[100.0%]")


def test_progress_on_a_terminal_moves_a_bar_and_keeps_evaluations():
    import io
    import re

    from mjxflow.logs import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    p = Progress(total_steps=100, start_steps=0, num_seeds=1, stream=out)
    for steps in range(10, 101, 10):
        p.update(steps, np.array([3.0]), evaluated=steps == 50)
    p.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # without the terminal's control codes
    kept = [line for line in text.splitlines() if line.startswith("[")]
    assert [line[:7] for line in kept] == ["[ 50.0%", "[100.0%"]  # the evaluation at 50 and the end
    assert "━" in text and "100/100 |" in text and "eval 3.00" in text  # the bar and its figures


def test_a_live_study_refuses_a_second_process_of_its_names_and_finishes_whole(reference, tmp_path, capsys):
    """A real study trains its cell in another process (held still with SIGSTOP after its first
    progress line, so the attempts below meet a live run): a second study of its name, a new run of
    its cell's name, an --overwrite of the cell and a --resume of it are each refused (exit 2, one
    line naming the pid); let go, the first finishes whole, its metrics those of an uninterrupted run."""
    from mjxflow import study

    opts = ["--runs-dir", str(tmp_path), "--agents", "smfp", "--envs", "bandit", "--total-steps", "2400",
            "--num-checkpoints", "3", "--num-evals", "6", "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"],
            *[a for a in TINY if a not in ("--env", "bandit")]]
    first = python(f"""
        import sys
        from mjxflow import study
        sys.exit(study.main({["--name", "S", *opts]!r}))
    """, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for line in first.stdout:
        lines.append(line)
        if "steps/s" in line:  # training is under way: the cell's run directory exists and is held
            first.send_signal(signal.SIGSTOP)
            break
    cell = tmp_path / "S" / "bandit" / "smfp"  # the reference's options: its metrics must match
    try:
        assert (cell / "config.json").exists(), "".join(lines)
        before = snapshot(tmp_path / "S")
        held = f"is in use by another process (pid {first.pid}, "
        attempts = [(study.main, ["--name", "S", *opts]),
                    (train.main, args(cell.parent, cell.name, "--total-steps", "2400")),
                    (train.main, args(cell.parent, cell.name, "--total-steps", "2400", "--overwrite")),
                    (train.main, ["--resume", str(cell)])]
        for main, argv in attempts:
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and held in err, err
        assert snapshot(tmp_path / "S") == before  # nothing of the live study changed
    finally:
        first.send_signal(signal.SIGCONT)
    out = "".join(lines) + first.communicate(timeout=600)[0]
    assert first.returncode == 0, out
    assert sorted(os.listdir(cell / "checkpoints"), key=int) == ["800", "1600", "2400"]
    assert without_wall_time(read_jsonl(cell / "metrics.jsonl")) == without_wall_time(read_jsonl(reference / "metrics.jsonl"))
