"""Tokenization with the model's fast tokenizer, cached on disk so a second run does not re-tokenize.

The cache key is the dataset's `datasets` fingerprint + the tokenizer's content hash + max_seq_length,
so any change to the data, the vocabulary, the length or the windowing makes a new cache file. Long texts
are truncated, or cut into overlapping windows (several rows per text, each knowing its text's index).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bertcls.paths import cache_root

if TYPE_CHECKING:
    import datasets


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def encode_texts(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_seq_length: int,
    windows: tuple[int, int] | None = None,
) -> dict[str, list]:
    """Token ids, token type ids, lengths and the source text of each row (no padding).

    windows=None truncates each text to max_seq_length (one row per text); windows=(overlap, max_windows)
    cuts a long text into up to max_windows rows of at most max_seq_length tokens, consecutive rows sharing
    `overlap` tokens. `document` is each row's index into `texts`.
    """
    encoded = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        truncation=True,
        max_length=max_seq_length,
        return_attention_mask=False,
        return_token_type_ids=True,
        **({"stride": windows[0], "return_overflowing_tokens": True} if windows else {}),
    )
    source = list(encoded["overflow_to_sample_mapping"]) if windows else list(range(len(encoded["input_ids"])))
    keep, seen = [], {}
    for row, text in enumerate(source):
        seen[text] = seen.get(text, 0) + 1
        if windows is None or seen[text] <= windows[1]:
            keep.append(row)
    return {
        "input_ids": [encoded["input_ids"][r] for r in keep],
        "token_type_ids": [encoded["token_type_ids"][r] for r in keep],
        "length": [len(encoded["input_ids"][r]) for r in keep],
        "document": [source[r] for r in keep],
    }


def tokenize_split(
    split: datasets.Dataset,
    tokenizer,
    max_seq_length: int,
    text_pair: bool,
    tokenizer_hash: str,
    windows: tuple[int, int] | None = None,
) -> datasets.Dataset:
    """Rows of input_ids, token_type_ids, length and `document` (the split row each came from); see encode_texts."""
    recipe = f"{split._fingerprint}|{tokenizer_hash}|{max_seq_length}|{text_pair}|{windows}"
    key = hashlib.sha256(recipe.encode()).hexdigest()

    def encode(rows, indices):
        encoded = encode_texts(
            tokenizer, rows["text"], rows["text_pair"] if text_pair else None, max_seq_length, windows
        )
        encoded["document"] = [indices[i] for i in encoded["document"]]  # batch position -> split row
        return encoded

    return split.map(
        encode,
        batched=True,
        batch_size=1000,
        with_indices=True,
        remove_columns=split.column_names,  # windows make more rows than texts
        cache_file_name=str(cache_root("tokenized") / f"{key[:32]}.arrow"),
        load_from_cache_file=True,
        new_fingerprint=key[:32],
        desc="tokenizing",
    )


def padded_matrix(rows: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """[N, width] int32 matrix of token rows, zero-padded on the right."""
    out = np.zeros((len(rows), width), dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
