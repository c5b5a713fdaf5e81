"""The distill job: a smaller student trained on a teacher's soft labels, logged as a train run with the teacher
beside it.

The student is `student_layers` of the teacher's own layers (written once as a Hugging Face checkpoint in the
cache, so training starts from it like from any checkpoint) or a smaller checkpoint with the teacher's
tokenizer. Training is the train job's, with the teacher's logits on every row (`bertcls.train.distillation`);
the run is a train run (register treats it as any candidate) tagged with its teacher, and after it the run gets
the teacher's test metrics on the run's own test texts (beside the run's `test_*`), both parameter counts, and
both models' texts/s on those texts.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from bertcls.config import DEFAULT_EXPERIMENT, DistillConfig, TrainConfig
from bertcls.data import prepare_data
from bertcls.errors import ConfigError, DataError
from bertcls.evaluation.metrics import compute_metrics
from bertcls.export.huggingface import TOKENIZER_FILES, hf_config, hf_state_dict
from bertcls.jobs import train as train_job
from bertcls.model.weights import load_model, written_atomically
from bertcls.paths import cache_root
from bertcls.serving.predictor import Predictor
from bertcls.serving.tables import read_chunks, table_format
from bertcls.tracking import runs
from bertcls.tracking.artifacts import resolve_model
from bertcls.tracking.registry import ModelRef, resolve_model_uri, run_train_config
from bertcls.train.distillation import Teacher, kept_layers, student_from_teacher

COMPARED = ("accuracy", "mcc", "macro_f1")  # test metrics logged side by side as teacher_test_* / test_*


@dataclasses.dataclass
class DistillOutcome:
    train: train_job.TrainOutcome
    comparison: dict[str, float]


def distill(
    distill_config: DistillConfig,
    config: TrainConfig,
    experiment: str | None = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    system_metrics: bool = False,
) -> DistillOutcome:
    """Distil the teacher into the student; every refusal comes before the run exists."""
    ref = resolve_model_uri(distill_config.teacher)
    teacher = Predictor.from_dir(ref.local_dir, config.eval_batch_size)
    if teacher.is_regression or teacher.is_multilabel or teacher.is_tagger:
        raise ConfigError(
            f"distill trains single-label text classifiers; the teacher {distill_config.teacher} is not one. Pass a "
            "classifier's model URI as teacher."
        )
    if distill_config.student_layers:
        student_dir = _student_checkpoint(ref, distill_config.student_layers)
        # the teacher's head, so the student starts with all of it
        config = dataclasses.replace(
            config, head=teacher.model_config.head, head_batchnorm=teacher.model_config.head_batchnorm
        )
    else:
        student_dir = resolve_model(distill_config.student)
        _check_same_tokenizer(teacher, student_dir, distill_config.student)
    config = dataclasses.replace(config, model=str(student_dir))
    extra = _unlabeled_texts(distill_config.unlabeled_file, config.data.text_column or "text")
    soft = Teacher(
        tuple(teacher.label_names),
        teacher.forward_batch,
        distill_config.alpha,
        distill_config.temperature,
        config.eval_batch_size,
        extra,
    )
    tags = {
        "distilled_from": distill_config.teacher,
        "teacher_run_id": ref.source_run_id or "",
        "teacher_model_name": ref.name or "",
        "teacher_model_version": ref.version or "",
    }
    outcome = train_job.train(config, experiment, run_name, system_metrics, tags=tags, teacher=soft)
    runs.log_params_to(
        outcome.run_id,
        {
            "teacher": distill_config.teacher,
            "student_layers": distill_config.student_layers or "",
            "student": distill_config.student or "",
            "distill_alpha": distill_config.alpha,
            "distill_temperature": distill_config.temperature,
            "unlabeled_texts": len(extra),
        },
    )
    comparison = _side_by_side(teacher, outcome)
    runs.log_metrics_to(outcome.run_id, comparison)
    return DistillOutcome(outcome, comparison)


def _student_checkpoint(ref: ModelRef, layers: int) -> Path:
    """The teacher cut to `layers` layers as a Hugging Face checkpoint in the cache (written once per teacher)."""
    teacher_model, meta = load_model(ref.local_dir)
    kept = kept_layers(teacher_model.config.num_layers, layers)
    key = (ref.source_run_id or ref.uri.replace("/", "_").replace(":", "_")) + f"-{layers}"
    directory = cache_root("students", key)
    if (directory / "model.safetensors").is_file():
        return directory
    student = student_from_teacher(teacher_model, layers)
    with written_atomically(directory) as staging:
        config = hf_config(student.config, meta.get("label_names"))
        config["bertcls_student_of"] = {"teacher": ref.uri, "teacher_layers": kept}
        (staging / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        save_file(
            hf_state_dict(student, mapped_only=True), str(staging / "model.safetensors"), metadata={"format": "pt"}
        )
        for name in TOKENIZER_FILES:
            if (ref.local_dir / name).is_file():
                shutil.copy(ref.local_dir / name, staging / name)
    return directory


def _check_same_tokenizer(teacher: Predictor, student_dir, name: str) -> None:
    """The student must read text as the teacher does: the same vocabulary, id for id."""
    from bertcls.model.tokenizer import load_tokenizer

    if load_tokenizer(student_dir).get_vocab() != teacher.tokenizer.get_vocab():
        raise ConfigError(
            f"The student {name} has another vocabulary than the teacher: the teacher's logits on a row would not "
            "be about the text the student reads. Pick a student with the teacher's tokenizer, or use "
            "student_layers=N (a copy of the teacher with fewer layers)."
        )


def _unlabeled_texts(path: str | None, column: str) -> list[str]:
    """The extra texts of `unlabeled_file` (its text column), or none."""
    if not path:
        return []
    source = Path(path)
    fmt = table_format(source, "unlabeled")
    if not source.is_file():
        raise DataError(f"unlabeled_file {path!r} does not exist. Check the path.")
    texts: list[str] = []
    for chunk in read_chunks(source, fmt, 65536):
        if column not in chunk.columns:
            raise DataError(
                f"unlabeled_file {path!r} has no column {column!r} (its columns: "
                f"{', '.join(map(str, chunk.columns))}). Name the text column with text_column."
            )
        texts += [t for t in chunk[column].tolist() if isinstance(t, str) and t.strip()]
    return texts


def _timed_predictions(predictor: Predictor, texts: list[str], pairs: list[str] | None) -> tuple[np.ndarray, float]:
    """The logits of a second pass over `texts` (the first compiles) and that pass's texts per second."""
    predictor.predict(texts, pairs)
    start = time.perf_counter()
    outputs = predictor.predict(texts, pairs)
    return outputs, len(texts) / (time.perf_counter() - start)


