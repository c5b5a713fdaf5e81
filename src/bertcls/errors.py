"""Every error class of bertcls, one per kind of problem a user can act on. Each message is one paragraph naming
the problem and the fix; the CLI shows it without a traceback and exits with the class's exit code."""

import os


class BertclsError(Exception):
    """An error caused by the user's input or environment; entry points print it and exit 2."""

    exit_code = 2


class ConfigError(BertclsError):
    """A setting is invalid, or settings contradict each other or the model (fix: change the setting)."""


class ModelNotFoundError(BertclsError):
    """A model name could not be resolved to files on disk or on the hub."""


class CheckpointError(BertclsError):
    """A checkpoint's files, keys or shapes do not fit the model."""


class DataError(BertclsError):
    """A dataset is missing, malformed or unusable for the task."""


class InputError(BertclsError):
    """Input given to a loaded model for prediction is not texts it can read."""


class ResumeError(BertclsError):
    """A run cannot be resumed as asked: unknown, finished, still running, given other parameters, or its
    checkpoint is missing or belongs to another model or data (fix: the run's `resume_command` tag, or a new run)."""


class RegistryError(BertclsError):
    """The experiment, its runs or the model registry cannot give what was asked (fix: another experiment, run,
    metric or model name)."""


class StorageError(BertclsError):
    """A sweep's Optuna storage cannot be opened (fix: a reachable database URL)."""


class ExportError(BertclsError):
    """A model cannot be exported as asked: its head has no Hugging Face counterpart, or the destination is not
    empty (fix: head=linear, or a new directory)."""


class HubPushError(BertclsError):
    """An export could not be uploaded to the Hugging Face hub (fix: network access and a token); the export
    itself is complete on disk."""


class TrackingUnreachable(BertclsError):
    """The tracking server stayed unreachable to the end of a job; what it computed waits locally."""

    exit_code = 75  # EX_TEMPFAIL: try again later (the message names the command)


def setting(name: str, value: object) -> str:
    """How to pass a setting in the front end in use: `-P lr=2e-5` under `mlflow run`, else `--lr 2e-5`."""
    if os.environ.get("MLFLOW_RUN_ID"):  # set by `mlflow run` for the entry point's command
        return f"-P {name}={value}"
    return f"--{name.replace('_', '-')} {value}"
