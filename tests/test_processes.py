"""One run over several processes (issue 30): a run of 2 processes x 2 CPU devices under
jax.distributed stopped by a signal that reaches only one of them, then resumed by 2 processes
and, from a copy of the same checkpoint, by 1. Every process stops after the same chunk
(parallel.any_signal) and saves that checkpoint together; both resumes continue exactly, equal
bit for bit to one process of 4 devices that never stopped: with the seeds over the devices (the
same 4-partition program on every device whichever process holds it) and with one seed's envs
over them (--shard envs: the one-process run reduces through gloo as the two processes do)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.test_devices import ROOT, TRAIN, env_for, free_port, metrics, train
from tests.test_shard_envs import SHARD, TRAIN as TRAIN_ENVS

pytestmark = pytest.mark.slow  # ~3 min of launches; CI is already past its 30-minute target without them

STEPS = ["--total-steps", "4000"]  # 500 iterations in 10 chunks: a signal after the first lands mid-run


def launch(*args: str, processes: int = 2, module: str = "mjxflow.train") -> list[subprocess.Popen]:
    """`python -m module args` as `processes` processes of 4 // processes CPU devices under
    jax.distributed; one process: a plain launch on 4 devices."""
    common = ["--distributed.coordinator-address", f"127.0.0.1:{free_port()}", "--distributed.num-processes", str(processes)]
    flags = [[*common, "--distributed.process-id", str(i)] if processes > 1 else [] for i in range(processes)]
    env = {**env_for(4 // processes), "PYTHONUNBUFFERED": "1"}
    return [subprocess.Popen([sys.executable, "-m", module, *args, *f], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for f in flags]


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    outs = [p.communicate(timeout=600) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


RUNS = {"seeds": TRAIN, "envs": [*TRAIN_ENVS, *SHARD]}  # 4 seeds over the devices; 1 seed's 16 envs over them


@pytest.fixture(scope="module", params=sorted(RUNS))
def runs(tmp_path_factory, request):
    root = tmp_path_factory.mktemp(f"processes-{request.param}")
    out = {"root": root}
    run = RUNS[request.param]
    train(4, *run, *STEPS, "--runs-dir", str(root), "--run-name", "R")  # the reference: 1 x 4, never stopped

    procs = launch(*run, *STEPS, "--runs-dir", str(root), "--run-name", "M")
    head = []
    for line in procs[0].stdout:  # process 0 alone is signalled, once it has started training
        head.append(line)
        if line.startswith("compiled the training chunk"):  # the preemption service catches it even before training
            procs[0].send_signal(signal.SIGTERM)
            break
    stopped = finish(procs)
    out["stopped"] = [(rc, ("".join(head) + o if i == 0 else o), e) for i, (rc, o, e) in enumerate(stopped)]
    out["saved"] = sorted(int(d) for d in os.listdir(root / "M" / "checkpoints") if d.isdigit())

    shutil.copytree(root / "M", root / "M1")  # the same checkpoint, for the one-process resume
    with open(root / "M1" / "config.json") as f:
        cfg = json.load(f)
    cfg["run_name"] = "M1"
    with open(root / "M1" / "config.json", "w") as f:
        json.dump(cfg, f)
    out["resumed2"] = finish(launch("--resume", str(root / "M")))
    out["resumed1"] = train(4, "--resume", str(root / "M1"))
    return out


def test_a_signal_to_one_process_stops_every_process_after_the_same_chunk(runs):
    (rc0, out0, err0), (rc1, out1, err1) = runs["stopped"]
    assert (rc0, rc1) == (130, 130), err0[-3000:] + err1[-3000:]
    line = next(x for x in out0.splitlines() if x.startswith("stopped by SIGTERM at"))
    steps = int(line.split(" at ")[1].split()[0].replace(",", ""))
    assert 0 < steps < 4000
    assert "stopped by" not in out1  # process 1 writes nothing, and was not signalled
    assert runs["saved"] == [steps]  # the one checkpoint, written by both processes together


def test_two_processes_resume_exactly(runs):
    codes = [rc for rc, _, _ in runs["resumed2"]]
    assert codes == [0, 0], runs["resumed2"][0][2][-3000:] + runs["resumed2"][1][2][-3000:]
    assert "resumed from checkpoint at" in runs["resumed2"][0][1]
    assert metrics(str(runs["root"] / "M")) == metrics(str(runs["root"] / "R"))


def test_one_process_resumes_the_two_process_checkpoint_exactly(runs):
    assert "resumed from checkpoint at" in runs["resumed1"]
    assert "on 4 x cpu |" in runs["resumed1"] or "on 4 x cpu, envs split |" in runs["resumed1"]  # one process
    assert metrics(str(runs["root"] / "M1")) == metrics(str(runs["root"] / "R"))


# ---- a study under jax.distributed -------------------------------------------------------------------

assert TRAIN[:6] == ["--env", "bandit", "--agent", "sac", "--num-seeds", "4"]
CELL = TRAIN[6:]  # the run's options; the study sets env, agent and seeds


def without_wall_time(table: str) -> str:
    """The study's table without its wall-time column (the 8th of the cells' table)."""
    out = []
    for line in table.splitlines():
        cols = line.split("|")
        out.append("|".join(cols[:8] + cols[9:]) if len(cols) == 11 else line)
    return "\n".join(out)


def study(processes: int, root) -> list[tuple[int, str, str]]:
    return finish(launch("--name", "D", "--runs-dir", str(root), "--agents", "sac", "smfp", "--envs", "bandit",
                         "--num-seeds", "4", *CELL, "--total-steps", "800", "--smfp.actor-hidden", "32", "32",
                         processes=processes, module="mjxflow.study"))


def test_a_study_under_jax_distributed_equals_the_one_process_study(tmp_path):
    one = study(1, tmp_path / "one")
    assert one[0][0] == 0, one[0][2][-3000:]
    two = study(2, tmp_path / "two")
    assert [rc for rc, _, _ in two] == [0, 0], two[0][2][-3000:] + two[1][2][-3000:]
    assert "[cell 2/2]" in two[0][1] and "cell" not in two[1][1]  # process 0 logs (gloo alone talks on process 1)
    assert not os.path.exists(tmp_path / "two" / "D" / "table.md.tmp")
    a, b = ((tmp_path / x / "D" / "table.md").read_text() for x in ("one", "two"))
    assert a.count("| done |") == 2 and without_wall_time(a) == without_wall_time(b)
    for agent in ("sac", "smfp"):
        assert metrics(str(tmp_path / "two" / "D" / "bandit" / agent)) == metrics(str(tmp_path / "one" / "D" / "bandit" / agent))
