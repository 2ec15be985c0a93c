import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mjxflow.envs import ENV_NAMES, EnvState, EpisodeEnv, make_env, rollout_returns
from mjxflow.envs.brax_envs import BRAX_TASKS
from mjxflow.envs.probes import Bandit, MultiGoal, UnevenGoal


class Walk:
    """Deterministic test env: obs = [position], position += action, terminates past `wall`."""

    name = "walk"
    obs_size = 1
    action_size = 1
    default_episode_length = 5

    def __init__(self, wall: float = 100.0):
        self.wall = wall

    def reset(self, key):
        del key
        return EnvState(inner=jnp.zeros(()), obs=jnp.zeros((1,)), reward=jnp.zeros(()), terminated=jnp.zeros(()))

    def step(self, state, action):
        obs = state.obs + action
        return EnvState(inner=state.inner, obs=obs, reward=jnp.ones(()), terminated=(obs[0] > self.wall).astype(jnp.float32))


def test_registry_lists_every_task():
    for name in ("ant", "halfcheetah", "hopper", "walker2d", "humanoid", "humanoidstandup", "swimmer", "reacher",
                 "pusher", "inverted_pendulum", "inverted_double_pendulum", "bandit", "multigoal"):
        assert name in ENV_NAMES


def test_unknown_env_fails_with_valid_names():
    with pytest.raises(ValueError) as err:
        make_env("antt")
    assert "'antt'" in str(err.value) and "halfcheetah" in str(err.value) and "multigoal" in str(err.value)


def run_steps(env, episode_length, actions):
    ep = EpisodeEnv(env, episode_length)
    state = ep.reset(jax.random.PRNGKey(0))
    outs = []
    for a in actions:
        state, out = ep.step(state, jnp.array([a], jnp.float32))
        outs.append(out)
    return state, outs


def test_truncation_keeps_final_obs_and_bootstraps():
    state, outs = run_steps(Walk(), 3, [1.0, 1.0, 1.0, 1.0])
    last = outs[2]
    assert bool(last.done) and bool(last.truncated)
    assert float(last.transition.terminated) == 0.0  # the critic bootstraps through a time limit
    assert float(last.transition.next_obs[0]) == 3.0  # the true final observation, not the reset one
    assert float(last.episode_return) == 3.0
    # after the auto-reset the next transition starts from the reset observation
    assert float(outs[3].transition.obs[0]) == 0.0 and not bool(outs[3].done)
    assert int(state.steps) == 1


def test_episode_returns_restart_from_zero_after_each_auto_reset():
    """Rewards of 1 per step, limit 3: every episode returns 3, and steps that end nothing report 0."""
    state, outs = run_steps(Walk(), 3, [1.0] * 7)
    assert [float(o.episode_return) for o in outs] == [0, 0, 3, 0, 0, 3, 0]
    assert [bool(o.done) for o in outs] == [False, False, True, False, False, True, False]
    assert float(state.ret) == 1.0 and int(state.steps) == 1
    # counters keep their dtypes through reset and step (a float step counter would drift)
    ep = EpisodeEnv(Walk(), 3)
    fresh = ep.reset(jax.random.PRNGKey(0))
    assert fresh.steps.dtype == jnp.int32 and state.steps.dtype == jnp.int32
    assert outs[0].transition.terminated.dtype == jnp.float32


def test_termination_stops_bootstrap():
    _, outs = run_steps(Walk(wall=1.5), 10, [1.0, 1.0, 1.0])
    assert not bool(outs[0].done)
    assert bool(outs[1].done) and not bool(outs[1].truncated)
    assert float(outs[1].transition.terminated) == 1.0
    assert float(outs[1].transition.next_obs[0]) == 2.0
    assert float(outs[2].transition.obs[0]) == 0.0


def test_rollout_returns_stop_at_termination_and_limit():
    returns = rollout_returns(Walk(wall=2.5), lambda obs, key: jnp.ones_like(obs), jax.random.PRNGKey(0), 3, 10)
    np.testing.assert_allclose(returns, 3.0)  # steps 1, 2, 3 rewarded; terminated at 3
    returns = rollout_returns(Walk(), lambda obs, key: jnp.ones_like(obs), jax.random.PRNGKey(0), 2, 7)
    np.testing.assert_allclose(returns, 7.0)
    # episodes that end at different steps: the first one (speed 2) is over after 2 steps and earns
    # nothing while the others (speed 1) run on to their 3rd
    fast_first = lambda obs, key: jnp.where(jnp.arange(obs.shape[0])[:, None] == 0, 2.0, 1.0)
    returns = rollout_returns(Walk(wall=2.5), fast_first, jax.random.PRNGKey(0), 3, 10)
    np.testing.assert_allclose(returns, [2.0, 3.0, 3.0])


