"""Orbax checkpoints of the whole TrainState, and loading a run back (config + state + loop).

Training saves in the background (Orbax's asynchronous checkpointing): a save costs the loop only
the copy of the arrays into host memory, and the files are written while the next chunks run; the
end-of-run summary lists each kept checkpoint's size and the time training lost to saving. Arrays
are restored straight onto the devices of the loop that reads them (targets carrying shardings),
whatever device count wrote them. A checkpoint is named by env steps per seed and holds two
items: `state` (everything but the replay buffer) and, when the run saves it, `replay`. Orbax
writes each checkpoint into a temporary directory and renames it when complete, so a crash
mid-save leaves no half checkpoint behind (the temporary directory is ignored, and removed when the
run is opened again). Each checkpoint also
records which release wrote it and the shapes of its arrays (`meta`), so a checkpoint that cannot
be read is named for what it is: damaged (copied in part, cut short) or written by an incompatible
release or setup. Resuming uses the newest readable checkpoint and moves newer unreadable ones to
`unreadable-checkpoints/`; when none can be read it stops and changes nothing (see
`restore_latest`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from mjxflow import rundir
from mjxflow.errors import ConfigError
from mjxflow.config import TrainConfig, load_json
from mjxflow.loop import Loop, PolicyState, TrainState, build_loop, policy_state


def checkpoint_dir(run_dir: str) -> str:
    return os.path.abspath(rundir.path(run_dir, rundir.CHECKPOINTS))


def manager(run_dir: str, keep: int | None = None, background: bool = False, writer: bool = False) -> ocp.CheckpointManager:
    """The run's Orbax checkpoint manager. `background`: a save returns once the arrays are copied
    into host memory (Orbax's blocking part) and a background thread writes the files while training
    goes on; the next save, or close(), waits for it. The next chunk may donate the saved buffers
    at once, since the writer reads the host copies (tests/test_loop.py checks it). A checkpoint
    appears only when complete (written under a temporary name, renamed at the end), so a crash
    during a write leaves the previous checkpoint whole. Only the `writer` (the training process,
    which holds the run's lock) removes the temporary folders of unfinished saves: a reader
    (evaluate, a study's report, load_policy) could otherwise delete a live run's save in progress."""
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=background,
                                           cleanup_tmp_directories=writer)
    return ocp.CheckpointManager(checkpoint_dir(run_dir), options=options)


def _pack(tree) -> list:
    """The tree's non-empty leaves in order: orbax cannot store zero-size arrays, and MJX states
    have some (e.g. actuator activations of a model without any)."""
    return [x for x in jax.tree.leaves(tree) if x.size > 0]


def _unpack(template, saved: list):
    """Inverse of _pack: empty leaves come back as zeros shaped like the template's."""
    leaves, treedef = jax.tree.flatten(template)
    it = iter(saved)
    return treedef.unflatten([next(it) if t.size > 0 else jnp.zeros(t.shape, t.dtype) for t in leaves])


def _without_replay(state: TrainState) -> TrainState:
    return state.replace(seeds=state.seeds.replace(replay=None))


class UnreadableCheckpoint(ValueError):
    """A checkpoint that cannot be read; the message says why (damaged, or incompatible)."""


FORMAT = 1  # raise when the meaning of a checkpoint's arrays changes while their shapes do not


def release() -> str:
    try:
        return metadata.version("mjxflow")
    except metadata.PackageNotFoundError:
        return "unknown"


def layout(packed: list) -> list[str]:
    """'dtype[shape]' of each packed array (or orbax array metadata): what a reader must expect, in order."""
    return [f"{jnp.dtype(x.dtype).name}{list(x.shape)}" for x in packed]


def save(mngr: ocp.CheckpointManager, step: int, state: TrainState, with_replay: bool, wait: bool = True) -> None:
    """Save the state as checkpoint `step`; `wait` False returns before a background manager has
    written it (see manager)."""
    packed = {"state": _pack(_without_replay(state)), "policy": _pack(policy_state(state.seeds))}
    if with_replay:
        packed["replay"] = _pack(state.seeds.replay)
    items = {name: ocp.args.StandardSave(tree) for name, tree in packed.items()}
    meta = {"format": FORMAT, "mjxflow": release()}  # the arrays' layout: orbax's own metadata (_stored_layout)
    items["meta"] = ocp.args.JsonSave(meta)
    mngr.save(step, args=ocp.args.Composite(**items))
    if wait:
        mngr.wait_until_finished()


def sizes(run_dir: str) -> dict[int, int]:
    """Bytes on disk of each checkpoint of a run, by step."""
    out = {}
    root = checkpoint_dir(run_dir)
    for name in os.listdir(root) if os.path.isdir(root) else []:
        if name.isdigit():
            out[int(name)] = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(os.path.join(root, name))
                                 for f in files)
    return dict(sorted(out.items()))


def restore(mngr: ocp.CheckpointManager, step: int, loop: Loop, template: TrainState | None = None) -> tuple[TrainState, bool]:
    """The state saved at `step`, and whether its replay buffer was in the checkpoint (if not,
    the buffer comes back empty and the loop refills it with random actions). `template`: the
    state's shapes with their shardings (loop.state_shapes()), so the arrays are read straight onto
    the devices this loop places them on, whatever device count wrote them."""
    template = loop.state_shapes() if template is None else template
    items = {"state": ocp.args.StandardRestore(_pack(_without_replay(template)))}
    has_replay = os.path.isdir(os.path.join(str(mngr.directory), str(step), "replay"))
    if has_replay:
        items["replay"] = ocp.args.StandardRestore(_pack(template.seeds.replay))
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    state = _unpack(_without_replay(template), restored["state"])
    if has_replay:
        replay = _unpack(template.seeds.replay, restored["replay"])
    else:
        replay = jax.jit(jax.vmap(lambda _: loop.init_replay()))(jnp.arange(loop.num_members))
    return loop.placement.put(state.replace(seeds=state.seeds.replace(replay=replay))), has_replay


def _reason(e: Exception) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:200]}"


