"""Knowledge distillation into a smaller student: its initial weights and the teacher's soft targets (no mlflow).

`student_from_teacher` keeps every k-th encoder layer of the teacher (DistilBERT's initialisation) with its
embeddings, pooler and head. `Teacher.apply` gives every training row the teacher's logits (`soft_targets`, the
KL term of the loss in `train.steps`) and appends extra unlabelled texts labelled by the teacher's argmax. The
student reads text with the teacher's tokenizer, so one row means the same to both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from bertcls.data import PreparedData
from bertcls.data.batching import TokenizedSplit
from bertcls.data.tokenize import encode_texts, padded_matrix
from bertcls.errors import ConfigError
from bertcls.model.bert import BertClassifier
from bertcls.model.weights import flat_params, model_from_params
from bertcls.train.inference import infer_row_outputs


def kept_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Which teacher layers a student of `student_layers` starts from: evenly spaced, the last one included
    (6 of 12: 1, 3, 5, 7, 9, 11; 3 of 6: 1, 3, 5)."""
    if not 1 <= student_layers <= teacher_layers:
        raise ConfigError(
            f"student_layers must be between 1 and the teacher's {teacher_layers} layers, got {student_layers}."
        )
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def student_from_teacher(teacher: BertClassifier, student_layers: int) -> BertClassifier:
    """A copy of the teacher with `student_layers` of its encoder layers (`kept_layers`), everything else equal."""
    config = dataclasses.replace(teacher.config, num_layers=student_layers)
    values = flat_params(teacher)
    prefix = "encoder.layers."
    student = {path: array for path, array in values.items() if not path.startswith(prefix)}
    for new, old in enumerate(kept_layers(teacher.config.num_layers, student_layers)):
        for path, array in values.items():
            if path.startswith(f"{prefix}{old}."):
                student[f"{prefix}{new}.{path[len(f'{prefix}{old}.') :]}"] = array
    return model_from_params(config, student)


@dataclasses.dataclass(frozen=True)
class Teacher:
    """What a distillation needs from its teacher: its labels, a forward pass (a collated batch -> logits
    [B, C]), the loss's weight and temperature, and optional extra texts for it to label."""

    label_names: tuple[str, ...]
    forward: Callable[[dict[str, np.ndarray]], np.ndarray]
    alpha: float = 0.5
    temperature: float = 2.0
    batch_size: int = 64
    extra_texts: Sequence[str] = ()

    def apply(self, data: PreparedData, tokenizer, max_seq_length: int) -> PreparedData:
        """The data with the teacher's logits on every training row (and the extra texts as rows labelled by the
        teacher's argmax); a ConfigError for a task the teacher did not learn."""
        task = data.task
        if task.is_regression or task.multi_label or task.token_level:
            raise ConfigError(
                f"distill trains single-label text classifiers; {task.name} is a {task.kind} task. Distil a "
                "classifier, or train this task with `train`."
            )
        if tuple(task.label_names) != tuple(self.label_names):
            raise ConfigError(
                f"The teacher's labels ({', '.join(self.label_names)}) are not the data's "
                f"({', '.join(task.label_names)}). Distil on the data the teacher was trained for."
            )
        train = data.splits["train"]
        if self.extra_texts:
            if train.documents is not None:
                raise ConfigError(
                    "unlabeled_file with long_text=windows is not supported: the teacher labels whole texts. Use "
                    "long_text=truncate, or drop unlabeled_file."
                )
            train = _with_texts(train, tokenizer, list(self.extra_texts), max_seq_length)
        targets = infer_row_outputs(train, self.forward, self.batch_size, data.buckets, len(self.label_names))
        if self.extra_texts:  # the appended rows learn the teacher's answer as their label
            labels = train.labels.copy()
            labels[-len(self.extra_texts) :] = targets[-len(self.extra_texts) :].argmax(axis=-1)
            train = dataclasses.replace(train, labels=labels)
        splits = {**data.splits, "train": dataclasses.replace(train, soft_targets=targets)}  # [N, C]
        return dataclasses.replace(data, splits=splits)


def _with_texts(split: TokenizedSplit, tokenizer, texts: list[str], max_seq_length: int) -> TokenizedSplit:
    """The split with `texts` appended as rows (label 0 until the teacher labels them; weight 1)."""
    encoded = encode_texts(tokenizer, texts, None, max_seq_length)
    width = split.input_ids.shape[1]
    extra = len(encoded["length"])
    weights = split.weights if split.weights is not None else np.ones(len(split), np.float32)
    return dataclasses.replace(
        split,
        input_ids=np.concatenate([split.input_ids, padded_matrix(encoded["input_ids"], width)]),
        token_type_ids=np.concatenate([split.token_type_ids, padded_matrix(encoded["token_type_ids"], width)]),
        lengths=np.concatenate([split.lengths, np.asarray(encoded["length"], np.int32)]),
        labels=np.concatenate([split.labels, np.zeros(extra, split.labels.dtype)]),
        weights=np.concatenate([weights, np.ones(extra, np.float32)]),
    )