def _side_by_side(teacher: Predictor, outcome) -> dict[str, float]:
    """Teacher and student on the same texts, the student run's test split (validation without one): the
    teacher's metrics beside the run's own, both parameter counts, both texts/s."""
    student = Predictor.from_dir(resolve_model_uri(f"runs:/{outcome.run_id}/model").local_dir, teacher.batch_size)
    data = prepare_data(run_train_config(outcome.run_id).data, student.tokenizer)
    split = "test" if "test" in data.splits else "validation"
    rows = data.texts[split]
    texts = list(rows["text"])
    pairs = list(rows["text_pair"]) if "text_pair" in rows.column_names and teacher.has_text_pair else None
    labels = data.splits[split].text_labels()
    teacher_outputs, teacher_speed = _timed_predictions(teacher, texts, pairs)
    _, student_speed = _timed_predictions(student, texts, pairs)
    scores = compute_metrics(data.task, teacher_outputs, labels, np.ones(len(labels)))
    found = {f"teacher_{split}_{name}": scores[name] for name in COMPARED if name in scores}
    found |= {"teacher_params": teacher.parameter_count, "student_params": student.parameter_count}
    found |= {"teacher_texts_per_s": teacher_speed, "student_texts_per_s": student_speed}
    found["student_speedup"] = student_speed / teacher_speed
    return found


def describe(outcome: DistillOutcome) -> str:
    c, metrics = outcome.comparison, outcome.train.metrics
    lines = [train_job.describe(outcome.train), "teacher vs student:"]
    for name in COMPARED:
        if f"teacher_test_{name}" in c and f"test_{name}" in metrics:
            lines.append(f"  test_{name}: {c[f'teacher_test_{name}']:.4f} -> {metrics[f'test_{name}']:.4f}")
    lines.append(f"  parameters: {c['teacher_params']:,.0f} -> {c['student_params']:,.0f}")
    lines.append(
        f"  texts/s: {c['teacher_texts_per_s']:.0f} -> {c['student_texts_per_s']:.0f} ({c['student_speedup']:.2f} x)"
    )
    return "\n".join(lines)
