"""The job configs: frozen dataclasses, the single source of truth for every setting of every job, and which
parameters each job takes (`job_params`: the click options, MLproject and the docs tables come from it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bertcls.config.fields import Param, flatten, option, params_of
from bertcls.errors import ConfigError, setting

HEADS = ("linear", "mean", "mlp")
COMPUTE_DTYPES = ("float32", "bfloat16")
FINETUNE_STRATEGIES = ("full", "partial", "head")  # see train/strategy.py
CHECKPOINT_MODES = ("none", "best", "all")
PRECISION_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # train `precision` -> the model's compute dtype
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
SUPPORTED_MODEL_TYPES = ("bert", "distilbert")
# The head of Hugging Face's *ForSequenceClassification classes: what a checkpoint's own architecture has,
# so a converted checkpoint matches its reference. The training default is TrainConfig.head.
HF_ARCHITECTURE_HEAD = "linear"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture (read from a Hugging Face config.json) plus our classification head settings."""

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0 for DistilBERT (no token types)
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    classifier_dropout: float = 0.1
    pad_token_id: int = 0
    use_pooler: bool = True  # BERT: dense+tanh on [CLS]; DistilBERT: pre_classifier dense+relu
    head: str = HF_ARCHITECTURE_HEAD
    num_labels: int = 2  # 1 = regression
    compute_dtype: str = "float32"
    head_batchnorm: bool = False  # mlp head: BatchNorm (running statistics at inference) instead of LayerNorm

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(
                f"Unsupported model_type {self.model_type!r}: bertcls implements "
                f"{', '.join(SUPPORTED_MODEL_TYPES)} (BERT, MiniLM, TinyBERT and DistilBERT checkpoints). "
                "Pick a checkpoint of one of these families."
            )
        if self.head not in HEADS:
            raise ConfigError(f"Unknown head {self.head!r}; choose one of {', '.join(HEADS)}.")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"Unknown compute dtype {self.compute_dtype!r}; choose one of {', '.join(COMPUTE_DTYPES)}."
            )
        if self.head_batchnorm and self.head != "mlp":
            raise ConfigError(f"head_batchnorm applies to head=mlp only, got head={self.head}.")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"Unsupported hidden_act {self.hidden_act!r}; bertcls supports {', '.join(ACTIVATIONS)}.")
        if self.num_labels < 1:
            raise ConfigError(f"num_labels must be >= 1 (1 means regression), got {self.num_labels}.")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], **overrides: Any) -> ModelConfig:
        """Build from the fields of a Hugging Face config.json; `overrides` set head/labels/dtype."""
        model_type = hf.get("model_type")
        if model_type is None:
            raise ConfigError(
                "config.json has no 'model_type' field, so the architecture is unknown. "
                'Add "model_type": "bert" (or "distilbert") to it.'
            )
        try:
            if model_type == "distilbert":
                fields: dict[str, Any] = dict(
                    model_type="distilbert",
                    vocab_size=hf["vocab_size"],
                    hidden_size=hf["dim"],
                    num_layers=hf["n_layers"],
                    num_heads=hf["n_heads"],
                    intermediate_size=hf["hidden_dim"],
                    max_position_embeddings=hf["max_position_embeddings"],
                    type_vocab_size=0,
                    layer_norm_eps=1e-12,
                    hidden_act=hf.get("activation", "gelu"),
                    hidden_dropout=hf.get("dropout", 0.1),
                    attention_dropout=hf.get("attention_dropout", 0.1),
                    classifier_dropout=hf.get("seq_classif_dropout", 0.2),
                    pad_token_id=hf.get("pad_token_id", 0),
                )
            elif model_type == "bert":
                classifier_dropout = hf.get("classifier_dropout")
                fields = dict(
                    model_type="bert",
                    vocab_size=hf["vocab_size"],
                    hidden_size=hf["hidden_size"],
                    num_layers=hf["num_hidden_layers"],
                    num_heads=hf["num_attention_heads"],
                    intermediate_size=hf["intermediate_size"],
                    max_position_embeddings=hf["max_position_embeddings"],
                    type_vocab_size=hf.get("type_vocab_size", 2),
                    layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
                    hidden_act=hf.get("hidden_act", "gelu"),
                    hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
                    attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
                    classifier_dropout=(
                        hf.get("hidden_dropout_prob", 0.1) if classifier_dropout is None else classifier_dropout
                    ),
                    pad_token_id=hf.get("pad_token_id", 0) or 0,
                )
                if hf.get("position_embedding_type", "absolute") != "absolute":
                    raise ConfigError(
                        f"position_embedding_type {hf['position_embedding_type']!r} is not supported; "
                        "bertcls implements absolute position embeddings only."
                    )
            else:
                raise ConfigError(
                    f"Unsupported model_type {model_type!r}: bertcls implements "
                    f"{', '.join(SUPPORTED_MODEL_TYPES)} (BERT, MiniLM, TinyBERT and DistilBERT checkpoints). "
                    "Pick a checkpoint of one of these families."
                )
        except KeyError as missing:
            raise ConfigError(
                f"config.json for model_type {model_type!r} lacks the field {missing.args[0]!r}; "
                "it is not a complete Hugging Face config. Re-export it with save_pretrained()."
            ) from None
        if isinstance(hf.get("id2label"), dict) and hf["id2label"]:
            fields["num_labels"] = len(hf["id2label"])  # a fine-tuned checkpoint's own label count
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_json_file(cls, path: Path, **overrides: Any) -> ModelConfig:
        """Read a Hugging Face config.json file."""
        if not path.is_file():
            raise ConfigError(
                f"No config.json in {path.parent}: a model directory needs the Hugging Face config.json "
                "beside its weights. Copy it there, or point at the directory that has it."
            )
        try:
            hf = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not valid JSON ({err}). Restore the file from the original model.") from None
        return cls.from_hf_dict(hf, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> ModelConfig:
        """Inverse of to_dict (our own saved format)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})


LONG_TEXT_MODES = ("truncate", "windows")
DEFAULT_EXPERIMENT = "bertcls"  # train, make train, evaluate and register meet here
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, which columns, how to split and tokenize it."""

    dataset: str = option(
        "sms_spam", "bundled name (sms_spam, bbc_news), glue/<task>, or a Hugging Face hub dataset id",
        docs="([data.md](data.md)); ignored when `train_file` is given",
    )  # fmt: skip
    dataset_config: str | None = option(None, "hub dataset configuration name")
    train_file: str | None = option(
        None, "local CSV/TSV/JSON/JSONL/Parquet training file", path=True,
        docs="(MLproject `path`: a relative path resolves from where you run `mlflow run`; a remote URI is "
        "downloaded first)",
    )  # fmt: skip
    validation_file: str | None = option(None, "validation file (same format as train_file)", path=True)
    test_file: str | None = option(None, "test file (same format as train_file)", path=True)
    text_column: str | None = option(None, "text column (default `text`; a digit for headerless TSV/CSV)")
    text_pair_column: str | None = option(None, "second text column, for sentence-pair tasks")
    label_column: str | None = option(None, "label column (default `label`; numbers that are not whole: regression)")
    max_seq_length: int = option(128, "tokens per row; must not exceed the model's position limit", reading=True)
    split_seed: int = option(42, "seed of the 80/10/10 split for sources without validation/test")
    max_train_samples: int | None = option(None, "train on the first N examples only", unset_is_zero=True)
    max_eval_samples: int | None = option(None, "validate / test on the first N examples only", unset_is_zero=True)
    max_buckets: int = option(12, "distinct padded lengths (compiled shapes), fitted to the training lengths")
    bucket_multiple: int = option(4, "padded lengths are multiples of this")
    long_text: str = option(
        "truncate", "texts over max_seq_length: keep the first window, or read all as overlapping windows "
        "(trained on as examples; predictions average the windows' logits)", choices=LONG_TEXT_MODES,
        reading=True, docs="([data.md](data.md#long-texts-truncate-or-windows))",
    )  # fmt: skip
    window_overlap: int = option(64, "tokens shared by consecutive windows", reading=True)
    max_windows: int = option(8, "windows kept per text (the first ones)", reading=True)
    max_dropped_fraction: float = option(
        0.05, "largest share of a split's rows that may be dropped for an empty text or a missing label",
        docs="(more is an error before the run starts: [data.md](data.md#splits-reproducible-anywhere))",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ConfigError(f"max_seq_length must be at least 8 tokens, got {self.max_seq_length}.")
        if self.max_buckets < 1 or self.bucket_multiple < 1:
            raise ConfigError("max_buckets and bucket_multiple must be at least 1.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be a positive number of examples (or unset), got {value}.")
        if self.long_text not in LONG_TEXT_MODES:
            raise ConfigError(
                f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {self.long_text!r}. Use 'windows' to "
                "read whole long texts as overlapping windows, 'truncate' to keep only the first max_seq_length tokens."
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
        1.0, "layer-wise learning-rate decay: the head trains at lr, each layer below at llrd times the one above "
        "(embeddings lowest); 1.0 = off",
    )  # fmt: skip

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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; `flat_params()` is what MLflow records."""

    model: str = option(
        "sentence-transformers/all-MiniLM-L6-v2", "local directory or Hugging Face hub id of a BERT-family checkpoint, "
        "or runs:/<run_id>/encoder (an encoder adapted by `pretrain`)",
        docs="([model.md](model.md)); under `mlflow run` give a local dir as an absolute path (this parameter "
        "also takes hub ids, so MLflow cannot resolve it as a path)",
    )  # fmt: skip
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    head: str = option(
        "mean", "linear: pooler on [CLS]; mean: masked mean of token states; mlp: 2-layer MLP on [CLS]",
        choices=HEADS, docs="([model.md](model.md#heads): which head suits which checkpoint)",
    )  # fmt: skip
    precision: str = option(
        "fp32", "fp32, or bf16: bfloat16 matmuls and activations; parameters, optimizer state and loss stay float32",
        choices=tuple(PRECISION_DTYPES), docs="(replaces `compute_dtype`: float32 = fp32, bfloat16 = bf16)",
    )  # fmt: skip
    head_batchnorm: bool = option(
        False, "head=mlp: batch norm instead of layer norm after each hidden dense layer (batch statistics in "
        "training, running statistics in prediction)",
    )  # fmt: skip
    finetune: str = option(
        "full", "full: train every parameter; partial: freeze the embeddings and the first freeze_layers layers; "
        "head: freeze the whole encoder", choices=FINETUNE_STRATEGIES,
        docs="(frozen parameters get no gradient and no optimizer state)",
    )  # fmt: skip
    freeze_layers: int = option(0, "encoder layers frozen (with the embeddings) under finetune=partial")
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    epochs: int = option(3, "passes over the training split (the run keeps the best epoch by the validation metric)")
    batch_size: int = option(32, "global batch, split over all devices (must divide by the device count)")
    grad_accum_steps: int = option(
        1, "batches whose gradients are summed into one optimizer step (effective batch = batch_size x this)"
    )
    eval_batch_size: int = option(64, "global batch for validation and test")
    seed: int = option(42, "init of new layers, dropout, batch order")
    early_stopping_patience: int = option(
        0, "stop after this many epochs without improvement of the validation metric; 0 = never"
    )
    log_checkpoints: str = option(
        "best", "none: the final model only; best: the final model is the best epoch's checkpoint (step = that "
        "epoch, its validation and test metrics linked to it); all: every epoch's model too, each linked to that "
        "epoch's validation metrics", choices=CHECKPOINT_MODES,
    )  # fmt: skip
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
        if self.precision not in PRECISION_DTYPES:
            raise ConfigError(f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISION_DTYPES)}.")
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

    experiment: str = option(DEFAULT_EXPERIMENT, "MLflow experiment (under `mlflow run`: --experiment-name)",
                             mlproject=False)  # fmt: skip
    run_name: str | None = option(None, "MLflow run name", mlproject=False)
    system_metrics: bool = option(
        True, "log CPU and memory use (GPU too, where MLflow's NVIDIA support is installed) every 10 s as the "
        "run's system/* metrics",
    )  # fmt: skip
    resume_run_id: str | None = option(
        None, "continue this KILLED or FAILED train run from its last checkpoint: same run id, its own parameters "
        "(see docs/training.md#resume)",
    )  # fmt: skip
    coordinator: str | None = option(
        None, "multi-process run: host:port of process 0's coordinator (docs/scaling.md); unset: a detected cluster "
        "(TPU pod, SLURM, Open MPI) or one process", mlproject=False,
    )  # fmt: skip
    num_processes: int = option(0, "multi-process run: how many processes (with coordinator)", mlproject=False)
    process_id: int = option(0, "multi-process run: this process's index, 0 logs to MLflow", mlproject=False)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate`: which model, on which split; data options left unset are the training run's."""

    model_uri: str = option(help="runs:/<run_id>/model, models:/<name>@<alias> or models:/<name>/<version>")
    split: str = option("test", "split to evaluate on", choices=SPLITS)
    batch_size: int = option(64, "batch size of the predictions")
    top_mistakes: int = option(20, "most confident mistakes to log")
    extra_metric: str | None = option(
        None,
        "Hugging Face `evaluate` metrics by local script path (offline) or hub id, space-separated, computed "
        "on label ids",
    )
    experiment: str = option(DEFAULT_EXPERIMENT, "experiment of the evaluation run (under `mlflow run`: "
                             "--experiment-name)", mlproject=False)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class RegisterConfig:
    """`register`: which runs compete, by which metric, under which registered name."""

    experiment: str = option(DEFAULT_EXPERIMENT, "experiment whose training runs compete")
    metric: str = option(
        "val_accuracy", "metric that ranks runs (val_* compares the logged best epoch; test_* too; which way is "
        "better comes from a table: losses, mse, perplexity, error_rate lower)",
    )  # fmt: skip
    direction: str | None = option(
        None, "max or min: whether a higher or a lower metric is better, for a metric bertcls does not know",
    )  # fmt: skip
    name: str | None = option(None, "registered model name (default bertcls-<dataset>)")
    force: bool = option(False, "promote to @champion even if the candidate loses")
    dataset: str | None = option(None, "only runs on this dataset (their `dataset` tag)")
    run_id: str | None = option(None, "register this run instead of the best new one")


# The data options that describe a pre-training corpus (text only: labels, windows and buckets do not apply).
CORPUS_PARAMS = ("dataset", "dataset_config", "train_file", "validation_file", "text_column", "max_seq_length",
                 "split_seed", "max_train_samples", "max_eval_samples")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`pretrain`: continue masked-LM pre-training of an encoder on a corpus's text (docs/pretraining.md)."""

    model: str = TrainConfig.model  # the train job's `model` parameter (job_params below)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # its CORPUS_PARAMS only
    mlm_probability: float = option(
        0.15, "share of each block's ordinary tokens the model must predict (of them 80 % become [MASK], 10 % a "
        "random token, 10 % stay)",
    )  # fmt: skip
    lr: float = option(2e-5, "peak learning rate; low, so the encoder adapts to the domain without forgetting")
    new_head_lr: float = option(
        1e-3, "peak learning rate of an MLM head the checkpoint lacks (it starts from random; the encoder and the "
        "tied word embeddings stay at lr)",
    )  # fmt: skip
    weight_decay: float = option(0.01, "AdamW decoupled weight decay, on matrices only")
    warmup_ratio: float = option(0.06, "share of the steps with linear warmup, then linear decay to 0")
    epochs: int = option(1, "passes over the corpus's training texts")
    batch_size: int = option(32, "blocks of max_seq_length tokens per step (global, split over all devices)")
    seed: int = option(42, "MLM head init (when the checkpoint has none), masks, block order, dropout")

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}. BERT used 0.15.")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}.")
        OptimConfig(lr=self.lr, weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio)  # same checks
        if not self.new_head_lr > 0:
            raise ConfigError(f"new_head_lr must be a positive learning rate, got {self.new_head_lr}. Try 1e-3.")

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(lr=self.lr, weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio)


