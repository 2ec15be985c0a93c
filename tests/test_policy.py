"""load_policy and evaluate read only a checkpoint's policy item (actor, observation statistics,
evaluation keys): they work when the replay buffer and the train state cannot be read, and act as
the full restore does."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from mjxflow import checkpoint, evaluate, load_policy, train
from mjxflow.agents import make_agent
from mjxflow.logs import read_jsonl
from mjxflow.loop import ActorOnly
from mjxflow.scale import resolve

from conftest import tiny_config

TINY = ["--env", "bandit", "--num-envs", "8", "--num-seeds", "2", "--chunk-iters", "50", "--eval-episodes", "8",
        "--min-replay", "256", "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2"]


@pytest.mark.parametrize("agent", ["sac", "smfp", "fpmd-r", "fpmd-m"])
def test_every_agent_acts_from_its_actor_alone(agent):
    cfg = resolve(tiny_config(agent=agent))
    a = make_agent(resolve(cfg), 2, 2)
    state = a.init(jax.random.PRNGKey(0))
    obs, key = jax.random.normal(jax.random.PRNGKey(1), (5, 2)), jax.random.PRNGKey(2)
    actor = ActorOnly(actor_params=state.actor_params)
    np.testing.assert_array_equal(a.act(actor, obs, key, True), a.act(state, obs, key, True))
    np.testing.assert_array_equal(a.policy_sample(actor, obs, key), a.policy_sample(state, obs, key))


def test_load_policy_and_evaluate_work_without_replay_or_train_state(tmp_path):
    args = ["--runs-dir", str(tmp_path), "--run-name", "p", "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"],
            "--total-steps", "800", "--num-evals", "2", "--agent", "smfp", "--smfp.num-particles", "4", *TINY]
    assert train.main(args) == 0
    run = str(tmp_path / "p")
    full = checkpoint.load_run(run)  # the whole state, replay included: the reference
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 2)) * 3
    key = jax.random.PRNGKey(7)
    seed1 = jax.tree.map(lambda x: x[1], full.state.seeds)
    want_det = full.loop.policy(seed1, True)(obs, key)
    want_draw = full.loop.agent.policy_sample(seed1.agent, full.loop.normalize(seed1.norm, obs), key)

    step_dir = os.path.join(checkpoint.checkpoint_dir(run), "800")
    for item in ("replay", "state"):  # their files removed: only the policy item is left readable
        shutil.rmtree(os.path.join(step_dir, item))
        os.makedirs(os.path.join(step_dir, item))
    with pytest.raises(FileNotFoundError, match="cannot be read"):
        checkpoint.load_run(run)

    policy = load_policy(run, seed=1)
    np.testing.assert_array_equal(policy(obs, key), want_det)
    np.testing.assert_array_equal(policy(obs, key, deterministic=False), want_draw)
    jitted = jax.jit(policy, static_argnames="deterministic")(obs, key)  # fused by XLA: equal to rounding
    np.testing.assert_allclose(jitted, want_det, rtol=1e-5, atol=1e-6)
    single = policy(obs[0], key)
    assert single.shape == (2,) and np.all(np.abs(single) <= 1)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(run, "tb"))  # TensorBoard's own reader
    events.Reload()
    rows = read_jsonl(os.path.join(run, "metrics.jsonl"))
    for seed in (0, 1):
        logged = [(r["env_steps"], r["eval_return"]) for r in rows if r["seed"] == seed]
        got = [(e.step, e.value) for e in events.Scalars(f"eval_return/seed_{seed}")]
        assert [s for s, _ in got] == [s for s, _ in logged] == [0, 400, 800]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in logged], rtol=1e-6)
    assert "eval_return/mean" in events.Tags()["scalars"] and "critic/loss/seed_1" in events.Tags()["scalars"]

    assert evaluate.main(["--run", run, "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]) == 0
    result = json.load(open(os.path.join(run, "eval.json")))
    logged = {r["seed"]: r["eval_return"] for r in read_jsonl(os.path.join(run, "metrics.jsonl")) if r["env_steps"] == 800}
    assert [s["episode_return_mean"] for s in result["per_seed"]] == [logged[0], logged[1]]  # the same episodes
    assert "mode_coverage" not in result
    with pytest.raises(ValueError, match="seed 2 is not in the run's 0 .. 1"):
        load_policy(run, seed=2)


def test_evaluate_video_writes_one_frame_per_control_step(tmp_path):
    """After a short run on an MJX task, `evaluate --video` renders (off screen, in a child process
    with MUJOCO_GL chosen) one deterministic episode per seed to an mp4 that imageio reads back:
    the initial state plus one frame per control step, and the frames change."""
    import imageio.v2 as imageio

    args = ["--runs-dir", str(tmp_path), "--run-name", "v", "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"],
            "--env", "inverted_pendulum", "--agent", "sac", "--num-envs", "2", "--num-seeds", "1", "--total-steps", "16",
            "--min-replay", "8", "--batch-size", "8", "--replay-size", "64", "--episode-length", "25", "--eval-episodes", "2",
            "--num-evals", "1", "--sac.actor-hidden", "16", "--critic.hidden", "16"]
    assert train.main(args) == 0
    run = str(tmp_path / "v")
    assert evaluate.main(["--run", run, "--video", "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]) == 0
    index = json.load(open(os.path.join(run, "videos", "index.json")))
    assert [e["seed"] for e in index] == [0] and index[0]["path"].endswith("videos/step16-seed0.mp4")
    frames = imageio.mimread(index[0]["path"])
    steps = index[0]["control_steps"]
    assert 1 <= steps <= 25 and len(frames) == steps + 1 == index[0]["frames"]
    assert frames[0].shape == (240, 320, 3) and frames[0].max() > 0
    assert any(np.abs(f.astype(int) - frames[0].astype(int)).mean() > 0 for f in frames[1:])
    assert index[0]["fps"] == pytest.approx(25.0)  # inverted_pendulum's control step is 0.04 s


def test_video_of_a_probe_task_is_refused_before_loading(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text(json.dumps({"env": "bandit"}))
    assert evaluate.main(["--run", str(tmp_path / "p"), "--video"]) == 2
    assert "bandit is a pure-JAX probe task with nothing to draw" in capsys.readouterr().err
