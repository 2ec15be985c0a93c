import jax
import numpy as np
import pytest

from mjxflow import checkpoint, normalizer
from mjxflow.agents.fpmd import FPMDConfig
from mjxflow.agents.sac import SACConfig
from mjxflow.agents.smfp import SMFPConfig
from mjxflow.options import CriticConfig
from mjxflow.envs.probes import Bandit
from mjxflow.loop import build_loop

from conftest import tiny_config


def trees_equal(a, b) -> bool:
    """Same tree structure, and leaf by leaf the same shape, dtype and values (NaN equal to NaN)."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
               and np.array_equal(x, y, equal_nan=True) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_trees_equal_checks_structure_dtype_and_values():
    a = {"w": np.ones(3, np.float32), "n": np.int32(2)}
    assert trees_equal(a, {"w": np.ones(3, np.float32), "n": np.int32(2)})
    assert not trees_equal(a, {"w": np.ones(3, np.float64), "n": np.int32(2)})  # dtype
    assert not trees_equal(a, {"w": np.ones(3, np.float32), "m": np.int32(2)})  # structure
    assert not trees_equal(a, [np.ones(3, np.float32), np.int32(2)])
    assert not trees_equal(a, {"w": np.ones((1, 3), np.float32), "n": np.int32(2)})  # shape
    assert not trees_equal(a, {"w": np.array([1, 1, 2], np.float32), "n": np.int32(2)})  # values


def resume_is_exact(cfg, tmp_path, iters: int) -> None:
    """`iters` iterations, checkpoint, restore, `iters` more equals the same run without the stop:
    the whole train state and the metrics, structure, dtypes and values. (One chunk length, so
    one compilation.)"""
    loop = build_loop(cfg)
    first = then = loop.make_train_chunk(iters)
    init = loop.initial_state
    straight, _ = first(init())
    straight, m_straight = then(straight)
    state, _ = first(init())
    mngr = checkpoint.manager(str(tmp_path))
    checkpoint.save(mngr, 1, state, with_replay=True)
    template = jax.device_get(state)
    del state
    restored, had_replay = checkpoint.restore(checkpoint.manager(str(tmp_path)), 1, loop)
    assert had_replay and trees_equal(template, jax.device_get(restored))
    resumed, m_resumed = then(restored)
    assert trees_equal(jax.device_get(straight), jax.device_get(resumed))
    assert trees_equal(jax.device_get(m_straight), jax.device_get(m_resumed))
    assert np.all(np.isfinite(np.asarray(m_resumed["critic/loss"])))  # the resumed part learned


TINY_NETS = dict(critic=CriticConfig(hidden=(16,)), sac=SACConfig(actor_hidden=(16,)),
                 smfp=SMFPConfig(actor_hidden=(16,), num_particles=4, md_period=7),
                 fpmd=FPMDConfig(actor_hidden=(16,), num_particles=4, train_steps=3))


@pytest.mark.parametrize("agent", ["sac", "smfp", "fpmd-r", "fpmd-m"])
def test_resume_is_exact_for_every_agent(agent, tmp_path):
    cfg = tiny_config(agent=agent, min_replay=64, batch_size=32, **TINY_NETS)
    resume_is_exact(cfg, tmp_path, iters=10)  # learning starts at iteration 8


def test_resume_is_exact_on_an_mjx_env(tmp_path):
    cfg = tiny_config(env="inverted_pendulum", agent="sac", num_envs=4, num_seeds=2, replay_size=256, min_replay=16,
                      batch_size=16, **TINY_NETS)
    resume_is_exact(cfg, tmp_path, iters=5)  # learning starts at iteration 4


@pytest.fixture(scope="module")
def trained(bandit_sac):
    """The tiny bandit run trained for all its iterations (10 chunks of 50 iterations)."""
    state = bandit_sac.init()
    metrics = []
    while int(state.iteration) < bandit_sac.loop.total_iters:
        state, m = bandit_sac.chunk(state)
        metrics.append(jax.device_get(m))
    return state, metrics


def test_chunk_runs_without_host_transfers_and_compiles_once(bandit_sac):
    state = bandit_sac.init()
    state, _ = bandit_sac.chunk(state)  # compile (shared with the other tests)
    before = bandit_sac.chunk._cache_size()
    seven = jax.numpy.int32(7)
    with jax.transfer_guard("disallow"):
        state, metrics = bandit_sac.chunk(state)
        state, short = bandit_sac.chunk(state, seven)  # a shorter chunk: the same program
    assert bandit_sac.chunk._cache_size() == before == 1
    assert int(state.iteration) == 2 * bandit_sac.cfg.chunk_iters + 7
    learned = np.asarray(short["check/learned"])
    assert learned.shape == (bandit_sac.cfg.chunk_iters, 2) and learned[:7].all() and not learned[7:].any()
    assert np.isfinite(short["critic/loss"][:7]).all() and np.isnan(short["critic/loss"][7:]).all()


def test_input_state_is_donated(bandit_sac):
    state = bandit_sac.init()
    buffer = state.seeds.replay.data.obs
    bandit_sac.chunk(state)
    assert buffer.is_deleted()


def test_random_actions_and_no_updates_before_min_fill(trained, bandit_sac):
    _, metrics = trained
    first = metrics[0]
    fill_iters = bandit_sac.cfg.min_replay // bandit_sac.cfg.num_envs  # 32 iterations of 8 envs
    assert np.all(np.isnan(first["critic/loss"][: fill_iters - 1]))
    assert np.all(np.isfinite(first["critic/loss"][fill_iters:]))


def test_derived_update_count_is_what_the_run_makes(trained, bandit_sac):
    """--print-config's gradient_updates_per_seed counts only the iterations after the warm-up."""
    from mjxflow.scale import derived

    _, metrics = trained
    learned = np.concatenate([np.asarray(m["check/learned"]) for m in metrics])  # (iterations, seeds)
    counted = int(learned[:, 0].sum()) * bandit_sac.cfg.updates_per_iter
    assert counted == derived(bandit_sac.loop.cfg, 2, 2)["gradient_updates_per_seed"] == (500 - 32 + 1) * 2


