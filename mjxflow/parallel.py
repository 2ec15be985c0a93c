"""Where a run lives: its seeds (or, with --shard envs, each member's environments: EnvPlacement)
placed over devices with `jax.sharding`.

A run's state has a leading seed axis on everything a seed owns (agent, replay, envs, keys; see
`mjxflow.loop.SeedState`). `Placement` builds a one-axis mesh ('seed') over the devices a run uses
and shards that axis over them: device d holds seeds [d S / D, (d + 1) S / D). Each device runs the
same vmapped per-seed program on its own seeds (`shard_map`): no computation mixes seeds (the shared
counters are computed alike on every device), so there is no compiler partitioning inside and no
communication, and a run never materialises every seed's replay on one device.

Bits across device counts: a run on D devices equals the run on one device to float rounding,
not bit for bit. Measured on the CPU (jax 0.10.2): the parameters after one update differ in the
last bit or two (~1e-7 relative), and training's chaotic dynamics then grow that like any other
perturbation. Two causes, both in XLA: the order of a reduction's float additions depends on the
array's shape, so a device that vmaps 1 seed and one that vmaps 4 sum a seed's batch differently;
and a program compiled for D > 1 partitions goes through SPMD passes that fold constants
differently (a division kept where the one-device program multiplies by a reciprocal). Equal
device counts give equal bits, run to run.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: F401 (P re-exported)

from mjxflow.errors import ConfigError

SEED = "seed"
ENV = "env"


def working_counts(num_seeds: int, available: int) -> list[int]:
    """Device counts (at most `available`) over which `num_seeds` seeds split evenly."""
    return [d for d in range(1, available + 1) if num_seeds % d == 0]


def check_positive(flag: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")


def device_count(num_seeds: int, requested: int | None, available: int | None = None) -> int:
    """How many devices a run of `num_seeds` seeds uses. `requested` None (auto): every device when
    the seeds split evenly over them, else the largest count that they do split over. Given
    explicitly it must be available and divide the seed count (ConfigError naming what works)."""
    available = jax.device_count() if available is None else available
    counts = working_counts(num_seeds, available)
    if requested is None:
        return counts[-1]
    check_positive("--devices", requested)
    if requested > available:
        raise ConfigError(f"--devices {requested}: only {available} device{'s' * (available != 1)} "
                          f"({jax.devices()[0].platform}) can be seen; counts that split --num-seeds {num_seeds}: "
                          f"{', '.join(map(str, counts))}")
    if requested not in counts:
        raise ConfigError(f"--num-seeds {num_seeds} does not split evenly over --devices {requested}; use --devices "
                          f"{' or '.join(map(str, counts))}, or a --num-seeds that is a multiple of {requested}")
    return requested


def env_device_count(cfg, available: int | None = None) -> int:
    """How many devices a run with --shard envs splits each member's environments over: --devices,
    or auto every device. ConfigError unless it divides num_envs, batch_size and replay_size (each
    device steps its share of the envs, holds their transitions and draws its share of a batch)."""
    available = jax.device_count() if available is None else available
    d = available if cfg.devices is None else cfg.devices
    check_positive("--devices", d)
    if d > available:
        raise ConfigError(f"--devices {d}: only {available} device{'s' * (available != 1)} "
                          f"({jax.devices()[0].platform}) can be seen")
    for flag, value in (("--num-envs", cfg.num_envs), ("--batch-size", cfg.batch_size)):
        if value is not None and value % d:
            raise ConfigError(f"--shard envs over {d} devices needs {flag} to be a multiple of {d}, got {value}")
    if cfg.replay_size is not None and cfg.replay_size % cfg.num_envs:
        raise ConfigError(f"--shard envs keeps one replay row per iteration: --replay-size must be a multiple of "
                          f"--num-envs {cfg.num_envs}, got {cfg.replay_size}")
    return d


def devices_for(cfg) -> int:
    """The device count a run's config asks for, by what --shard splits (seeds or envs)."""
    return env_device_count(cfg) if cfg.shard == "envs" else device_count(cfg.num_members, cfg.devices)


