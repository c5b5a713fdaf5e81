"""Composition root: each job wires config -> data -> model -> train -> tracking. Nothing imports it."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from bertcls.config import ModelConfig, TrainConfig
from bertcls.errors import ConfigError

log = logging.getLogger("bertcls")


@dataclasses.dataclass
class TrainOutcome:
    run_id: str
    model_uri: str
    best_epoch: int
    metrics: dict[str, float]
    wall_time_s: float


def _check_model_against_data(model_config: ModelConfig, config: TrainConfig) -> None:
    if config.data.max_seq_length > model_config.max_position_embeddings:
        raise ConfigError(
            f"max_seq_length {config.data.max_seq_length} exceeds the model's position limit "
            f"({model_config.max_position_embeddings} positions in {config.model}). Use max_seq_length <= "
            f"{model_config.max_position_embeddings}."
        )


def train(config: TrainConfig, experiment: str | None = "bertcls", run_name: str | None = None) -> TrainOutcome:
    """Fine-tune, evaluate each epoch, log everything and the best epoch's model to MLflow."""
    import jax

    from bertcls import tracking
    from bertcls.data import prepare_data
    from bertcls.data.batching import check_batch_size
    from bertcls.hub import resolve_model
    from bertcls.model.weights import load_hf_checkpoint, save_model
    from bertcls.tokenizer import load_tokenizer
    from bertcls.train.loop import fit, predict_split, steps_per_epoch
    from bertcls.train.optim import make_optimizer
    from bertcls.train.steps import Steps, make_data_mesh

    started = time.perf_counter()
    # Everything that can be wrong with the input is checked before a run exists.
    check_batch_size(config.batch_size, jax.device_count())
    check_batch_size(config.eval_batch_size, jax.device_count())
    model_dir = resolve_model(config.model)
    arch = ModelConfig.from_json_file(model_dir / "config.json", head=config.head, compute_dtype=config.compute_dtype)
    _check_model_against_data(arch, config)
    tokenizer = load_tokenizer(model_dir)
    data = prepare_data(config.data, tokenizer)
    model_config = dataclasses.replace(arch, num_labels=data.task.num_labels)
    model, report = load_hf_checkpoint(model_dir, model_config, seed=config.seed)
    mesh = make_data_mesh()
    total_steps = steps_per_epoch(len(data.splits["train"]), config.batch_size) * config.epochs
    steps = Steps(model, make_optimizer(config.optim, total_steps), mesh, data.task.is_regression, config.seed)

    with tracking.tracked_run(experiment, run_name) as run:
        tracking.log_params(
            {
                **config.flat_params(),
                "model_dir": str(model_dir),
                "params_initialized": " ".join(report.initialized) or "none",
            }
        )
        tracking.set_environment_tags()
        tracking.log_dataset_inputs(data)
        result = fit(steps, data, config, [tracking.MlflowCallback()], process_index=jax.process_index())

        steps.load_model_state(result.best_model_state)
        primary = data.task.primary_metric
        final = {"best_epoch": float(result.best_epoch)}
        final.update({f"best_val_{k}": v for k, v in result.best_validation.metrics.items()})
        if "test" in data.splits:
            test = predict_split(steps, data.splits["test"], data.task, config.eval_batch_size, data.buckets)
            final.update({f"test_{k}": v for k, v in test.metrics.items()})
            final["test_loss"] = test.loss
        tracking.mlflow.log_metrics(final)
        tracking.log_learning_curves(result.history, primary)
        if not data.task.is_regression:
            tracking.log_confusion_matrix(
                result.best_validation.labels, result.best_validation.outputs.argmax(-1), data.task.label_names, "val"
            )

        with tracking.staging_dir() as staging:
            model_path = staging / "model"
            save_model(
                steps.model(result.best_model_state),
                model_path,
                list(data.task.label_names),
                extra={
                    "max_seq_length": config.data.max_seq_length,
                    "buckets": list(data.buckets),
                    "has_text_pair": data.task.has_text_pair,
                    "task": data.task.name,
                    "primary_metric": primary,
                },
            )
            tokenizer.save_pretrained(str(model_path))
            examples = data.texts["validation"].select(range(min(3, len(data.texts["validation"]))))
            pairs = list(examples["text_pair"]) if data.task.has_text_pair else None
            model_uri = tracking.log_model(model_path, list(examples["text"]), pairs)
        run_id = run.info.run_id
    wall = time.perf_counter() - started
    log.info("run %s finished in %.1f s; best epoch %d", run_id, wall, result.best_epoch)
    return TrainOutcome(run_id, model_uri, result.best_epoch, final, wall)


def describe(outcome: TrainOutcome) -> str:
    """The lines printed at the end of `train`."""
    shown = {k: v for k, v in outcome.metrics.items() if k.startswith(("test_", "best_val_"))}
    lines = [f"run {outcome.run_id}: best epoch {outcome.best_epoch}, wall time {outcome.wall_time_s:.1f} s"]
    lines += [f"  {k} = {v:.4f}" for k, v in sorted(shown.items()) if np.isfinite(v)]
    lines.append(f"model: {outcome.model_uri}   (also runs:/{outcome.run_id}/model)")
    return "\n".join(lines)
