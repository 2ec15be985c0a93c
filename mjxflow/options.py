"""The option types and checks shared by the agents and the run configuration: the critic's options,
the MeanFlow time sampling, the choices the flow maths branches on, and the helpers every option
check uses (one line per bad value, naming the flag, the rule and the value given)."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import tyro

# Choices that agents and the flow maths branch on (typed here, checked once with the config)
TimeDist = Literal["logit_normal", "uniform"]
MDBaseline = Literal["mean", "max"]
WeightScale = Literal["std", "raw"]


def _auto_bool(args: list[str]) -> bool | None:
    if not args:
        return True
    if len(args) != 1 or args[0].lower() not in ("true", "false", "auto"):
        raise ValueError(f"expected nothing (on), True, False or auto, got {' '.join(args)!r}")
    return {"true": True, "false": False, "auto": None}[args[0].lower()]


# A switch whose default (None) the scale rules decide: `--x` turns it on, `--x False` off, `--x auto` leaves it
AutoBool = Annotated[bool | None, tyro.constructors.PrimitiveConstructorSpec(
    nargs="*", metavar="[{True,False,auto}]", instance_from_str=_auto_bool,
    is_instance=lambda x: x is None or isinstance(x, bool), str_from_instance=lambda x: ["auto" if x is None else str(x)])]


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
    distributional: AutoBool = None
    """A categorical (C51-style) critic: each Q network outputs a distribution over num_atoms
    fixed values in [v_min, v_max], trained by cross-entropy against the projected target
    distribution of r + gamma z; actors and every weight read its expected value. `--critic.distributional`
    turns it on, `--critic.distributional False` off; auto: on at 256 envs or more (mjxflow.scale)."""
    num_atoms: int = 101
    """Atoms of the distributional critic's support."""
    v_min: float | None = None
    """Lowest atom of the distributional critic; auto: -v_max."""
    v_max: float | None = None
    """Highest atom of the distributional critic; auto: the env's reward scale / (1 - gamma)
    (mjxflow.scale: a typical per-step reward magnitude of a good policy, per env)."""


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



# ---- option checks -----------------------------------------------------------------------------
# train and bench turn these ValueErrors into a one-line error with exit status 2 before anything is compiled.

def flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def require(ok: bool, path: str, value: Any, rule: str) -> None:
    if not ok:
        raise ValueError(f"{flag(path)} must be {rule}, got {value!r}")


def check_typed(prefix: str, cfg: Any) -> None:
    """Every field of cfg typed as a Literal holds one of its values (tyro checks the command line;
    this covers configs read from JSON or built in Python), and every float field is finite (inf
    and nan would pass the range checks below or fail only inside training)."""
    for name, hint in typing.get_type_hints(type(cfg)).items():
        value = getattr(cfg, name)
        if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
            valid = ", ".join(map(str, typing.get_args(hint)))
            raise ValueError(f"{flag(f'{prefix}.{name}')} {value!r} is not one of: {valid}")
        if float in (hint, *typing.get_args(hint)) and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{flag(f'{prefix}.{name}')} must be a finite number, got {value!r}")


def check_widths(path: str, hidden: tuple[int, ...]) -> None:
    require(len(hidden) > 0 and all(isinstance(w, int) and w > 0 for w in hidden), path, hidden, "positive layer widths")


def check_positive(prefix: str, cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        require(value > 0, f"{prefix}.{name}", value, "> 0")


def check_times(prefix: str, cfg: FlowTimeConfig) -> None:
    check_typed(f"{prefix}.times", cfg)
    require(cfg.sigma > 0, f"{prefix}.times.sigma", cfg.sigma, "> 0")
    require(0.0 <= cfg.frac_r_neq_t <= 1.0, f"{prefix}.times.frac_r_neq_t", cfg.frac_r_neq_t, "in [0, 1]")


def check_critic(cfg: CriticConfig) -> None:
    check_typed("critic", cfg)
    check_widths("critic.hidden", cfg.hidden)
    require(cfg.num_q >= 1, "critic.num_q", cfg.num_q, ">= 1")
    check_positive("critic", cfg, "lr")
    require(0.0 <= cfg.gamma < 1.0, "critic.gamma", cfg.gamma, "in [0, 1)")
    require(cfg.tau is None or 0.0 < cfg.tau <= 1.0, "critic.tau", cfg.tau, "in (0, 1]")
    require(cfg.num_atoms >= 2, "critic.num_atoms", cfg.num_atoms, ">= 2")
    if cfg.v_min is not None and cfg.v_max is not None:
        require(cfg.v_min < cfg.v_max, "critic.v_min", cfg.v_min, f"< --critic.v-max {cfg.v_max}")
