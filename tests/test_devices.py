"""Seeds over several devices (issue 14): each check runs `mjxflow.train` (or a checkpoint load) in a
subprocess with JAX_NUM_CPU_DEVICES set, the way a user would, and compares what they wrote.

What holds across device counts (see mjxflow.parallel): the placement (each device holds its share
of every seed array), checkpoints that restore onto any device count bit for bit, and training
that equals one device's to float rounding (not bit for bit: XLA sums a batch in a different order
when a device vmaps 1 seed instead of 4)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mjxflow import parallel
from mjxflow.parallel import free_port
from mjxflow.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("MJXFLOW_TEST_CACHE", os.path.join(ROOT, ".jax_cache"))

# A tiny SAC run on the bandit probe: 4 seeds, learning from iteration 32 on, two logging chunks.
TRAIN = ["--env", "bandit", "--agent", "sac", "--num-seeds", "4", "--num-envs", "8", "--min-replay", "256",
         "--batch-size", "64", "--replay-size", "2000", "--updates-per-iter", "2", "--chunk-iters", "50",
         "--num-evals", "2", "--eval-episodes", "8", "--num-checkpoints", "1", "--sac.actor-hidden", "32", "32",
         "--critic.hidden", "32", "32", "--compile-cache", CACHE]


def env_for(devices: int) -> dict:
    return {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "PYTHONPATH": ROOT}


def train(devices: int, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "mjxflow.train", *args], cwd=ROOT, env=env_for(devices), text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


DUMP = """
import sys, numpy as np, jax
from mjxflow import checkpoint
run = checkpoint.load_run(sys.argv[1])
leaves = jax.tree.leaves(run.state)
devices = [len({s.device for s in x.addressable_shards}) for x in leaves]
shard_rows = [x.addressable_shards[0].data.shape[0] if x.ndim else 0 for x in leaves]
np.savez(sys.argv[2], *[np.asarray(x) for x in leaves], devices=np.array(devices), shard_rows=np.array(shard_rows),
         step=run.step)
"""


def dump(devices: int, run_dir: str, out: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(DUMP), run_dir, out], cwd=ROOT, env=env_for(devices),
                          text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}


def metrics(run_dir: str) -> dict:
    rows = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            row.pop("wall_time")
            rows[(row["env_steps"], row["seed"])] = row
    return rows


def assert_close_rows(a: dict, b: dict, keys, rtol: float) -> None:
    for key in keys:
        for name, value in a[key].items():
            other = b[key][name]
            if isinstance(value, float):
                assert other == pytest.approx(value, rel=rtol, abs=1e-6), (key, name, value, other)
            else:
                assert value == other, (key, name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A on 4 devices and run B on 1 (1,200 env steps each); A resumed to 2,400 on 1 device
    and, from a copy, on 4."""
    root = tmp_path_factory.mktemp("devices")
    out = {"root": str(root)}
    out["log4"] = train(4, *TRAIN, "--total-steps", "1200", "--runs-dir", str(root), "--run-name", "A")
    out["log1"] = train(1, *TRAIN, "--total-steps", "1200", "--runs-dir", str(root), "--run-name", "B")
    shutil.copytree(root / "A", root / "A4")
    with open(root / "A4" / "config.json") as f:
        cfg = json.load(f)
    cfg["run_name"] = "A4"
    with open(root / "A4" / "config.json", "w") as f:
        json.dump(cfg, f)
    out["dump4"] = dump(4, str(root / "A"), str(root / "dump4.npz"))
    out["dump1"] = dump(1, str(root / "A"), str(root / "dump1.npz"))
    train(1, "--resume", str(root / "A"), "--total-steps", "2400")
    train(4, "--resume", str(root / "A4"), "--total-steps", "2400")
    return out


def test_start_table_reports_the_devices(runs):
    assert "on 4 x cpu" in runs["log4"] and "on 1 x cpu" in runs["log1"]
    table = lambda log: next(line for line in log.splitlines() if line.strip().startswith("devices"))
    assert table(runs["log4"]).split()[-1] == "4" and table(runs["log1"]).split()[-1] == "1"


def test_four_devices_equal_one_to_float_rounding(runs):
    b = metrics(os.path.join(runs["root"], "B"))
    a = {k: v for k, v in metrics(os.path.join(runs["root"], "A")).items() if k[0] <= 1200}  # before its resume
    assert a.keys() == b.keys()
    learned = sorted(k for k in a if a[k].get("critic/loss") is not None)
    first = [k for k in learned if k[0] == learned[0][0]]
    assert len(first) == 4
    assert_close_rows(a, b, first, rtol=1e-4)  # the first logged losses, every seed
    for key in a:  # and the whole run ends in the same place (a bandit: every seed near the optimum)
        if key[0] == 1200 and a[key].get("eval_return") is not None:
            assert a[key]["eval_return"] == pytest.approx(b[key]["eval_return"], abs=0.05)


