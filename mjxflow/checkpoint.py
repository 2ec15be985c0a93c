"""Orbax checkpoints of the whole TrainState, and loading a run back (config + state + loop).

A checkpoint is named by env steps per seed and holds two items: `state` (everything but the
replay buffer) and, when the run saves it, `replay`. Orbax writes each checkpoint into a temporary
directory and renames it when complete, so a crash mid-save leaves no half checkpoint behind (the
temporary directory is ignored, and removed when the run is opened again). A checkpoint that is
there but cannot be read (damaged on disk, copied in part) is reported, moved to
`corrupt-checkpoints/` and the previous one is used.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from mjxflow.agents import make_agent
from mjxflow.config import TrainConfig, load_json
from mjxflow.envs import make_env
from mjxflow.loop import Loop, TrainState


def checkpoint_dir(run_dir: str) -> str:
    return os.path.abspath(os.path.join(run_dir, "checkpoints"))


def manager(run_dir: str, keep: int | None = None) -> ocp.CheckpointManager:
    # Synchronous saves: the next chunk donates the state's buffers, so a background writer must
    # never still be reading them.
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                           cleanup_tmp_directories=True)
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


def save(mngr: ocp.CheckpointManager, step: int, state: TrainState, with_replay: bool) -> None:
    items = {"state": ocp.args.StandardSave(_pack(_without_replay(state)))}
    if with_replay:
        items["replay"] = ocp.args.StandardSave(_pack(state.seeds.replay))
    mngr.save(step, args=ocp.args.Composite(**items))
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, step: int, loop: Loop) -> tuple[TrainState, bool]:
    """The state saved at `step`, and whether its replay buffer was in the checkpoint (if not,
    the buffer comes back empty and the loop refills it with random actions)."""
    template = jax.eval_shape(loop.init)
    items = {"state": ocp.args.StandardRestore(_pack(_without_replay(template)))}
    has_replay = os.path.isdir(os.path.join(str(mngr.directory), str(step), "replay"))
    if has_replay:
        items["replay"] = ocp.args.StandardRestore(_pack(template.seeds.replay))
    restored = mngr.restore(step, args=ocp.args.Composite(**items))
    state = _unpack(_without_replay(template), restored["state"])
    if has_replay:
        replay = _unpack(template.seeds.replay, restored["replay"])
    else:
        replay = jax.jit(jax.vmap(lambda _: loop.init_replay()))(jnp.arange(loop.cfg.num_seeds))
    return state.replace(seeds=state.seeds.replace(replay=replay)), has_replay


def _reason(e: Exception) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:200]}"


def restore_latest(run_dir: str, keep: int | None, loop: Loop, log: Callable[[str], object] = print):
    """(manager, step, state, had_replay) of the newest checkpoint that can be read; unreadable
    ones are reported and moved to run_dir/corrupt-checkpoints/. step is None when none is left."""
    mngr = manager(run_dir, keep)
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            state, had_replay = restore(mngr, step, loop)
            return mngr, step, state, had_replay
        except Exception as e:  # orbax and tensorstore raise many kinds for a damaged checkpoint
            mngr.close()
            dest = os.path.join(run_dir, "corrupt-checkpoints", str(step))
            while os.path.exists(dest):
                dest += "+"
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(os.path.join(checkpoint_dir(run_dir), str(step)), dest)
            log(f"checkpoint at {step:,} env steps cannot be read ({_reason(e)}); moved it to {dest}, using the one before")
            mngr = manager(run_dir, keep)
    return mngr, None, None, False


@dataclass
class LoadedRun:
    cfg: TrainConfig
    loop: Loop
    state: TrainState
    step: int


def build_loop(cfg: TrainConfig) -> Loop:
    env = make_env(cfg.env)
    return Loop(cfg, env, make_agent(cfg, env.obs_size, env.action_size))


def load_run(run_dir: str, step: int | None = None) -> LoadedRun:
    """Config, loop and the state of checkpoint `step` (default: the latest) of a run directory."""
    cfg = load_json(os.path.join(run_dir, "config.json"))
    if not os.path.isdir(checkpoint_dir(run_dir)):
        raise FileNotFoundError(f"{run_dir} has no checkpoints")
    mngr = manager(run_dir)
    steps = mngr.all_steps()
    if not steps:
        raise FileNotFoundError(f"{run_dir} has no checkpoints")
    if step is None:
        step = max(steps)
    elif step not in steps:
        raise FileNotFoundError(f"{run_dir} has no checkpoint at step {step}; saved steps: {sorted(steps)}")
    loop = build_loop(cfg)
    try:
        state, _ = restore(mngr, step, loop)
    except Exception as e:
        raise FileNotFoundError(f"the checkpoint at step {step} of {run_dir} cannot be read ({_reason(e)})") from None
    return LoadedRun(cfg=cfg, loop=loop, state=state, step=step)