def test_bandit_optimum_is_known():
    env = Bandit()
    s = jax.random.uniform(jax.random.PRNGKey(1), (100, 2), minval=-1, maxval=1)
    np.testing.assert_allclose(env.reward(s, env.optimal_action(s)), 1.0)
    worse = env.reward(s, env.optimal_action(s) + 0.1)
    assert np.all(worse < 1.0)


@pytest.mark.parametrize("env", [MultiGoal(), UnevenGoal()], ids=["multigoal", "unevengoal"])
def test_multigoal_has_equal_separated_modes(env):
    goals = np.asarray(env.goals)
    assert len(goals) >= 3
    values = np.asarray(env.reward(env.goals))
    np.testing.assert_allclose(values, values[0], rtol=0.01)
    assert values[0] > 0.99
    # between any two goals the reward falls below a quarter of the peak: separate modes
    for i in range(len(goals)):
        for j in range(i):
            assert float(env.reward(jnp.asarray((goals[i] + goals[j]) / 2))) < 0.25 * values[0]
    # every goal is a local maximum of the reward
    for g in goals:
        for d in ([0.05, 0], [0, 0.05], [-0.05, 0], [0, -0.05]):
            assert float(env.reward(jnp.asarray(g + np.array(d)))) < float(env.reward(jnp.asarray(g)))
    modes = np.asarray(env.mode_of(jnp.concatenate([env.goals, jnp.zeros((1, 2))])))
    assert list(modes) == list(range(len(goals))) + [-1]
    # the mode regions do not overlap
    radii = np.asarray(env.mode_radii)
    assert all(np.linalg.norm(goals[i] - goals[j]) > radii[i] + radii[j] for i in range(len(goals)) for j in range(i))


def test_unevengoal_modes_differ_in_width_and_distance():
    env = UnevenGoal()
    widths, dist = np.asarray(env.widths), np.linalg.norm(np.asarray(env.goals), axis=-1)
    assert widths.max() / widths.min() > 1.5 and dist.max() / dist.min() > 1.3
    # the soft-optimal masses exp(r / alpha) at small alpha, by quadrature: unequal, each over 10%
    g = np.linspace(-1, 1, 801)
    a = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    p = np.exp((np.asarray(env.reward(a)) - 1) / 0.02)
    modes = np.asarray(env.mode_of(a))
    mass = np.array([p[modes == k].sum() for k in range(3)]) / p.sum()
    assert mass.min() > 0.12 and mass.max() > 2.5 * mass.min(), mass


@pytest.mark.parametrize("name", ["inverted_pendulum"])
def test_mjx_env_through_episode_wrapper(name):
    env = make_env(name)
    assert name in BRAX_TASKS and env.obs_size > 0 and env.action_size > 0
    ep = EpisodeEnv(env, 2)
    step = jax.jit(jax.vmap(ep.step))
    state = jax.jit(jax.vmap(ep.reset))(jax.random.split(jax.random.PRNGKey(0), 2))
    zeros = jnp.zeros((2, env.action_size))
    state, out1 = step(state, zeros)
    state, out2 = step(state, zeros)
    assert not np.any(out1.done)
    assert np.all(out2.truncated) and np.all(out2.transition.terminated == 0)
    # the stored final observation is the stepped one, and the env came back from a reset
    np.testing.assert_allclose(out2.transition.obs, out1.transition.next_obs)
    assert np.all(state.steps == 0)
    assert not np.allclose(out2.transition.next_obs, state.env.obs)


@pytest.mark.parametrize("name", BRAX_TASKS)
def test_every_mjx_task_resets_and_steps(name):
    """Every brax task is reset and stepped through the episode wrapper in the default suite: one
    program per task (reset, then a step with zero actions), compiled with the suite's cheaper XLA
    settings (conftest.py)."""
    env = make_env(name)
    ep = EpisodeEnv(env)

    def reset_and_step(keys):
        state = jax.vmap(ep.reset)(keys)
        return state, jax.vmap(ep.step)(state, jnp.zeros((2, env.action_size)))[1]

    state, out = jax.jit(reset_and_step)(jax.random.split(jax.random.PRNGKey(0), 2))
    assert out.transition.next_obs.shape == (2, env.obs_size)
    assert np.all(np.isfinite(out.transition.next_obs)) and np.all(np.isfinite(out.transition.reward))
    # it moved: the stepped observation is not the reset one (zero actions still let physics act)
    assert not np.allclose(out.transition.next_obs, state.env.obs), name


