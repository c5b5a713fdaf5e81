"""bertcls: fine-tune BERT-family encoders for text classification with JAX/Flax NNX, tracked in MLflow."""

__version__ = "0.1.0"
