"""Run configuration: frozen dataclasses parsed by tyro, one docstring per field.

The agent is chosen by name (`--agent sac`); each agent's hyper-parameters live in their own nested
dataclass (`--sac.actor-lr 1e-3`), so a run's config.json records every agent's settings and the
chosen one is read by name.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from mjxflow import rundir
from mjxflow.envs.catalogue import ENV_NAMES

EnvName = Literal[ENV_NAMES]  # every task of mjxflow.envs.catalogue
AgentName = Literal["smfp", "fpmd-r", "fpmd-m", "sac"]
# Choices that agents and the flow maths branch on (typed here, checked once with the config)
TimeDist = Literal["logit_normal", "uniform"]
MDBaseline = Literal["mean", "max"]
WeightScale = Literal["std", "raw"]


@dataclass(frozen=True)
class DistributedConfig:
    """Several processes (hosts) in one run through jax.distributed: the seeds span every
    process's devices; process 0 alone writes logs, plots and metrics."""

    coordinator_address: str | None = None
    """HOST:PORT of process 0's coordinator; set it (with the two below) on every process."""
    num_processes: int | None = None
    """How many processes take part."""
    process_id: int | None = None
    """This process's index, 0 .. num_processes - 1."""
    auto: bool = False
    """Let JAX read all three from the cluster launcher (SLURM, Open MPI, ...)."""

    @property
    def enabled(self) -> bool:
        return self.auto or self.coordinator_address is not None


