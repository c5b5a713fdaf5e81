"""The fine-tuning's configs (data, optimizer, training, run options): frozen dataclasses, the single source
of truth for every setting of `train`, which `sweep`, `pretrain` and `evaluate` reuse (`bertcls.config.jobs`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bertcls.config.fields import flatten, option
from bertcls.errors import ConfigError, setting
from bertcls.model.config import HEADS

FINETUNE_STRATEGIES = ("full", "partial", "head")  # see train/strategy.py
CHECKPOINT_MODES = ("none", "best", "all")
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # train `precision` -> the model's compute dtype
AUTO_PRECISION = "auto"  # bf16 on accelerators (GPU, TPU), fp32 on CPU: resolved when the model is built
LONG_TEXT_MODES = ("truncate", "windows")
TAG_DECODINGS = ("viterbi", "argmax")  # task=ner: how per-word logits become tags (data.tags.decode_tags)
TASK_TYPES = ("auto", "text", "multilabel", "ner")  # auto: decided from the data (data.pipeline, data.multilabel)
DEFAULT_EXPERIMENT = "bertcls"  # train, make train, evaluate and register meet here
SPLITS = ("train", "validation", "test")
NO_WEIGHTS, BALANCED = "none", "balanced"  # class_weights besides a list of numbers


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, which columns, how to split and tokenize it."""

    dataset: str = option(
        "sms_spam",
        "bundled name (sms_spam, bbc_news, btc, goemotions), glue/<task>, or a Hugging Face hub dataset id",
        docs="([data.md](data.md)); ignored when `train_file` is given",
    )
    dataset_config: str | None = option(None, "hub dataset configuration name")
    task: str = option(
        "auto",
        "text: one label (or score) per text; multilabel: a set of labels per text (sigmoid outputs); ner: one tag "
        "per word (named entities, or any word tagging); auto: ner when the data holds lists of words and tags "
        "(CoNLL files, tokens / ner_tags columns), multilabel when the label column holds lists or label_delimiter "
        "/ label_columns is set, else text",
        choices=TASK_TYPES,
        docs="([multi-label.md](multi-label.md), [token-classification.md](token-classification.md))",
    )
    label_all_tokens: bool = option(
        False,
        "task=ner: every subword of a word carries its tag in the loss (B- becomes I- after the first); false: "
        "the first subword only. Predictions always read the first subword",
    )
    tag_decoding: str = option(
        "viterbi",
        "task=ner: viterbi: the most probable tag sequence the data's scheme allows (IOB2, IOBES: no I-X after O "
        "or after another type), for validation, test, evaluate and serving; argmax: each word's most probable tag "
        "(what transformers' pipeline answers)",
        choices=TAG_DECODINGS,
        reading=True,
        docs="([token-classification.md](token-classification.md#decoding))",
    )
    train_file: str | None = option(
        None,
        "local CSV/TSV/JSON/JSONL/Parquet training file",
        path=True,
        docs="(MLproject `path`: a relative path resolves from where you run `mlflow run`; a remote URI is "
        "downloaded first)",
    )
    validation_file: str | None = option(None, "validation file (same format as train_file)", path=True)
    test_file: str | None = option(None, "test file (same format as train_file)", path=True)
    text_column: str | None = option(
        None, "text column (default `text`; a digit for headerless TSV/CSV; task=ner: the word lists, default `tokens`)"
    )
    text_pair_column: str | None = option(None, "second text column, for sentence-pair tasks")
    label_column: str | None = option(
        None,
        "label column (default `label`; numbers that are not whole: regression; task=ner: the tag lists, default "
        "`tags` or `ner_tags`)",
    )
    label_delimiter: str | None = option(
        None,
        "multi-label: the label column holds delimited strings, e.g. `,` for `sports,politics` (an empty cell is "
        "the empty set)",
    )
    label_columns: str | None = option(
        None,
        "multi-label: one 0/1 column per label, named in label order, separated by spaces or commas (e.g. "
        "`toxic insult threat`); replaces label_column",
    )
    max_seq_length: int = option(128, "tokens per row; must not exceed the model's position limit", reading=True)
    split_seed: int = option(42, "seed of the 80/10/10 split for sources without validation/test")
    max_train_samples: int | None = option(None, "train on the first N examples only", unset_is_zero=True)
    max_eval_samples: int | None = option(None, "validate / test on the first N examples only", unset_is_zero=True)
    calibration_fraction: float = option(
        0.0,
        "share of the training split (after max_train_samples) held out, stratified by split_seed, as a "
        "calibration split: the temperature "
        "(multi-label: temperatures and thresholds) is fitted there instead of on the validation split, which "
        "also chose the best epoch; 0 = fit on validation",
        docs="([calibration.md](calibration.md#a-calibration-split))",
    )
    max_buckets: int = option(12, "distinct padded lengths (compiled shapes), fitted to the training lengths")
    bucket_multiple: int = option(4, "padded lengths are multiples of this")
    long_text: str = option(
        "truncate",
        "texts over max_seq_length: keep the first window, or read all as overlapping windows "
        "(trained on as examples; predictions average the windows' logits)",
        choices=LONG_TEXT_MODES,
        reading=True,
        docs="([data.md](data.md#long-texts-truncate-or-windows))",
    )
    window_overlap: int = option(64, "tokens shared by consecutive windows", reading=True)
    max_windows: int = option(8, "windows kept per text (the first ones)", reading=True)
    max_dropped_fraction: float = option(
        0.05,
        "largest share of a split's rows that may be dropped for an empty text or a missing label",
        docs="(more is an error before the run starts: [data.md](data.md#splits-reproducible-anywhere))",
    )

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be at least 8 tokens, got {self.max_seq_length}.")
        if self.max_buckets < 1 or self.bucket_multiple < 1:
            raise ConfigError("max_buckets and bucket_multiple must be at least 1.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive number of examples (or unset), got {value}.")
        if not 0.0 <= self.calibration_fraction <= 0.5:
            raise ConfigError(
                f"calibration_fraction is the share of the training split held out to fit the temperature on, "
                f"between 0 (fit on the validation split) and 0.5; got {self.calibration_fraction:g}. Use e.g. "
                f"{setting('calibration_fraction', 0.1)}."
            )
        if self.long_text not in LONG_TEXT_MODES:
            raise ConfigError(
                f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {self.long_text!r}. Use 'windows' to "
                "read whole long texts as overlapping windows, 'truncate' to keep only the first max_seq_length tokens."
            )
        if self.task not in TASK_TYPES:
            raise ConfigError(
                f"task must be one of {', '.join(TASK_TYPES)}, got {self.task!r}: text classifies whole texts, ner "
                "tags every word, auto decides from the data."
            )
        if self.tag_decoding not in TAG_DECODINGS:
            raise ConfigError(
                f"tag_decoding must be one of {', '.join(TAG_DECODINGS)}, got {self.tag_decoding!r}: viterbi decodes "
                "the most probable tag sequence the tag scheme allows, argmax each word's most probable tag."
            )
        if self.tag_decoding != "viterbi" and self.task in ("text", "multilabel"):
            raise ConfigError(
                f"tag_decoding applies to word tagging (task=ner), not to task={self.task}. Drop it, or use "
                f"{setting('task', 'ner')}."
            )
        if self.label_all_tokens and self.task == "text":
            raise ConfigError(
                f"label_all_tokens applies to word tagging (task=ner), not to task=text. Drop it, or use "
                f"{setting('task', 'ner')}."
            )
        if self.label_columns is not None and (self.label_column or self.label_delimiter):
            raise ConfigError(
                "label_columns names one 0/1 column per label, so label_column and label_delimiter do not apply. "
                "Drop them, or drop label_columns to read one column of label lists."
            )
        if (self.label_columns is not None or self.label_delimiter) and self.task in ("text", "ner"):
            raise ConfigError(
                f"label_delimiter and label_columns describe multi-label data, but task={self.task}. Use "
                f"{setting('task', 'multilabel')} (or auto), or drop them."
            )
        if self.label_delimiter == "" or (self.label_columns is not None and not self.label_columns.strip()):
            raise ConfigError(
                "label_delimiter and label_columns must not be empty: give the delimiter (e.g. ,) or the label "
                "columns (e.g. toxic insult threat), or leave them unset."
            )
        if self.max_windows < 1:
            raise ConfigError(f"max_windows must be at least 1, got {self.max_windows}.")
        if not 0 <= self.max_dropped_fraction < 1:
            raise ConfigError(
                f"max_dropped_fraction must be in [0, 1), got {self.max_dropped_fraction}: the share of a split's "
                "rows that may be dropped for a missing text or label. Try 0.05."
            )
        if self.windowed and not 0 <= self.window_overlap <= self.max_seq_length // 2:
            raise ConfigError(
                f"window_overlap must be between 0 and half of max_seq_length ({self.max_seq_length // 2}), "
                f"got {self.window_overlap}. Try {self.max_seq_length // 4}."
            )

    @property
    def windowed(self) -> bool:
        return self.long_text == "windows"


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with decoupled weight decay, linear warmup then linear decay to zero, global-norm clipping."""

    lr: float = option(1e-4, "peak learning rate")
    weight_decay: float = option(0.01, "AdamW decoupled weight decay, on matrices only (not biases or LayerNorm)")
    warmup_ratio: float = option(0.1, "share of the steps with linear warmup, then linear decay to 0")
    max_grad_norm: float = option(1.0, "global-norm gradient clipping; 0 disables it")
    adam_b1: float = option(0.9, "AdamW beta1")
    adam_b2: float = option(0.999, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    llrd: float = option(
        1.0,
        "layer-wise learning-rate decay: the head trains at lr, each layer below at llrd times the one above "
        "(embeddings lowest); 1.0 = off",
    )

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"lr must be a positive learning rate, got {self.lr}. Try {setting('lr', '2e-5')}.")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}. Try 0.1.")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}.")
        if not 0 < self.llrd <= 1:
            raise ConfigError(
                f"llrd must be in (0, 1], got {self.llrd}. 1.0 turns layer-wise decay off; 0.8-0.95 is usual."
            )


def parse_weights(spec: str) -> tuple[float, ...] | str:
    """'none', 'balanced', or the numbers of a list ('1 5', '1,5', '[1, 5]'); a ConfigError for anything else."""
    text = spec.strip()
    if text in (NO_WEIGHTS, BALANCED):
        return text
    parts = text.strip("[]").replace(",", " ").split()
    try:
        weights = tuple(float(p) for p in parts)
    except ValueError:
        weights = ()
    if not weights:
        raise ConfigError(
            f"class_weights must be none, balanced, or one number per class in label order (e.g. "
            f"{setting('class_weights', '1,5')}), got {spec!r}."
        )
    if any(not math.isfinite(w) or w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise ConfigError(
            f"class_weights must be finite numbers >= 0 with at least one above 0, got {spec!r}. A weight scales "
            "the loss of that class's examples: 1 is the usual, 0 ignores the class."
        )
    return weights


def default_precision() -> str:
    """What `precision=auto` means on this machine: bf16 (over f32 master weights) on an accelerator; fp32 on CPU,
    where bf16 pays only on CPUs with bf16 units (ask for it with precision=bf16)."""
    import jax  # only when the model is built: after jax.distributed.initialize, which must come first

    return "fp32" if jax.default_backend() == "cpu" else "bf16"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; `flat_params()` is what MLflow records."""

    model: str = option(
        "sentence-transformers/all-MiniLM-L6-v2",
        "local directory or Hugging Face hub id of a BERT-family checkpoint, "
        "or runs:/<run_id>/encoder (an encoder adapted by `pretrain`)",
        docs="([model.md](model.md)); under `mlflow run` give a local dir as an absolute path (this parameter "
        "also takes hub ids, so MLflow cannot resolve it as a path)",
    )
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    head: str = option(
        "mean",
        "linear: pooler on [CLS]; mean: masked mean of token states; mlp: 2-layer MLP on [CLS]",
        choices=HEADS,
        docs="([model.md](model.md#heads): which head suits which checkpoint)",
    )
    precision: str = option(
        AUTO_PRECISION,
        "auto: bf16 on a GPU or TPU, fp32 on CPU; fp32; or bf16: bfloat16 matmuls (accumulating in float32) and "
        "activations; parameters, optimizer state and loss stay float32",
        choices=(AUTO_PRECISION, *PRECISION_DTYPES),
        docs="(replaces `compute_dtype`: float32 = fp32, bfloat16 = bf16; the logged model's `compute_dtype` says "
        "what auto chose)",
    )
    head_batchnorm: bool = option(
        False,
        "head=mlp: batch norm instead of layer norm after each hidden dense layer (batch statistics in "
        "training, running statistics in prediction)",
    )
    finetune: str = option(
        "full",
        "full: train every parameter; partial: freeze the embeddings and the first freeze_layers layers; "
        "head: freeze the whole encoder",
        choices=FINETUNE_STRATEGIES,
        docs="(frozen parameters get no gradient and no optimizer state)",
    )
    freeze_layers: int = option(0, "encoder layers frozen (with the embeddings) under finetune=partial")
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    epochs: int = option(3, "passes over the training split (the run keeps the best epoch by the validation metric)")
    batch_size: int = option(32, "global batch, split over all devices (must divide by the device count)")
    grad_accum_steps: int = option(
        1, "batches whose gradients are summed into one optimizer step (effective batch = batch_size x this)"
    )
    eval_batch_size: int = option(64, "global batch for validation and test")
    class_weights: str = option(
        "none",
        "scale each training example's loss by its class's weight: none; balanced (N / (classes x class count), "
        "from the training split); or one number per class in label order, e.g. 1,5",
        docs="([training.md](training.md#imbalanced-classes-class-weights))",
    )
    focal_gamma: float = option(
        0.0,
        "focal loss: scale each example's loss by (1 - p)^gamma, p the probability of its true class (per label "
        "for multi-label), so confidently right examples weigh less; 0 = plain cross-entropy, 2 is the usual value",
        docs="([training.md](training.md#focal-loss))",
    )
    calibrate: bool = option(
        True,
        "fit a temperature on the validation split after training, so the model's probabilities are calibrated "
        "(the served model applies it; the raw ones with the param calibrated=false)",
        docs="([calibration.md](calibration.md))",
    )
    seed: int = option(42, "init of new layers, dropout, batch order")
    early_stopping_patience: int = option(
        0, "stop after this many epochs without improvement of the validation metric; 0 = never"
    )
    log_checkpoints: str = option(
        "best",
        "none: the final model only; best: the final model is the best epoch's checkpoint (step = that "
        "epoch, its validation and test metrics linked to it); all: every epoch's model too, each linked to that "
        "epoch's validation metrics",
        choices=CHECKPOINT_MODES,
    )
    keep_checkpoints: int = option(
        0,
        "with log_checkpoints=all: keep at most this many epoch checkpoints besides the best (older ones are "
        "deleted); 0 = keep all",
    )

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}.")
        if self.head not in HEADS:
            raise ConfigError(f"Unknown head {self.head!r}; choose one of {', '.join(HEADS)}.")
        if self.precision != AUTO_PRECISION and self.precision not in PRECISION_DTYPES:
            choices = ", ".join((AUTO_PRECISION, *PRECISION_DTYPES))
            raise ConfigError(f"Unknown precision {self.precision!r}; choose one of {choices}.")
        if self.early_stopping_patience < 0:
            raise ConfigError("early_stopping_patience must be >= 0 (0 disables early stopping).")
        if self.log_checkpoints not in CHECKPOINT_MODES:
            raise ConfigError(
                f"Unknown log_checkpoints {self.log_checkpoints!r}; choose one of {', '.join(CHECKPOINT_MODES)}."
            )
        if self.keep_checkpoints < 0:
            raise ConfigError(f"keep_checkpoints must be >= 0 (0 keeps all), got {self.keep_checkpoints}.")
        if self.head_batchnorm and self.head != "mlp":
            raise ConfigError(
                f"head_batchnorm applies to head=mlp only, got head={self.head}. Add {setting('head', 'mlp')}."
            )
        if self.head_batchnorm and self.grad_accum_steps > 1:
            raise ConfigError(
                "head_batchnorm with grad_accum_steps > 1 is not supported: batch statistics would be those of one "
                "micro-batch. Use grad_accum_steps=1 with a larger batch_size, or head_batchnorm=false."
            )
        parse_weights(self.class_weights)  # the syntax now; the count of classes once the data is read
        if not math.isfinite(self.focal_gamma) or self.focal_gamma < 0:
            raise ConfigError(
                f"focal_gamma must be a finite number >= 0 (0 = plain cross-entropy, 2 is the usual focal loss), "
                f"got {self.focal_gamma}."
            )
        if self.grad_accum_steps < 1:
            raise ConfigError(
                f"grad_accum_steps must be at least 1 (1 = no accumulation), got {self.grad_accum_steps}. "
                "The optimizer steps once per batch_size x grad_accum_steps examples."
            )
        if self.finetune not in FINETUNE_STRATEGIES:
            raise ConfigError(f"Unknown finetune {self.finetune!r}; choose one of {', '.join(FINETUNE_STRATEGIES)}.")
        if self.freeze_layers < 0:
            raise ConfigError(f"freeze_layers must be >= 0, got {self.freeze_layers}.")
        if self.freeze_layers and self.finetune != "partial":
            raise ConfigError(
                f"freeze_layers={self.freeze_layers} applies only to finetune=partial (got finetune={self.finetune}). "
                f"Add {setting('finetune', 'partial')}, or leave freeze_layers at 0."
            )

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step."""
        return self.batch_size * self.grad_accum_steps

    def flat_params(self) -> dict[str, Any]:
        """One flat dict; keys match the MLproject parameter names so `mlflow run`'s own params line up."""
        return flatten(self)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where a `bertcls train` run is logged (`mlflow run` chooses these itself: --experiment-name)."""

    experiment: str = option(
        DEFAULT_EXPERIMENT, "MLflow experiment (under `mlflow run`: --experiment-name)", mlproject=False
    )
    run_name: str | None = option(None, "MLflow run name", mlproject=False)
    system_metrics: bool = option(
        True,
        "log CPU and memory use (GPU too, where MLflow's NVIDIA support is installed) every 10 s as the "
        "run's system/* metrics",
    )
    resume_run_id: str | None = option(
        None,
        "continue this KILLED or FAILED train run from its last checkpoint: same run id, its own parameters "
        "(see docs/training.md#resume)",
    )
    coordinator: str | None = option(
        None,
        "multi-process run: host:port of process 0's coordinator (docs/scaling.md); unset: a detected cluster "
        "(TPU pod, SLURM, Open MPI) or one process",
        mlproject=False,
    )
    num_processes: int = option(0, "multi-process run: how many processes (with coordinator)", mlproject=False)
    process_id: int = option(0, "multi-process run: this process's index, 0 logs to MLflow", mlproject=False)
