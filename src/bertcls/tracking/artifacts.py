"""Logged models and artifacts of a run: the pyfunc model (with its code), checkpoints, resume folders."""

from __future__ import annotations

import contextlib
import importlib.metadata
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import bertcls
from bertcls.errors import ModelNotFoundError
from bertcls.hub import resolve_model as resolve_named_model
from bertcls.runtime.interrupts import signals_deferred

RUNTIME_PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "safetensors",
    "transformers",
    "tokenizers",
    "numpy",
    "pandas",
    "mlflow",
    "scikit-learn",
    "scipy",
)


def logged_checkpoints(run_id: str, metric: str) -> list[tuple[int, str, float | None]]:
    """(epoch, model id, its `metric`) of the run's live checkpoint-epoch-<n> logged models, oldest first."""
    run = mlflow.MlflowClient().get_run(run_id)
    found = []
    for model in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list"):
        if model.source_run_id == run_id and model.name.startswith("checkpoint-epoch-"):
            value = next((m.value for m in model.metrics or [] if m.key == metric), None)
            found.append((int(model.name.rsplit("-", 1)[1]), model.model_id, value))
    return sorted(found)


def log_linked_metrics(metrics: dict[str, float], step: int, model_id: str | None, dataset) -> None:
    """Metrics of the run, linked to a logged model and the dataset they were computed on when there is one."""
    if model_id is None:
        mlflow.log_metrics(metrics, step=step)
    else:
        mlflow.log_metrics(metrics, step=step, model_id=model_id, dataset=dataset)


ONNX_RUNTIME_PACKAGES = ("onnxruntime", "tokenizers", "numpy", "pandas", "mlflow")  # the ONNX-backed model's
# The bertcls modules the ONNX-backed model ships: the input contract, its decisions and runtime, nothing with JAX.
ONNX_SHIPPED = (
    "__init__.py",
    "errors.py",
    "serving/__init__.py",
    "serving/inputs.py",
    "serving/decisions.py",
    "serving/onnx_runtime.py",
    "serving/onnx_pyfunc.py",
    "serving/pyfunc_params.py",
)


def pip_requirements(packages: tuple[str, ...] = RUNTIME_PACKAGES) -> list[str]:
    """Pinned runtime requirements of the logged model; torch is never among them."""
    pins = []
    for name in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            pins.append(f"{name}=={importlib.metadata.version(name)}")
    return pins


