"""A text corpus for masked-LM pre-training: train and held-out texts, packed into full-length blocks.

A labelled source (the bundled datasets, GLUE, a file with a label column) is split exactly as `train` splits
it, and only its train texts are pre-trained on; its validation texts are the held-out set, and its test
texts are never read, so a classifier fine-tuned afterwards is still tested on text the encoder never saw.
A text-only source keeps its validation split or holds out 10 % (split_seed) of its train texts.
"""

from __future__ import annotations

import dataclasses

import datasets
import numpy as np

from bertcls.config import DataConfig
from bertcls.data.pipeline import as_text, split_texts
from bertcls.data.sources import load_source
from bertcls.data.splits import CleaningStats, split_indices
from bertcls.errors import DataError

HELDOUT_SHARE = 0.1


@dataclasses.dataclass
class Corpus:
    name: str  # what users call the source (sms_spam, my_corpus.txt, ...)
    uri: str
    texts: dict[str, list[str]]  # "train" and "heldout"
    recipe: str  # how the held-out texts were chosen, in words (logged)


def _text_only(split: datasets.Dataset, column: str, name: str, source_name: str) -> list[str]:
    if column not in split.column_names:
        raise DataError(
            f"Column {column!r} not found in the {name} split of {source_name}. Columns that exist: "
            f"{', '.join(split.column_names)}. Set text_column to the column that holds the text."
        )
    texts = as_text(split.select_columns([column]), column, name, column)[column]
    return [t for t in texts if t is not None and t.strip()]


def load_corpus(config: DataConfig) -> Corpus:
    """Train and held-out texts of the source `config` names (see the module docstring for the recipe)."""
    source = load_source(config)
    labelled = all(source.label_column in split.column_names for split in source.splits.values())
    if labelled:
        _, splits, _, _ = split_texts(config, source)
        texts = {"train": list(splits["train"]["text"]), "heldout": list(splits["validation"]["text"])}
        recipe = "the classifier's train split (pre-trained on) and validation split (held out); test never read"
        return Corpus(source.name, source.uri, texts, recipe)
    train = _text_only(source.splits["train"], source.text_column, "train", source.name)
    if "validation" in source.splits:
        heldout = _text_only(source.splits["validation"], source.text_column, "validation", source.name)
        recipe = "the source's train and validation splits"
    else:
        train = list(dict.fromkeys(train))  # no text on both sides of the split
        if len(train) < 10:
            raise DataError(
                f"Only {len(train)} non-empty texts in {source.name}: too few to hold out a set for the MLM loss. "
                "Provide more text, or a validation_file."
            )
        keep, held = split_indices(len(train), None, HELDOUT_SHARE, config.split_seed, CleaningStats())
        train, heldout = [train[i] for i in keep], [train[i] for i in held]
        recipe = f"{HELDOUT_SHARE:.0%} of the train texts held out (split_seed {config.split_seed})"
    if config.max_train_samples:
        train = train[: config.max_train_samples]
    if config.max_eval_samples:
        heldout = heldout[: config.max_eval_samples]
    if not train or not heldout:
        raise DataError(f"{source.name} has no usable text in its {'train' if not train else 'held-out'} texts.")
    return Corpus(source.name, source.uri, {"train": train, "heldout": heldout}, recipe)


def pack_blocks(tokenizer, texts: list[str], block_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [N, block_length] and attention mask [N, block_length]: the texts' tokens end to end, each
    text closed by [SEP], cut into blocks of [CLS] + block_length - 2 tokens + [SEP]; the last block padded.

    Packing keeps every row full (no compute on padding) and lets a block span documents, as BERT did.
    """
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id or 0
    if cls_id is None or sep_id is None:
        raise DataError("The model's tokenizer has no [CLS] / [SEP] token: it is not a BERT-family tokenizer.")
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    stream = np.fromiter((t for ids in encoded for t in (*ids, sep_id)), dtype=np.int32)  # every text + [SEP]
    inner = block_length - 2
    count = max(1, -(-len(stream) // inner))
    ids = np.full((count, block_length), pad_id, dtype=np.int32)
    mask = np.zeros((count, block_length), dtype=np.int32)
    for row in range(count):
        piece = stream[row * inner : (row + 1) * inner]
        ids[row, : len(piece) + 2] = [cls_id, *piece, sep_id]
        mask[row, : len(piece) + 2] = 1
    return ids, mask