@contextlib.contextmanager
def muted(*loggers: str):
    """Python loggers (orbax's absl, asyncio) silenced but for critical messages."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for log, _ in saved:
        log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for log, level in saved:
            log.setLevel(level)


class _SaveFailureFilter(logging.Filter):
    """Drops orbax's log records of a failed background save: the failure itself is raised again
    by the next save or close, and reported there (in one line where it is a full disk)."""

    MARKS = ("in background save thread", "Save Finalize thread")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(mark in str(record.msg) for mark in self.MARKS)


SAVE_FAILURES = _SaveFailureFilter()
logging.getLogger("absl").addFilter(SAVE_FAILURES)


class QuietReads:
    """Holds back what is printed to stderr (file descriptor 2) while a checkpoint is read.

    When one array or metadata file of a checkpoint fails to load, orbax leaves its other reads
    running: their futures and tensorstore's callbacks then print pages of tracebacks ('Event loop
    is closed', 'Exception ignored in ...'), from Python and from its threads. The caller reports
    the failure in one line, so after a failure (an exception, or `failed` set) that output is
    dropped; otherwise it is passed on unchanged."""

    def __enter__(self):
        self.failed = False
        sys.stderr.flush()
        self.saved_fd = os.dup(2)
        self.held = tempfile.TemporaryFile()
        self.mute = muted("asyncio", "absl")
        self.mute.__enter__()
        os.dup2(self.held.fileno(), 2)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.failed = self.failed or exc_type is not None
        gc.collect()  # the abandoned futures report here, while stderr is still held
        if self.failed:
            time.sleep(0.5)  # and the reads still running in orbax's threads finish
            gc.collect()
        sys.stderr.flush()
        os.dup2(self.saved_fd, 2)
        os.close(self.saved_fd)
        self.mute.__exit__(None, None, None)
        if not self.failed:
            self.held.seek(0)
            sys.stderr.write(self.held.read().decode(errors="replace"))
        self.held.close()
        return False


def saved_meta(run_dir: str, step: int) -> dict | None:
    """The `meta` record of a checkpoint (None when it has none: a release before format 1)."""
    try:
        with open(os.path.join(checkpoint_dir(run_dir), str(step), "meta", "metadata")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _stored_layout(run_dir: str, step: int, item: str) -> list[str]:
    """What orbax's own metadata says the item's arrays are (raises when that is unreadable)."""
    path = epath.Path(checkpoint_dir(run_dir)) / str(step) / item
    return layout(ocp.StandardCheckpointHandler().metadata(path).tree)


def incompatibility(run_dir: str, step: int, template: TrainState) -> str | None:
    """Why a checkpoint cannot be read, found before reading its arrays (orbax, asked to read
    arrays of the wrong shape or from damaged metadata, leaves pages of tracebacks behind): an
    incompatible release or setup, damaged metadata, or None when it looks readable. `template`:
    the expected state's shapes (loop.state_shapes())."""
    writer, why = _writer(run_dir, step)
    if why:
        return why
    items = {"state": _without_replay(template)}
    if os.path.isdir(os.path.join(checkpoint_dir(run_dir), str(step), "replay")):
        items["replay"] = template.seeds.replay
    return _layout_mismatch(run_dir, step, items, writer)


