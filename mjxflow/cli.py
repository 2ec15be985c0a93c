"""Pieces every command-line entry point shares: parsing, one-line errors, the compile cache."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import types
import typing
from typing import Callable, TypeVar

import jax
import tyro

from mjxflow.errors import ConfigError, TrainingStopped

T = TypeVar("T")


def enable_compile_cache(path: str | None) -> None:
    """Turn on JAX's persistent compilation cache in `path` (None: leave it off)."""
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _int_flags(cls: type, prefix: str = "") -> dict[str, bool]:
    """Flags of integer-valued fields of a (nested) config dataclass: flag -> takes several values."""
    flags = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        flag = f"--{prefix}{f.name.replace('_', '-')}"
        example = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(example):
            flags.update(_int_flags(type(example), f"{prefix}{f.name.replace('_', '-')}."))
            continue
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if hint is int or (typing.get_origin(hint) in (typing.Union, types.UnionType) and args == [int]):
            flags[flag] = False
        elif typing.get_origin(hint) is tuple and args[:1] == [int]:
            flags[flag] = True
    return flags


def _is_int(token: str) -> bool:
    try:
        int(token.replace("_", ""))
        return True
    except ValueError:
        return token == "None"


def check_integer_flags(cls: type, argv: list[str]) -> None:
    """ConfigError for the first integer option given a value that is not an integer."""
    flags = _int_flags(cls)
    for i, token in enumerate(argv):
        name, eq, value = token.partition("=")
        if name not in flags:
            continue
        if eq:
            values = [value]
        elif flags[name]:  # several values, up to the next option
            values = []
            for v in argv[i + 1:]:
                if v.startswith("--"):
                    break
                values.append(v)
        else:
            values = argv[i + 1:i + 2]
        for v in values:
            if not _is_int(v):
                raise ConfigError(f"{name} must be {'integers' if flags[name] else 'an integer'}, got {v!r}")


def _condense(text: str) -> str:
    """tyro's multi-line error panel as one line: its title, its message and any suggestion."""
    lines = [line.strip(" │╭╮╰╯─") for line in text.splitlines()]
    lines = [line for line in lines if line and set(line) - set("-─ ")]
    parts = [line for line in lines if not line.startswith(("For full helptext", "Argument helptext"))]
    message = parts[1] if len(parts) > 1 else (parts[0] if parts else "could not parse the command line")
    for line in parts[2:]:  # a message wrapped over several lines (e.g. the list of valid choices)
        if line.endswith(":") or line.startswith(("--", "Perhaps")) or message.endswith((".", ")")):
            break
        message += " " + line
    if "Perhaps you meant:" in parts:
        k = parts.index("Perhaps you meant:")
        if k + 1 < len(parts):
            message += f" (perhaps you meant {parts[k + 1].split()[0]})"
    return message


MERGED_FLAGS = ("--sweep",)  # options whose values add up: given twice, they mean both, not the last


def merge_repeated(argv: list[str], flag: str) -> list[str]:
    """argv with every occurrence of `flag` (`--sweep A --sweep B`, or `--sweep=A`) merged into
    one at the first occurrence (`--sweep A B`); tyro alone would keep only the last one's values,
    silently dropping a grid axis."""
    is_flag = lambda token: token == flag or token.startswith(flag + "=")  # noqa: E731
    at = [i for i, t in enumerate(argv) if is_flag(t)]
    if len(at) < 2:
        return argv
    values, rest, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        if is_flag(token):
            if token != flag:
                values.append(token[len(flag) + 1:])
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            continue
        rest.append(token)
        i += 1
    return rest[:at[0]] + [flag, *values] + rest[at[0]:]  # everything before the first one is in rest


def parse(cls: type[T], argv: list[str] | None, default: T | None = None) -> T:
    """tyro parsing whose errors are one ConfigError line; --help prints as usual."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for flag in MERGED_FLAGS:
        argv = merge_repeated(argv, flag)
    if "-h" in argv or "--help" in argv:
        return tyro.cli(cls, args=argv, default=default)
    check_integer_flags(cls, argv)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            return tyro.cli(cls, args=argv, default=default)
    except SystemExit as e:
        if e.code in (0, None):
            print(buf.getvalue(), end="")
            raise
        raise ConfigError(_condense(buf.getvalue())) from None


def run_command(command: Callable[[], object]) -> int:
    """Run a command; user errors become one 'error: ...' line on stderr and exit status 2, a
    deliberate stop (TrainingStopped) exit status 1. A command may return its own exit status."""
    try:
        code = command()
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingStopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
