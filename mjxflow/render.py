"""Videos of a trained policy: one deterministic episode per seed, drawn with MuJoCo's renderer
off screen and written with imageio (ffmpeg's wheel for mp4, Pillow for gif).

    python -m mjxflow.evaluate --run runs/NAME --video [--video-seeds 0 1] [--video-format gif]

`evaluate --video` (and `train --video`, at the end) run `python -m mjxflow.render` in a child
process with MUJOCO_GL set, because MuJoCo picks its OpenGL platform when it is first imported:
EGL first, OSMesa if EGL cannot make a context; a MUJOCO_GL you set yourself is used alone. The
episode runs on the accelerator (a jitted scan of the policy and the MJX step) and only the joint
positions come back to the host, where each control step is drawn once: a video has one frame per
control step plus the initial state, at the env's control rate (1 / dt frames per second).
Pure-JAX probe tasks have no bodies to draw and are refused.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

from mjxflow import rundir
from mjxflow.cli import run_command
from mjxflow.errors import ConfigError

GL_ERROR = 3  # exit status of the child when no OpenGL context can be made
FORMATS = ("mp4", "gif")


def episode_positions(loop, policy_state, key, length: int):
    """Joint positions (T + 1, nq) of one deterministic episode of `length` control steps at most,
    and its reward per step (T,) and the number of steps it lasted (to its termination)."""
    import jax
    import jax.numpy as jnp

    env = loop.env
    act = loop.acting(policy_state, True)

    def run(key):
        reset_key, act_key = jax.random.split(key)
        state = env.reset(reset_key)

        def body(carry, t):
            s, alive = carry
            nxt = env.step(s, act(s.obs[None], jax.random.fold_in(act_key, t))[0])
            reward = jnp.where(alive, nxt.reward, 0.0)
            return (nxt, alive & (nxt.terminated <= 0)), (env.render_qpos(nxt), reward, alive)

        _, (qpos, rewards, alive) = jax.lax.scan(body, (state, jnp.array(True)), jnp.arange(length))
        return jnp.concatenate([env.render_qpos(state)[None], qpos]), rewards, jnp.sum(alive)

    qpos, rewards, steps = jax.device_get(jax.jit(run)(key))
    steps = int(steps)
    return np.asarray(qpos[:steps + 1]), np.asarray(rewards[:steps]), steps


def draw(model, qpos: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """One RGB frame per row of joint positions: the model's first camera (brax's tasks track the
    body with it), else MuJoCo's free camera."""
    import mujoco

    data = mujoco.MjData(model)
    renderer = mujoco.Renderer(model, height, width)
    frames = []
    try:
        for q in qpos:
            data.qpos[:] = q
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=0 if model.ncam > 0 else -1)
            frames.append(renderer.render().copy())
    finally:
        renderer.close()
    return frames


def write_video(path: str, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    if path.endswith(".gif"):
        imageio.mimwrite(path, frames, duration=1000.0 / fps, loop=0)
    else:
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)


def render_run(run_dir: str, step: int | None, seeds: list[int] | None, fmt: str, width: int, height: int,
               log=print) -> list[dict]:
    """videos/step{STEP}-seed{S}.{fmt} for each seed (default: all) and videos/index.json."""
    import jax

    from mjxflow.envs import check_renderable
    from mjxflow.policy import load_policies

    loaded = load_policies(run_dir, step)
    env = loaded.loop.env
    try:
        check_renderable(loaded.cfg.env)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    members = loaded.loop.num_members
    seeds = list(range(members)) if not seeds else seeds
    for s in seeds:
        if not 0 <= s < members:
            raise ConfigError(f"--video-seeds {s} is not a seed of the run (0 .. {members - 1})")
    try:
        import mujoco

        mujoco.Renderer(env.render_model(), 16, 16).close()
    except Exception as e:  # no OpenGL platform: the parent tries the next one
        print(f"no OpenGL context with MUJOCO_GL={os.environ.get('MUJOCO_GL', '(unset)')}: {str(e).splitlines()[0][:160]}",
              file=sys.stderr)
        sys.exit(GL_ERROR)
    out_dir = os.path.join(run_dir, "videos")
    os.makedirs(out_dir, exist_ok=True)
    index = []
    for s in seeds:
        one = jax.tree.map(lambda x: x[s], loaded.state)
        key = jax.random.fold_in(jax.random.PRNGKey(17), s)
        qpos, rewards, steps = episode_positions(loaded.loop, one, key, loaded.loop.episode_env.episode_length)
        frames = draw(env.render_model(), qpos, width, height)
        path = os.path.join(out_dir, f"step{loaded.step}-seed{s}.{fmt}")
        write_video(path, frames, 1.0 / env.render_dt)
        entry = {"seed": s, "step": loaded.step, "path": path, "frames": len(frames), "control_steps": steps,
                 "return": float(rewards.sum()), "fps": 1.0 / env.render_dt}
        index.append(entry)
        log(f"wrote {path}: {steps} control steps ({len(frames)} frames), return {entry['return']:.2f}")
    rundir.write_json(os.path.join(out_dir, "index.json"), index)
    return index


def render_in_child(run_dir: str, step: int | None, seeds: list[int] | None, fmt: str, width: int = 320,
                    height: int = 240, log=print) -> None:
    """Run `python -m mjxflow.render` with MUJOCO_GL egl, then osmesa (or the user's own value)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--video-format {fmt!r} is not one of: {', '.join(FORMATS)}")
    args = [sys.executable, "-m", "mjxflow.render", "--run", run_dir, "--format", fmt, "--width", str(width),
            "--height", str(height)] + (["--step", str(step)] if step is not None else []) + \
        (["--seeds", *map(str, seeds)] if seeds else [])
    tried = []
    for platform in ([os.environ["MUJOCO_GL"]] if os.environ.get("MUJOCO_GL") else ["egl", "osmesa"]):
        done = subprocess.run(args, env={**os.environ, "MUJOCO_GL": platform}, capture_output=True, text=True)
        for line in done.stdout.splitlines():
            log(line)
        if done.returncode == 0:
            return
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if done.returncode != GL_ERROR:
            raise ConfigError(f"rendering failed: {last.removeprefix('error: ')}")
        tried.append(f"{platform} ({last})")
    raise ConfigError(f"no OpenGL platform for MuJoCo's renderer: tried MUJOCO_GL={'; '.join(tried)}; "
                      f"install EGL or OSMesa, or set MUJOCO_GL to one that works here")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mjxflow.render", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--step", type=int, default=None)
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--format", choices=FORMATS, default="mp4")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    a = p.parse_args(argv)
    return run_command(lambda: render_run(a.run, a.step, a.seeds, a.format, a.width, a.height))


if __name__ == "__main__":
    sys.exit(main())
