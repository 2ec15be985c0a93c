"""MuJoCo Playground's DM Control suite through mjxflow's wrappers: the task list, and MuJoCo Warp
against the jax implementation (every task is compiled and stepped in test_playground_tasks.py)."""

import jax
import numpy as np

from mjxflow.envs import EpisodeEnv, PLAYGROUND_TASKS, make_env


def test_the_task_list_is_playgrounds_suite():
    from mjxflow.envs.playground import _quiet_import

    assert PLAYGROUND_TASKS == tuple(_quiet_import().dm_control_suite.ALL_ENVS)


def test_each_task_name_is_written_once_in_the_package():
    """The catalogue is the one list: no other module of mjxflow spells a Playground task's name."""
    import pathlib

    import mjxflow

    sources = {p: p.read_text() for p in pathlib.Path(mjxflow.__file__).parent.rglob("*.py")}
    for name in PLAYGROUND_TASKS:
        holders = [p.name for p, text in sources.items() if f'"{name}"' in text]
        assert holders == ["catalogue.py"], (name, holders)


def test_warp_physics_matches_jax_over_the_first_steps():
    """MuJoCo Warp against MJX's jax implementation on CartpoleBalance: four envs from the same
    keys, the same actions for nine steps through the episode wrapper with a time limit of 4 (two
    auto-resets merge a fresh state into the batch with Data.where). Observations, rewards and
    episode ends agree to 1e-5 (measured: at most 2.4e-7; on CheetahRun, with contacts, 8.5e-5
    for observations of size 10, docs/RESULTS.md)."""
    got = {}
    actions = jax.random.uniform(jax.random.PRNGKey(1), (9, 4, 1), minval=-1.0, maxval=1.0)
    for physics in ("jax", "warp"):
        episodes = EpisodeEnv(make_env("CartpoleBalance", physics), 4)

        def roll(keys, actions):
            def body(state, a):
                state, out = jax.vmap(episodes.step)(state, a)
                return state, (out.transition.next_obs, out.transition.reward, out.done, state.env.obs)
            return jax.lax.scan(body, jax.vmap(episodes.reset)(keys), actions)[1]

        got[physics] = jax.jit(roll)(jax.random.split(jax.random.PRNGKey(0), 4), actions)
    (obs_j, rew_j, done_j, reset_j), (obs_w, rew_w, done_w, reset_w) = got["jax"], got["warp"]
    np.testing.assert_array_equal(done_j, done_w)
    assert np.all(done_j[3]) and np.all(done_j[7]) and not np.any(done_j[4])
    np.testing.assert_allclose(obs_w, obs_j, atol=1e-5)
    np.testing.assert_allclose(rew_w, rew_j, atol=1e-5)
    np.testing.assert_allclose(reset_w, reset_j, atol=1e-5)  # after the resets: the fresh states agree too
    assert not np.allclose(reset_j[3], obs_j[3])  # ... and they are fresh states, not the final observation


def test_warp_physics_trains_and_evaluates(tmp_path):
    """`--physics warp` trains a Playground task for a few iterations on the CPU (two seeds, one
    evaluation in between) and `evaluate` reproduces the logged returns from the checkpoint."""
    import json
    import os

    from mjxflow import evaluate, train
    from mjxflow.logs import read_jsonl

    run = str(tmp_path / "w")
    args = ["--env", "CartpoleBalance", "--physics", "warp", "--agent", "sac", "--num-envs", "4", "--num-seeds", "2",
            "--total-steps", "64", "--num-evals", "2", "--min-replay", "32", "--batch-size", "16", "--eval-episodes", "2",
            "--episode-length", "50", "--sac.actor-hidden", "16", "--critic.hidden", "16", "--runs-dir", str(tmp_path), "--run-name", "w",
            "--no-tensorboard"]
    assert train.main(args) == 0
    rows = read_jsonl(os.path.join(run, "metrics.jsonl"))
    assert max(r["env_steps"] for r in rows) == 64
    final = {r["seed"]: r["eval_return"] for r in rows if r["env_steps"] == 64}
    assert all(np.isfinite(v) for v in final.values())
    # it trained, not only collected: at 64 steps the critic, actor and temperature had updated (alpha moved
    # off its initial 1.0). 64 steps cannot show learning; the old `return > 0` held for any policy.
    last = [r for r in rows if r["env_steps"] == 64]
    assert all(np.isfinite(r["critic/loss"]) and np.isfinite(r["actor/loss"]) and r["alpha/value"] != 1.0 for r in last), last
    assert evaluate.main(["--run", run, "--episodes", "2"]) == 0
    result = json.load(open(os.path.join(run, "eval.json")))
    assert [s["episode_return_mean"] for s in result["per_seed"]] == [final[0], final[1]]


def test_warp_physics_is_refused_for_brax_tasks(capsys):
    from mjxflow import train

    assert train.main(["--env", "hopper", "--physics", "warp", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--physics warp is for MuJoCo Playground tasks" in err
