"""The Flax NNX encoder, its heads, and conversion from Hugging Face checkpoints."""

from bertcls.model.bert import BertClassifier, Encoder

__all__ = ["BertClassifier", "Encoder"]