# ---- several processes (jax.distributed) ----------------------------------------------------------

def initialize(dist, shard: str = "seeds", devices: int | None = None) -> None:
    """jax.distributed.initialize from a DistributedConfig (no-op when it is off or already done).
    Must run before anything else touches JAX's backends.

    Without --distributed.*, a one-process run that splits its envs (shard "envs") over several
    virtual CPU devices (JAX_NUM_CPU_DEVICES) starts jax.distributed with this one process on a
    free local port, so that its all-reduces run through the same collectives (gloo) as a run of
    several processes: XLA's in-process CPU all-reduce adds in another order than gloo's, and with
    the same collectives 1 process x 4 devices equals 2 processes x 2 devices bit for bit."""
    if jax.distributed.is_initialized():
        return
    if not dist.enabled:
        if shard == "envs" and devices != 1 and jax.config.jax_num_cpu_devices > 1:
            jax.distributed.initialize(coordinator_address=f"127.0.0.1:{free_port()}", num_processes=1, process_id=0)
        return
    if dist.auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=dist.coordinator_address, num_processes=dist.num_processes,
                                   process_id=dist.process_id)


def free_port() -> int:
    """A TCP port of this host that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_main() -> bool:
    """Whether this process writes the run's files (process 0; always true in a one-process run)."""
    return jax.process_index() == 0


def to_host(tree):
    """A tree of (possibly sharded, possibly multi-process) arrays as numpy arrays on this host,
    every process getting the whole value."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)


def any_signal(received: str | None) -> str | None:
    """The stop signal's name when any process received one (each process's own otherwise): every
    process stops after the same chunk and saves that checkpoint together, although a signal may
    reach only one of them (Ctrl-C in one terminal, a scheduler that signals one task)."""
    if jax.process_count() == 1:
        return received
    import signal

    from jax.experimental import multihost_utils
    codes = multihost_utils.process_allgather(np.int32(signal.Signals[received].value if received else 0))
    code = int(np.max(codes))
    return signal.Signals(code).name if code else None


def preemption_service() -> bool:
    """Whether jax.distributed's preemption service watches SIGTERM here (several processes, the
    service on: JAX's default): it catches the signal on any process, at any time, compiling
    included, and tells all of them (`preempted`)."""
    from jax._src import distributed
    return jax.process_count() > 1 and distributed.global_state.preemption_sync_manager is not None


def preempted(step: int) -> bool:
    """True on every process at the same `step` (a count every process advances together) once
    any of them got SIGTERM (jax.distributed's preemption sync point); False without the service."""
    if not preemption_service():
        return False
    from jax.experimental import multihost_utils
    return multihost_utils.reached_preemption_sync_point(step)


def barrier(name: str) -> None:
    """Wait until every process gets here (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def auto_note(num_seeds: int, used: int, available: int) -> str | None:
    """A line for the start of a run that uses fewer devices than it sees (auto), else None."""
    if used == available:
        return None
    return (f"using {used} of {available} devices: --num-seeds {num_seeds} does not split evenly over {available} "
            f"(use a multiple of {available} to fill them, or --devices {used} to silence this)")


class Placement:
    """A one-axis device mesh ('seed') and the shardings of a run's arrays on it."""

    def __init__(self, num_devices: int, axis: str = SEED):
        devices = jax.devices()
        if num_devices > len(devices):
            raise ConfigError(f"{num_devices} devices requested, {len(devices)} available")
        self.devices = devices[:num_devices]
        self.mesh = Mesh(np.array(self.devices), (axis,))
        self.seed = NamedSharding(self.mesh, P(axis))  # leading axis split over devices

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def per_device(self, fn, in_specs, out_specs):
        """shard_map(fn): each device runs fn on its own seeds, the same program one device would
        run on that many seeds (no compiler partitioning inside, no communication; the shared
        counters are computed alike on every device, so replicated outputs are trusted as such)."""
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    @staticmethod
    def state_specs(state):
        """PartitionSpecs of a TrainState (prefix tree): seeds split, the iteration counter replicated."""
        return state.replace(seeds=P(SEED), iteration=P())

    def state_shardings(self, state):
        """Shardings of a TrainState (arrays or shapes), leaf by leaf, as state_specs says."""
        return state.replace(seeds=jax.tree.map(lambda _: self.seed, state.seeds),
                             iteration=NamedSharding(self.mesh, P()))

    def from_host(self, x: np.ndarray):
        """A host array that every process holds in full, split along its leading (seed) axis."""
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, self.seed, lambda index: x[index])

    def put(self, state):
        """Outside jit: move a TrainState's arrays onto their shardings."""
        return jax.device_put(state, self.state_shardings(state))

    def shapes(self, state_shapes):
        """ShapeDtypeStructs of a TrainState carrying their shardings (restore targets)."""
        shardings = self.state_shardings(state_shapes)
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_shapes, shardings)

    def rows(self, x):
        """Inside the program: a per-member batch as it is (the seeds' placement never splits one)."""
        return x

    def describe(self) -> str:
        d = self.devices[0]
        kind = getattr(d, "device_kind", d.platform)
        where = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
        return f"{self.num_devices} x {kind}{where}"


