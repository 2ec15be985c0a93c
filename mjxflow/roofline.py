"""A roofline for one training iteration: what it must compute and move, and the least time an
accelerator needs for that.

Each part of an iteration (the env step of every env, acting, the replay's write and the G
minibatch reads with the observation statistics, the G gradient updates) is compiled alone from
the run's state shapes (nothing is allocated) and XLA's cost analysis gives its floating-point
operations F and bytes accessed B. On an accelerator of peak rate P and memory bandwidth W a part
cannot take less than max(F / P, B / W), and the iteration not less than
max(sum F / P, sum B / W): the physical limit a measured time is compared with.

What the counts are: XLA counts a loop's body once (a `scan` or `while`), so the G updates and G
reads are one compiled update (read) times G, and an MJX solver's iterations inside the env step
count once (the env figure is a lower bound). The replay's write and reads are counted by their
rows (each row written once, each minibatch row read once and written once), since the analysis
counts a gather's whole buffer as read. Bytes accessed come from the program as compiled
for the backend at hand: on a CPU they reflect the CPU's fusion, and a GPU's own run gives its
own. P is the dense TF32 tensor-core rate, what float32 matmuls may reach under JAX's default
precision on these GPUs (the plain FP32 rate is listed beside it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

from mjxflow import normalizer
from mjxflow.loop import Loop
from mjxflow.scale import transition_bytes, transition_example


@dataclass(frozen=True)
class Accelerator:
    name: str
    tflops: float  # dense TF32 tensor-core peak, 1e12 flop/s
    fp32_tflops: float  # plain FP32 peak, for reference
    tbps: float  # memory bandwidth, 1e12 bytes/s
    source: str


ACCELERATORS: dict[str, Accelerator] = {
    "h100-sxm": Accelerator("NVIDIA H100 SXM", 494.7, 66.9, 3.35,
                            "NVIDIA H100 Tensor Core GPU datasheet: TF32 989.4 TFLOPS with sparsity (half dense), "
                            "FP32 66.9 TFLOPS, HBM3 3.35 TB/s"),
    "h200": Accelerator("NVIDIA H200 SXM", 494.7, 66.9, 4.8,
                        "NVIDIA H200 Tensor Core GPU datasheet: TF32 989 TFLOPS with sparsity (half dense), "
                        "FP32 67 TFLOPS, HBM3e 4.8 TB/s"),
}
AcceleratorName = Literal["h100-sxm", "h200"]  # = ACCELERATORS' keys
PARTS = ("env step", "acting", "replay", "updates")


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def times(self, k: int) -> "Cost":
        return Cost(k * self.flops, k * self.bytes)

    def bound_s(self, acc: Accelerator) -> float:
        """The least seconds on `acc`: compute or memory, whichever takes longer."""
        return max(self.flops / (acc.tflops * 1e12), self.bytes / (acc.tbps * 1e12))


def cost(fn: Callable, *args, donate: tuple[int, ...] = ()) -> Cost:
    """XLA's cost analysis of jit(fn) compiled for these arguments (arrays or ShapeDtypeStructs)."""
    analysis = jax.jit(fn, donate_argnums=donate).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return Cost(float(analysis.get("flops", 0.0)), float(analysis.get("bytes accessed", 0.0)))


