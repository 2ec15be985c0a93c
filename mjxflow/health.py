"""Non-finite values: find, after a chunk, the first NaN or inf of every seed.

The loop reports per iteration and seed: losses and Q statistics (NaN-filled on iterations that did
not learn, so only iterations with `check/learned` count), the training return and the evaluation
return (NaN-filled on iterations that did not evaluate, so only iterations with `check/evaluated`
count), and at the end of the chunk whether the whole learner state of each seed is finite
(`check/state_finite`).
"""

from __future__ import annotations

import numpy as np


def first_nonfinite(metrics: dict, end_iteration: int, num_envs: int) -> dict[int, tuple[int, str]]:
    """seed -> (env step, quantity) of its first non-finite value in this chunk; empty when healthy.

    `end_iteration` is the iteration count after the chunk; metrics have shape (iters, seeds)."""
    learned = np.asarray(metrics["check/learned"], bool)
    evaluated = np.asarray(metrics["check/evaluated"], bool)
    iters, num_seeds = learned.shape
    first_iteration = end_iteration - iters
    found: dict[int, tuple[int, str]] = {}
    for s in range(num_seeds):
        best: tuple[int, str] | None = None
        for key in sorted(metrics):
            if key.startswith("check/"):
                continue
            col = np.asarray(metrics[key])[:, s]
            if key.startswith("eval/"):
                bad = ~np.isfinite(col) & evaluated[:, s]
            elif key.startswith("train/"):
                bad = ~np.isfinite(col)
            else:
                bad = ~np.isfinite(col) & learned[:, s]
            hits = np.flatnonzero(bad)
            if hits.size and (best is None or hits[0] < best[0]):
                best = (int(hits[0]), key)
        if best is not None:
            found[s] = ((first_iteration + best[0] + 1) * num_envs, best[1])
        elif not bool(np.asarray(metrics["check/state_finite"])[s]):
            found[s] = (end_iteration * num_envs, "learner state (parameters, optimiser or temperature)")
    return found


def describe(found: dict[int, tuple[int, str]]) -> str:
    return "; ".join(f"seed {s}: {q} at env step {step:,}" for s, (step, q) in sorted(found.items()))