@dataclass(frozen=True)
class CriticConfig:
    """The Q ensemble shared by every agent (clipped double Q by default)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q network."""
    num_q: int = 2
    """Q networks in the ensemble; targets and the actor use the minimum over all of them."""
    layer_norm: bool = False
    """LayerNorm after each hidden Dense layer of the Q networks (before the ReLU)."""
    lr: float = 3e-4
    """Adam learning rate of the critics."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float | None = None
    """Polyak rate of the target critics (target <- tau * online + (1 - tau) * target); auto:
    0.005 x batch_size / 256, and at least 2 / ((1 - gamma) x the run's gradient updates) so the
    targets converge within half the run, within [0.005, 0.1] (mjxflow.scale)."""
    distributional: bool = False
    """A categorical (C51-style) critic: each Q network outputs a distribution over num_atoms
    fixed values in [v_min, v_max], trained by cross-entropy against the projected target
    distribution of r + gamma z; actors and every weight read its expected value."""
    num_atoms: int = 101
    """Atoms of the distributional critic's support."""
    v_min: float | None = None
    """Lowest atom of the distributional critic; auto: -v_max."""
    v_max: float | None = None
    """Highest atom of the distributional critic; auto: the env's reward scale / (1 - gamma)
    (mjxflow.scale: a typical per-step reward magnitude of a good policy, per env)."""


@dataclass(frozen=True)
class SACConfig:
    """Gaussian SAC: tanh-squashed diagonal Gaussian actor with automatic temperature."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    autotune_alpha: bool = True
    """Tune alpha so the policy entropy tracks the target; False keeps alpha at init_alpha."""
    target_entropy_scale: float = 1.0
    """Target entropy = -action_dim * target_entropy_scale."""
    log_std_min: float = -5.0
    """Lower bound of the actor's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log standard deviation."""


@dataclass(frozen=True)
class FlowTimeConfig:
    """How (r, t) pairs are drawn for MeanFlow regression."""

    dist: TimeDist = "logit_normal"
    """Distribution of each time draw: logit_normal or uniform."""
    mu: float = -0.4
    """Mean of the normal under the logit-normal's sigmoid."""
    sigma: float = 1.0
    """Standard deviation of the normal under the logit-normal's sigmoid."""
    frac_r_neq_t: float = 1.0
    """Fraction of pairs with r != t (MeanFlow used 0.25; FPMD uses 1.0 for its moving target)."""


@dataclass(frozen=True)
class SMFPConfig:
    """Stochastic MeanFlow Policy (our specification, docs/ALGORITHMS.md): one-step MeanFlow actor with
    a learned Gaussian perturbation, an entropy surrogate and entropic mirror descent."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor f(s, z, r, t) -> (u, log_sigma)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log(alpha)."""
    init_alpha: float = 0.2
    """Initial entropy temperature."""
    autotune_alpha: bool = True
    """Tune alpha so the entropy surrogate tracks the target; False keeps alpha at init_alpha."""
    target_entropy_scale: float = 1.0
    """Target entropy = -action_dim * target_entropy_scale."""
    log_sigma_min: float = -5.0
    """Lower bound of log sigma (pre-squash)."""
    log_sigma_max: float = 1.0
    """Upper bound of log sigma (pre-squash)."""
    entropy: bool = True
    """Entropy term on; off: sigma fixed at fixed_sigma, alpha = 0, no entropy bonus in the critic."""
    fixed_sigma: float = 0.1
    """sigma used when --smfp.no-entropy (0 gives the deterministic MeanFlow ablation, FPMD-M-like)."""
    entropy_draws: int = 4
    """K: draws of the noise e per state for the entropy estimate. 1: the conditional surrogate
    log N(x; e - u, sigma^2) of each draw (blind to the spread across e: modes collapse). K > 1:
    each draw's density is the mean over the K draws' Gaussians (a semi-implicit bound), a
    tighter lower bound on the policy's entropy that counts the spread across e; the actor's
    step takes it on a random 1/K of the states, the critic's bonus costs K actor evaluations."""
    beta_md: float = 1.0
    """Weight of the mirror-descent MeanFlow regression in the actor loss (0 turns it off)."""
    num_particles: int = 16
    """Particles per state drawn from the old policy for the mirror-descent step."""
    md_samples: int = 4
    """0: regress every particle with its weight. M > 0: regress only M particles per state, drawn
    in proportion to their weights (same expected loss, M / num_particles of the regression cost)."""
    md_states: float = 0.25
    """Fraction of each minibatch's states that the mirror-descent step uses (a random subset;
    1: all). Its expected loss is the full batch's, at about this fraction of the step's cost."""
    weights: Literal["linear", "exp"] = "linear"
    """Particle weights: linear, truncated (Q - V)+; or exp, softmax(Q / md_lambda) as in FPMD."""
    md_baseline: MDBaseline = "mean"
    """For linear weights: mean, (Q - mean Q)+ normalised to sum 1; max, the same normalised by
    their largest value (the best particle gets weight 1)."""
    md_lambda: float = 1.0
    """Temperature of exp weights."""
    old_policy: Literal["copy", "ema"] = "copy"
    """Old policy of the mirror-descent step: copy, a frozen copy refreshed every md_period
    updates; ema, a Polyak average with rate old_tau."""
    md_period: int = 1000
    """Updates between refreshes of the frozen old policy (old_policy copy)."""
    old_tau: float = 0.005
    """Polyak rate of the old policy (old_policy ema)."""
    times: FlowTimeConfig = field(default_factory=FlowTimeConfig)
    """(r, t) sampling of the MeanFlow regression."""


@dataclass(frozen=True)
class FPMDConfig:
    """One-Step Flow Policy Mirror Descent (FPMD-R: flow matching; FPMD-M: MeanFlow)."""

    actor_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the velocity (FPMD-R) or mean-velocity (FPMD-M) network."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    num_particles: int = 32
    """N: particles per state for the importance weights and best-of-N action selection."""
    md_lambda: float = 0.5
    """lambda of the weights exp(Q / lambda); with weight_scale std (the default) in units of the
    per-state spread of the particles' Q, so one value serves every task."""
    weight_scale: WeightScale = "std"
    """std: Q standardised per state across its particles before the exp (scale-free); raw: the
    paper's exp(Q / lambda), where lambda must match the scale of Q (0.02 to 1 on our tasks)."""
    train_steps: int = 20
    """K: Euler steps of FPMD-R's particle sampling in training (evaluation uses one)."""
    md_samples: int = 0
    """0: regress every particle with its weight (the paper). M > 0: regress M particles per state
    drawn in proportion to their weights (same expected loss, cheaper regression)."""
    md_states: float = 1.0
    """Fraction of each minibatch's states the actor's step uses (a random subset; 1: all, the
    paper). Same expected loss at about this fraction of the particles' cost."""
    explore_std_start: float = 0.3
    """Std of the Gaussian exploration noise added to training actions, at the start ..."""
    explore_std_end: float = 0.05
    """... and after explore_decay_updates gradient updates (linear schedule)."""
    explore_decay_updates: int | None = None
    """Updates over which the exploration std decays; auto: the first half of the run's gradient
    updates, at most 50,000 (mjxflow.scale)."""
    times: FlowTimeConfig = field(default_factory=FlowTimeConfig)
    """(r, t) sampling of FPMD-M's MeanFlow regression (FPMD-R draws t ~ U[0, 1])."""


@dataclass(frozen=True)
class TrainConfig:
    """Train an agent on a batched MJX (or probe) environment; seeds are a vmap axis."""

    env: EnvName = "inverted_pendulum"
    """Environment: a brax MJX task (lower case), a MuJoCo Playground DM Control suite task
    (CamelCase, e.g. CheetahRun) or a pure-JAX probe (bandit, multigoal, unevengoal)."""
    physics: Literal["jax", "warp"] = "jax"
    """MJX implementation of a Playground task: jax (default; any device) or warp (MuJoCo Warp
    through JAX's FFI, made for NVIDIA GPUs; it also runs, slowly, on a CPU). brax's tasks are
    jax only."""
    agent: AgentName = "smfp"
    """Agent: smfp, fpmd-r, fpmd-m or sac."""
    num_envs: int = 16
    """Parallel training environments per seed; the auto options below scale with it (see
    mjxflow.scale and docs/TRAINING.md)."""
    num_seeds: int = 2
    """Seeds trained at once, as one vmapped program."""
    devices: int | None = None
    """Devices the seeds are spread over (jax.sharding; results equal one device's to float
    rounding); auto: every device the seed count splits evenly over. Not kept on --resume: a resumed run (or
    evaluate) uses the devices it finds unless this is given again."""
    seed: int = 0
    """Base random seed; seed i of the sweep uses split(PRNGKey(seed), num_seeds)[i]."""
    total_steps: int | None = None
    """Environment steps per seed; the run trains exactly ceil(total_steps / num_envs) iterations.
    Default: the env's preset (docs/TRAINING.md)."""
    print_config: bool = False
    """Print the resolved config and its derived figures as JSON and exit, compiling nothing."""
    run_name: str | None = None
    """Name of the run directory under runs_dir; default: ENV-AGENT-TIMESTAMP."""
    runs_dir: str = "runs"
    """Folder that holds run directories."""
    resume: str | None = None
    """Continue the run in this directory from its latest checkpoint (other options then only
    change total_steps, evaluation, logging and checkpointing)."""
    overwrite: bool = False
    """Allow writing into an existing run directory, deleting what is there."""
    restart: bool = False
    """With --resume, when no checkpoint of the run can be read: start it over in its directory
    (metrics cleared, unreadable checkpoints moved to unreadable-checkpoints/). Without this flag
    such a resume stops with exit status 2 and changes nothing."""

    episode_length: int | None = None
    """Time limit of an episode (truncation, bootstrapped); default: the env's preset."""
    num_evals: int | None = None
    """Evaluations spread evenly over the run (after the initial one); auto: 20."""
    eval_episodes: int | None = None
    """Episodes per seed at each evaluation, run in parallel (deterministic policy); auto:
    num_envs / 32 within [10, 128]."""
    chunk_iters: int | None = None
    """Iterations per compiled call (the host syncs, logs and draws progress between calls);
    auto: about 200 calls per run."""
    num_checkpoints: int | None = None
    """Checkpoints spread evenly over the run; auto: 5. The end of training, and a stop by Ctrl-C
    or SIGTERM, always checkpoint."""
    save_replay: bool = True
    """Include the replay buffer in checkpoints (exact resume); False makes checkpoints small and
    a resumed run refills its buffer with random actions first."""
    keep_checkpoints: int = 3
    """How many most recent checkpoints to keep."""

    replay_size: int | None = None
    """Replay capacity in transitions, per seed; auto: 1,024 iterations of num_envs transitions,
    at least 100,000 and at most --replay-gib-per-seed."""
    replay_gib_per_seed: float = 2.0
    """Memory budget of the auto replay capacity, GiB per seed."""
    min_replay: int | None = None
    """Transitions collected with uniform random actions before learning starts (per seed);
    auto: max(2,000, batch size, 10 num_envs)."""
    batch_size: int | None = None
    """Minibatch size of each gradient update; auto: 2 num_envs within [256, 8,192]."""
    updates_per_iter: int | None = None
    """Gradient updates G per iteration (one iteration = one step of every training env); auto:
    a sample reuse (batch x G / num_envs) of 64 at 64 envs or fewer, falling to 16 at 1,024."""
    normalize_obs: bool = True
    """Normalise observations with running mean and variance (kept in the train state)."""

    critic: CriticConfig = field(default_factory=CriticConfig)
    """Twin critic shared by every agent."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC hyper-parameters (used when --agent sac)."""
    smfp: SMFPConfig = field(default_factory=SMFPConfig)
    """SMFP hyper-parameters (used when --agent smfp)."""
    fpmd: FPMDConfig = field(default_factory=FPMDConfig)
    """FPMD-R / FPMD-M hyper-parameters (used when --agent fpmd-r or fpmd-m)."""

    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-process runs (jax.distributed); off by default. Not kept on --resume."""

    compile_cache: str | None = "~/.cache/mjxflow/jax"
    """Folder of JAX's persistent compilation cache (None turns it off)."""
    video: bool = False
    """At the end of training, render one deterministic episode per seed to the run's videos/
    (as `python -m mjxflow.evaluate --run RUN --video`; nothing is rendered while training)."""
    tensorboard: bool = True
    """Also write the logged scalars as TensorBoard event files in the run's tb/ folder
    (`tensorboard --logdir runs`)."""

    sweep: tuple[str, ...] = ()
    """Hyper-parameter grid trained beside the seeds in one compiled program: NAME=V1,V2,...
    (e.g. smfp.beta-md=0,1,10); several give their product. NAME is one of the float options
    that change no array shape (config.SWEEPABLE). Each grid point x seed is one member of the
    vmapped axis; seed i of every point starts from the same key as seed i of a plain run."""

    @property
    def sweep_points(self) -> list[dict[str, float]]:
        """The grid's points in member order, each {field path: value} ([{}] without a sweep)."""
        return grid_points(parse_sweep(self.sweep))

    @property
    def num_members(self) -> int:
        """Entries of the vmapped axis: grid points x seeds (member m is point m // num_seeds,
        seed m % num_seeds)."""
        return len(self.sweep_points) * self.num_seeds

    @property
    def iterations(self) -> int:
        """Loop iterations per seed: exactly ceil(total_steps / num_envs) (total_steps resolved)."""
        return -(-self.total_steps // self.num_envs)


# ---- hyper-parameter sweeps ---------------------------------------------------------------------
# Float options used only in arithmetic inside the compiled update (never in Python control flow or
# array shapes), so a vmapped axis of values computes what separate runs with each value compute.
SWEEPABLE = (
    "critic.lr", "critic.gamma", "critic.tau",
    "sac.actor_lr", "sac.alpha_lr", "sac.init_alpha", "sac.target_entropy_scale",
    "smfp.actor_lr", "smfp.alpha_lr", "smfp.init_alpha", "smfp.target_entropy_scale", "smfp.beta_md",
    "smfp.md_lambda", "smfp.old_tau",
    "fpmd.actor_lr", "fpmd.md_lambda",
)


def parse_sweep(specs: tuple[str, ...]) -> list[tuple[str, tuple[float, ...]]]:
    """`NAME=V1,V2,...` strings -> [(field path, values)]; ValueError naming a bad entry."""
    axes = []
    for spec in specs:
        name, eq, values = spec.partition("=")
        path = name.strip().lstrip("-").replace("-", "_")
        if not eq or path not in SWEEPABLE:
            raise ValueError(f"--sweep {spec!r} must be NAME=V1,V2,... with NAME one of: "
                             f"{', '.join(p.replace('_', '-') for p in SWEEPABLE)}")
        try:
            floats = tuple(float(v) for v in values.split(","))
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: values must be numbers separated by commas") from None
        if len(set(floats)) != len(floats):
            raise ValueError(f"--sweep {spec!r} repeats a value")
        if path in [p for p, _ in axes]:
            raise ValueError(f"--sweep gives {name} twice")
        axes.append((path, floats))
    return axes


def grid_points(axes: list[tuple[str, tuple[float, ...]]]) -> list[dict[str, float]]:
    """Every combination of the axes' values, the last axis fastest."""
    points: list[dict[str, float]] = [{}]
    for path, values in axes:
        points = [{**p, path: v} for p in points for v in values]
    return points


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """cfg with nested fields replaced: {"smfp.beta_md": 0.0} sets cfg.smfp.beta_md."""
    for path, value in values.items():
        head, _, rest = path.partition(".")
        cfg = dataclasses.replace(cfg, **{head: with_values(getattr(cfg, head), {rest: value}) if rest else value})
    return cfg


def point_label(point: dict[str, float]) -> str:
    """`smfp.beta_md=1` style label of a grid point ('' without a sweep)."""
    return " ".join(f"{k}={v:g}" for k, v in point.items())


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _build(cls: type, data: dict) -> Any:
    """Rebuild a (nested) config dataclass from its asdict() form; tuples come back as lists."""
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name not in hints:
            continue  # a field this version no longer has
        default = hints[name].default
        factory = hints[name].default_factory
        example = factory() if factory is not dataclasses.MISSING else default
        if dataclasses.is_dataclass(example):
            value = _build(type(example), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def from_dict(data: dict) -> TrainConfig:
    return _build(TrainConfig, data)


def save_json(cfg: TrainConfig, path: str, extra: dict | None = None) -> None:
    """config.json: the config's fields, plus `extra` entries (the derived figures) that loading ignores."""
    rundir.write_json(path, {**to_dict(cfg), **(extra or {})})


def load_json(path: str) -> TrainConfig:
    return from_dict(rundir.read_json(path))


# ---- option checks -------------------------------------------------------------------------------
# One line per bad value, naming the flag, the rule and the value given: train and bench turn these
# ValueErrors into a one-line error with exit status 2 before anything is compiled.

def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _require(ok: bool, path: str, value: Any, rule: str) -> None:
    if not ok:
        raise ValueError(f"{_flag(path)} must be {rule}, got {value!r}")


def _typed(prefix: str, cfg: Any) -> None:
    """Every field of cfg typed as a Literal holds one of its values (tyro checks the command line;
    this covers configs read from JSON or built in Python), and every float field is finite (inf
    and nan would pass the range checks below or fail only inside training)."""
    for name, hint in typing.get_type_hints(type(cfg)).items():
        value = getattr(cfg, name)
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            valid = ", ".join(map(str, typing.get_args(hint)))
            raise ValueError(f"{_flag(f'{prefix}.{name}')} {value!r} is not one of: {valid}")
        if float in (hint, *typing.get_args(hint)) and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{_flag(f'{prefix}.{name}')} must be a finite number, got {value!r}")


def _widths(path: str, hidden: tuple[int, ...]) -> None:
    _require(len(hidden) > 0 and all(isinstance(w, int) and w > 0 for w in hidden), path, hidden, "positive layer widths")


def _positive(prefix: str, cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        _require(value > 0, f"{prefix}.{name}", value, "> 0")


def check_times(prefix: str, cfg: FlowTimeConfig) -> None:
    _typed(f"{prefix}.times", cfg)
    _require(cfg.sigma > 0, f"{prefix}.times.sigma", cfg.sigma, "> 0")
    _require(0.0 <= cfg.frac_r_neq_t <= 1.0, f"{prefix}.times.frac_r_neq_t", cfg.frac_r_neq_t, "in [0, 1]")


def check_critic(cfg: CriticConfig) -> None:
    _typed("critic", cfg)
    _widths("critic.hidden", cfg.hidden)
    _require(cfg.num_q >= 1, "critic.num_q", cfg.num_q, ">= 1")
    _positive("critic", cfg, "lr")
    _require(0.0 <= cfg.gamma < 1.0, "critic.gamma", cfg.gamma, "in [0, 1)")
    _require(cfg.tau is None or 0.0 < cfg.tau <= 1.0, "critic.tau", cfg.tau, "in (0, 1]")
    _require(cfg.num_atoms >= 2, "critic.num_atoms", cfg.num_atoms, ">= 2")
    if cfg.v_min is not None and cfg.v_max is not None:
        _require(cfg.v_min < cfg.v_max, "critic.v_min", cfg.v_min, f"< --critic.v-max {cfg.v_max}")


def check_sac(cfg: SACConfig) -> None:
    _typed("sac", cfg)
    _widths("sac.actor_hidden", cfg.actor_hidden)
    _positive("sac", cfg, "actor_lr", "alpha_lr", "init_alpha")
    _require(cfg.log_std_min < cfg.log_std_max, "sac.log_std_min", cfg.log_std_min, f"< --sac.log-std-max {cfg.log_std_max}")


def check_smfp(cfg: SMFPConfig) -> None:
    _widths("smfp.actor_hidden", cfg.actor_hidden)
    _typed("smfp", cfg)
    _positive("smfp", cfg, "actor_lr", "alpha_lr", "init_alpha", "md_lambda")
    _require(cfg.log_sigma_min < cfg.log_sigma_max, "smfp.log_sigma_min", cfg.log_sigma_min,
             f"< --smfp.log-sigma-max {cfg.log_sigma_max}")
    _require(cfg.fixed_sigma >= 0, "smfp.fixed_sigma", cfg.fixed_sigma, ">= 0")
    _require(cfg.beta_md >= 0, "smfp.beta_md", cfg.beta_md, ">= 0 (0 turns the mirror-descent term off)")
    _require(cfg.num_particles >= 2, "smfp.num_particles", cfg.num_particles,
             ">= 2 (the weights compare particles of the same state)")
    _require(cfg.entropy_draws >= 1, "smfp.entropy_draws", cfg.entropy_draws, ">= 1 (1: the conditional surrogate)")
    _require(cfg.md_samples >= 0, "smfp.md_samples", cfg.md_samples, ">= 0 (0 regresses every particle)")
    _require(0.0 < cfg.md_states <= 1.0, "smfp.md_states", cfg.md_states, "in (0, 1] (1 uses every state)")
    _require(cfg.md_period >= 1, "smfp.md_period", cfg.md_period, ">= 1")
    _require(0.0 < cfg.old_tau <= 1.0, "smfp.old_tau", cfg.old_tau, "in (0, 1]")
    check_times("smfp", cfg.times)


def check_fpmd(cfg: FPMDConfig) -> None:
    _widths("fpmd.actor_hidden", cfg.actor_hidden)
    _positive("fpmd", cfg, "actor_lr", "md_lambda", "train_steps")
    _typed("fpmd", cfg)
    _require(cfg.md_samples >= 0, "fpmd.md_samples", cfg.md_samples, ">= 0 (0 regresses every particle)")
    _require(0.0 < cfg.md_states <= 1.0, "fpmd.md_states", cfg.md_states, "in (0, 1] (1 uses every state)")
    _require(cfg.num_particles >= 2, "fpmd.num_particles", cfg.num_particles,
             ">= 2 (the weights compare particles of the same state)")
    for name in ("explore_std_start", "explore_std_end", "explore_decay_updates"):
        _require(getattr(cfg, name) is None or getattr(cfg, name) >= 0, f"fpmd.{name}", getattr(cfg, name), ">= 0")
    check_times("fpmd", cfg.times)


def check_distributed(d: DistributedConfig) -> None:
    given = {"--distributed.coordinator-address": d.coordinator_address, "--distributed.num-processes": d.num_processes,
             "--distributed.process-id": d.process_id}
    if d.auto:
        if any(v is not None for v in given.values()):
            raise ValueError("--distributed.auto reads the coordinator, process count and id from the cluster; "
                             "give either it or the three --distributed.* values, not both")
        return
    if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
        missing = ", ".join(k for k, v in given.items() if v is None)
        raise ValueError(f"a multi-process run needs all of --distributed.coordinator-address, --distributed.num-processes "
                         f"and --distributed.process-id; missing: {missing}")
    if d.coordinator_address is None:
        return
    host, _, port = d.coordinator_address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--distributed.coordinator-address must be HOST:PORT, got {d.coordinator_address!r}")
    if not (isinstance(d.num_processes, int) and d.num_processes >= 1):
        raise ValueError(f"--distributed.num-processes must be a positive integer, got {d.num_processes!r}")
    if not (isinstance(d.process_id, int) and 0 <= d.process_id < d.num_processes):
        raise ValueError(f"--distributed.process-id must be in 0 .. {d.num_processes - 1}, got {d.process_id!r}")


# The nested option group of each agent: `--sac.actor-lr` belongs to --agent sac only.
AGENT_GROUP = {"sac": "sac", "smfp": "smfp", "fpmd-r": "fpmd", "fpmd-m": "fpmd"}
# The option groups an agent's sweep may vary: the critic's and its own.
SWEEP_GROUPS = {agent: ("critic", group) for agent, group in AGENT_GROUP.items()}


def option_group(token: str) -> str | None:
    """The agent group an option belongs to (`--smfp.beta-md` -> smfp); None for a shared option
    or a value."""
    name = token.split("=", 1)[0]
    if not name.startswith("--") or "." not in name:
        return None
    head = name[2:].split(".", 1)[0]
    return head if head in AGENT_GROUP.values() else None


def check_sweep(cfg: TrainConfig) -> None:
    """ValueError for a sweep entry that is malformed, belongs to another agent, or gives a grid
    point whose options are bad."""
    axes = parse_sweep(cfg.sweep)
    for path, _ in axes:
        if path.split(".")[0] not in SWEEP_GROUPS.get(cfg.agent, ()):
            raise ValueError(f"--sweep {path.replace('_', '-')} is an option of another agent; this run uses --agent {cfg.agent}")
    for point in grid_points(axes):
        try:
            _check_groups(with_values(cfg, point))
        except ValueError as e:
            raise ValueError(f"--sweep point {point_label(point)}: {e}") from None


def _check_groups(cfg: TrainConfig) -> None:
    check_critic(cfg.critic)
    check_sac(cfg.sac)
    check_smfp(cfg.smfp)
    check_fpmd(cfg.fpmd)


def check_options(cfg: TrainConfig) -> None:
    """ValueError for the first bad option of the critic or of any agent (all are checked, so a
    typo in another agent's option is caught as well; it would be recorded in config.json), or of
    the sweep."""
    check_distributed(cfg.distributed)
    _check_groups(cfg)
    check_sweep(cfg)