def test_sac_solves_bandit_and_critic_learns_the_known_q(trained, bandit_sac):
    state, metrics = trained
    final_eval = np.asarray(bandit_sac.loop.make_evaluate_all(bandit_sac.cfg.eval_episodes)(state)).mean(axis=1)
    assert np.all(final_eval > 0.95), final_eval  # optimum is 1.0
    loop, env = bandit_sac.loop, Bandit()
    for s in range(bandit_sac.cfg.num_seeds):
        seed = jax.tree.map(lambda x: x[s], state.seeds)
        data = seed.replay.data  # the transitions the critic was trained on
        q = loop.agent.critic.q(seed.agent.critic.params, normalizer.normalize(seed.norm, data.obs), data.action)
        r = np.asarray(env.reward(data.obs, data.action))  # Q*(s, a) = r(s, a) on this one-step task
        err = np.abs(np.asarray(q) - r).mean()
        constant = np.abs(r - r.mean()).mean()  # error of the best constant guess
        assert err < 0.25 * constant, (err, constant)


def test_seeds_differ(trained):
    _, metrics = trained
    losses = metrics[-1]["critic/loss"]
    assert not np.allclose(losses[:, 0], losses[:, 1])


def test_resume_equals_uninterrupted(bandit_sac, tmp_path):
    straight = bandit_sac.init()
    straight, _ = bandit_sac.chunk(straight)
    straight, m_straight = bandit_sac.chunk(straight)

    state = bandit_sac.init()
    state, _ = bandit_sac.chunk(state)
    mngr = checkpoint.manager(str(tmp_path))
    checkpoint.save(mngr, 100, state, with_replay=True)
    del state
    restored, had_replay = checkpoint.restore(checkpoint.manager(str(tmp_path)), 100, bandit_sac.loop)
    assert had_replay
    resumed, m_resumed = bandit_sac.chunk(restored)
    assert trees_equal(jax.device_get(straight), jax.device_get(resumed))
    assert trees_equal(m_straight, m_resumed)


def test_background_save_is_whole_though_the_next_chunk_donates_the_state(bandit_sac, tmp_path):
    """train saves in the background and at once hands the state to the next chunk, which donates
    (frees or overwrites) its buffers: the checkpoint must still hold the state as it was saved."""
    state, _ = bandit_sac.chunk(bandit_sac.init())
    expected = jax.device_get(state)
    mngr = checkpoint.manager(str(tmp_path), background=True)
    checkpoint.save(mngr, 7, state, with_replay=True, wait=False)
    state, _ = bandit_sac.chunk(state)  # the saved buffers are donated while the write may still run
    state, _ = bandit_sac.chunk(state)
    mngr.close()
    restored, had_replay = checkpoint.restore(checkpoint.manager(str(tmp_path)), 7, bandit_sac.loop)
    assert had_replay and trees_equal(expected, jax.device_get(restored))
    assert list(checkpoint.sizes(str(tmp_path))) == [7] and checkpoint.sizes(str(tmp_path))[7] > 0


def test_checkpoint_without_replay_restores_an_empty_buffer(bandit_sac, tmp_path):
    state, _ = bandit_sac.chunk(bandit_sac.init())
    mngr = checkpoint.manager(str(tmp_path))
    checkpoint.save(mngr, 50, state, with_replay=False)
    restored, had_replay = checkpoint.restore(mngr, 50, bandit_sac.loop)
    assert not had_replay
    assert np.all(restored.seeds.replay.size == 0) and not np.any(restored.seeds.replay.data.obs)
    assert trees_equal(jax.device_get(state.seeds.agent), jax.device_get(restored.seeds.agent))
    # a resumed run without its buffer collects with random actions again before learning
    _, metrics = bandit_sac.chunk(restored)
    assert np.all(np.isnan(metrics["critic/loss"][:30]))


def test_evaluation_depends_only_on_the_state_and_its_iteration(trained, bandit_sac):
    state, _ = trained
    evaluate = bandit_sac.loop.make_evaluate_all(bandit_sac.cfg.eval_episodes)
    first, again = np.asarray(evaluate(state)), np.asarray(evaluate(state))
    assert first.shape == (2, bandit_sac.cfg.eval_episodes)
    np.testing.assert_array_equal(first, again)  # what `mjxflow.evaluate` relies on to reproduce a log
    later = np.asarray(evaluate(state.replace(iteration=state.iteration + 1)))
    assert not np.array_equal(first, later)  # each evaluation draws its own episodes


def test_mjx_state_checkpoint_round_trip(tmp_path):
    """MJX states hold zero-size arrays, which orbax alone cannot save."""
    cfg = tiny_config(env="inverted_pendulum", num_envs=2, num_seeds=1, replay_size=300, min_replay=64, batch_size=32)
    loop = build_loop(cfg)
    state = loop.initial_state()
    assert any(x.size == 0 for x in jax.tree.leaves(state))
    mngr = checkpoint.manager(str(tmp_path))
    checkpoint.save(mngr, 0, state, with_replay=True)
    restored, _ = checkpoint.restore(mngr, 0, loop)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert trees_equal(jax.device_get(state), jax.device_get(restored))
