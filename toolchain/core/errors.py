"""Typed errors of the toolchain.

Every error a user can cause derives from :class:`SpikeportError` and carries two parts:
what is wrong and how to fix it. The CLI prints them as one line and exits with code 2;
library callers catch the typed class they care about. Nothing here prints or logs.
"""
from __future__ import annotations


class SpikeportError(Exception):
    """Base class: a problem the user can fix, with the fix spelled out."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return self.problem if not self.fix else f"{self.problem} -- fix: {self.fix}"


class UnknownNameError(SpikeportError):
    """A name that is not in a registry (dataset, encoder, loss, recipe, model...)."""


class ConfigError(SpikeportError):
    """A recipe or command-line override that does not describe a valid run."""


class DataError(SpikeportError):
    """A dataset that cannot be loaded (missing package or files)."""


class CheckpointError(SpikeportError):
    """A checkpoint that is missing, corrupt or does not match its config."""


class RunDirError(SpikeportError):
    """A run directory that is missing, incomplete, or would be overwritten."""


class ExportError(SpikeportError):
    """A model or graph construct that the chosen export or target cannot express."""


class GraphError(SpikeportError):
    """A NIR graph that cannot be read or simulated (unsupported node, bad structure)."""
