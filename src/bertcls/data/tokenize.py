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


def word_windows(num_tokens: int, content: int, overlap: int) -> list[int]:
    """Start offsets of windows of `content` tokens covering [0, num_tokens), consecutive ones sharing `overlap`."""
    if num_tokens <= content:
        return [0]
    step = content - overlap
    starts = list(range(0, num_tokens - content, step))
    return [*starts, num_tokens - content]  # the last window ends at the last token


def _owners(num_tokens: int, starts: list[int], content: int) -> np.ndarray:
    """[num_tokens] the window that predicts each token: the one where it has the most context on both sides."""
    positions = np.arange(num_tokens)[:, None]  # [T, 1]
    begin = np.asarray(starts)[None, :]  # [1, K]
    margin = np.minimum(positions - begin, begin + content - 1 - positions)  # [T, K], < 0 outside the window
    return margin.argmax(axis=1)  # first window among equals


def encode_words(tokenizer, sentences: Sequence[Sequence[str]], max_seq_length: int, overlap: int) -> dict[str, list]:
    """Rows of pre-split sentences for word tagging: subword ids with [CLS]/[SEP], and per position which word it
    answers for.

    A sentence longer than max_seq_length becomes overlapping windows. Every word with at least one subword is
    predicted exactly once: at its first subword, in the window where that subword has the most context
    (`word_index`, -1 elsewhere). `subword_of` marks the later subwords of the words a row predicts (their word
    index, -1 elsewhere), which label_all_tokens trains on. A word the tokenizer turns into nothing (a control
    character) is predicted by no row. `document` is each row's sentence.
    """
    content = max_seq_length - 2  # [CLS] ... [SEP]
    overlap = min(overlap, content // 2)
    encoded = tokenizer(
        [list(words) for words in sentences],
        is_split_into_words=True,
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    rows: dict[str, list] = {"input_ids": [], "length": [], "document": [], "word_index": [], "subword_of": []}
    for sentence, ids in enumerate(encoded["input_ids"]):
        words = np.asarray([-1 if w is None else w for w in encoded.word_ids(sentence)], dtype=np.int64)  # [T]
        first = np.ones(len(words), dtype=bool)
        first[1:] = words[1:] != words[:-1]
        starts = word_windows(len(ids), content, overlap)
        owner = _owners(len(ids), starts, content) if len(ids) else np.zeros(0, np.int64)  # [T]
        owner_of_word = {int(words[p]): int(owner[p]) for p in np.flatnonzero(first & (words >= 0))}
        for window, start in enumerate(starts):
            span = slice(start, start + content)
            in_window, is_first = words[span], first[span]
            owned = (owner[span] == window) & is_first & (in_window >= 0)
            later = ~is_first & np.asarray([owner_of_word.get(int(w)) == window for w in in_window], dtype=bool)
            rows["input_ids"].append([tokenizer.cls_token_id, *ids[span], tokenizer.sep_token_id])
            rows["length"].append(len(in_window) + 2)
            rows["document"].append(sentence)
            rows["word_index"].append([-1, *np.where(owned, in_window, -1).tolist(), -1])
            rows["subword_of"].append([-1, *np.where(later, in_window, -1).tolist(), -1])
    return rows