class Draw:
    """Test env whose reset draws obs ~ U(0, 1) from its key; a step adds the action, no termination."""

    name = "draw"
    obs_size = 1
    action_size = 1
    default_episode_length = 2

    def reset(self, key):
        return EnvState(inner=jnp.zeros(()), obs=jax.random.uniform(key, (1,)), reward=jnp.zeros(()), terminated=jnp.zeros(()))

    def step(self, state, action):
        return EnvState(inner=state.inner, obs=state.obs + action, reward=jnp.zeros(()), terminated=jnp.zeros(()))


def test_spares_start_each_episode_and_are_redrawn_every_k_steps():
    """With spares an ended episode restarts from its env's spare (no reset computed for it);
    refill redraws every spare at the ticks that are multiples of `every` and touches none at the
    others; an env that ends again before the redraw restarts from the same spare and is counted
    as reused."""
    n, every = 8, 3
    ep = EpisodeEnv(Draw(), 2, spares=True)
    state = jax.vmap(ep.reset)(jax.random.split(jax.random.PRNGKey(0), n))
    assert not np.allclose(state.spare.obs, state.env.obs)
    zeros = jnp.zeros((n, 1))
    step = jax.jit(lambda s, a: jax.vmap(ep.step)(s, a))
    s1, _ = step(state, zeros)
    s2, out = step(s1, zeros)  # every episode ends at its second step
    assert np.all(out.done) and not np.any(out.reused)
    np.testing.assert_array_equal(s2.env.obs, state.spare.obs)  # each restarts from its own spare
    assert np.all(s2.stale)
    refill = jax.jit(ep.refill, static_argnums=1)
    for tick in range(7):
        new = refill(s2, every, jnp.int32(tick))
        redrawn = np.asarray(new.spare.obs != s2.spare.obs)[:, 0]
        assert redrawn.all() if tick % every == 0 else not redrawn.any(), tick
        np.testing.assert_array_equal(np.asarray(new.stale), np.full(n, tick % every != 0))
    kept = refill(s2, every, jnp.int32(1))
    s3, _ = step(kept, zeros)
    s4, out = step(s3, zeros)
    assert np.all(out.reused)  # ended again before a redraw: the same starts once more
    np.testing.assert_array_equal(s4.env.obs, s2.spare.obs)


def test_initial_states_stay_diverse_with_spares():
    """1,024 consecutive episodes of inverted_pendulum through the spares at the auto redraw period
    (16 steps; 64 envs, episodes cut at 16 steps, all ending together): their first observations
    are all distinct, none reused, and their spread is the env's own reset distribution's."""
    from mjxflow.scale import auto_reset_every

    env, n, length = make_env("inverted_pendulum"), 64, 16
    every = auto_reset_every(length, "jax")
    assert every == 16
    ep = EpisodeEnv(env, length, spares=True)
    zeros = jnp.zeros((n, env.action_size))

    def run(key):
        state = jax.vmap(ep.reset)(jax.random.split(key, n))

        def body(s, tick):
            s, out = ep.step_batch(s, zeros, every, tick)
            return s, (out.done, out.reused, s.env.obs)

        return jax.lax.scan(body, state, jnp.arange(16 * length))[1]

    done, reused, obs = jax.jit(run)(jax.random.PRNGKey(3))
    firsts = np.asarray(obs)[np.asarray(done)]  # the observation each new episode starts from
    assert len(firsts) == 1024 and not np.any(reused)
    assert len(np.unique(firsts, axis=0)) == len(firsts)
    direct = np.asarray(jax.jit(jax.vmap(lambda k: env.reset(k).obs))(jax.random.split(jax.random.PRNGKey(4), 1024)))
    moving = direct.std(0) > 0
    assert np.array_equal(firsts.std(0) > 0, moving)
    np.testing.assert_allclose(firsts.std(0)[moving], direct.std(0)[moving], rtol=0.12)
    np.testing.assert_allclose(firsts.mean(0)[moving], direct.mean(0)[moving], atol=0.2 * float(direct.std(0)[moving].min()))