def _writer(run_dir: str, step: int) -> tuple[str, str | None]:
    """Which release wrote the checkpoint, and why its format cannot be read (None if it can)."""
    meta = saved_meta(run_dir, step)
    writer = "a release without a format record" if meta is None else \
        f"mjxflow {meta.get('mjxflow', '?')}, format {meta.get('format', '?')}"
    if meta is not None and meta.get("format") != FORMAT:
        return writer, f"written by an incompatible release ({writer}; this is mjxflow {release()}, format {FORMAT})"
    return writer, None


def _layout_mismatch(run_dir: str, step: int, items: dict, writer: str) -> str | None:
    """Why the items' stored arrays are not those of the expected trees (None when they are)."""
    for item, tree in items.items():
        try:
            saved = _stored_layout(run_dir, step, item)
        except Exception as e:
            return f"damaged (the metadata of its {item} cannot be read: {_reason(e)})"
        expected = layout(_pack(tree))
        if saved != expected:
            diff = next((f"{item} array {i}: {a} saved, {b} expected" for i, (a, b) in enumerate(zip(saved, expected))
                         if a != b), f"{len(saved)} {item} arrays saved, {len(expected)} expected")
            return f"written by an incompatible release or setup ({writer}; {diff})"
    return None


def read_checkpoint(mngr: ocp.CheckpointManager, run_dir: str, step: int, loop: Loop) -> tuple[TrainState, bool]:
    """restore() after checking the checkpoint's layout; ValueError saying why it cannot be read."""
    template = loop.state_shapes()
    with QuietReads() as quiet:
        why = incompatibility(run_dir, step, template)
        quiet.failed = why is not None
    if why is None:
        try:
            with QuietReads():
                return restore(mngr, step, loop, template)
        except Exception as e:  # orbax and tensorstore raise many kinds for a damaged checkpoint
            why = f"damaged ({_reason(e)})"
    raise UnreadableCheckpoint(why)


def restore_latest(run_dir: str, keep: int | None, loop: Loop, log: Callable[[str], object] = print, restart: bool = False,
                   background: bool = False):
    """(manager, step, state, had_replay) of the newest checkpoint that can be read; the manager
    saves in the background when `background` (see manager).

    Newer unreadable checkpoints are reported and moved to run_dir/unreadable-checkpoints/. When
    none can be read (or there is none) this raises ConfigError naming each checkpoint and why,
    and changes nothing, unless `restart`: then the unreadable ones are moved aside and step is
    None (the caller starts the run over)."""
    failed: list[tuple[int, str]] = []
    found = None
    with muted("absl"):  # orbax logs damaged metadata as errors; it is reported below, once
        mngr = manager(run_dir, keep, background, writer=True)
        for step in sorted(mngr.all_steps(), reverse=True):
            try:
                found = (step, *read_checkpoint(mngr, run_dir, step, loop))
                break
            except UnreadableCheckpoint as e:
                failed.append((step, str(e)))
    if found is None and not restart:
        mngr.close()
        what = "; ".join(f"{step:,} env steps: {why}" for step, why in failed) or "it has none"
        raise ConfigError(f"cannot resume {run_dir}: no checkpoint can be read ({what}); nothing was changed. "
                          f"Pass --restart to start the run over in this directory (its metrics are cleared"
                          f"{' and these checkpoints moved to unreadable-checkpoints/' if failed else ''})")
    if failed:
        mngr.close()
        for step, why in failed:
            dest = os.path.join(run_dir, "unreadable-checkpoints", str(step))
            while os.path.exists(dest):
                dest += "+"
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(os.path.join(checkpoint_dir(run_dir), str(step)), dest)
            log(f"checkpoint at {step:,} env steps cannot be read: {why}; moved it to {dest}")
        mngr = manager(run_dir, keep, background, writer=True)
    if found is None:
        return mngr, None, None, False
    return (mngr, *found)


