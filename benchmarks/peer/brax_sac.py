"""Time brax's own SAC trainer (brax.training.agents.sac) on a brax MJX task; prints one JSON line.

Run by `python -m mjxflow.bench --measure peer` with the interpreter of the peer environment
(benchmarks/peer/requirements.txt), never with the project's own: it imports nothing from mjxflow.
brax reports env steps/s per training epoch ('training/sps', evaluation excluded); the first
epoch includes compilation and is dropped.
"""

import argparse
import json
import time

import jax


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--num-envs", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--updates-per-iter", type=int, required=True)
    p.add_argument("--iters", type=int, required=True, help="iterations (steps of all envs) per epoch")
    p.add_argument("--repeats", type=int, required=True, help="timed epochs after the first")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    a = p.parse_args()

    import functools

    from brax import envs
    from brax.training.agents.sac import networks as sac_networks
    from brax.training.agents.sac import train as sac

    env = envs.get_environment(a.env, backend="mjx")
    epochs = a.repeats + 1
    steps_per_epoch = a.iters * a.num_envs
    sps: list[float] = []

    def progress(step, metrics):
        if "training/sps" in metrics:
            sps.append(float(metrics["training/sps"]))

    min_replay = max(a.batch_size, a.num_envs)
    prefill = -(-min_replay // a.num_envs) * a.num_envs  # brax's random-action prefill, in env steps
    t = time.perf_counter()
    sac.train(
        environment=env, num_timesteps=prefill + epochs * steps_per_epoch, episode_length=1000, num_envs=a.num_envs,
        num_eval_envs=1, learning_rate=3e-4, discounting=0.99, batch_size=a.batch_size, num_evals=epochs + 1,
        normalize_observations=True, min_replay_size=min_replay, max_replay_size=100_000,
        grad_updates_per_step=a.updates_per_iter, seed=0, progress_fn=progress,
        network_factory=functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=tuple(a.hidden)),
    )
    print(json.dumps({"env_steps_per_s": sps[1:], "first_epoch_env_steps_per_s": sps[:1], "wall_s": time.perf_counter() - t,
                      "jax": jax.__version__, "device": str(jax.devices()[0].platform)}))


if __name__ == "__main__":
    main()
