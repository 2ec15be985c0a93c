import json

import numpy as np
import pytest

from mjxflow import plot


def write_run(path, agent, returns, walls, repeat_step=None):
    """A fake run: returns[s][i] is seed s's evaluation at env step 100 * i."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"agent": agent, "env": "bandit"}))
    rows = []
    for i, wall in enumerate(walls):
        for s, rs in enumerate(returns):
            rows.append({"seed": s, "env_steps": 100 * i, "wall_time": wall, "eval_return": rs[i]})
    if repeat_step is not None:  # a resumed run logs a step again; the later row wins
        rows += [{"seed": s, "env_steps": 100 * repeat_step, "wall_time": walls[repeat_step], "eval_return": -5.0}
                 for s in range(len(returns))]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_curves_best_so_far_and_table(tmp_path):
    a = write_run(tmp_path / "a", "sac", [[0.0, 3.0, 1.0], [0.0, 1.0, 5.0]], [0.0, 1.0, 2.0])
    b = write_run(tmp_path / "b", "smfp", [[1.0, 2.0, 2.0], [1.0, 2.0, 4.0]], [0.0, 4.0, 8.0], repeat_step=1)
    c = plot.load_curves(str(a))
    np.testing.assert_array_equal(c.steps, [0, 100, 200])
    np.testing.assert_array_equal(c.best_so_far, [[0, 3, 3], [0, 1, 5]])
    assert plot.load_curves(str(b)).returns[:, 1].tolist() == [-5.0, -5.0]

    out = tmp_path / "fig" / "curves.png"
    table = plot.plot_runs([str(a), str(b)], str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = table.splitlines()
    assert [h.strip() for h in lines[0].strip("|").split("|")] == [
        "run", "env", "seeds", "env steps", "train wall time (s)", "final return", "best return"]
    sac = [x.strip() for x in lines[2].strip("|").split("|")]
    assert sac == ["sac", "bandit", "2", "200", "2", "3.0 ± 2.0", "4.0 ± 1.0"]
    smfp = [x.strip() for x in lines[3].strip("|").split("|")]
    assert smfp[-2:] == ["3.0 ± 1.0", "3.0 ± 1.0"]


def test_cli_writes_figure_and_table(tmp_path, capsys):
    a = write_run(tmp_path / "a", "sac", [[0.0, 1.0]], [0.0, 1.0])
    b = write_run(tmp_path / "b", "sac", [[0.0, 2.0]], [0.0, 1.0])
    out, table = tmp_path / "c.png", tmp_path / "t.md"
    assert plot.main([str(a), str(b), "--out", str(out), "--table", str(table)]) == 0
    text = capsys.readouterr().out
    assert "| a | bandit |" in text and "| b | bandit |" in text  # same agent: labelled by run name
    assert out.exists() and table.read_text().startswith("| run |")


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "nowhere is not a run directory"),
    (["RUN", "--labels", "x", "y"], "--labels gives 2 labels for 1 runs"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    write_run(tmp_path / "r", "sac", [[0.0]], [0.0])
    args = [str(tmp_path / "r") if a == "RUN" else str(tmp_path / a) if a == "nowhere" else a for a in args]
    assert plot.main(args + ["--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