class EnvPlacement(Placement):
    """--shard envs: one axis ('env') over the devices, each member's environments and replay rows
    split along it, everything else (parameters, optimiser states, statistics, keys) replicated.

    Unlike the seeds' placement this is not a per-device program: the run is the one-device
    program with its shardings given, and XLA's SPMD partitioner splits it, inserting the
    all-reduces of the gradients and of the observation statistics where a mean spans the envs or
    the batch (the minibatch is split over the devices too; see `rows`). Random draws are the
    same values on any device count (jax_threefry_partitionable), so the run equals the one-device
    run up to the order of those reductions' additions. The same device count gives the same bits,
    and 2 processes x 2 devices equal 1 x 4 bit for bit: a one-process run on several CPU devices
    goes through jax.distributed's collectives too (`initialize`), whose all-reduce adds in one
    order however the devices are spread over processes (docs/DEVICES.md).
    """

    def __init__(self, num_devices: int):
        super().__init__(num_devices, ENV)
        self.replicated = NamedSharding(self.mesh, P())
        self.seed = self.replicated  # what the seeds' placement splits over devices is whole on each here

    def sharding(self, spec: P) -> NamedSharding:
        """The sharding of a spec written for either placement: only the env axis is split."""
        return NamedSharding(self.mesh, P(*(ENV if a == ENV else None for a in spec)))

    def per_device(self, fn, in_specs, out_specs):
        """fn itself (one global program), its inputs and outputs held to their shardings."""
        def hold(tree, specs):
            return jax.tree.map(lambda spec, x: jax.lax.with_sharding_constraint(x, self.sharding(spec)), specs, tree,
                                is_leaf=lambda v: isinstance(v, P))

        def run(*args):
            return hold(fn(*hold(args, tuple(in_specs))), out_specs)
        return run

    @staticmethod
    def state_specs(state):
        """Leaf by leaf: the env axis of the envs (members, envs, ...) and of the replay rows
        (members, rows, envs, ...) split, all else replicated."""
        whole = jax.tree.map(lambda _: P(), state)
        split = lambda tree, spec: jax.tree.map(lambda _: spec, tree)  # noqa: E731
        seeds = whole.seeds.replace(envs=split(state.seeds.envs, P(None, ENV)))
        if state.seeds.replay is not None:
            seeds = seeds.replace(replay=seeds.replay.replace(data=split(state.seeds.replay.data, P(None, None, ENV))))
        return whole.replace(seeds=seeds)

    def state_shardings(self, state):
        return jax.tree.map(self.sharding, self.state_specs(state), is_leaf=lambda v: isinstance(v, P))

    def from_host(self, x: np.ndarray):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, self.replicated, lambda index: x[index])

    def rows(self, x):
        """Inside the program: a per-member batch (rows first) split over the devices by rows."""
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, P(ENV)))

    def describe(self) -> str:
        return super().describe() + ", envs split"
