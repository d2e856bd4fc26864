"""Every error the library raises for its users, and the exit code each one means on the command line.

``OrchestratorError`` messages are one line, phrased for the user, naming the field or file at fault.
"""
from __future__ import annotations

class OrchestratorError(Exception):
    """Base of the library's errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class BadInput(OrchestratorError):
    """Input that cannot work (a spec, a path, a run id, an option): nothing was started or written."""

    exit_code = 2


class SpecError(BadInput, ValueError):
    """A problem with an experiment file."""


class StudyError(BadInput):
    """A study or search that cannot start or resume (resources missing, nothing runnable, ...)."""


class OverBudget(StudyError):
    """A study whose estimated cost exceeds ``execution.budget_usd`` / ``--max-cost``; nothing was started."""


class RunNotFound(BadInput):
    """A run id that the store does not hold."""


class CorruptRun(BadInput):
    """A stored run whose files (run.json, spec.yaml, a record or its predictions) cannot be read."""


class RunBusy(BadInput):
    """A run that another live driver holds (its lock in the store); nothing was started."""


class ClusterUnreachable(OrchestratorError):
    """A command that needs a cluster found none answering at its address (exit 1: the input may be right)."""


class Interrupted(OrchestratorError):
    """The user interrupted a run; finished trials are stored and ``resume`` continues it."""

    exit_code = 130


def exit_code(error: BaseException) -> int:
    """The CLI exit code for ``error``: 2 bad input, 130 interrupted, 1 anything else (a store that failed)."""
    if isinstance(error, OrchestratorError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return Interrupted.exit_code
    return 1  # StorageError and anything unexpected
