"""User-facing errors: one paragraph naming the problem and the fix, shown without a traceback."""


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


def setting(name: str, value: object) -> str:
    """How to pass a setting in both front ends: `-P lr=2e-5` (mlflow run) or `--lr 2e-5` (bertcls)."""
    return f"-P {name}={value} (or --{name.replace('_', '-')} {value} with the bertcls command)"
