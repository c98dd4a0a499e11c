"""Errors the suite raises on bad input: one clear message each, no traceback soup at the CLI."""


class SinkmechError(Exception):
    """Base class: experiments catch it, print its message and exit non-zero."""

    exit_code = 1


class ModelUnavailableError(SinkmechError):
    """The model is neither installed, cached nor reachable."""

    exit_code = 3


class ConfigError(SinkmechError):
    """A config value is malformed or of the wrong type."""

    exit_code = 2


class PromptError(SinkmechError):
    """Prompts are empty, or too long for the model."""

    exit_code = 2


class CheckpointError(SinkmechError):
    """A checkpoint or its tokenizer is missing, incomplete or corrupt."""

    exit_code = 4


class CorruptResultsError(SinkmechError):
    """A results file the suite wrote (a unit's ``_COMPLETE`` marker) no longer parses."""

    exit_code = 4


class ResultsWriteError(SinkmechError):
    """The results tree cannot take a unit: no space left, over quota or read-only."""

    exit_code = 2


class UnitBusyError(SinkmechError):
    """Another run holds the lock of the same results unit."""

    exit_code = 5
