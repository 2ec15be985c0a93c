"""The run directory's small files are written whole or not at all, and members are numbered one way."""

import json
import os

import pytest

from mjxflow import rundir


def test_write_json_replaces_the_file_whole(tmp_path):
    path = tmp_path / "config.json"
    rundir.write_json(str(path), {"a": 1})
    rundir.write_json(str(path), {"a": 2, "b": [1, 2]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1, 2]} and os.listdir(tmp_path) == ["config.json"]


def test_a_write_that_fails_midway_leaves_the_previous_file_and_no_temporary(tmp_path):
    """The object stops being serialisable part way through: with a write in place the file would
    be cut short (its first keys written, the rest lost)."""
    path = tmp_path / "frozen.json"
    rundir.write_json(str(path), {"0": {"seed": 0}})
    with pytest.raises(TypeError):
        rundir.write_json(str(path), {"0": {"seed": 0}, "1": object()})
    assert json.loads(path.read_text()) == {"0": {"seed": 0}} and os.listdir(tmp_path) == ["frozen.json"]


def test_members_are_seeds_within_grid_points():
    pairs = [(rundir.point_of(m, 3), rundir.seed_of(m, 3)) for m in range(6)]
    assert pairs == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [rundir.member(p, s, 3) for p, s in pairs] == list(range(6))
