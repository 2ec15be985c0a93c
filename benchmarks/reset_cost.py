"""What a reset costs inside the env step, side by side: `python benchmarks/reset_cost.py ant 16 64 256`.

For each env count, ms per step (median over 40 interleaved rounds of 20 scanned steps, zero
actions) of the bare batched env.step, relative to it: the episode step with a reset of every env
at every step (`--reset-every 1`), the episode step with spares but no redraw (the select alone),
and the episode step with spares redrawn every 16 steps (the default)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np

from mjxflow import bench
from mjxflow.envs import make_env
from mjxflow.envs.wrappers import EpisodeEnv
from mjxflow.scale import RESET_EVERY

STEPS = 20


def scanned(step):
    return jax.jit(lambda s: jax.lax.scan(lambda c, t: (step(c, t), None), s, jnp.arange(STEPS))[0], donate_argnums=0)


def main(name: str, counts: list[int]) -> None:
    env = make_env(name, "jax")
    full, spares = EpisodeEnv(env), EpisodeEnv(env, spares=True)
    for n in counts:
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        s_full, s_spares = jax.jit(jax.vmap(full.reset))(keys), jax.jit(jax.vmap(spares.reset))(keys)
        a = jnp.zeros((n, env.action_size))
        variants = {
            "raw": (scanned(lambda c, t: jax.vmap(env.step)(c, a)), s_full.env),
            "reset every step": (scanned(lambda c, t: full.step_batch(c, a, 1, t)[0]), s_full),
            "spares, no redraw": (scanned(lambda c, t: jax.vmap(spares.step)(c, a)[0]), s_spares),
            f"spares, redrawn every {RESET_EVERY}": (scanned(lambda c, t: spares.step_batch(c, a, RESET_EVERY, t)[0]), s_spares),
        }
        runs = [bench.Stateful(fn, jax.block_until_ready(fn(jax.tree.map(jnp.copy, state)))) for fn, state in variants.values()]
        for run in runs:
            run()  # the donated state's second program compiles here, not in a timed call
        ms = np.median(bench.time_interleaved(runs, 40), axis=1) / STEPS * 1e3
        print(f"{name} {n} envs: raw {ms[0]:.3f} ms; " + ", ".join(f"{k} {m / ms[0]:.3f}x" for k, m in list(zip(variants, ms))[1:]),
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(n) for n in sys.argv[2:]])
