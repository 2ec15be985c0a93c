"""The run directory's small files are written whole or not at all, and members are numbered one way."""

import json
import os
import signal
import subprocess
import sys

import pytest

from mjxflow import rundir


def test_write_json_replaces_the_file_whole(tmp_path):
    path = tmp_path / "config.json"
    rundir.write_json(str(path), {"a": 1})
    rundir.write_json(str(path), {"a": 2, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1, 2]} and os.listdir(tmp_path) == ["config.json"]


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    """The disk fills while the new text is made durable (fsync fails): a write in place would
    leave the file truncated or half new; here the previous file is whole and no temporary is left."""
    import errno

    path = tmp_path / "frozen.json"
    rundir.write_json(str(path), {"0": {"seed": 0}})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="simulated"):
        rundir.write_json(str(path), {"0": {"seed": 0}, "1": {"seed": 1}})
    assert json.loads(path.read_text()) == {"0": {"seed": 0}} and os.listdir(tmp_path) == ["frozen.json"]
    with pytest.raises(TypeError):  # not serialisable: nothing is written either
        rundir.write_json(str(path), {"0": {"seed": 0}, "1": object()})
    assert json.loads(path.read_text()) == {"0": {"seed": 0}} and os.listdir(tmp_path) == ["frozen.json"]


def test_members_are_seeds_within_grid_points():
    pairs = [(rundir.point_of(m, 3), rundir.seed_of(m, 3)) for m in range(6)]
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [rundir.member(p, s, 3) for p, s in pairs] == list(range(6))


@pytest.mark.parametrize("command", ["resume", "evaluate", "plot"])
def test_a_cut_short_config_is_one_line_and_exit_2(tmp_path, capsys, command):
    """config.json cut short (a kill mid-write before writes were atomic, a partial copy): resume,
    evaluate and plot say which file is damaged in one line, exit 2, before anything is built."""
    from mjxflow import evaluate, plot, train
    from mjxflow.config import TrainConfig, save_json

    run = tmp_path / "r"
    run.mkdir()
    save_json(TrainConfig(env="bandit"), str(run / "config.json"))
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])
    (run / "metrics.jsonl").write_text('{"seed": 0, "env_steps": 0, "wall_time": 0.0, "eval_return": 1.0}\n')
    main = {"resume": lambda: train.main(["--resume", str(run)]),
            "evaluate": lambda: evaluate.main(["--run", str(run)]),
            "plot": lambda: plot.main([str(run), "--out", str(tmp_path / "c.png")])}[command]
    assert main() == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{run / 'config.json'} is damaged (" in err, err


def test_a_run_folder_appears_whole_or_not_at_all(tmp_path):
    """make_dir builds the folder as a hidden sibling and renames it: a failure while its first
    files are written leaves nothing under the name; a start killed there leaves only the hidden
    sibling, which the next start of the name removes; an existing folder is a one-line error."""
    from mjxflow.errors import ConfigError

    def fill(folder):
        rundir.write_json(os.path.join(folder, "config.json"), {"a": 1})
        raise OSError("no space left on device (simulated)")

    with pytest.raises(OSError, match="simulated"):
        rundir.make_dir(str(tmp_path / "r"), fill)
    assert os.listdir(tmp_path) == []
    # a process killed (SIGKILL: no clean-up) after its first file is written leaves no folder of the name
    code = ("import os, signal, sys; from mjxflow import rundir; rundir.make_dir(sys.argv[1], lambda f: ("
            "rundir.write_json(os.path.join(f, 'config.json'), {'a': 1}), os.kill(os.getpid(), signal.SIGKILL)))")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "r" not in os.listdir(tmp_path) and [n for n in os.listdir(tmp_path) if n.startswith(".r.new-")], os.listdir(tmp_path)
    rundir.make_dir(str(tmp_path / "r"), lambda f: rundir.write_json(os.path.join(f, "config.json"), {"a": 2}))
    assert os.listdir(tmp_path) == ["r"] and json.loads((tmp_path / "r" / "config.json").read_text()) == {"a": 2}
    with pytest.raises(ConfigError, match="already exists"):
        rundir.make_dir(str(tmp_path / "r"))


def test_a_lock_names_its_holder_and_frees_on_release(tmp_path):
    from mjxflow.errors import InUse

    with rundir.Lock(str(tmp_path / "run"), "training"):
        with pytest.raises(InUse, match=rf"in use by another process \(pid {os.getpid()}, training\)"):
            rundir.Lock(str(tmp_path / "run"), "evaluate").acquire()
    with rundir.Lock(str(tmp_path / "run"), "evaluate"):
        pass
