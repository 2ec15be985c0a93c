"""What a run directory holds, by name, and how its members are numbered: the one place the file
names and the member <-> (seed, grid point) arithmetic are written.

A run trains num_points x num_seeds members as one vmapped axis (num_points is 1 without
--sweep): member m is seed m % num_seeds of grid point m // num_seeds.
"""

from __future__ import annotations

import os

CONFIG = "config.json"  # the resolved config and its derived figures
METRICS = "metrics.jsonl"  # one row per log point per member
METRICS_CSV = "metrics.csv"
CHECKPOINTS = "checkpoints"  # Orbax checkpoints of the whole train state
FROZEN = "frozen.json"  # members frozen after a non-finite value
EVAL = "eval.json"  # written by mjxflow.evaluate


def path(run_dir: str, name: str) -> str:
    """The file or folder `name` (one of the names above) of a run."""
    return os.path.join(run_dir, name)


def seed_of(member: int, num_seeds: int) -> int:
    return member % num_seeds


def point_of(member: int, num_seeds: int) -> int:
    return member // num_seeds


def member(point: int, seed: int, num_seeds: int) -> int:
    return point * num_seeds + seed


def write_json(file: str, obj, indent: int | None = 2) -> None:
    """Write `obj` as JSON to `file` so that a reader sees the old file or the new one, never a part:
    a temporary file in the same folder, flushed and fsynced, renamed over `file`, then the folder
    fsynced (a kill, a crash or a full disk mid-write leaves the previous file as it was)."""
    import json
    import tempfile

    folder = os.path.dirname(os.path.abspath(file))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(file)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(file: str):
    """The JSON in `file`; one that is cut short or not JSON (a copy in part, an editor's slip) is a
    one-line ConfigError naming the file, instead of a JSONDecodeError traceback."""
    import json

    from mjxflow.errors import ConfigError

    with open(file) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{file} is damaged ({e.msg} at line {e.lineno}, column {e.colno}); restore it from a "
                          f"copy, or start that run again (--overwrite)") from None
