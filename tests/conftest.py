"""Shared, session-scoped compiled pieces: XLA compilation dominates a short test, so every test
that needs a training loop reuses the same compiled functions."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

# XLA's cheaper backend settings for every program the suite compiles, subprocesses included (they
# inherit the environment): the tests check what is computed, not how fast the generated code
# runs, and compilation is most of a test's time (test_known_answers' five time-limit tests: 172 s
# instead of 265 s on this 2-core CPU beside two training jobs, empty caches). MJXFLOW_TEST_FULL_OPT=1 keeps XLA's defaults.
if not os.environ.get("MJXFLOW_TEST_FULL_OPT"):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [
        os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true"]))

import jax  # noqa: E402
import pytest  # noqa: E402

# A persistent compilation cache inside the checkout helps subprocess tests and later runs. Each
# pytest-xdist worker has its own: JAX writes cache entries without a lock (unless an eviction size
# is set), so one worker could read an entry another is still writing.
_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache",
                      os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.environ.setdefault("MJXFLOW_TEST_CACHE", _CACHE)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

from mjxflow.loop import build_loop  # noqa: E402
from mjxflow.config import TrainConfig  # noqa: E402
from mjxflow.loop import Loop  # noqa: E402


@contextlib.contextmanager
def compile_events():
    """The names of JAX's tracing and compilation events inside the block, in a list."""
    events = []

    def listener(name, duration, **kwargs):
        if name.startswith("/jax/core/compile"):
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


# SMFP's temperature options as auto gives them to short runs (the main job, the probes, tiny_config),
# for tests that build an SMFP without mjxflow.scale.resolve: SMFPConfig(..., **SMFP_SHORT)
SMFP_SHORT = dict(init_alpha=0.2, target_entropy_scale=1.0)


def tiny_config(**overrides) -> TrainConfig:
    """A bandit run small enough to compile and train in seconds on a 2-core CPU."""
    base = dict(
        env="bandit", agent="sac", num_envs=8, num_seeds=2, seed=0, total_steps=4000, num_evals=10,
        chunk_iters=50, eval_episodes=8, min_replay=256, batch_size=64, replay_size=2000, updates_per_iter=2,
        compile_cache=_CACHE,
    )
    base.update(overrides)
    cfg = TrainConfig(**base)
    return cfg


@dataclass
class Compiled:
    cfg: TrainConfig
    loop: Loop
    init: Callable
    chunk: Callable


@pytest.fixture(scope="session")
def bandit_sac() -> Compiled:
    cfg = tiny_config()
    loop = build_loop(cfg)
    return Compiled(cfg=cfg, loop=loop, init=loop.initial_state, chunk=loop.make_train_chunk())


def snapshot(folder) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: to show that nothing was changed."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out
