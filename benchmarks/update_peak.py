"""SAC's update at batch 256 on ant's sizes: XLA's flop count, its time, and a plain matmul's
GFLOP/s timed side by side (the CPU's practical peak)."""
import jax
import numpy as np

from mjxflow import bench, roofline

cfg = bench.BenchConfig(env="ant", agents=("sac",), batch_size=(256,))
run = bench.update_runner(cfg, "sac", 256)
c = roofline.cost(run.fn, run.state)
a = jax.random.normal(jax.random.PRNGKey(0), (256, 1024)); b = jax.random.normal(jax.random.PRNGKey(1), (1024, 1024))
mm = jax.jit(lambda a, b: a @ b); mm_flops = 2 * 256 * 1024 * 1024
mmrun = lambda: mm(a, b)
jax.block_until_ready(mmrun())
t = bench.time_interleaved([run, mmrun], 60)
u, m = np.median(t[0]), np.median(t[1])
print(f"SAC update: {c.flops/1e6:.0f} MFLOP, {c.bytes/1e6:.1f} MB, {1e3*u:.2f} ms -> {c.flops/u/1e9:.1f} GFLOP/s")
print(f"matmul 256x1024x1024: {mm_flops/1e6:.0f} MFLOP, {1e3*m:.3f} ms -> {mm_flops/m/1e9:.1f} GFLOP/s")
print(f"update at {100*(c.flops/u)/(mm_flops/m):.0f}% of the matmul's rate")
