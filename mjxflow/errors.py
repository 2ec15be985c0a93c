"""The two ways a command stops on purpose; every entry point (mjxflow.cli.run_command) prints them
as one line and exits with their status."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, reported in one line before anything is compiled (exit status 2)."""


class TrainingStopped(RuntimeError):
    """Training stopped on purpose (e.g. non-finite values); reported in one line, exit status 1."""


class InUse(ConfigError):
    """A run or study folder locked by another process (mjxflow.rundir.Lock); exit status 2."""
