import json
import os

import numpy as np
import pytest

from mjxflow import evaluate, train
from mjxflow.logs import read_jsonl

TINY = ["--env", "bandit", "--num-envs", "8", "--num-seeds", "2", "--eval-every", "400", "--eval-envs", "8",
        "--min-replay", "256", "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2"]


def cli(tmp_path, *args):
    return ["--runs-dir", str(tmp_path), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"], *TINY, *args]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "antt"], "unknown env 'antt'; valid envs: ant, halfcheetah"),
        (["--agent", "ppo"], "unknown agent 'ppo'; valid agents: smfp, fpmd-r, fpmd-m, sac"),
        (["--num-envs", "0"], "--num-envs must be a positive integer, got 0"),
        (["--num-seeds", "-2"], "--num-seeds must be a positive integer, got -2"),
        (["--batch-size", "512"], "--batch-size 512 is larger than the replay's minimum fill"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code = train.main(cli(tmp_path, *args))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not os.listdir(tmp_path)  # nothing created


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    assert train.main(cli(tmp_path, "--run-name", "taken")) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").exists()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert train.main(cli(runs, "--run-name", "r", "--total-steps", "1600", "--checkpoint-every", "800")) == 0
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


def test_evaluate_reproduces_final_return(cli_run, capsys):
    assert evaluate.main(["--run", str(cli_run), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]) == 0
    out = json.load(open(cli_run / "eval.json"))
    final = [r["eval_return"] for r in read_jsonl(cli_run / "metrics.jsonl") if r["env_steps"] == 1600]
    per_seed = [s["episode_return_mean"] for s in out["per_seed"]]
    np.testing.assert_allclose(per_seed, final, rtol=1e-6)
    assert out["episode_return_mean"] == pytest.approx(np.mean(final), rel=1e-6)
    assert "episode_return_std" in out and out["step"] == 1600
    assert "over seeds" in capsys.readouterr().out


def test_evaluate_missing_step_says_so(cli_run, capsys):
    assert evaluate.main(["--run", str(cli_run), "--step", "123"]) == 2
    assert "no checkpoint at step 123" in capsys.readouterr().err


def test_resume_refuses_a_changed_setup(cli_run, capsys):
    assert train.main(["--resume", str(cli_run), "--env", "multigoal"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "env: 'bandit' -> 'multigoal'" in err


def test_resume_continues_the_run(cli_run):
    assert train.main(["--resume", str(cli_run), "--total-steps", "2400"]) == 0
    rows = read_jsonl(cli_run / "metrics.jsonl")
    assert [r["env_steps"] for r in rows if r["seed"] == 0] == [0, 400, 800, 1200, 1600, 2000, 2400]
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
