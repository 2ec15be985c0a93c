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
