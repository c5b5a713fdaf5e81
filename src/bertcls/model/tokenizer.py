"""Load a model's fast tokenizer from its directory (transformers is used for tokenizers/config only)."""

from __future__ import annotations

import os
from pathlib import Path

from bertcls.errors import CheckpointError

# Files that hold a tokenizer's vocabulary: without one, transformers builds a tokenizer of special tokens only
# (every word [UNK]), which trains a model that sees nothing but text length.
VOCABULARY_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
SMALLEST_SHARE = 0.9  # a tokenizer covering fewer of the embedding's rows is not the one the weights learned


def load_tokenizer(model_dir: Path, vocab_size: int | None = None):
    """The Hugging Face fast tokenizer saved beside the weights in `model_dir`.

    vocab_size: the model's embedding rows (config.json); a tokenizer with more ids, or with far fewer, is
    refused, since it cannot be the tokenizer these weights were trained with.
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # silences "PyTorch was not found"
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    if model_dir.is_dir() and not any((model_dir / name).is_file() for name in VOCABULARY_FILES):
        raise CheckpointError(
            f"No tokenizer in {model_dir}: it has none of {', '.join(VOCABULARY_FILES)}. Without its vocabulary "
            "every word would read as [UNK] and the model would learn nothing but text length. Copy the tokenizer "
            "files (tokenizer.json or vocab.txt, with tokenizer_config.json and special_tokens_map.json) from the "
            "model the weights came from."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"No usable tokenizer in {model_dir} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "A model directory needs tokenizer.json or vocab.txt with tokenizer_config.json; copy them "
            "from the model the weights came from."
        ) from None
    if vocab_size is not None:
        size = len(tokenizer)
        if size > vocab_size or size < SMALLEST_SHARE * vocab_size:
            problem = "ids beyond the model's embedding" if size > vocab_size else "far fewer tokens than the model"
            raise CheckpointError(
                f"The tokenizer in {model_dir} has {size:,} tokens but the model's config.json says vocab_size "
                f"{vocab_size:,} ({problem}): they do not belong together. Use the tokenizer files of the model "
                "the weights came from."
            )
    return tokenizer
