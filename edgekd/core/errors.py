"""Errors a user can hit. Each names what is wrong (file, YAML key, layer) and how to fix it.

The CLI prints ``str(error)`` without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations


class EdgekdError(Exception):
    """Base of every user-facing error: ``message`` says what, ``fix`` says what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class ConfigError(EdgekdError):
    """model.yaml or a target file is malformed; ``problems`` lists every bad key found."""

    def __init__(self, message: str, fix: str | None = None, problems: list[str] | None = None) -> None:
        self.problems = problems or []
        super().__init__(message, fix)


class TargetError(ConfigError):
    """Unknown target name or a bad target file."""


class DataError(EdgekdError):
    """A data set is missing, empty, malformed or does not fit the model."""


class ModelError(EdgekdError):
    """A model cannot be built or a checkpoint does not load into it."""


class PipelineError(EdgekdError):
    """The list of passes cannot run (order, missing inputs)."""


class BackendUnavailable(EdgekdError):
    """A runtime or converter the target needs is not installed here."""


class ExportError(EdgekdError):
    """Export to a deployment format failed."""


class ParityError(ExportError):
    """An exported artifact does not reproduce the PyTorch model within tolerance."""


class TrainingError(EdgekdError):
    """Training diverged (NaN/inf loss) or could not start."""


class ProfilingError(EdgekdError):
    """A latency measurement could not be taken."""


class StorageError(EdgekdError):
    """A file could not be written: disk full, file-size limit, permissions."""


STORAGE_ERRNOS = {
    28: "no space left on the device",
    27: "file too large for the file-size limit",
    122: "disk quota exceeded",
    13: "permission denied",
    30: "read-only file system",
}


def storage_error(exc: OSError, path: object) -> StorageError:
    """A user error for a failed write of ``path`` (the write never leaves a half-written file behind)."""
    why = STORAGE_ERRNOS.get(exc.errno or 0, exc.strerror or str(exc))
    return StorageError(
        f"cannot write {path}: {why}",
        fix="free disk space (or raise the limit) and re-run with --resume; finished passes are kept",
    )


class DeviceError(ProfilingError):
    """A device named by the target (or ``--device``) cannot be used: refused host key, failed login, bad workdir."""


class DeviceUnreachable(DeviceError):
    """No connection to the device within the timeout (after the configured retries)."""


class ConstraintError(EdgekdError):
    """The compile cannot meet a constraint of model.yaml (``constraints.*``). What it made is saved in the run
    folder (``saved`` lists the files), with ``result.failed.json`` and ``report.failed.md`` but no ``result.json``;
    the CLI exits 3."""

    exit_code = 3

    def __init__(self, message: str, fix: str | None = None, saved: list[str] | None = None) -> None:
        self.saved = saved or []
        super().__init__(message, fix)


class AccuracyGuardError(ConstraintError):
    """A compression pass cannot keep the student within ``constraints.max_accuracy_drop`` of the teacher.

    The best model it reached is saved in the run folder before this is raised (``saved`` lists the files).
    """

    def __init__(
        self, message: str, fix: str | None = None, best_accuracy: float | None = None, saved: list[str] | None = None
    ) -> None:
        self.best_accuracy = best_accuracy
        super().__init__(message, fix, saved)


__all__ = [
    "STORAGE_ERRNOS",
    "AccuracyGuardError",
    "BackendUnavailable",
    "ConfigError",
    "ConstraintError",
    "DataError",
    "DeviceError",
    "DeviceUnreachable",
    "EdgekdError",
    "ExportError",
    "ModelError",
    "ParityError",
    "PipelineError",
    "ProfilingError",
    "StorageError",
    "TargetError",
    "TrainingError",
    "storage_error",
]
