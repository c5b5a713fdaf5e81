"""Resume checkpoints: the device state (parameters, optimizer state with its step, base key) through Orbax,
and fit()'s host progress (epoch, batch, loss sums, history, best epoch) as JSON beside it.

A checkpoint is a directory: `state/` (Orbax) written first, then `progress.json`, whose presence marks the
checkpoint complete. `fingerprint` records what the state must match (parameter shapes, the data) so a
resume from another model or dataset is refused before anything runs. No mlflow here: `tracking` syncs
the directory to the run's artifacts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from bertcls.data.pipeline import PreparedData
from bertcls.errors import ResumeError
from bertcls.train.loop import FitProgress, SplitPredictions
from bertcls.train.steps import Trainer

PROGRESS_FILE = "progress.json"
FORMAT = 1


def checkpoint_name(progress: FitProgress) -> str:
    """`epoch-2-batch-0` after epoch 1; `epoch-2-batch-57` when stopped inside epoch 2."""
    return f"epoch-{progress.epoch}-batch-{progress.next_batch}"


def data_fingerprint(data: PreparedData) -> str:
    """A digest of the tokenized training split (tokens and labels) and the evaluation splits' sizes."""
    train = data.splits["train"]
    digest = hashlib.sha256()
    for array in (train.input_ids, train.lengths, train.labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps({name: len(split) for name, split in sorted(data.splits.items())}).encode())
    return digest.hexdigest()[:16]


def parameter_shapes(steps: Trainer) -> dict[str, list[int]]:
    """Every model variable's shape by its path ("encoder/layers/0/...": [384, 384])."""
    flat = nnx.to_flat_state(steps.model_state)
    return {"/".join(map(str, path)): list(variable.shape) for path, variable in flat}


def fingerprint(steps: Trainer, data: PreparedData, model: str, dataset: str) -> dict[str, Any]:
    return {"model": model, "dataset": dataset, "data": data_fingerprint(data), "shapes": parameter_shapes(steps)}


def _pure(tree) -> dict:
    return nnx.to_pure_dict(jax.tree.map(np.asarray, jax.device_get(tree)))


def save(directory: Path, steps: Trainer, progress: FitProgress, fingerprint: dict, extras: dict) -> Path:
    """Write a complete checkpoint of `steps`' device state and `progress` into `directory` (a new path)."""
    import orbax.checkpoint as ocp

    best_is_current = progress.best_epoch == progress.epoch - 1 and progress.next_batch == 0
    arrays = {
        "model": _pure(steps.model_state),
        "optimizer": _pure(steps.opt_state),
        "base_key": np.asarray(jax.device_get(steps.base_key)),
    }
    if progress.best_state is not None and not best_is_current:  # else the best is the current model
        arrays["best_model"] = nnx.to_pure_dict(progress.best_state)
    if progress.best_validation is not None:
        arrays["best_outputs"] = np.asarray(progress.best_validation.outputs)
        arrays["best_labels"] = np.asarray(progress.best_validation.labels)
        if progress.best_validation.word_counts is not None:  # tagging: the sentences of the words
            arrays["best_word_counts"] = np.asarray(progress.best_validation.word_counts)
    ocp.Checkpointer(ocp.StandardCheckpointHandler()).save(directory / "state", args=ocp.args.StandardSave(arrays))
    best = progress.best_validation
    record = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "progress": {
            **{
                f.name: getattr(progress, f.name)
                for f in dataclasses.fields(progress)
                if f.name not in ("best_state", "best_validation")
            },
            "best_is_current": best_is_current,
            "best_validation": None if best is None else {"loss": best.loss, "metrics": best.metrics},
        },
        "extras": extras,
    }
    (directory / PROGRESS_FILE).write_text(json.dumps(record, indent=1))  # last: marks the checkpoint complete
    return directory


def read_record(directory: Path) -> dict | None:
    """The checkpoint's progress record, or None when the directory holds no complete checkpoint."""
    path = directory / PROGRESS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_compatible(record: dict, expected: dict, source: str) -> None:
    """Refuse a checkpoint made for another model shape or another dataset, naming the difference."""
    saved = record["fingerprint"]
    if saved["shapes"] != expected["shapes"]:
        differing = sorted(
            k
            for k in set(saved["shapes"]) | set(expected["shapes"])
            if saved["shapes"].get(k) != expected["shapes"].get(k)
        )
        example = differing[0]
        raise ResumeError(
            f"The checkpoint of {source} was made for another model shape ({saved['model']}): "
            f"{len(differing)} parameters differ, e.g. {example} is {saved['shapes'].get(example)} there and "
            f"{expected['shapes'].get(example)} here ({expected['model']}). Resume with the run's own model and "
            "head, or start a new run."
        )
    if saved["data"] != expected["data"]:
        raise ResumeError(
            f"The checkpoint of {source} was trained on other data (dataset {saved['dataset']}, data digest "
            f"{saved['data']}; here {expected['dataset']}, {expected['data']}). Resume with the run's own dataset, "
            "files and data settings (unchanged files), or start a new run."
        )


def restore(directory: Path, steps: Trainer) -> tuple[FitProgress, dict]:
    """Load a checkpoint into `steps` (replicated over its mesh); returns fit()'s progress and the extras."""
    import orbax.checkpoint as ocp

    record = read_record(directory)
    saved = record["progress"]
    template = {
        "model": _pure(steps.model_state),
        "optimizer": _pure(steps.opt_state),
        "base_key": np.asarray(jax.device_get(steps.base_key)),
    }
    metadata = ocp.Checkpointer(ocp.StandardCheckpointHandler()).metadata(directory / "state")
    stored = set(metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata)
    if "best_model" in stored:
        template["best_model"] = template["model"]
    if "best_outputs" in stored:
        meta = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
        for name in ("best_outputs", "best_labels", "best_word_counts"):
            if name in meta:
                template[name] = np.zeros(meta[name].shape, meta[name].dtype)
    arrays = ocp.Checkpointer(ocp.StandardCheckpointHandler()).restore(
        directory / "state", args=ocp.args.StandardRestore(template)
    )
    replicated = NamedSharding(steps.mesh, PartitionSpec())
    model_state, opt_state = steps.host_model_state(), jax.tree.map(np.asarray, jax.device_get(steps.opt_state))
    nnx.replace_by_pure_dict(model_state, arrays["model"])
    nnx.replace_by_pure_dict(opt_state, arrays["optimizer"])
    steps.model_state = jax.device_put(model_state, replicated)
    steps.opt_state = jax.device_put(opt_state, replicated)
    steps.base_key = jax.device_put(arrays["base_key"], replicated)

    best_state = None
    if saved["best_epoch"]:
        best_state = steps.host_model_state()  # the current model when the best is the last finished epoch
        if not saved["best_is_current"]:
            nnx.replace_by_pure_dict(best_state, arrays["best_model"])
    best = saved["best_validation"]
    best_validation = (
        None
        if best is None
        else SplitPredictions(
            arrays["best_outputs"], arrays["best_labels"], best["loss"], best["metrics"], arrays.get("best_word_counts")
        )
    )
    fields = {f.name for f in dataclasses.fields(FitProgress)} - {"best_state", "best_validation"}
    restored = {k: saved[k] for k in fields if k in saved}  # a field newer than the checkpoint keeps its default
    progress = FitProgress(**restored, best_state=best_state, best_validation=best_validation)
    return progress, record["extras"]
