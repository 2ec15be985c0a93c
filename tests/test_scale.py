"""Scale rules, the run schedule and --print-config: what a run at any number of envs will do,
resolved before anything is compiled."""

import json
import os

import jax
import numpy as np
import pytest

from mjxflow import checkpoint, scale, train
from mjxflow import config as config_module
from mjxflow.config import CriticConfig, TrainConfig, load_json
from mjxflow.envs import CATALOGUE
from mjxflow.logs import read_jsonl

from conftest import compile_events, tiny_config

CACHE = ["--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
TINY = ["--env", "bandit", "--num-envs", "8", "--num-seeds", "2", "--eval-episodes", "8", "--min-replay", "256",
        "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2", *CACHE]


def printed_config(capsys, *args) -> dict:
    with compile_events() as compiles:
        assert train.main([*args, "--print-config"]) == 0
    assert not compiles  # resolving a config compiles nothing
    return json.loads(capsys.readouterr().out)


def test_every_catalogued_env_has_its_true_sizes_and_family():
    """The catalogue's sizes are the built env's, and each family is built by its own adapter
    (Playground's tasks: tests/test_playground_tasks.py, which loads each)."""
    from mjxflow.envs import BraxEnv, make_env, tasks
    from mjxflow.envs.probes import PROBES

    for name in tasks("brax") + tasks("probe"):
        env = make_env(name)
        assert (CATALOGUE[name].obs_size, CATALOGUE[name].action_size) == (env.obs_size, env.action_size), name
        assert isinstance(env, BraxEnv) == (CATALOGUE[name].family == "brax"), name
    assert set(tasks("probe")) == set(PROBES) and len(tasks("brax")) == 11


@pytest.mark.parametrize("n, batch, updates, replay, min_replay, episodes, tau, decay, c51", [
    (16, 256, 4, 100_000, 2_000, 10, 0.005, 50_000, False),
    (128, 256, 32, 131_072, 2_000, 10, 0.005, 50_000, False),  # reuse 64 up to 256 envs
    (255, 510, 32, 261_120, 2_550, 10, 0.009961, 50_000, False),
    (256, 512, 32, 262_144, 2_560, 10, 0.01, 50_000, True),  # the Ant-measured pair: reuse 64 and C51
    (512, 1024, 16, 524_288, 5_120, 16, 0.02, 50_000, True),  # reuse 32: 64 x 256 / 512
    (1024, 2048, 8, 1_048_576, 10_240, 32, 0.04, 39_064, True),  # 9,766 iterations x 8 updates / 2
    (4096, 8192, 8, 4_194_304, 40_960, 128, 0.1, 9_768, True),
])
def test_rules_give_the_documented_values(n, batch, updates, replay, min_replay, episodes, tau, decay, c51):
    cfg = scale.resolve(TrainConfig(env="ant", num_envs=n), obs_size=27, action_size=8)
    assert (cfg.batch_size, cfg.updates_per_iter, cfg.replay_size, cfg.min_replay, cfg.eval_episodes) == \
        (batch, updates, replay, min_replay, episodes)
    assert cfg.critic.distributional is c51 and (cfg.critic.v_max is not None) == c51
    assert (cfg.total_steps, cfg.episode_length, cfg.num_evals) == (10_000_000, 1000, 20)
    assert cfg.critic.tau == pytest.approx(tau) and cfg.fpmd.explore_decay_updates == decay
    assert cfg.reset_every == 16


@pytest.mark.parametrize("env, physics, length, every", [
    ("ant", "jax", None, 16), ("ant", "jax", 15, 1), ("ant", "jax", 16, 16), ("bandit", "jax", None, 1),
    ("CartpoleBalance", "warp", None, 1), ("CartpoleBalance", "jax", None, 16)])
def test_spares_only_where_a_reset_is_physics_and_episodes_are_long(env, physics, length, every):
    """Spares redrawn every 16 steps only for MJX physics under jax with episodes of 16 steps or
    more: the probes' one-step episodes and MuJoCo Warp reset every env at every step."""
    cfg = scale.resolve(TrainConfig(env=env, num_envs=256, physics=physics, episode_length=length))
    assert cfg.reset_every == every


def test_a_config_saved_before_spares_resumes_with_a_reset_every_step(tmp_path):
    cfg = scale.resolve(TrainConfig(env="ant", num_envs=16))
    path = str(tmp_path / "config.json")
    save = config_module.to_dict(cfg)
    del save["reset_every"]
    json.dump(save, open(path, "w"))
    assert load_json(path).reset_every == 1 and cfg.reset_every == 16


def test_tau_lets_the_targets_converge_within_half_the_run():
    """A short run's tau rises above the batch rule so that 1 / ((1 - gamma) tau) updates (the
    targets' convergence time over the discount horizon) fit in half its updates: the README's
    main job (inverted_pendulum, 20k steps, 4,504 updates) gets 2 / (0.01 x 4,504)."""
    cfg = scale.resolve(TrainConfig())
    updates = scale.derived(cfg)["gradient_updates_per_seed"]
    assert updates == 4504 and cfg.critic.tau == pytest.approx(2 / (0.01 * updates), rel=1e-3)
    short = scale.resolve(TrainConfig(critic=CriticConfig(gamma=0.97)))
    assert short.critic.tau == pytest.approx(2 / (0.03 * updates), rel=1e-3)
    # a run long enough for the batch rule keeps it; a very short one stops at the cap
    assert scale.resolve(TrainConfig(env="ant", num_envs=256, total_steps=1_000_000)).critic.tau == 0.01
    assert scale.resolve(TrainConfig(env="ant", num_envs=256, total_steps=10_000)).critic.tau == scale.MAX_TAU


def test_smfp_starts_at_alpha_one_only_where_the_run_can_bring_alpha_down():
    """SMFP's auto init_alpha: 1.0 where half the run's updates let log(alpha) fall by ln 100 at
    alpha_lr per update (ant at 256 envs, 1M steps: 124,736 updates), else 0.2 (the main job, the
    multigoal probe, the headline's 19k updates at 4,096 envs); 0.2 whenever alpha is not tuned;
    an explicit value wins."""
    from mjxflow.agents.smfp import SMFPConfig

    alpha = lambda **kw: scale.resolve(TrainConfig(**kw)).smfp.init_alpha  # noqa: E731
    assert alpha(env="ant", num_envs=256, total_steps=1_000_000) == 1.0
    assert alpha() == 0.2 and alpha(env="multigoal") == 0.2 and alpha(env="ant", num_envs=4096) == 0.2
    # the threshold: U x alpha_lr / 2 >= ln 100, U the iterations x updates per iteration
    edge = scale.resolve(TrainConfig(env="ant", num_envs=256, total_steps=250_000))
    assert edge.iterations * edge.updates_per_iter * 3e-4 / 2 >= np.log(100) and edge.smfp.init_alpha == 1.0
    slower = SMFPConfig(alpha_lr=1e-4)  # the same run with a slower alpha cannot travel as far
    assert alpha(env="ant", num_envs=256, total_steps=250_000, smfp=slower) == 0.2
    assert alpha(env="ant", num_envs=256, total_steps=1_000_000, smfp=SMFPConfig(autotune_alpha=False)) == 0.2
    assert alpha(env="ant", num_envs=256, total_steps=1_000_000, smfp=SMFPConfig(init_alpha=0.5)) == 0.5


def test_smfp_targets_entropy_zero_on_the_long_runs_alone():
    """SMFP's auto target_entropy_scale: 0 (target entropy 0) on the runs that start alpha at 1.0,
    1.0 (target -action_dim) on the rest; each auto field independent of the other given one."""
    from mjxflow.agents.smfp import SMFPConfig

    smfp = lambda **kw: scale.resolve(TrainConfig(**kw)).smfp  # noqa: E731
    long = smfp(env="ant", num_envs=256, total_steps=1_000_000)
    assert (long.init_alpha, long.target_entropy_scale) == (1.0, 0.0)
    for short in (smfp(), smfp(env="multigoal"), smfp(env="unevengoal"), smfp(env="ant", num_envs=4096)):
        assert (short.init_alpha, short.target_entropy_scale) == (0.2, 1.0)
    assert smfp(env="ant", num_envs=256, total_steps=1_000_000, smfp=SMFPConfig(autotune_alpha=False)).target_entropy_scale == 1.0
    given = smfp(env="ant", num_envs=256, total_steps=1_000_000, smfp=SMFPConfig(target_entropy_scale=0.5))
    assert (given.init_alpha, given.target_entropy_scale) == (1.0, 0.5)
    given = smfp(env="ant", num_envs=256, total_steps=1_000_000, smfp=SMFPConfig(init_alpha=0.3))
    assert (given.init_alpha, given.target_entropy_scale) == (0.3, 0.0)


def test_explicit_nested_options_win():
    from mjxflow.agents.fpmd import FPMDConfig
    from mjxflow.options import CriticConfig

    cfg = scale.resolve(TrainConfig(env="ant", num_envs=4096, critic=CriticConfig(distributional=False, tau=0.02),
                                    fpmd=FPMDConfig(explore_decay_updates=7)), 27, 8)
    assert cfg.critic.tau == 0.02 and cfg.fpmd.explore_decay_updates == 7


def test_explicit_options_win_and_the_rest_follow_them():
    cfg = scale.resolve(TrainConfig(env="ant", num_envs=1024, batch_size=512, total_steps=10_240), 27, 8)
    assert cfg.batch_size == 512 and cfg.updates_per_iter == 32  # reuse 16 at 1,024 envs: 16 * 1024 / 512
    assert cfg.total_steps == 10_240 and cfg.num_evals == 10  # no more evaluations than iterations
    assert scale.resolve(cfg, 27, 8) == cfg  # a resolved config stays as it is


def test_replay_budget_caps_the_auto_capacity():
    cfg = scale.resolve(TrainConfig(env="humanoid", num_envs=4096, replay_gib_per_seed=1.0), 244, 17)
    per_item = scale.transition_bytes(244, 17)
    assert cfg.replay_size == 2**30 // per_item
    assert cfg.replay_size * per_item <= 2**30 < (cfg.replay_size + 1) * per_item


@pytest.mark.parametrize("total, evals, ckpts, chunk", [(49, 20, 5, 1), (2442, 20, 5, 13), (7, 20, 5, 3), (300, 6, 3, 50)])
def test_schedule_spreads_evaluations_and_checkpoints(total, evals, ckpts, chunk):
    cfg = TrainConfig(num_envs=8, total_steps=8 * total, num_evals=evals, num_checkpoints=ckpts, chunk_iters=chunk)
    sched = scale.schedule(cfg)
    assert sched.total == total and sched.stops[-1] == total
    assert len(sched.evals) == min(evals, total) and sched.evals[-1] == total
    gaps = np.diff((0,) + sched.evals)
    assert gaps.max() - gaps.min() <= 1  # evenly spread
    assert set(sched.evals) <= set(sched.stops) and set(sched.checkpoints) <= set(sched.stops)
    assert sched.checkpoints[-1] == total and len(sched.checkpoints) <= ckpts
    assert np.diff((0,) + sched.stops).max() <= chunk  # no compiled call runs more than chunk_iters


def test_print_config_of_the_headline_command(capsys):
    out = printed_config(capsys, "--env", "ant", "--num-envs", "4096")
    d = out["derived"]
    assert d["iterations"] >= 2000 and 8 <= d["sample_reuse"] <= 64 and d["replay_iterations"] >= 256
    assert 10 <= d["num_evals"] <= 50 and d["host_syncs"] <= 300
    assert d["env_steps_per_seed"] == d["iterations"] * 4096 >= out["total_steps"] > d["env_steps_per_seed"] - 4096
    assert d["replay_bytes_per_seed"] == out["replay_size"] * scale.transition_bytes(27, 8)
    assert {"iterations", "env_steps_per_seed", "sample_reuse", "replay_iterations", "num_evals", "eval_episodes",
            "host_syncs", "replay_bytes_per_seed"} <= set(d)
    auto = ["total_steps", "episode_length", "num_evals", "eval_episodes", "chunk_iters", "num_checkpoints", "replay_size",
            "min_replay", "batch_size", "updates_per_iter", "reset_every"]
    assert all(isinstance(out[k], int) for k in auto)  # every auto option resolved


def test_print_config_of_the_default_run_is_cpu_sized(capsys):
    d = printed_config(capsys)["derived"]
    assert d["env_steps_per_seed"] <= 50_000 and d["gradient_updates_per_seed"] <= 10_000


def test_iterations_are_exactly_total_steps_over_num_envs(capsys):
    d = printed_config(capsys, "--num-envs", "1024", "--total-steps", "50000")["derived"]
    assert d["iterations"] == 49 and d["env_steps_per_seed"] == 50_176


def test_a_run_trains_exactly_its_iterations_and_saves_the_derived_figures(tmp_path):
    # 1001 steps of 8 envs: 126 iterations (1,008 steps), not a multiple of the chunk length
    assert train.main(["--runs-dir", str(tmp_path), "--run-name", "r", *TINY, "--total-steps", "1001",
                       "--chunk-iters", "50", "--num-evals", "3"]) == 0
    run = tmp_path / "r"
    rows = read_jsonl(run / "metrics.jsonl")
    steps = sorted({r["env_steps"] for r in rows})
    assert steps == [0, 336, 400, 672, 800, 1008]  # chunk ends (50, 100 iterations) and evaluations (42, 84, 126)
    # eval_return only where an evaluation ran: the rows at 400 and 800 are log points between them
    assert [r["env_steps"] for r in rows if "eval_return" in r and r["seed"] == 0] == [0, 336, 672, 1008]
    assert all(r["eval_return"] is not None for r in rows if "eval_return" in r)
    import csv

    csv_rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["seed"] == "0"]
    assert [r["env_steps"] for r in csv_rows if r["eval_return"] != ""] == ["0", "336", "672", "1008"]
    from mjxflow.plot import load_curves

    assert load_curves(str(run)).steps.tolist() == [0, 336, 672, 1008]  # the curve holds evaluations only
    assert os.listdir(run / "checkpoints") and max(int(s) for s in os.listdir(run / "checkpoints")) == 1008
    saved = json.load(open(run / "config.json"))
    assert saved["derived"]["iterations"] == 126 and saved["batch_size"] == 64 and saved["min_replay"] == 256
    assert load_json(str(run / "config.json")).num_evals == 3


def test_evaluations_and_chunking_never_change_training(tmp_path):
    """Where the host stops the compiled loop (chunk length, evaluations, checkpoints) is not part of
    training: two runs that differ only in those end in the same state."""
    common = ["--runs-dir", str(tmp_path), *TINY, "--total-steps", "800"]
    assert train.main([*common, "--run-name", "a", "--chunk-iters", "100", "--num-evals", "1", "--num-checkpoints", "1"]) == 0
    assert train.main([*common, "--run-name", "b", "--chunk-iters", "7", "--num-evals", "9", "--num-checkpoints", "4"]) == 0
    a, b = checkpoint.load_run(str(tmp_path / "a")), checkpoint.load_run(str(tmp_path / "b"))
    assert a.step == b.step == 800
    leaves = zip(jax.tree.leaves(jax.device_get(a.state)), jax.tree.leaves(jax.device_get(b.state)))
    assert all(np.array_equal(x, y) for x, y in leaves)


def test_loop_refuses_an_unresolved_config():
    from mjxflow.envs.probes import Bandit
    from mjxflow.loop import Loop

    with pytest.raises(ValueError, match="resolved config"):
        Loop(tiny_config(batch_size=None), Bandit(), None)
