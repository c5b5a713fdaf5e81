"""Load a model's fast tokenizer from its directory (transformers is used for tokenizers/config only)."""

from __future__ import annotations

import os
from pathlib import Path

from bertcls.errors import CheckpointError


def load_tokenizer(model_dir: Path):
    """The Hugging Face fast tokenizer saved beside the weights in `model_dir`."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # silences "PyTorch was not found"
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"No usable tokenizer in {model_dir} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
            "A model directory needs tokenizer.json or vocab.txt with tokenizer_config.json; copy them "
            "from the model the weights came from."
        ) from None