def policy_incompatibility(run_dir: str, step: int, template: PolicyState) -> str | None:
    """incompatibility() for the policy item alone."""
    writer, why = _writer(run_dir, step)
    if why:
        return why
    if not os.path.isdir(os.path.join(checkpoint_dir(run_dir), str(step), "policy")):
        return f"it has no policy item (written by {writer}, before policies were saved apart)"
    return _layout_mismatch(run_dir, step, {"policy": template}, writer)


def restore_policy(run_dir: str, step: int, loop: Loop) -> PolicyState:
    """The `policy` item of checkpoint `step` alone (actor parameters, observation statistics and
    evaluation keys of every member), read onto this loop's devices; nothing else is read, so a
    missing or damaged replay buffer or train state does not matter. UnreadableCheckpoint says why
    it cannot be read."""
    template = policy_state(loop.state_shapes().seeds)
    with QuietReads() as quiet:
        why = policy_incompatibility(run_dir, step, template)
        quiet.failed = why is not None
        if why is None:
            try:
                with muted("absl"):
                    mngr = manager(run_dir)
                    restored = mngr.restore(step, args=ocp.args.Composite(policy=ocp.args.StandardRestore(_pack(template))))
                    mngr.close()
                return _unpack(template, restored["policy"])
            except Exception as e:  # orbax and tensorstore raise many kinds for a damaged checkpoint
                why = f"damaged ({_reason(e)})"
    raise UnreadableCheckpoint(why)


def checkpoint_steps(run_dir: str) -> list[int]:
    """Steps of a run's complete checkpoints (FileNotFoundError when it has none)."""
    if not os.path.isdir(checkpoint_dir(run_dir)):
        raise FileNotFoundError(f"{run_dir} has no checkpoints")
    with muted("absl"):
        mngr = manager(run_dir)
        steps = sorted(mngr.all_steps())
        mngr.close()
    if not steps:
        raise FileNotFoundError(f"{run_dir} has no checkpoints")
    return steps


@dataclass
class LoadedRun:
    cfg: TrainConfig
    loop: Loop
    state: TrainState
    step: int


def open_run(run_dir: str, step: int | None = None) -> tuple[TrainConfig, Loop, int]:
    """The one way a saved run is opened (load_run, policy.load_policies, evaluate, videos): its
    config, its loop on the devices this process has, and checkpoint `step` (default: the latest);
    FileNotFoundError naming what is missing."""
    path = rundir.path(run_dir, rundir.CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    cfg = load_json(path)
    steps = checkpoint_steps(run_dir)
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{run_dir} has no checkpoint at step {step}; saved steps: {steps}")
    return cfg, build_loop(dataclasses.replace(cfg, devices=None)), step


def load_run(run_dir: str, step: int | None = None) -> LoadedRun:
    """Config, loop and the whole train state of checkpoint `step` (default: the latest) of a run directory."""
    cfg, loop, step = open_run(run_dir, step)
    with muted("absl"):
        mngr = manager(run_dir)
    try:
        state, _ = read_checkpoint(mngr, run_dir, step, loop)
    except UnreadableCheckpoint as e:
        raise FileNotFoundError(f"the checkpoint at step {step} of {run_dir} cannot be read: {e}") from None
    finally:
        mngr.close()
    return LoadedRun(cfg=cfg, loop=loop, state=state, step=step)
