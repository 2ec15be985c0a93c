import json
import os

import jax
import numpy as np
import pytest

from mjxflow import evaluate, train
from mjxflow.loop import build_loop
from mjxflow.errors import ConfigError
from mjxflow.logs import read_jsonl

from conftest import compile_events, tiny_config

TINY = ["--env", "bandit", "--num-envs", "8", "--num-seeds", "2", "--chunk-iters", "50", "--eval-episodes", "8",
        "--min-replay", "256", "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2"]


def cli(tmp_path, *args):
    return ["--runs-dir", str(tmp_path), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"], *TINY, *args]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "antt"], "invalid choice 'antt' for argument '--env'. Expected one of ('inverted_pendulum', "
                            "'inverted_double_pendulum', 'reacher', 'pusher', 'swimmer', 'hopper', 'halfcheetah'"),
        (["--agent", "ppo"], "invalid choice 'ppo' for argument '--agent'. Expected one of ('sac', 'smfp', 'fpmd-r', 'fpmd-m')."),
        (["--num-envs", "0"], "--num-envs must be a positive integer, got 0"),
        (["--num-seeds", "-2"], "--num-seeds must be a positive integer, got -2"),
        (["--batch-size", "512"], "--batch-size 512 is larger than the replay's minimum fill"),
        (["--num-envs", "1.5"], "--num-envs must be an integer, got '1.5'"),
        (["--num-seeds=two"], "--num-seeds must be an integer, got 'two'"),
        (["--total-steps", "0"], "--total-steps must be a positive integer, got 0"),
        (["--total-steps", "-100"], "--total-steps must be a positive integer, got -100"),
        (["--total-steps", "1e5"], "--total-steps must be an integer, got '1e5'"),
        (["--num-evals", "0"], "--num-evals must be a positive integer, got 0"),
        (["--chunk-iters", "-1"], "--chunk-iters must be a positive integer, got -1"),
        (["--num-checkpoints", "0"], "--num-checkpoints must be a positive integer, got 0"),
        (["--eval-episodes", "0"], "--eval-episodes must be a positive integer, got 0"),
        (["--replay-gib-per-seed", "0"], "--replay-gib-per-seed must be > 0, got 0.0"),
        (["--agent", "smfp", "--sac.actor-lr", "1e-3"], "--sac.actor-lr is an option of --agent sac, and this run uses --agent smfp"),
        (["--agent", "sac", "--fpmd.num-particles", "8"],
         "--fpmd.num-particles is an option of --agent fpmd-r or --agent fpmd-m, and this run uses --agent sac"),
        (["--critic.lr", "nan"], "--critic.lr must be a finite number, got nan"),
        (["--critic.lr", "inf"], "--critic.lr must be a finite number, got inf"),
        (["--smfp.beta-md", "inf"], "--smfp.beta-md must be a finite number, got inf"),
        (["--critic.v-min", "-inf"], "--critic.v-min must be a finite number, got -inf"),
        (["--critic.lr", "-1e-3"], "--critic.lr must be > 0, got -0.001"),
        (["--critic.gamma", "1.5"], "--critic.gamma must be in [0, 1), got 1.5"),
        (["--critic.tau", "2"], "--critic.tau must be in (0, 1], got 2.0"),
        (["--run-name", "a/b"], "--run-name must be a name, not a path, got 'a/b'"),
        (["--run-name", ".."], "--run-name must be a name, not a path, got '..'"),
        (["--replay-size", "2000000000"], "--replay-size 2,000,000,000 needs"),
        (["--replay-size", "100000000000"], "--replay-size must be at most 2,147,483,647 (2^31 - 1), got 100,000,000,000"),
        (["--num-env", "8"], "Unrecognized options: --num-env, 8 (perhaps you meant --num-envs)"),
        (["--critic.hidden", "64", "wide"], "--critic.hidden must be integers, got 'wide'"),
        (["--smfp.weights", "softmax"], "invalid choice 'softmax' for argument '--smfp.weights'. Expected one of ('linear', 'exp')."),
        (["--smfp.num-particles", "1"], "--smfp.num-particles must be >= 2 (the weights compare particles of the same state), got 1"),
        (["--smfp.times.frac-r-neq-t", "1.5"], "--smfp.times.frac-r-neq-t must be in [0, 1], got 1.5"),
        (["--agent", "fpmd-r", "--fpmd.md-lambda", "0"], "--fpmd.md-lambda must be > 0, got 0.0"),
        (["--agent", "fpmd-m", "--fpmd.times.dist", "beta"],
         "invalid choice 'beta' for argument '--fpmd.times.dist'. Expected one of ('logit_normal', 'uniform')."),
        (["--critic.gamma", "1"], "--critic.gamma must be in [0, 1), got 1.0"),
        (["--agent", "sac", "--sac.log-std-min", "3"], "--sac.log-std-min must be < --sac.log-std-max 2.0, got 3.0"),
        (["--restart"], "--restart only applies with --resume RUN_DIR"),
        (["--total-steps", "99999999999999999"], "--total-steps 99,999,999,999,999,999 is 12,500,000,000,000,000 "
                                                  "iterations of --num-envs 8; the iteration counter is int32"),
        (["--num-envs", "3000000000"], "--num-envs must be at most 2,147,483,647 (2^31 - 1), got 3,000,000,000"),
        (["--episode-length", "2147483648"], "--episode-length must be at most 2,147,483,647"),
        (["--seed", "99999999999999999999999"], "--seed must be an integer in 0 .. 4,294,967,295"),
        (["--seed", "-1"], "--seed must be an integer in 0 .. 4,294,967,295"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    with compile_events() as compiles:
        code = train.main(cli(tmp_path, *args))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1, err
    assert not os.listdir(tmp_path)  # nothing created
    assert not compiles  # nothing traced or compiled either


def test_replay_memory_estimate_names_the_numbers(tmp_path, capsys):
    assert train.main(cli(tmp_path, "--replay-size", "2000000000", "--num-seeds", "3")) == 2
    err = capsys.readouterr().err
    # bandit: obs 2 + action 2 + reward + next_obs 2 + terminated = 8 float32 = 32 bytes per transition
    per_seed = 2_000_000_000 * 32 / 2**30
    assert f"{per_seed:,.2f} GiB per seed" in err and f"{3 * 2 * per_seed:,.1f} GiB for 3 seeds" in err
    assert "GiB free in" in err and "lower --replay-size or --num-seeds" in err


def test_memory_check_against_a_given_budget():
    cfg = tiny_config(replay_size=2000, num_seeds=2)
    loop = build_loop(cfg)
    need = 2 * 2 * loop.replay_bytes_per_seed()  # 2 seeds, x2 for the checkpoint copy on the CPU
    train.check_memory(cfg, loop, free=need, where="test")  # fits exactly
    with pytest.raises(ConfigError, match="more than the 0.0 GiB free in test"):
        train.check_memory(cfg, loop, free=need - 1, where="test")


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    assert train.main(cli(tmp_path, "--run-name", "taken")) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").exists()


def test_a_run_validates_and_resolves_its_config_once(tmp_path, monkeypatch):
    """`python -m mjxflow.train` checks its options and fills in the auto ones once: not again when
    it opens the run, nor when it builds the loop, nor in --print-config."""
    from mjxflow import loop as loop_lib

    calls = {"validate": 0, "resolve": 0}

    def counted(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(train, "validate", counted("validate", train.validate))
    resolve = counted("resolve", train.resolve)
    monkeypatch.setattr(train, "resolve", resolve)
    monkeypatch.setattr(loop_lib, "resolve", resolve)
    assert train.main(cli(tmp_path, "--run-name", "once", "--total-steps", "400", "--num-evals", "1")) == 0
    assert calls == {"validate": 1, "resolve": 1}, calls
    calls.update(validate=0, resolve=0)
    assert train.main(["--resume", str(tmp_path / "once"), "--total-steps", "800", "--num-evals", "2"]) == 0
    assert calls == {"validate": 1, "resolve": 1}, calls
    calls.update(validate=0, resolve=0)
    assert train.main(cli(tmp_path, "--print-config")) == 0
    assert calls == {"validate": 1, "resolve": 1}, calls


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert train.main(cli(runs, "--run-name", "r", "--total-steps", "1600", "--num-checkpoints", "2", "--num-evals", "4")) == 0
    return runs / "r"


def test_run_directory_contents(cli_run):
    assert {"config.json", "metrics.jsonl", "metrics.csv", "checkpoints", "curve.png"} <= set(os.listdir(cli_run))
    assert sorted(os.listdir(cli_run / "checkpoints")) == ["1600", "800"]
    rows = read_jsonl(cli_run / "metrics.jsonl")
    assert len(rows) == 5 * 2  # the initial policy and 4 log points, x 2 seeds
    assert [r["env_steps"] for r in rows if r["seed"] == 1] == [0, 400, 800, 1200, 1600]
    assert {"seed", "env_steps", "wall_time", "eval_return", "critic/loss", "actor/loss"} <= set(rows[-1])
    header = open(cli_run / "metrics.csv").readline().strip().split(",")
    assert header[:4] == ["seed", "env_steps", "wall_time", "eval_return"]
    assert json.load(open(cli_run / "config.json"))["env"] == "bandit"


def test_print_config_answers_at_once_for_the_largest_budget(tmp_path, capsys):
    """The largest --total-steps the int32 iteration counter allows: the schedule is not built
    step by step (it would hang), nothing is written."""
    assert train.main(cli(tmp_path, "--total-steps", str((2**31 - 1) * 8), "--print-config")) == 0
    assert json.loads(capsys.readouterr().out)["total_steps"] == (2**31 - 1) * 8
    assert not os.listdir(tmp_path)


def test_evaluate_reproduces_final_return(cli_run, capsys):
    assert evaluate.main(["--run", str(cli_run), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]) == 0
    out = json.load(open(cli_run / "eval.json"))
    final = [r["eval_return"] for r in read_jsonl(cli_run / "metrics.jsonl") if r["env_steps"] == 1600]
    per_seed = [s["episode_return_mean"] for s in out["per_seed"]]
    np.testing.assert_allclose(per_seed, final, rtol=1e-6)
    assert out["episode_return_mean"] == pytest.approx(np.mean(final), rel=1e-6)
    assert "episode_return_std" in out and out["step"] == 1600
    assert "over seeds" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--episodes", "0"], "--episodes must be a positive integer, got 0"),
    (["--episodes", "-3"], "--episodes must be a positive integer, got -3"),
    (["--mode-samples", "0"], "--mode-samples must be a positive integer, got 0"),
    (["--step", "-800"], "--step must be a checkpoint's env step count (>= 0), got -800"),
    (["--episodes", "ten"], "--episodes must be an integer, got 'ten'"),
])
def test_evaluate_bad_input_is_one_line_and_exit_2(cli_run, capsys, args, message):
    assert evaluate.main(["--run", str(cli_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {message}", err


def test_evaluate_missing_step_says_so(cli_run, capsys):
    assert evaluate.main(["--run", str(cli_run), "--step", "123"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no checkpoint at step 123; saved steps: [800, 1600]" in err and len(err.splitlines()) == 1


def test_evaluate_on_a_run_without_checkpoints_or_not_a_run(cli_run, tmp_path, capsys):
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.json").write_text((cli_run / "config.json").read_text())
    assert evaluate.main(["--run", str(tmp_path / "fresh")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'fresh'} has no checkpoints"
    assert not (tmp_path / "fresh" / "checkpoints").exists()
    assert evaluate.main(["--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path} is not a run directory (no config.json)"


@pytest.mark.parametrize(
    "args, differences",
    [
        (["--env", "multigoal"], ["env: 'bandit' -> 'multigoal'"]),
        (["--agent", "sac"], ["agent: 'smfp' -> 'sac'"]),
        (["--critic.hidden", "32", "32", "--smfp.actor-hidden", "64"],
         ["critic.hidden: (256, 256) -> (32, 32)", "smfp.actor_hidden: (256, 256) -> (64,)"]),
        (["--num-envs", "16", "--num-seeds", "3"], ["num_envs: 8 -> 16", "num_seeds: 2 -> 3"]),
        (["--seed", "7"], ["seed: 0 -> 7"]),
    ],
)
def test_resume_refuses_a_changed_setup(cli_run, capsys, args, differences):
    steps = sorted(os.listdir(cli_run / "checkpoints"))
    assert train.main(["--resume", str(cli_run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot resume {cli_run}: these settings differ") and len(err.splitlines()) == 1
    for d in differences:
        assert d in err
    assert err.count("->") == len(differences)
    assert sorted(os.listdir(cli_run / "checkpoints")) == steps  # nothing touched


def test_resume_continues_the_run(cli_run):
    # total steps, the logging / evaluation interval and checkpointing may change on resume
    assert train.main(["--resume", str(cli_run), "--total-steps", "2400", "--num-evals", "3", "--chunk-iters", "100",
                       "--num-checkpoints", "3"]) == 0
    rows = read_jsonl(cli_run / "metrics.jsonl")
    assert [r["env_steps"] for r in rows if r["seed"] == 0] == [0, 400, 800, 1200, 1600, 2400]
    assert "2400" in os.listdir(cli_run / "checkpoints")
    walls = [r["wall_time"] for r in rows if r["seed"] == 0]
    assert walls == sorted(walls)


def test_evaluate_reports_mode_coverage_on_multigoal(tmp_path, capsys):
    args = ["--run-name", "mg", "--total-steps", "800", "--env", "multigoal"]
    assert train.main(cli(tmp_path, *args)) == 0
    assert evaluate.main(["--run", str(tmp_path / "mg"), "--mode-samples", "1000"]) == 0
    out = json.load(open(tmp_path / "mg" / "eval.json"))
    coverage = np.asarray(out["mode_coverage"])
    assert coverage.shape == (2, 4) and np.all((coverage >= 0) & (coverage <= 1))
    assert np.all(coverage.sum(axis=1) <= 1 + 1e-6)
    assert "mode coverage" in capsys.readouterr().out
    # the same fractions measured here, from load_policy's stochastic actions and the task's modes
    # written out (goals at radius 0.6 on the diagonals, a mode is within 0.25 of its goal)
    from mjxflow import load_policy

    angles = 2 * np.pi * (np.arange(4) + 0.5) / 4
    goals = 0.6 * np.stack([np.cos(angles), np.sin(angles)], -1)
    for seed in range(2):
        policy = load_policy(str(tmp_path / "mg"), seed=seed)
        actions = np.asarray(policy(np.zeros((4000, 2), np.float32), jax.random.PRNGKey(7), deterministic=False))
        inside = np.linalg.norm(actions[:, None, :] - goals, axis=-1) < 0.25  # (samples, modes); the modes do not overlap
        mine = inside.mean(0)
        assert mine.sum() > 0.05, mine  # this policy does put samples in the modes, so zeros would be wrong
        np.testing.assert_allclose(coverage[seed], mine, atol=0.06)  # 1,000 and 4,000 samples: 4 sigma ~ 0.06


# ---- one process per run directory ----------------------------------------------------------------

HOLD = ("import sys, time; from mjxflow import rundir; rundir.Lock(sys.argv[1], 'training').acquire(); "
        "print('held', flush=True); time.sleep(600)")


@pytest.fixture
def holder():
    """hold(folder): another process that holds the folder's lock (as a training run does)."""
    import subprocess
    import sys

    procs = []

    def hold(folder):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_live_run_is_refused_to_a_second_process_and_never_deleted(cli_run, capsys, holder):
    """While another process holds a run: a new run of its name, an --overwrite of it, a --resume
    and a saving evaluate are each one line, exit 2, naming the holder's pid, and nothing of the run
    changes; evaluate --no-save still reads it. The holder killed (kill -9), the lock is free."""
    from mjxflow import rundir

    before = {f: os.path.getmtime(cli_run / f) for f in ("config.json", "metrics.jsonl")}
    steps = sorted(os.listdir(cli_run / "checkpoints"))
    evals = sorted(os.listdir(cli_run / "evals")) if (cli_run / "evals").exists() else []
    proc = holder(cli_run)
    runs = cli_run.parent
    for argv in (cli(runs, "--run-name", cli_run.name), cli(runs, "--run-name", cli_run.name, "--overwrite"),
                 ["--resume", str(cli_run)]):
        assert train.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"is in use by another process (pid {proc.pid}, training)" in err, err
    assert evaluate.main(["--run", str(cli_run)]) == 2
    assert f"pid {proc.pid}" in capsys.readouterr().err
    assert evaluate.main(["--run", str(cli_run), "--no-save", "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]) == 0
    assert sorted(os.listdir(cli_run / "checkpoints")) == steps
    assert (sorted(os.listdir(cli_run / "evals")) if (cli_run / "evals").exists() else []) == evals
    assert {f: os.path.getmtime(cli_run / f) for f in before} == before
    proc.kill()
    proc.wait()
    with rundir.Lock(cli_run, "test"):  # a holder that died leaves no stale lock
        pass


def test_a_run_whose_name_another_process_holds_is_refused(tmp_path, capsys, holder):
    """The lock is taken before the run directory exists: a run whose name another process is
    about to create is refused, and nothing is created."""
    proc = holder(tmp_path / "new")
    assert train.main(cli(tmp_path, "--run-name", "new")) == 2
    assert f"pid {proc.pid}" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_evaluate_keeps_one_result_per_step_and_the_latest(cli_run):
    cache = ["--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
    assert evaluate.main(["--run", str(cli_run), "--step", "800", *cache]) == 0
    at_800 = json.load(open(cli_run / "eval.json"))
    assert evaluate.main(["--run", str(cli_run), *cache]) == 0
    latest = json.load(open(cli_run / "eval.json"))
    steps = sorted(int(f.removesuffix(".json")) for f in os.listdir(cli_run / "evals"))
    last = max(int(s) for s in os.listdir(cli_run / "checkpoints"))
    assert at_800["step"] == 800 and latest["step"] == last and {800, last} <= set(steps)
    assert json.load(open(cli_run / "evals" / "800.json")) == at_800
    assert json.load(open(cli_run / "evals" / f"{last}.json")) == latest


def test_a_failed_start_removes_its_run_directory(tmp_path, monkeypatch):
    """A failure after the run directory was made (here: building the initial state) removes it
    and releases the lock: the same command then starts, instead of "already exists"."""
    from mjxflow.loop import Loop

    real = Loop.initial_state

    def broken(self):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(Loop, "initial_state", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        train.main(cli(tmp_path, "--run-name", "f", "--total-steps", "400"))
    assert not (tmp_path / "f").exists()
    monkeypatch.setattr(Loop, "initial_state", real)
    assert train.main(cli(tmp_path, "--run-name", "f", "--total-steps", "400")) == 0


def test_a_repeated_sweep_adds_its_axes(tmp_path, capsys):
    """`--sweep A --sweep B` is the grid A x B, as `--sweep A B` is (tyro alone keeps only B's values)."""
    argv = cli(tmp_path, "--agent", "smfp", "--sweep", "smfp.init-alpha=0.2,1.0", "--num-seeds", "1",
               "--sweep=smfp.beta-md=1,0.1", "critic.gamma=0.9,0.99", "--print-config")
    assert train.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sweep"] == ["smfp.init-alpha=0.2,1.0", "smfp.beta-md=1,0.1", "critic.gamma=0.9,0.99"]
    assert out["derived"]["sweep_points"] == 8 and out["derived"]["members"] == 8
