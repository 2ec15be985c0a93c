"""Adding an agent is its module plus one registry entry: a tiny deterministic actor-critic defined
here, registered from this file alone, trains through train's, the study's and the bench's code
paths; its options, checks, sweeps and routing all come from its spec."""

import json
import os
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import struct

from mjxflow import bench, config, study, train
from mjxflow.agents import registry
from mjxflow.agents.base import gradient_step
from mjxflow.agents.critic import Critic, CriticState
from mjxflow.logs import read_jsonl
from mjxflow.options import check_positive, check_typed, require

CACHE = os.environ["MJXFLOW_TEST_CACHE"]
TINY = ["--env", "bandit", "--num-envs", "8", "--chunk-iters", "50", "--eval-episodes", "8", "--min-replay", "64",
        "--batch-size", "32", "--replay-size", "2000", "--updates-per-iter", "1", "--compile-cache", CACHE]


@dataclass(frozen=True)
class TinyConfig:
    """A deterministic tanh actor pushed up the critic's gradient, with Gaussian exploration."""

    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    noise: float = 0.3
    """Std of the exploration noise of training actions."""
    actor_hidden: tuple[int, ...] = (16,)
    """Hidden layer widths of the actor."""


def check_tiny(cfg: TinyConfig) -> None:
    check_typed("tiny", cfg)
    check_positive("tiny", cfg, "actor_lr")
    require(cfg.noise >= 0, "tiny.noise", cfg.noise, ">= 0")


class TinyActor(nn.Module):
    hidden: tuple[int, ...]
    action_size: int

    @nn.compact
    def __call__(self, obs):
        x = obs
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return jnp.tanh(nn.Dense(self.action_size)(x))


class TinyState(struct.PyTreeNode):
    actor_params: dict
    actor_opt: optax.OptState
    critic: CriticState


class Tiny:
    name = "tiny"

    def __init__(self, cfg: TinyConfig, critic_cfg, obs_size: int, action_size: int, check: bool = True):
        check and check_tiny(cfg)
        self.cfg, self.obs_size = cfg, obs_size
        self.actor = TinyActor(tuple(cfg.actor_hidden), action_size)
        self.critic = Critic(critic_cfg, obs_size, action_size, check)
        self.actor_opt = optax.adam(cfg.actor_lr)

    def init(self, key):
        actor_key, critic_key = jax.random.split(key)
        params = self.actor.init(actor_key, jnp.zeros((1, self.obs_size)))
        return TinyState(actor_params=params, actor_opt=self.actor_opt.init(params), critic=self.critic.init(critic_key))

    def act(self, state, obs, key, deterministic):
        a = self.actor.apply(state.actor_params, obs)
        return a if deterministic else jnp.clip(a + self.cfg.noise * jax.random.normal(key, a.shape), -1.0, 1.0)

    def policy_sample(self, state, obs, key):
        return self.act(state, obs, key, False)

    def update(self, state, batch, key):
        critic, info = self.critic.update(state.critic, batch, self.actor.apply(state.actor_params, batch.next_obs), 0.0)

        def loss(params, critic_params, obs):
            value = -jnp.mean(self.critic.min_q(critic_params, obs, self.actor.apply(params, obs)))
            return value, {"actor/loss": value}

        params, opt, actor_info = gradient_step(loss, self.actor_opt, state.actor_params, state.actor_opt, critic.params, batch.obs)
        return TinyState(actor_params=params, actor_opt=opt, critic=critic), {**info, **actor_info}


SPEC = registry.AgentSpec(
    group="tiny", config=TinyConfig, variants={"tiny": None}, check=check_tiny,
    build=lambda _, cfg, critic, obs_size, action_size, check: Tiny(cfg, critic, obs_size, action_size, check),
    doc="The test's tiny agent (used when --agent tiny).", sweepable=("actor_lr",),
)


