"""mjxflow: one-step generative policies (SMFP, FPMD) and SAC on batched MJX physics."""


def load_policy(run_dir: str, step: int | None = None, seed: int = 0):
    """A trained policy, policy(obs, key, deterministic=True) -> action (see mjxflow.policy)."""
    from mjxflow.policy import load_policy as load

    return load(run_dir, step, seed)


__all__ = ["load_policy"]
