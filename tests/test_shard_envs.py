"""One run's environments over several devices, `--shard envs` (issue 30): each check runs
`mjxflow.train` in a subprocess with JAX_NUM_CPU_DEVICES set and compares what the runs wrote.

The contract (mjxflow.parallel.EnvPlacement): the same device count gives the same bits (one
process or two, both reducing through gloo); another count gives the one-device run up to the order of the gradient and
statistics reductions' additions; on one device the envs' layout (replay rows of one transition
per env) gives exactly the default run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mjxflow import parallel
from mjxflow.errors import ConfigError
from tests.test_devices import CACHE, ROOT, env_for, free_port, metrics, train

# A tiny SAC run on the bandit probe: 1 seed of 16 envs, learning from iteration 16 on.
TRAIN = ["--env", "bandit", "--agent", "sac", "--num-seeds", "1", "--num-envs", "16", "--min-replay", "256",
         "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2", "--chunk-iters", "25",
         "--num-evals", "2", "--eval-episodes", "8", "--num-checkpoints", "1", "--sac.actor-hidden", "32", "32",
         "--critic.hidden", "32", "32", "--compile-cache", CACHE, "--total-steps", "1200"]
SHARD = ["--shard", "envs"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """E4: envs over 4 devices; E1: the same on 1 device; S1: the default (seeds) run on 1 device."""
    root = tmp_path_factory.mktemp("shard_envs")
    out = {"root": root}
    out["log4"] = train(4, *TRAIN, *SHARD, "--runs-dir", str(root), "--run-name", "E4")
    train(4, *TRAIN, *SHARD, "--devices", "1", "--runs-dir", str(root), "--run-name", "E1")
    train(1, *TRAIN, "--runs-dir", str(root), "--run-name", "S1")
    return out


def losses(rows: dict) -> list[tuple]:
    return sorted(k for k in rows if rows[k].get("critic/loss") is not None)


def test_one_device_equals_the_default_run(runs):
    """Rows of one transition per env hold and sample the same transitions as the flat ring."""
    assert metrics(str(runs["root"] / "E1")) == metrics(str(runs["root"] / "S1"))


def test_four_devices_equal_one_to_reduction_order(runs):
    four, one = metrics(str(runs["root"] / "E4")), metrics(str(runs["root"] / "E1"))
    assert four.keys() == one.keys()
    first = losses(one)[0]
    assert first == losses(four)[0]
    for name, value in one[first].items():
        if isinstance(value, float):
            assert four[first][name] == pytest.approx(value, rel=1e-4, abs=1e-7), name
    before = [k for k in one if k[0] < first[0]]  # acting and stepping only: no reduction differs yet
    assert all(four[k] == one[k] for k in before)
    assert "on 4 x cpu, envs split" in runs["log4"]


REPLICAS = """
import sys, numpy as np, jax
from mjxflow import checkpoint
run = checkpoint.load_run(sys.argv[1])
bad = 0
for x in jax.tree.leaves(run.state.seeds.agent):
    shards = [np.asarray(s.data) for s in x.addressable_shards]
    bad += sum(not np.array_equal(shards[0], s) for s in shards[1:])
envs = jax.tree.leaves(run.state.seeds.envs)
rows = {s.data.shape[1] for x in envs if x.ndim >= 2 for s in x.addressable_shards}
print(bad, sorted(rows))
"""


def test_parameters_are_identical_on_every_device_and_envs_split(runs):
    proc = subprocess.run([sys.executable, "-c", REPLICAS, str(runs["root"] / "E4")], cwd=ROOT, env=env_for(4),
                          text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad, rows = proc.stdout.split(maxsplit=1)
    assert bad == "0"  # every device holds the same parameters and optimiser states
    assert rows.strip() == "[4]"  # each device steps 16 / 4 envs


def test_two_processes_equal_one_process_bit_for_bit(runs, tmp_path):
    """2 processes x 2 devices against 1 x 4: the same partitioned program, and both reduce
    through gloo (the one-process run starts jax.distributed alone for it, parallel.initialize),
    so every logged value is equal. With XLA's in-process all-reduce instead, the 1 x 4 run
    differs in the last place (1.4e-7 relative in a sum of returns)."""
    flags = ["--distributed.coordinator-address", f"127.0.0.1:{free_port()}", "--distributed.num-processes", "2"]
    procs = [subprocess.Popen([sys.executable, "-m", "mjxflow.train", *TRAIN, *SHARD, "--runs-dir", str(tmp_path),
                               "--run-name", "M", *flags, "--distributed.process-id", str(i)],
                              cwd=ROOT, env=env_for(2), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert "on 4 x cpu in 2 processes, envs split" in outs[0][0]
    two, one = metrics(str(tmp_path / "M")), metrics(str(runs["root"] / "E4"))
    assert losses(one) and two == one


class Cfg:
    def __init__(self, num_envs=64, batch_size=256, replay_size=6400, devices=None):
        self.num_envs, self.batch_size, self.replay_size, self.devices = num_envs, batch_size, replay_size, devices


def test_env_device_count_rules():
    assert parallel.env_device_count(Cfg(), available=4) == 4
    assert parallel.env_device_count(Cfg(devices=2), available=4) == 2
    with pytest.raises(ConfigError, match="--num-envs to be a multiple of 4, got 6"):
        parallel.env_device_count(Cfg(num_envs=6, replay_size=60), available=4)
    with pytest.raises(ConfigError, match="--batch-size to be a multiple of 4, got 258"):
        parallel.env_device_count(Cfg(batch_size=258), available=4)
    with pytest.raises(ConfigError, match="--replay-size must be a multiple of --num-envs 64, got 1000"):
        parallel.env_device_count(Cfg(replay_size=1000), available=4)
    with pytest.raises(ConfigError, match="only 4 devices"):
        parallel.env_device_count(Cfg(devices=8), available=4)


def test_a_bad_split_is_one_line_before_compiling():
    proc = subprocess.run([sys.executable, "-m", "mjxflow.train", "--env", "bandit", "--num-envs", "6", *SHARD,
                           "--print-config"], cwd=ROOT, env=env_for(4), text=True, capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --shard envs over 4 devices needs --num-envs to be a multiple "
                                                "of 4, got 6"]


def test_rows_of_one_transition_per_env_sample_what_the_flat_ring_samples():
    import jax
    import jax.numpy as jnp

    from mjxflow import replay
    flat, rows = replay.init(24, jnp.zeros(3)), replay.init(24, jnp.zeros(3), width=4)
    for i in range(9):  # past the capacity: both wrap
        batch = jnp.arange(12.0).reshape(4, 3) + 100 * i
        flat, rows = replay.add(flat, batch), replay.add(rows, batch)
    assert rows.data.shape == (6, 4, 3) and rows.capacity == 24 and int(rows.ptr) == int(flat.ptr)
    key = jax.random.PRNGKey(3)
    assert jnp.array_equal(replay.sample(flat, key, 50), replay.sample(rows, key, 50))
    with pytest.raises(ValueError, match="multiple of 4"):
        replay.init(10, jnp.zeros(3), width=4)
