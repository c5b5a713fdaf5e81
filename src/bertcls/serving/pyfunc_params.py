"""The inference params a served model accepts (`calibrated`, `return_tags`, `tag_decoding`, `threshold`), as MLflow
passes them;
a bad value is an MlflowException with INVALID_PARAMETER_VALUE (HTTP 400 when served). Imports mlflow only."""

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE


def flag(params: dict, name: str, default: bool) -> bool:
    """A boolean param as MLflow passes it (a bool when the signature declares it; a string from older clients)."""
    value = params.get(name, default)
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise MlflowException(f"The param {name!r} must be true or false, got {value!r}.", INVALID_PARAMETER_VALUE)
        return value.lower() == "true"
    return bool(value)


def threshold_param(params: dict) -> float | None:
    """The multi-label `threshold` param: one probability in [0, 1] for every label, or unset (the tuned ones)."""
    value = params.get("threshold")
    if value is None or value == "":
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0.0 <= threshold <= 1.0:
        raise MlflowException(
            f"The param 'threshold' must be a probability between 0 and 1 (a label is predicted when its "
            f"probability reaches it), got {value!r}. Leave it unset for each label's threshold tuned on validation.",
            INVALID_PARAMETER_VALUE,
        )
    return threshold


def choice_param(params: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    """A param that names one of `choices` (unset or empty: `default`)."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in choices:
        raise MlflowException(
            f"The param {name!r} must be one of {', '.join(choices)}, got {value!r}.", INVALID_PARAMETER_VALUE
        )
    return value