def test_a_registered_agent_trains_through_train_study_and_bench(tmp_path, capsys):
    original = config.TrainConfig
    with registry.registered(SPEC):
        assert "tiny" in registry.names() and "tiny.actor_lr" in config.sweepable()

        # train: its option group is on the command line and in config.json; a bad value is one line
        run = tmp_path / "runs" / "t"
        argv = [*TINY, "--agent", "tiny", "--total-steps", "800", "--num-seeds", "2", "--tiny.actor-lr", "0.003",
                "--runs-dir", str(tmp_path / "runs"), "--run-name", "t"]
        assert train.main(argv) == 0
        saved = json.load(open(run / "config.json"))
        assert saved["agent"] == "tiny" and saved["tiny"]["actor_lr"] == 0.003 and saved["tiny"]["noise"] == 0.3
        rows = read_jsonl(str(run / "metrics.jsonl"))
        assert rows[-1]["env_steps"] == 800 and {r["seed"] for r in rows} == {0, 1}
        assert jnp.isfinite(rows[-1]["critic/loss"]) and jnp.isfinite(rows[-1]["actor/loss"])  # its own diagnostics logged
        capsys.readouterr()
        assert train.main([*TINY, "--agent", "tiny", "--tiny.noise", "-1", "--print-config"]) == 2
        assert "--tiny.noise must be >= 0" in capsys.readouterr().err
        assert train.main([*TINY, "--agent", "tiny", "--sac.actor-lr", "0.1", "--print-config"]) == 2
        assert "is an option of --agent sac" in capsys.readouterr().err
        assert train.main([*TINY, "--agent", "sac", "--tiny.noise", "0.1", "--print-config"]) == 2
        assert "is an option of --agent tiny" in capsys.readouterr().err

        # study: a variant setting --tiny.* options is routed to the tiny agent's cells; its sweep too
        root = tmp_path / "studies"
        assert study.main(["--name", "S", "--runs-dir", str(root), "--agents", "tiny", "sac", "--envs", "bandit", "--num-seeds", "1",
                           "--variant", "lr3=--tiny.actor-lr 0.003", *TINY[2:], "--total-steps", "400"]) == 0
        assert sorted(c for c in os.listdir(root / "S" / "bandit") if not c.startswith(".")) == ["lr3", "sac", "tiny"]  # lr3: the tiny agent's only
        cells = {c: json.load(open(root / "S" / "bandit" / c / "config.json")) for c in ("tiny", "lr3")}
        assert cells["tiny"]["tiny"]["actor_lr"] == 1e-3 and cells["lr3"]["tiny"]["actor_lr"] == 0.003
        assert all(read_jsonl(str(root / "S" / "bandit" / c / "metrics.jsonl"))[-1]["env_steps"] == 400 for c in cells)

        # bench: the agent's rows in the training and update tables
        assert bench.main(["--env", "bandit", "--agents", "tiny", "--num-envs", "4", "--iters", "2", "--repeats", "1",
                           "--batch-size", "16", "--updates-per-iter", "1", "--hidden", "8", "--measure", "train", "update",
                           "--name", "b", "--out-dir", str(tmp_path / "bench"), "--compile-cache", CACHE]) == 0
        result = json.load(open(tmp_path / "bench" / "b.json"))
        assert [r["agent"] for r in result["train"]] == ["tiny"]
        assert "tiny" in {r["agent"] for r in result["update"]}

    # unregistered: the config is the original class again and the name is gone
    assert config.TrainConfig is original and "tiny" not in registry.names()
    assert "tiny" not in {f.name for f in __import__("dataclasses").fields(config.TrainConfig)}
    capsys.readouterr()
    assert train.main([*TINY, "--agent", "tiny", "--print-config"]) == 2


def test_a_spec_cannot_take_a_used_name_or_group():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.AgentSpec(group="other", config=TinyConfig, variants={"sac": None}, check=check_tiny,
                                             build=SPEC.build, doc=""))
    with pytest.raises(ValueError, match="is taken"):
        registry.register(registry.AgentSpec(group="critic", config=TinyConfig, variants={"x": None}, check=check_tiny,
                                             build=SPEC.build, doc=""))
    assert "other" not in registry.groups() and "x" not in registry.names()
