"""Errors that name the file and the problem, for users rather than developers."""

from __future__ import annotations


class FlexcoreError(Exception):
    """Base class for errors a user can act on (bad input, bad configuration)."""


class InputFileError(FlexcoreError, ValueError):
    """A file a user gave us is unreadable, incomplete or inconsistent.

    The message always starts with the file's path so users know which file to fix.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(FlexcoreError, ValueError):
    """A parameter value is out of range or inconsistent with the data."""


class OutputPathError(FlexcoreError):
    """An output folder or file cannot be written (a file in the way, no permission, a
    read-only file system), or writing it would replace one of the step's inputs.

    The message starts with the path, like :class:`InputFileError`.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OtherRankError(FlexcoreError):
    """Raised on ranks 1…N−1 when rank 0 failed in a section only rank 0 runs; rank 0
    reports the error itself, so the command line prints nothing for this one. (Defined
    here, not beside the ranks' helpers, so that the command line and the workflow scripts
    of stages without torch do not import torch.)"""