def test_checkpoint_restores_onto_any_device_count_bit_for_bit(runs):
    d4, d1 = runs["dump4"], runs["dump1"]
    arrays = sorted((k for k in d4 if k.startswith("arr_")), key=lambda k: int(k[4:]))
    assert arrays and int(d4["step"]) == int(d1["step"]) == 1200
    for k in arrays:
        np.testing.assert_array_equal(d4[k], d1[k], err_msg=k)
    per_seed = d4["shard_rows"] > 0
    assert np.all(d4["devices"][per_seed] == 4)  # every seed array spread over the 4 devices ...
    assert np.all(d4["shard_rows"][per_seed] == 1)  # ... one seed on each
    assert np.all(d1["devices"] == 1) and np.all(d1["shard_rows"][per_seed] == 4)


def test_resume_on_another_device_count_continues_the_run(runs):
    one, four = metrics(os.path.join(runs["root"], "A")), metrics(os.path.join(runs["root"], "A4"))
    assert one.keys() == four.keys() and max(k[0] for k in one) == 2400
    before = [k for k in one if k[0] <= 1200]
    assert_close_rows(one, four, before, rtol=0)  # the rows before the checkpoint are kept as they were
    after = sorted(k for k in one if k[0] > 1200 and one[k].get("critic/loss") is not None)
    assert_close_rows(one, four, [k for k in after if k[0] == after[0][0]], rtol=1e-4)


def test_two_processes_equal_one_process(runs, tmp_path):
    """Two processes of 2 devices each under jax.distributed (gloo collectives on the CPU) train
    the 4 seeds of run A: bit for bit A's metrics (the same 4-partition program per device), and
    process 0 alone writes the run directory and prints."""
    flags = ["--distributed.coordinator-address", f"127.0.0.1:{free_port()}", "--distributed.num-processes", "2"]
    procs = [subprocess.Popen([sys.executable, "-m", "mjxflow.train", *TRAIN, "--total-steps", "1200",
                               "--runs-dir", str(tmp_path), "--run-name", "M", *flags, "--distributed.process-id", str(i)],
                              cwd=ROOT, env=env_for(2), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert "on 4 x cpu in 2 processes" in outs[0][0] and "done:" in outs[0][0]
    assert "done:" not in outs[1][0] and "steps/s" not in outs[1][0]
    a = {k: v for k, v in metrics(os.path.join(runs["root"], "A")).items() if k[0] <= 1200}
    assert metrics(str(tmp_path / "M")) == a
    with open(tmp_path / "M" / "metrics.jsonl") as f:
        assert sum(1 for _ in f) == len(a)  # one writer: no row twice
    assert os.path.isdir(tmp_path / "M" / "checkpoints" / "1200" / "state")


def test_device_count_rules():
    assert parallel.device_count(8, None, available=4) == 4
    assert parallel.device_count(6, None, available=4) == 3  # auto: the largest count that splits the seeds
    assert parallel.device_count(1, None, available=8) == 1
    assert parallel.device_count(4, 2, available=4) == 2
    with pytest.raises(ConfigError, match="does not split evenly over --devices 4; use --devices 1 or 2 or 3"):
        parallel.device_count(6, 4, available=4)
    with pytest.raises(ConfigError, match="only 4 devices"):
        parallel.device_count(8, 8, available=4)
    with pytest.raises(ConfigError, match="positive integer"):
        parallel.device_count(4, 0, available=4)
    assert parallel.auto_note(6, 3, 4).startswith("using 3 of 4 devices")
    assert parallel.auto_note(4, 4, 4) is None


def test_distributed_options_are_checked_before_anything_starts():
    from mjxflow.config import DistributedConfig, check_distributed
    check_distributed(DistributedConfig())
    check_distributed(DistributedConfig(auto=True))
    check_distributed(DistributedConfig("10.0.0.1:1234", 2, 1))
    bad = [
        (DistributedConfig("10.0.0.1:1234", 2, None), "missing: --distributed.process-id"),
        (DistributedConfig("10.0.0.1", 2, 0), "HOST:PORT"),
        (DistributedConfig("h:1", 2, 2), r"process-id must be in 0 \.\. 1"),
        (DistributedConfig("h:1", 0, 0), "num-processes must be a positive integer"),
        (DistributedConfig("h:1", 2, 0, auto=True), "not both"),
    ]
    for d, message in bad:
        with pytest.raises(ValueError, match=message):
            check_distributed(d)
