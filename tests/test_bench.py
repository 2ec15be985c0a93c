import json
import os
import typing

import numpy as np
import pytest

from mjxflow import bench


def columns(table: str) -> list[str]:
    return [c.strip() for c in table.splitlines()[0].strip("|").split("|")]


def test_bench_tables_and_files(tmp_path, capsys):
    args = ["--env", "bandit", "--agents", "sac", "fpmd-r", "--num-envs", "4", "--seeds", "1", "2",
            "--iters", "4", "--repeats", "2", "--batch-size", "16", "--updates-per-iter", "1",
            "--latency-batch", "1", "8", "--hidden", "8", "--fpmd-particles", "4", "--fpmd-train-steps", "2", "--latency-steps", "3",
            "--measure", "train", "floor", "latency", "sweep", "devices", "--name", "tiny", "--out-dir", str(tmp_path), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    result = json.load(open(tmp_path / "tiny.json"))
    md = (tmp_path / "tiny.md").read_text()
    for key in ("train", "floor", "latency", "sweep"):
        assert result["tables"][key] in md and result["tables"][key] in out
    assert columns(result["tables"]["train"]) == ["agent", "num_envs", "env steps/s", "updates/s", "compile (s)"]
    assert columns(result["tables"]["floor"])[-1] == "overhead ratio"
    assert [(r["agent"], r["num_envs"]) for r in result["train"]] == [("sac", 4), ("fpmd-r", 4)]
    for r in result["floor"]:
        assert np.isfinite(r["overhead_ratio"]) and r["overhead_ratio"] > 0
        rounds = {k: np.array(v) for k, v in r["floor_rounds"].items()}  # side by side: ratios per round
        assert all(len(v) == bench.FLOOR_ROUNDS for v in rounds.values())
        assert r["env_over_raw"] == pytest.approx(np.median(rounds["env"] / rounds["raw_env"]))
        assert r["overhead_ratio"] == pytest.approx(np.median(rounds["loop"] / (rounds["env"] + rounds["updates"])))
        assert r["iteration_s"] == pytest.approx(np.median(rounds["loop"]))
        assert r["env_steps_per_s"]["min"] <= r["env_steps_per_s"]["median"] <= r["env_steps_per_s"]["max"]
    # FPMD-R is timed at one step and at --latency-steps Euler steps, for each batch size
    assert [(r["agent"], r["nfe"], r["batch"]) for r in result["latency"]] == [
        ("sac", 1, 1), ("fpmd-r", 1, 1), ("fpmd-r", 3, 1), ("sac", 1, 8), ("fpmd-r", 1, 8), ("fpmd-r", 3, 8)]
    assert [r["seeds"] for r in result["sweep"]] == [1, 2]
    assert columns(result["tables"]["sweep"])[3] == "efficiency S*t(1)/t(S)"
    # one device here (tests/test_devices.py covers several): the sweep of max(devices, --seeds) seeds on it
    # then one seed's envs split over each count that divides --num-envs and --batch-size (one here)
    assert [(r["shard"], r["devices"], r["seeds"], r["speedup"], r["efficiency"]) for r in result["devices"]] == [
        ("seeds", 1, 2, 1.0, 1.0), ("envs", 1, 1, 1.0, 1.0)]
    assert columns(result["tables"]["devices"])[-1] == "scaling efficiency"


def test_bench_rejects_bad_input_before_compiling(tmp_path, capsys):
    assert bench.main(["--measure", "speed", "--out-dir", str(tmp_path)]) == 2
    assert ("invalid choice 'speed' for argument '--measure'. Expected one of ('train', 'floor', 'latency', 'sweep', "
            "'peer', 'headline', 'update', 'devices', 'roofline')") in capsys.readouterr().err  # --help lists them too
    assert bench.main(["--agents", "ppo", "--out-dir", str(tmp_path)]) == 2
    capsys.readouterr()
    for argv, message in [(["--name", "a/b"], "--name must be a name, not a path, got 'a/b'"),
                          (["--hidden", "0"], "--agents sac --num-envs 16 --batch-size 256: --critic.hidden must be "
                                              "positive layer widths, got (0,)"),
                          (["--agents", "sac", "--batch-size", "100000"], "--agents sac --num-envs 16 --batch-size "
                                                                          "100000: --min-replay 100000 exceeds --replay-size 10000"),
                          (["--seeds", "0"], "--seeds must be positive integers, got (0,)"),
                          (["--peak-tflops", "0"], "--peak-tflops must be a positive number, got 0.0"),
                          (["--bandwidth-tbps", "nan"], "--bandwidth-tbps must be a positive number, got nan"),
                          (["--iters", "4294967296"], "--iters must be at most 2,147,483,647")]:
        assert bench.main([*argv, "--out-dir", str(tmp_path)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not os.listdir(tmp_path)


def test_peer_plumbing_with_a_stand_in_interpreter(tmp_path):
    """The peer section runs brax's trainer with the peer environment's python and reads its JSON
    line; a stand-in interpreter checks the arguments it gets and answers like the real script."""
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n"
                      "case \"$*\" in *'--env hopper --num-envs 8 --batch-size 32 --updates-per-iter 2'*) ;; *) exit 3;; esac\n"
                      "echo 'log line'\n"
                      "echo '{\"env_steps_per_s\": [100.0, 300.0, 200.0], \"jax\": \"0.7.2\"}'\n")
    python.chmod(0o755)
    cfg = bench.BenchConfig(env="hopper", num_envs=(8,), batch_size=(32,), updates_per_iter=2, peer_venv=str(tmp_path / "venv"))
    ours = [{"agent": "sac", "num_envs": 8, "env_steps_per_s": {"median": 400.0, "min": 350.0, "max": 450.0}}]
    rows = bench.measure_peer(cfg, ours, log=lambda *_: None)
    assert len(rows) == 1 and rows[0]["brax"] == {"median": 200.0, "min": 100.0, "max": 300.0}
    assert rows[0]["ratio"] == 2.0
    assert bench.peer_table(rows).splitlines()[-1] == "| 8 | 400 (350-450) | 200 (100-300) | 2.00 |"

    failing = bench.BenchConfig(env="ant", num_envs=(8,), peer_venv=str(tmp_path / "venv"))  # stand-in exits 3
    messages = []
    assert bench.measure_peer(failing, ours, log=messages.append) == []
    assert "brax's SAC at 8 envs failed" in messages[-1]

    missing = bench.BenchConfig(env="hopper", num_envs=(8,), peer_venv=str(tmp_path / "none"))  # installs nothing
    assert bench.measure_peer(missing, ours, log=messages.append) == [] and not (tmp_path / "none").exists()
    assert "no peer environment at" in messages[-1] and "benchmarks/peer/requirements.txt" in messages[-1]


def test_headline_measures_the_resolved_training_config(tmp_path, capsys):
    args = ["--env", "bandit", "--agents", "sac", "--num-envs", "8", "--iters", "3", "--repeats", "2",
            "--measure", "headline", "--name", "head", "--out-dir", str(tmp_path), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
    assert bench.main(args) == 0
    result = json.load(open(tmp_path / "head.json"))
    (row,) = result["headline"]
    # the config `python -m mjxflow.train --env bandit --agent sac --num-envs 8` resolves to
    assert (row["batch_size"], row["updates_per_iter"], row["seeds"], row["eval_episodes"]) == (256, 2, 2, 10)
    assert row["sample_reuse"] == 64 and row["iterations"] == 500 and row["num_evals"] == 20
    assert 0 < row["eval_share"] < 1 and row["eval_s"] > 0 and row["peak_bytes"] > 0
    rate = row["env_steps_per_s"]
    assert rate["min"] <= 8 * 2 / row["iteration_s"] <= rate["max"]  # steps of all seeds per second
    assert row["updates_per_s"]["median"] == pytest.approx(rate["median"] * 2 / 8, rel=1e-6)  # 2 updates per 8 env steps
    assert columns(result["tables"]["headline"])[3] == "env steps/s (all seeds)"
    assert result["tables"]["headline"] in capsys.readouterr().out


def test_update_table_times_every_agent_and_batch_against_sac(tmp_path):
    args = ["--env", "bandit", "--agents", "smfp", "--batch-size", "8", "16", "--hidden", "8", "--repeats", "2",
            "--measure", "update", "--name", "upd", "--out-dir", str(tmp_path), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
    assert bench.main(args) == 0
    rows = json.load(open(tmp_path / "upd.json"))["update"]
    assert [(r["agent"], r["batch_size"]) for r in rows] == [
        ("sac", 8), ("smfp", 8), ("smfp-full", 8), ("sac", 16), ("smfp", 16), ("smfp-full", 16)]
    for r in rows:
        assert r["seconds_min"] <= r["seconds"] <= r["seconds_max"] and r["seconds"] > 0
        sac = next(x for x in rows if x["agent"] == "sac" and x["batch_size"] == r["batch_size"])
        assert r["ratio_to_sac"] == pytest.approx(r["seconds"] / sac["seconds"])
    assert "| smfp | 16 |" in open(tmp_path / "upd.md").read()


def test_update_table_times_critic_variants_beside_sacs_default(tmp_path, monkeypatch):
    """`--critic-variants c51 wide`: SAC's update with each critic, built as asked (the distributional
    critic with train's auto range), each row's ratio against SAC's default critic."""
    built, real = [], bench.make_agent

    def recording(tc, *a, **k):
        built.append((tc.critic.distributional, tc.critic.hidden, tc.critic.v_min, tc.critic.v_max))
        return real(tc, *a, **k)

    monkeypatch.setattr(bench, "make_agent", recording)
    args = ["--env", "bandit", "--agents", "sac", "--batch-size", "8", "--hidden", "8", "--repeats", "2", "--measure", "update",
            "--critic-variants", "c51", "wide", "--name", "crit", "--out-dir", str(tmp_path),
            "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
    assert bench.main(args) == 0
    rows = json.load(open(tmp_path / "crit.json"))["update"]
    assert [r["agent"] for r in rows] == ["sac", "sac [c51]", "sac [wide]"]
    assert built == [(False, (8,), None, None), (True, (8,), -100.0, 100.0), (False, (1024, 1024), None, None)]
    for r in rows:
        assert r["ratio_to_sac"] == pytest.approx(r["seconds"] / rows[0]["seconds"])


def test_every_measure_has_its_section():
    assert set(bench.SECTIONS) == set(bench.MEASURES) and set(bench.DEFAULT_MEASURES) <= set(bench.MEASURES)
    assert set(bench.CRITIC_VARIANTS) == set(typing.get_args(bench.CriticVariant))


def test_an_unknown_critic_variant_is_one_line(capsys):
    assert bench.main(["--measure", "update", "--critic-variants", "c52"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid choice 'c52' for argument '--critic-variants'. Expected one of ('ln', 'c51', 'wide')" in err


@pytest.mark.parametrize("timer", ["_env_only_runner", "_raw_env_runner", "_updates_only_runner"])
def test_floor_timings_compile_nothing_inside_their_timed_calls(timer, bandit_sac):
    """The floor's env-only and updates-only programs get back parts of their carry with other
    shardings (the PRNG key), a second program: it must compile in the warm-up, not in a timed call
    (a round's time would then be that compile)."""
    state, _ = bandit_sac.chunk(bandit_sac.init())  # past the replay's minimum fill
    runner = (lambda *a: bench._env_only_runner(*a, raw=True)) if timer == "_raw_env_runner" else getattr(bench, timer)
    run = runner(bandit_sac.loop, state.seeds, bench.BenchConfig(env="bandit", iters=2, repeats=2, compile_cache=None))
    before = run.fn._cache_size()
    times = bench.time_interleaved([run], 3)
    assert run.fn._cache_size() == before and (times > 0).all()


def test_updates_are_timed_side_by_side():
    """time_interleaved calls every run once per round, in turn, so a slow spell of the machine
    lands on all of them: the order of the calls is the rounds', and each run gets `calls` times."""
    order = []
    runs = [lambda i=i: order.append(i) for i in range(3)]
    times = bench.time_interleaved(runs, 4)
    assert order == [0, 1, 2] * 4 and times.shape == (3, 4) and (times >= 0).all()
