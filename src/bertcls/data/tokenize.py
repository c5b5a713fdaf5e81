"""Tokenization with the model's fast tokenizer, cached on disk so a second run does not re-tokenize.

The cache key is the dataset's `datasets` fingerprint + the tokenizer's content hash + max_seq_length,
so any change to the data, the vocabulary or the length makes a new cache file.
"""

from __future__ import annotations

import hashlib

import datasets
import numpy as np

from bertcls.paths import cache_root


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def tokenize_split(
    split: datasets.Dataset, tokenizer, max_seq_length: int, text_pair: bool, tokenizer_hash: str
) -> datasets.Dataset:
    """Add input_ids, token_type_ids and length columns (no padding: batches pad to their bucket)."""
    key = hashlib.sha256(f"{split._fingerprint}|{tokenizer_hash}|{max_seq_length}|{text_pair}".encode()).hexdigest()

    def encode(rows):
        encoded = tokenizer(
            rows["text"],
            rows["text_pair"] if text_pair else None,
            truncation=True,
            max_length=max_seq_length,
            return_attention_mask=False,
            return_token_type_ids=True,
        )
        return {
            "input_ids": encoded["input_ids"],
            "token_type_ids": encoded["token_type_ids"],
            "length": [len(ids) for ids in encoded["input_ids"]],
        }

    return split.map(
        encode,
        batched=True,
        batch_size=1000,
        cache_file_name=str(cache_root("tokenized") / f"{key[:32]}.arrow"),
        load_from_cache_file=True,
        new_fingerprint=key[:32],
        desc="tokenizing",
    )


def padded_matrix(split: datasets.Dataset, column: str, width: int) -> np.ndarray:
    """[N, width] int32 matrix of a list column, zero-padded on the right."""
    rows = split[column]
    out = np.zeros((len(split), width), dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
