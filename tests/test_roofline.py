"""The roofline (mjxflow.roofline, `bench --measure roofline`): XLA's counts against closed forms,
the parts of an iteration and the bound they give."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import pytest

from mjxflow import bench, normalizer, roofline
from mjxflow.loop import build_loop
from mjxflow.networks import EnsembleQ
from mjxflow.scale import transition_bytes

from conftest import tiny_config

f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)


def test_a_matmul_counts_two_flops_per_multiply_add():
    assert roofline.cost(lambda x, w: x @ w, f32(64, 32), f32(32, 16)).flops == 2 * 64 * 32 * 16


def test_the_critic_network_counts_its_closed_form():
    """Two Q networks of widths 8 -> 64 -> 64 -> 1 on 128 states: 2 x 2 B sum(in x out) flops in the
    matmuls, plus at most a few per output for the bias adds and ReLUs."""
    net, b = EnsembleQ(hidden=(64, 64), num=2), 128
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)), jnp.zeros((1, 3)))
    flops = roofline.cost(lambda p, o, a: net.apply(p, o, a), params, f32(b, 5), f32(b, 3)).flops
    matmuls = 2 * 2 * b * (8 * 64 + 64 * 64 + 64 * 1)
    assert matmuls <= flops <= matmuls + 2 * 4 * b * (64 + 64 + 1)


def test_bound_is_compute_or_memory_whichever_is_longer():
    acc = roofline.Accelerator("test", tflops=1.0, fp32_tflops=1.0, tbps=2.0, source="")
    assert roofline.Cost(3e12, 1e12).bound_s(acc) == 3.0  # compute: 3 s; memory: 0.5 s
    assert roofline.Cost(1e12, 8e12).bound_s(acc) == 4.0
    given = roofline.accelerator("h200", tbps=1.0)
    assert (given.tflops, given.tbps) == (roofline.ACCELERATORS["h200"].tflops, 1.0)


@pytest.fixture(scope="module")
def rows():
    acc = roofline.ACCELERATORS["h100-sxm"]
    return [roofline.roofline(build_loop(tiny_config(updates_per_iter=g)), acc) for g in (1, 3)]


def test_the_updates_are_g_compiled_updates_and_the_replay_its_rows(rows):
    """XLA counts a scan's body once: the G updates are one update's count times G, every other
    part the same at any G; the replay's bytes are its rows (n written, G batches read)."""
    one, three = rows
    assert three["parts"]["updates"]["flops"] == 3 * one["parts"]["updates"]["flops"] > 0
    for part in ("env step", "acting"):
        assert {k: three["parts"][part][k] for k in ("flops", "bytes")} == {k: one["parts"][part][k] for k in ("flops", "bytes")}
    cfg = tiny_config()
    loop = build_loop(cfg)
    row = transition_bytes(loop.env.obs_size, loop.env.action_size)
    norm = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), jax.eval_shape(loop.init).seeds.norm)
    stats = roofline.cost(jax.vmap(normalizer.update), norm, f32(cfg.num_seeds, cfg.num_envs, loop.env.obs_size))
    replay = lambda g: cfg.num_seeds * row * (cfg.num_envs + 2 * g * cfg.batch_size)
    for r, g in ((one, 1), (three, 3)):
        assert r["parts"]["replay"]["bytes"] == replay(g) + stats.bytes  # + the observation statistics' update
        total = sum(p["flops"] for p in r["parts"].values()), sum(p["bytes"] for p in r["parts"].values())
        acc = roofline.ACCELERATORS["h100-sxm"]
        assert r["iteration_s"] == pytest.approx(max(total[0] / (acc.tflops * 1e12), total[1] / (acc.tbps * 1e12)))
        assert sum(p["share"] for p in r["parts"].values()) == pytest.approx(1.0)
        assert r["env_steps_per_s"] == pytest.approx(cfg.num_envs * cfg.num_seeds / r["iteration_s"])


def test_bench_prints_the_roofline_of_the_resolved_config(tmp_path, capsys):
    args = ["--env", "bandit", "--agents", "sac", "smfp", "--num-envs", "8", "--measure", "roofline",
            "--accelerator", "h100-sxm", "--name", "roof", "--out-dir", str(tmp_path), "--compile-cache", os.environ["MJXFLOW_TEST_CACHE"]]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    result = json.load(open(tmp_path / "roof.json"))
    assert result["tables"]["roofline"] in out and "NVIDIA H100 SXM: 494.7 TFLOPS, 3.35 TB/s" in out
    assert [(r["agent"], r["num_envs"], r["members"]) for r in result["roofline"]] == [("sac", 8, 2), ("smfp", 8, 2)]
    sac, smfp = result["roofline"]
    assert smfp["parts"]["updates"]["flops"] > sac["parts"]["updates"]["flops"]  # the particles and the entropy draws
    assert [line.split("|")[4].strip() for line in result["tables"]["roofline"].splitlines()[2:7]] == \
        ["env step", "acting", "replay", "updates", "**iteration**"]
