"""Run configuration: frozen dataclasses parsed by tyro, one docstring per field.

The agent is chosen by name (`--agent sac`); each agent's hyper-parameters live in their own nested
dataclass (`--sac.actor-lr 1e-3`), so a run's config.json records every agent's settings and the
chosen one is read by name.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import tyro

from mjxflow import rundir
from mjxflow.agents import registry
from mjxflow.envs.catalogue import ENV_NAMES
from mjxflow.options import CriticConfig, check_critic

EnvName = Literal[ENV_NAMES]  # every task of mjxflow.envs.catalogue


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
class RunOptions:
    """The options of every run up to the critic (TrainConfig's first fields; the agents' option
    groups follow them, then TailOptions)."""

    env: EnvName = "inverted_pendulum"
    """Environment: a brax MJX task (lower case), a MuJoCo Playground DM Control suite task
    (CamelCase, e.g. CheetahRun) or a pure-JAX probe (bandit, multigoal, unevengoal)."""
    physics: Literal["jax", "warp"] = "jax"
    """MJX implementation of a Playground task: jax (default; any device) or warp (MuJoCo Warp
    through JAX's FFI, made for NVIDIA GPUs; it also runs, slowly, on a CPU). brax's tasks are
    jax only."""
    agent: str = "smfp"
    """Agent: one of mjxflow.agents.registry's names (TrainConfig types it as their Literal)."""
    num_envs: int = 16
    """Parallel training environments per seed; the auto options below scale with it (see
    mjxflow.scale and docs/TRAINING.md)."""
    num_seeds: int = 2
    """Seeds trained at once, as one vmapped program."""
    devices: int | None = None
    """Devices the seeds are spread over (jax.sharding; results equal one device's to float
    rounding); auto: every device the seed count splits evenly over. Not kept on --resume: a resumed run (or
    evaluate) uses the devices it finds unless this is given again."""
    shard: Literal["seeds", "envs"] = "seeds"
    """What --devices splits: seeds (each device trains whole members, no communication) or envs
    (every member's environments, replay rows and minibatches split over the devices, gradients
    averaged across them: for one big run on several devices). With envs, --devices (auto: all)
    must divide --num-envs and --batch-size, and --replay-size must be a multiple of --num-envs."""
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
    reset_every: int | None = None
    """Env steps between draws of fresh initial states. 1: a reset of every env at every step, kept
    where an episode ended. K > 1: each env keeps a spare initial state drawn ahead, an ended
    episode restarts from it, and every spare is redrawn once every K steps (1 / K of the resets'
    cost). auto: 16 for MJX physics under jax with episodes of 16 steps or more, else 1 (mjxflow.scale)."""
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
    a sample reuse (batch x G / num_envs) of 64 at 256 envs or fewer, falling to 16 at 1,024."""
    normalize_obs: bool = True
    """Normalise observations with running mean and variance (kept in the train state)."""

    critic: CriticConfig = field(default_factory=CriticConfig)
    """Twin critic shared by every agent."""


@dataclass(frozen=True)
class TailOptions:
    """The options after the agents' groups: processes, outputs, sweeps."""

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
    (e.g. smfp.beta-md=0,1,10); several (after one --sweep, or each after its own) give their product. NAME is one of the float options
    that change no array shape (config.sweepable()). Each grid point x seed is one member of the
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


# ---- TrainConfig: the run's options and every registered agent's group ------------------------------
_TRAIN_DOC = "Train an agent on a batched MJX (or probe) environment; seeds are a vmap axis."
_classes: dict[tuple, type] = {}  # registry contents -> its TrainConfig class (the same class again after an unregister)


def _train_config_class() -> type:
    """TrainConfig for the registered agents: RunOptions' fields (with `agent` typed as the Literal of
    every agent name), one field per agent group (its dataclass, default: the agent's defaults) and
    TailOptions' fields, in that order (the order of config.json and --print-config)."""
    specs = registry.specs()
    key = tuple((s.group, s.config, s.names, s.doc) for s in specs)
    if key not in _classes:
        names = registry.names()
        groups = dataclasses.make_dataclass(
            "AgentGroups", [(s.group, typing.Annotated[s.config, tyro.conf.arg(help=s.doc)], field(default_factory=s.config))
                            for s in specs], frozen=True)
        listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        agent = typing.Annotated[Literal[names], tyro.conf.arg(help=f"Agent: {listed}.")]
        cls = dataclasses.make_dataclass("TrainConfig", [("agent", agent, field(default="smfp"))],
                                         bases=(TailOptions, groups, RunOptions), frozen=True, namespace={"__doc__": _TRAIN_DOC})
        cls.__module__ = groups.__module__ = __name__
        _classes[key] = cls
    return _classes[key]


def _rebuild() -> None:
    global TrainConfig
    TrainConfig = _train_config_class()


TrainConfig = _train_config_class()
registry.on_change(_rebuild)


def with_agent_choices(cls: type, one: tuple[str, ...] = (), many: tuple[str, ...] = ()) -> type:
    """A frozen dataclass `cls` with its fields `one` typed as the Literal of the registered agent
    names (default kept) and its fields `many` as tuples of them (default: every agent), so that
    tyro lists and checks them for the agents registered now (bench's --agents, --sweep-agent)."""
    names = registry.names()
    key = (cls, one, many, names)
    if key not in _classes:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        fields = [(n, Literal[names], field(default=defaults[n])) for n in one]
        fields += [(n, tuple[Literal[names], ...], field(default=names)) for n in many]
        sub = dataclasses.make_dataclass(cls.__name__, fields, bases=(cls,), frozen=True, namespace={"__doc__": cls.__doc__})
        sub.__module__ = cls.__module__
        _classes[key] = sub
    return _classes[key]


# ---- hyper-parameter sweeps ---------------------------------------------------------------------
# Float options used only in arithmetic inside the compiled update (never in Python control flow or
# array shapes), so a vmapped axis of values computes what separate runs with each value compute.
CRITIC_SWEEPABLE = ("critic.lr", "critic.gamma", "critic.tau")


def sweepable() -> tuple[str, ...]:
    """Every option a --sweep may vary: the critic's and each agent group's (its spec's sweepable)."""
    return CRITIC_SWEEPABLE + tuple(f"{s.group}.{f}" for s in registry.specs() for f in s.sweepable)


def parse_sweep(specs: tuple[str, ...]) -> list[tuple[str, tuple[float, ...]]]:
    """`NAME=V1,V2,...` strings -> [(field path, values)]; ValueError naming a bad entry."""
    axes = []
    for spec in specs:
        name, eq, values = spec.partition("=")
        path = name.strip().lstrip("-").replace("-", "_")
        if not eq or path not in sweepable():
            raise ValueError(f"--sweep {spec!r} must be NAME=V1,V2,... with NAME one of: "
                             f"{', '.join(p.replace('_', '-') for p in sweepable())}")
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
    return _build(TrainConfig, data)  # the class of the agents registered now


def save_json(cfg: TrainConfig, path: str, extra: dict | None = None) -> None:
    """config.json: the config's fields, plus `extra` entries (the derived figures) that loading ignores."""
    rundir.write_json(path, {**to_dict(cfg), **(extra or {})})


def load_json(path: str) -> TrainConfig:
    data = rundir.read_json(path)
    data.setdefault("reset_every", 1)  # a run saved before the option existed reset every env at every step
    return from_dict(data)


# ---- option checks -------------------------------------------------------------------------------
# One line per bad value, naming the flag, the rule and the value given: train and bench turn these
# ValueErrors into a one-line error with exit status 2 before anything is compiled. The critic's and
# the agents' checks live beside their options (mjxflow.options, each agent's module).

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


def option_group(token: str) -> str | None:
    """The agent group an option belongs to (`--smfp.beta-md` -> smfp); None for a shared option
    or a value."""
    name = token.split("=", 1)[0]
    if not name.startswith("--") or "." not in name:
        return None
    head = name[2:].split(".", 1)[0]
    return head if head in registry.groups() else None


def sweep_groups(agent: str) -> tuple[str, ...]:
    """The option groups an agent's sweep may vary: the critic's and its own."""
    return ("critic", registry.group_of(agent))


def check_sweep(cfg: TrainConfig) -> None:
    """ValueError for a sweep entry that is malformed, belongs to another agent, or gives a grid
    point whose options are bad."""
    axes = parse_sweep(cfg.sweep)
    for path, _ in axes:
        if path.split(".")[0] not in sweep_groups(cfg.agent):
            raise ValueError(f"--sweep {path.replace('_', '-')} is an option of another agent; this run uses --agent {cfg.agent}")
    for point in grid_points(axes):
        try:
            _check_groups(with_values(cfg, point))
        except ValueError as e:
            raise ValueError(f"--sweep point {point_label(point)}: {e}") from None


def _check_groups(cfg: TrainConfig) -> None:
    check_critic(cfg.critic)
    for spec in registry.specs():
        spec.check(getattr(cfg, spec.group))


def check_options(cfg: TrainConfig) -> None:
    """ValueError for the first bad option of the critic or of any agent (all are checked, so a
    typo in another agent's option is caught as well; it would be recorded in config.json), or of
    the sweep."""
    registry.spec_of(cfg.agent)
    check_distributed(cfg.distributed)
    _check_groups(cfg)
    check_sweep(cfg)
