"""Frozen configuration dataclasses: the single source of truth for model, data and training settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bertcls.errors import ConfigError, setting

HEADS = ("linear", "mean", "mlp")
COMPUTE_DTYPES = ("float32", "bfloat16")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
SUPPORTED_MODEL_TYPES = ("bert", "distilbert")
# How an unset optional value arrives: MLproject defaults are "none" (/dev/null for `path` parameters,
# which MLflow requires to exist), and `mlflow run` records an empty -P value as the shell-quoted "''".
UNSET_SPELLINGS = ("", "''", '""', "none", "None", "null", "/dev/null")


def is_unset(value: Any) -> bool:
    """True for None and every spelling of "not given" that MLproject / mlflow run produce."""
    return value is None or (isinstance(value, str) and value.strip() in UNSET_SPELLINGS)


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
    head: str = "linear"
    num_labels: int = 2  # 1 = regression
    compute_dtype: str = "float32"

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


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which dataset, which columns, how to split and tokenize it."""

    dataset: str = "sms_spam"  # bundled name, "glue/<task>", a hub id, or "" when files are given
    dataset_config: str | None = None  # hub dataset configuration name
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    text_column: str | None = None  # None: the source's default; a digit string selects a headerless column
    text_pair_column: str | None = None
    label_column: str | None = None
    max_seq_length: int = 128
    split_seed: int = 42
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_buckets: int = 12  # distinct padded lengths (compiled shapes), fitted to the training lengths
    bucket_multiple: int = 4
    # Texts longer than max_seq_length: "truncate" keeps the first window; "windows" cuts each text into
    # overlapping windows (training examples of the text's label; predictions average their logits).
    long_text: str = "truncate"
    window_overlap: int = 64  # tokens shared by consecutive windows
    max_windows: int = 8  # windows kept per text (the first ones)
    # Rows without text or label are dropped; more than this share of any split is an error (bad columns or file).
    max_dropped_fraction: float = 0.05

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

    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0  # 0 disables clipping
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"lr must be a positive learning rate, got {self.lr}. Try {setting('lr', '2e-5')}.")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}. Try 0.1.")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; `flat_params()` is what MLflow records."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    head: str = "linear"
    compute_dtype: str = "float32"
    epochs: int = 3
    batch_size: int = 32  # global, split over all devices
    eval_batch_size: int = 64
    seed: int = 42
    early_stopping_patience: int = 0  # epochs without improvement before stopping; 0 = never stop early
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}.")
        if self.head not in HEADS:
            raise ConfigError(f"Unknown head {self.head!r}; choose one of {', '.join(HEADS)}.")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(
                f"Unknown compute dtype {self.compute_dtype!r}; choose one of {', '.join(COMPUTE_DTYPES)}."
            )
        if self.early_stopping_patience < 0:
            raise ConfigError("early_stopping_patience must be >= 0 (0 disables early stopping).")

    def flat_params(self) -> dict[str, Any]:
        """One flat dict; keys match the MLproject parameter names so `mlflow run`'s own params line up."""
        top = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("data", "optim")}
        return {**top, **dataclasses.asdict(self.data), **dataclasses.asdict(self.optim)}