def _shapes(tree):
    """Plain ShapeDtypeStructs (no sharding): each part is costed on one device."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def part_costs(loop: Loop) -> dict[str, Cost]:
    """The cost of each part of one iteration of every member of `loop`'s run (its resolved config)."""
    cfg = loop.cfg
    seeds = _shapes(jax.eval_shape(loop.init).seeds)
    m, n, g = loop.num_members, cfg.num_envs, cfg.updates_per_iter
    one = transition_example(loop.env.obs_size, loop.env.action_size, np.zeros)
    batched = lambda count: jax.tree.map(lambda x: jax.ShapeDtypeStruct((m, count) + x.shape, x.dtype), one)
    actions = jax.ShapeDtypeStruct((m, n, loop.env.action_size), jnp.float32)
    env = cost(jax.vmap(lambda s, a: loop.episode_env.step_batch(s, a, cfg.reset_every, jnp.zeros((), jnp.int32))),
               seeds.envs, actions)
    acting = cost(jax.vmap(lambda s: loop.policy(s, False)(s.envs.env.obs, s.key)), seeds)
    fresh, batch = batched(n), batched(cfg.batch_size)
    stats = cost(jax.vmap(normalizer.update), seeds.norm, fresh.next_obs)
    row = transition_bytes(loop.env.obs_size, loop.env.action_size)
    # the buffer's scatter and gathers by their rows: XLA's analysis counts a gather's whole operand
    write, read = Cost(0.0, m * n * row), Cost(0.0, 2 * m * cfg.batch_size * row)  # read rows, write the minibatch
    update = cost(jax.vmap(lambda s, b: loop.update_on(loop.agent, s.norm, s.agent, b, s.key)), seeds, batch)
    return {"env step": env, "acting": acting, "replay": write + stats + read.times(g), "updates": update.times(g)}


def roofline(loop: Loop, acc: Accelerator) -> dict:
    """One row: each part's flops, bytes, bound and share, and the iteration's bound on `acc`."""
    parts = part_costs(loop)
    total = sum(parts.values(), Cost(0.0, 0.0))
    bounds = {k: c.bound_s(acc) for k, c in parts.items()}
    iteration_s = total.bound_s(acc)
    steps = loop.cfg.num_envs * loop.num_members
    return {
        "agent": loop.cfg.agent, "env": loop.cfg.env, "num_envs": loop.cfg.num_envs, "members": loop.num_members,
        "batch_size": loop.cfg.batch_size, "updates_per_iter": loop.cfg.updates_per_iter, "accelerator": acc.name,
        "parts": {k: {"flops": c.flops, "bytes": c.bytes, "bound_s": bounds[k], "share": bounds[k] / sum(bounds.values())}
                  for k, c in parts.items()},
        "flops": total.flops, "bytes": total.bytes, "iteration_s": iteration_s,
        "compute_s": total.flops / (acc.tflops * 1e12), "memory_s": total.bytes / (acc.tbps * 1e12),
        "env_steps_per_s": steps / iteration_s,
    }


def roofline_table(rows: list[dict]) -> str:
    lines = ["| agent | envs x seeds | batch x updates | part | GFLOP | MB accessed | bound (us) | share |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        head = f"| {r['agent']} | {r['num_envs']} x {r['members']} | {r['batch_size']} x {r['updates_per_iter']} "
        for k in PARTS:
            p = r["parts"][k]
            lines.append(head + f"| {k} | {p['flops'] / 1e9:,.2f} | {p['bytes'] / 1e6:,.1f} | {1e6 * p['bound_s']:,.1f} "
                         f"| {100 * p['share']:.0f}% |")
        bound = "compute" if r["compute_s"] >= r["memory_s"] else "memory"
        lines.append(head + f"| **iteration** | {r['flops'] / 1e9:,.2f} | {r['bytes'] / 1e6:,.1f} | "
                     f"**{1e6 * r['iteration_s']:,.1f}** ({bound}) | at most {r['env_steps_per_s']:,.0f} env steps/s |")
    return "\n".join(lines)


def accelerator(name: str, tflops: float | None = None, tbps: float | None = None) -> Accelerator:
    """A preset, with its peak rate or bandwidth replaced where given."""
    acc = ACCELERATORS[name]
    if tflops is None and tbps is None:
        return acc
    return dataclasses.replace(acc, name=f"{acc.name} (given: {tflops or acc.tflops:g} TFLOPS, {tbps or acc.tbps:g} TB/s)",
                               tflops=tflops or acc.tflops, tbps=tbps or acc.tbps, source="given on the command line")
