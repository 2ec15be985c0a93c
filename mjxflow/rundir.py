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
EVAL = "eval.json"  # mjxflow.evaluate's latest result
EVALS = "evals"  # mjxflow.evaluate's result per evaluated step: evals/STEP.json


def path(run_dir: str, name: str) -> str:
    """The file or folder `name` (one of the names above) of a run."""
    return os.path.join(run_dir, name)


def seed_of(member: int, num_seeds: int) -> int:
    return member % num_seeds


def point_of(member: int, num_seeds: int) -> int:
    return member // num_seeds


def member(point: int, seed: int, num_seeds: int) -> int:
    return point * num_seeds + seed


def write_text(file: str, text: str) -> None:
    """Write `text` to `file` so that a reader sees the old file or the new one, never a part: a
    temporary file in the same folder, flushed and fsynced, renamed over `file`, then the folder
    fsynced (a kill, a crash or a full disk mid-write leaves the previous file as it was)."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(file))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(file)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
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


def write_json(file: str, obj, indent: int | None = 2) -> None:
    """write_text() of `obj` as JSON."""
    import json

    write_text(file, json.dumps(obj, indent=indent))


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


class Lock:
    """An exclusive lock on a run or study folder, held by one process for as long as it uses it:
    `fcntl.flock` on a file beside the folder (`.NAME.lock`, so that the lock outlives an
    --overwrite of the folder), which the kernel releases when its holder exits, however it exits
    (a crashed holder leaves no stale lock). A second process gets a one-line ConfigError naming
    the holder's pid. The file holds the holder's pid and purpose and is never deleted (deleting
    it would let two processes lock two different files of one name)."""

    def __init__(self, folder: str, purpose: str):
        folder = os.path.normpath(os.path.abspath(folder))
        self.folder, self.purpose, self.fd = folder, purpose, None
        self.file = os.path.join(os.path.dirname(folder), f".{os.path.basename(folder)}.lock")

    def acquire(self) -> "Lock":
        import fcntl

        from mjxflow.errors import InUse

        os.makedirs(os.path.dirname(self.file), exist_ok=True)
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a process that has not written its pid yet"
            os.close(fd)
            raise InUse(f"{self.folder} is in use by another process ({holder}); wait for it to finish or stop "
                              f"it, or use another name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, {self.purpose}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the flock
            self.fd = None

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def make_dir(folder: str, fill=None) -> None:
    """Create the run folder `folder` (its parents as needed) atomically: it is built as a hidden
    sibling (`.NAME.new-*`), `fill(path)` writes its first files there, and one rename makes it
    appear whole (a kill mid-way leaves no half-made run, only the hidden folder, which the next
    start of that name removes). A ConfigError, not a FileExistsError traceback, when it exists
    already. The caller holds the folder's Lock."""
    import glob
    import shutil
    import tempfile

    from mjxflow.errors import ConfigError

    folder = os.path.normpath(os.path.abspath(folder))
    parent, name = os.path.split(folder)
    os.makedirs(parent, exist_ok=True)
    for left in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.new-*")):
        shutil.rmtree(left, ignore_errors=True)  # a start killed before its rename
    if os.path.exists(folder):
        raise ConfigError(f"run directory {folder} already exists; pick another --run-name, or pass --resume "
                          f"{folder} or --overwrite")
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.new-")
    try:
        if fill is not None:
            fill(tmp)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
