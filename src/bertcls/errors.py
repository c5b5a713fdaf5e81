"""User-facing errors: one paragraph naming the problem and the fix, shown without a traceback."""

import os


class BertclsError(Exception):
    """An error caused by the user's input or environment; entry points print it and exit 2."""

    exit_code = 2


class ConfigError(BertclsError):
    """A model, data or training setting is invalid."""


class ModelNotFoundError(BertclsError):
    """A model name could not be resolved to files on disk or on the hub."""


class CheckpointError(BertclsError):
    """A checkpoint's files, keys or shapes do not fit the model."""


class DataError(BertclsError):
    """A dataset is missing, malformed or unusable for the task."""


class InputError(BertclsError):
    """Input given to a loaded model for prediction is not texts it can read."""


class TrackingUnreachable(BertclsError):
    """The tracking server stayed unreachable to the end of a job; what it computed waits locally."""

    exit_code = 75  # EX_TEMPFAIL: try again later (the message names the command)


def setting(name: str, value: object) -> str:
    """How to pass a setting in the front end in use: `-P lr=2e-5` under `mlflow run`, else `--lr 2e-5`."""
    if os.environ.get("MLFLOW_RUN_ID"):  # set by `mlflow run` for the entry point's command
        return f"-P {name}={value}"
    return f"--{name.replace('_', '-')} {value}"