def log_model(
    model_dir: Path, example_texts: list[str], example_pairs: list[str] | None, name: str = "model", step: int = 0
):
    """Log our saved model as a pyfunc logged model (signature, input example, code) at `step` (an epoch);
    returns MLflow's ModelInfo (`model_uri`, `model_id`)."""
    from bertcls.serving.predictor import Predictor, predictions_frame
    from bertcls.serving.pyfunc import MODEL_ARTIFACT

    # The signature declares outputs only: inputs are checked by name in our predict (bertcls.serving.inputs), so a
    # list of strings and a DataFrame with a `text` column both work and a wrong column is refused.
    columns = {"text": list(example_texts)}
    if example_pairs is not None:
        columns["text_pair"] = list(example_pairs)
    example = pd.DataFrame(columns)
    predictor = Predictor.from_dir(model_dir)
    if predictor.is_tagger:
        signature = tagger_signature(predictor.settings.tag_decoding)
    elif predictor.is_multilabel:
        signature = multilabel_signature(predictor.label_names)
    else:
        signature = infer_signature(  # params: what a request may set, `calibrated` for classifiers
            model_output=predictions_frame(predictor, predictor.predict(example_texts, example_pairs)),
            params=None if predictor.is_regression else {"calibrated": True},
        )
    package = Path(bertcls.__file__).resolve().parent
    with signals_deferred(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints to predict": we give a signature
        info = mlflow.pyfunc.log_model(
            name=name,
            step=step,
            python_model=str(package / "serving" / "pyfunc_model.py"),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            code_paths=[str(package)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )
    return info


def tagger_signature(tag_decoding: str = "viterbi"):
    """A word tagger's signature: outputs (entities, and with return_tags the words and tags) and its params
    (return_tags, tag_decoding: the model's own by default); inputs stay undeclared, as for classifiers (checked by
    name in bertcls.serving.inputs)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

    entity = Object(
        [
            Property("type", "string"),
            Property("text", "string"),
            Property("start", "long"),
            Property("end", "long"),
            Property("score", "double"),
        ]
    )
    outputs = Schema(
        [
            ColSpec(Array(entity), "entities"),
            ColSpec(Array("string"), "words", required=False),
            ColSpec(Array("string"), "tags", required=False),
        ]
    )
    params = ParamSchema(
        [ParamSpec("return_tags", "boolean", False), ParamSpec("tag_decoding", "string", tag_decoding)]
    )
    return ModelSignature(outputs=outputs, params=params)


def log_onnx_model(run_id: str, onnx_dir: Path, graph: str, example_texts: list[str]):
    """Log an ONNX export as an MLflow model served by ONNX Runtime (no JAX in its requirements or code) on the
    run `run_id`, whose status stays what it was; returns MLflow's ModelInfo."""
    import shutil

    from bertcls.serving.onnx_pyfunc import GRAPH_KEY, ONNX_ARTIFACT
    from bertcls.serving.onnx_runtime import OnnxPredictor

    predictor = OnnxPredictor(onnx_dir, graph)
    if predictor.is_multilabel:
        signature = multilabel_signature(predictor.label_names)
    else:
        outputs = predictor.frame(example_texts, [t[::-1] for t in example_texts] if predictor.has_text_pair else None)
        signature = infer_signature(
            model_output=outputs, params=None if predictor.is_regression else {"calibrated": True}
        )
    example = {
        "text": example_texts,
        **({"text_pair": [t[::-1] for t in example_texts]} if predictor.has_text_pair else {}),
    }
    package = Path(bertcls.__file__).resolve().parent
    client = mlflow.MlflowClient()
    status = client.get_run(run_id).info.status
    with staging_dir() as staging, signals_deferred(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints to predict": we give a signature
        for name in ONNX_SHIPPED:
            (staging / "bertcls" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(package / name, staging / "bertcls" / name)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="onnx_model",
                python_model=str(package / "serving" / "onnx_pyfunc_model.py"),
                artifacts={ONNX_ARTIFACT: str(onnx_dir)},
                code_paths=[str(staging / "bertcls")],
                model_config={GRAPH_KEY: graph},
                signature=signature,
                input_example=pd.DataFrame(example),
                pip_requirements=pip_requirements(ONNX_RUNTIME_PACKAGES),
            )
        client.set_terminated(run_id, status)  # start_run made it RUNNING again
    return info


def multilabel_signature(label_names: list[str]):
    """A multi-label classifier's signature: the label set and one probability per label; params `calibrated` and
    `threshold` (unset: each label's tuned threshold)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec(Array("string"), "labels"), *(ColSpec("double", f"prob_{n}") for n in label_names)])
    params = ParamSchema([ParamSpec("calibrated", "boolean", True), ParamSpec("threshold", "double", None)])
    return ModelSignature(outputs=outputs, params=params)


@contextlib.contextmanager
def staging_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bertcls-model-") as tmp:
        yield Path(tmp)


RESUME_DIR = "resume"  # the run's artifact folder of its latest resume checkpoint


RESUME_POINTER = f"{RESUME_DIR}/latest.json"


def _artifact_repository(run_id: str):
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(mlflow.MlflowClient().get_run(run_id).info.artifact_uri)


def sync_resume_checkpoint(run_id: str, local_dir: Path, previous: str | None) -> None:
    """Copy a complete checkpoint directory to the run's artifacts, point `resume/latest.json` at it, then delete
    the previous one (where the artifact store can delete). A signal waits until this is done."""
    client = mlflow.MlflowClient()
    with signals_deferred():
        client.log_artifacts(run_id, str(local_dir), f"{RESUME_DIR}/{local_dir.name}")
        client.log_dict(run_id, {"checkpoint": local_dir.name}, RESUME_POINTER)  # only names complete uploads
        if previous and previous != local_dir.name:
            delete_artifacts(run_id, f"{RESUME_DIR}/{previous}")


def delete_artifacts(run_id: str, path: str) -> None:
    """Delete a run's artifact folder; stores that cannot delete keep it (with a warning)."""
    try:
        _artifact_repository(run_id).delete_artifacts(path)
    except (MlflowException, NotImplementedError, OSError) as error:
        warnings.warn(f"could not delete artifact {path} of run {run_id}: {error}", stacklevel=2)


def latest_resume_checkpoint(run_id: str) -> str | None:
    """Name of the run's latest complete resume checkpoint, or None if it has none."""
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/{RESUME_POINTER}")["checkpoint"]
    except (MlflowException, OSError, KeyError):
        return None


def download_resume_checkpoint(run_id: str, name: str, destination: Path) -> Path:
    """The run's checkpoint `name` downloaded into `destination` (a fresh directory); returns its path."""
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=f"{RESUME_DIR}/{name}", dst_path=str(destination)
    )
    return Path(path)


def log_artifacts_to(run_id: str, directory: Path, artifact_path: str) -> None:
    """Add a directory to a run's artifacts (a finished run too: an export of its model)."""
    mlflow.MlflowClient().log_artifacts(run_id, str(directory), artifact_path)


def _run_artifact(uri: str) -> Path:
    """A model directory logged to an MLflow run (`runs:/<run_id>/encoder` from `pretrain`), downloaded once."""
    from bertcls.paths import cache_root

    run_id, _, path = uri[len("runs:/") :].partition("/")
    if not run_id or not path:
        raise ModelNotFoundError(f"{uri!r} is not a run artifact URI. Write it as runs:/<run_id>/encoder.")
    local = cache_root("artifacts", run_id) / path
    if (local / "config.json").is_file():
        return local
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(local.parent)))
    except Exception as err:  # noqa: BLE001 - unknown run, missing path, unreachable server: one message
        raise ModelNotFoundError(
            f"Cannot fetch model {uri!r} from the MLflow tracking store {mlflow.get_tracking_uri()} "
            f"({type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}). Check the run id (the pretrain run's "
            "encoder_uri tag, in the MLflow UI or `mlflow runs list --experiment-id <id>`) and that "
            "MLFLOW_TRACKING_URI points at the store that holds the run."
        ) from None
    if not (downloaded / "config.json").is_file():
        raise ModelNotFoundError(
            f"{uri} holds no config.json: it is not a model directory. A pretrain run logs its encoder under "
            "runs:/<run_id>/encoder."
        )
    return downloaded


def resolve_model(name: str) -> Path:
    """A model directory for `name`: a run's artifact (runs:/<id>/encoder) from the store, else `bertcls.hub`."""
    return _run_artifact(name) if name.startswith("runs:/") else resolve_named_model(name)


def delete_logged_model(model_id: str) -> None:
    """Mark a logged model deleted (a checkpoint beyond keep_checkpoints)."""
    mlflow.MlflowClient().delete_logged_model(model_id)