# Train parameters a sweep varies: the sweep takes a space-separated list under the plural name (one value =
# fixed; unset = the train default), and a "<name>_range" where a TPE search samples a number.
SWEPT = {"lr": "lrs", "epochs": "epochs", "weight_decay": "weight_decays", "head": "heads",
         "finetune": "finetunes", "freeze_layers": "freeze_layers", "llrd": "llrds", "seed": "seeds"}  # fmt: skip
PRUNERS = ("median", "none")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """`sweep`: a grid (trials=0) or a TPE search (trials=N) over train parameters, as Optuna trials."""

    lrs: str | None = option(None, "learning rates, space-separated (grid values, or TPE choices)")
    epochs: str | None = option(None, "epoch budgets, space-separated")
    weight_decays: str | None = option(None, "weight decays, space-separated")
    heads: str | None = option(None, "heads, space-separated (linear mean mlp)")
    finetunes: str | None = option(None, "fine-tuning strategies, space-separated (full partial head)")
    freeze_layers: str | None = option(None, "frozen layer counts for finetune=partial, space-separated")
    llrds: str | None = option(None, "layer-wise lr decays, space-separated")
    seeds: str | None = option(None, "seeds, space-separated (repeats of each setting)")
    trials: int = option(0, "0: the full grid of the lists above; N: N trials sampled by TPE (lists become choices)")
    lr_range: str | None = option(None, "TPE: 'low high' for lr, log-uniform (e.g. '1e-5 2e-4')")
    weight_decay_range: str | None = option(None, "TPE: 'low high' for weight_decay, uniform")
    llrd_range: str | None = option(None, "TPE: 'low high' for llrd, uniform")
    metric: str | None = option(None, "validation metric to optimise (accuracy, mcc, f1, ...; unset: the task's "
                                "primary metric); direction from the metric (losses minimised)")  # fmt: skip
    pruner: str = option("median", "stop hopeless trials after an epoch (Optuna's median pruner), or none",
                         choices=PRUNERS)  # fmt: skip
    storage: str | None = option(None, "Optuna storage URL shared by every worker (sqlite:///..., "
                                 "postgresql://...); unset: optuna.db beside the sqlite tracking store")  # fmt: skip
    study_name: str | None = option(None, "Optuna study (unset: derived from the sweep's definition, so re-running "
                                    "the same sweep continues it)")  # fmt: skip
    workers: int = option(1, "trial processes on this machine, sharing the study")
    sampler_seed: int = option(0, "seed of the TPE sampler and of the grid order")
    parent_run_id: str | None = option(None, "nest this worker's trials under another machine's sweep run "
                                       "(several machines, one parent)", mlproject=False)  # fmt: skip

    def __post_init__(self) -> None:
        if self.trials < 0:
            raise ConfigError(f"trials must be >= 0 (0 = the whole grid), got {self.trials}.")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"Unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}.")
        if self.trials == 0 and any((self.lr_range, self.weight_decay_range, self.llrd_range)):
            raise ConfigError("A *_range needs trials=N (a TPE search); a grid takes lists (lrs='2e-5 5e-5').")


def job_params(job: str) -> list[Param]:
    """The parameters of `train`, `sweep`, `pretrain`, `evaluate`, `register` or `data-stats`, in the order shown."""
    if job == "train":
        return params_of(TrainConfig) + params_of(RunOptions)
    if job == "sweep":  # the swept train parameters become lists; every other one passes through to the trials
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return params_of(SweepConfig) + [p for p in params_of(TrainConfig) if p.name not in SWEPT] + run
    if job == "pretrain":  # the train job's model, the corpus's data options, its own MLM settings
        corpus = [p for p in params_of(DataConfig) if p.name in CORPUS_PARAMS]
        model = [p for p in params_of(TrainConfig) if p.name == "model"]
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return model + corpus + [p for p in params_of(PretrainConfig) if not p.group] + run
    if job == "evaluate":
        inherited = [p.as_inherited() for p in params_of(DataConfig) if not p.reading]
        return params_of(EvaluateConfig) + inherited
    if job == "register":
        return params_of(RegisterConfig)
    if job == "data-stats":
        train = {p.name: p for p in params_of(TrainConfig)}
        return [train["model"], *params_of(DataConfig), train["batch_size"]]
    raise KeyError(job)
