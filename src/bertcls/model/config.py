"""`ModelConfig`: the architecture of a checkpoint plus our classification head, and the one table that maps it
to and from a Hugging Face config.json (read by `from_hf_dict`, written by `to_hf_dict` for the export)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bertcls.errors import ConfigError

HEADS = ("linear", "mean", "mlp")  # text heads: the `head` setting
TOKEN_HEAD = "token"  # a linear layer on every token's state (task=ner): HF's *ForTokenClassification
COMPUTE_DTYPES = ("float32", "bfloat16")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")
SUPPORTED_MODEL_TYPES = ("bert", "distilbert")
# The head of Hugging Face's *ForSequenceClassification classes: what a checkpoint's own architecture has,
# so a converted checkpoint matches its reference. The training default is TrainConfig.head.
HF_ARCHITECTURE_HEAD = "linear"

REQUIRED = object()  # a field a Hugging Face config.json must have
# Per family: our field -> (its key in config.json, the default when absent). Both directions read this table.
HF_FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "bert": {
        "vocab_size": ("vocab_size", REQUIRED),
        "hidden_size": ("hidden_size", REQUIRED),
        "num_layers": ("num_hidden_layers", REQUIRED),
        "num_heads": ("num_attention_heads", REQUIRED),
        "intermediate_size": ("intermediate_size", REQUIRED),
        "max_position_embeddings": ("max_position_embeddings", REQUIRED),
        "type_vocab_size": ("type_vocab_size", 2),
        "layer_norm_eps": ("layer_norm_eps", 1e-12),
        "hidden_act": ("hidden_act", "gelu"),
        "hidden_dropout": ("hidden_dropout_prob", 0.1),
        "attention_dropout": ("attention_probs_dropout_prob", 0.1),
        "classifier_dropout": ("classifier_dropout", None),  # None: BERT uses hidden_dropout_prob
        "pad_token_id": ("pad_token_id", 0),
    },
    "distilbert": {
        "vocab_size": ("vocab_size", REQUIRED),
        "hidden_size": ("dim", REQUIRED),
        "num_layers": ("n_layers", REQUIRED),
        "num_heads": ("n_heads", REQUIRED),
        "intermediate_size": ("hidden_dim", REQUIRED),
        "max_position_embeddings": ("max_position_embeddings", REQUIRED),
        "hidden_act": ("activation", "gelu"),
        "hidden_dropout": ("dropout", 0.1),
        "attention_dropout": ("attention_dropout", 0.1),
        "classifier_dropout": ("seq_classif_dropout", 0.2),
        "pad_token_id": ("pad_token_id", 0),
    },
}
# What a family's architecture fixes (ours), and what its config.json must say for our encoder to be right (theirs).
FAMILY_FIXED = {"bert": {}, "distilbert": {"type_vocab_size": 0, "layer_norm_eps": 1e-12}}
HF_FIXED = {"bert": {"position_embedding_type": "absolute"}, "distilbert": {"sinusoidal_pos_embds": False}}


def _unsupported(model_type: Any) -> ConfigError:
    return ConfigError(
        f"Unsupported model_type {model_type!r}: bertcls implements {', '.join(SUPPORTED_MODEL_TYPES)} (BERT, "
        "MiniLM, TinyBERT and DistilBERT checkpoints). Pick a checkpoint of one of these families."
    )


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
            raise _unsupported(self.model_type)
        if self.head not in (*HEADS, TOKEN_HEAD):
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
        """Build from the fields of a Hugging Face config.json (by HF_FIELDS); `overrides` set head/labels/dtype."""
        model_type = hf.get("model_type")
        if model_type is None:
            raise ConfigError(
                "config.json has no 'model_type' field, so the architecture is unknown. "
                'Add "model_type": "bert" (or "distilbert") to it.'
            )
        if model_type not in HF_FIELDS:
            raise _unsupported(model_type)
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(
                f"position_embedding_type {hf['position_embedding_type']!r} is not supported; "
                "bertcls implements absolute position embeddings only."
            )
        fields: dict[str, Any] = {"model_type": model_type, **FAMILY_FIXED[model_type]}
        for ours, (theirs, default) in HF_FIELDS[model_type].items():
            if default is REQUIRED and theirs not in hf:
                raise ConfigError(
                    f"config.json for model_type {model_type!r} lacks the field {theirs!r}; "
                    "it is not a complete Hugging Face config. Re-export it with save_pretrained()."
                )
            value = hf.get(theirs, default)
            fields[ours] = default if value is None else value  # an explicit null means the default
        if fields["classifier_dropout"] is None:
            fields["classifier_dropout"] = fields["hidden_dropout"]
        if isinstance(hf.get("id2label"), dict) and hf["id2label"]:
            fields["num_labels"] = len(hf["id2label"])  # a fine-tuned checkpoint's own label count
        fields.update(overrides)
        return cls(**fields)

    def to_hf_dict(self) -> dict[str, Any]:
        """The architecture fields of the matching Hugging Face config.json (the inverse of from_hf_dict)."""
        fields = {theirs: getattr(self, ours) for ours, (theirs, _) in HF_FIELDS[self.model_type].items()}
        return {"model_type": self.model_type, **fields, **HF_FIXED[self.model_type]}

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
