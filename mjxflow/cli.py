"""Pieces every command-line entry point shares."""

from __future__ import annotations

import os
import sys
from typing import Callable

import jax


class ConfigError(ValueError):
    """Bad user input, reported in one line before anything is compiled."""


def enable_compile_cache(path: str | None) -> None:
    """Turn on JAX's persistent compilation cache in `path` (None: leave it off)."""
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def run_command(command: Callable[[], object]) -> int:
    """Run a command; user errors become one 'error: ...' line on stderr and exit status 2."""
    try:
        command()
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
