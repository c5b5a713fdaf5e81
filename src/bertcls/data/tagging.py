"""Word-tagging data (task=ner): sentences as word lists with one tag per word -> checked splits -> subword rows.

Sources: CoNLL files, JSON/JSONL/Parquet with a list-of-words and a list-of-tags column (tags as strings, or
ids with a ClassLabel), Hugging Face datasets with `tokens` / `ner_tags`. Tags are read as given (IOB1, IOB2,
IOBES). Each word is predicted at its first subword (`data.tokenize.encode_words`); long sentences become
windows in which every word is predicted exactly once. A bad row is refused naming its file and line.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np

from bertcls.config import DataConfig
from bertcls.data.batching import IGNORE, TaggedSplit, fit_buckets
from bertcls.data.prepared import PreparedData
from bertcls.data.sources import RawSource
from bertcls.data.splits import CleaningStats, cap_samples, make_splits
from bertcls.data.tags import OUTSIDE, detect_scheme, inside_tag, is_chunk_scheme
from bertcls.data.tasks import TaskSpec
from bertcls.data.tokenize import encode_words, padded_matrix
from bertcls.errors import DataError, setting

log = logging.getLogger(__name__)

WORD_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("tags", "ner_tags", "labels")


def _is_list(feature) -> bool:
    return isinstance(feature, datasets.Sequence | datasets.List | datasets.LargeList | list)


def _inner(feature):
    return feature[0] if isinstance(feature, list) else feature.feature


def tagging_columns(source: RawSource, config: DataConfig) -> tuple[str, str] | None:
    """(words column, tags column) when the data is word tagging, None for text tasks; refuses task=ner on data
    without word and tag lists."""
    if config.task in ("text", "multilabel"):
        return None
    features = source.splits["train"].features
    words = config.text_column or next((c for c in WORD_COLUMNS if c in features), None)
    tags = config.label_column or next((c for c in TAG_COLUMNS if c in features), None)
    found = words in features and tags in features and _is_list(features[words]) and _is_list(features[tags])
    if found:
        return words, tags
    if config.task == "ner":
        columns = ", ".join(f"{name} ({type(f).__name__})" for name, f in features.items())
        raise DataError(
            f"task=ner needs a column of word lists and a column of tag lists in {source.name}; its columns are: "
            f"{columns}. Name them with text_column / label_column (defaults: {' or '.join(WORD_COLUMNS)}; "
            f"{' or '.join(TAG_COLUMNS)}), or give CoNLL files (.conll, .iob, .bio), or use "
            f"{setting('task', 'text')} to classify whole texts."
        )
    return None


def _tag_names(feature) -> tuple[str, ...] | None:
    inner = _inner(feature)
    return tuple(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _where(split: datasets.Dataset, name: str, source: RawSource) -> list[str]:
    """Where each row came from, for errors: file and line (CoNLL, JSON Lines) or row."""
    if "where" in split.column_names:
        return list(split["where"])
    file = (source.files or {}).get(name)
    if file is None:
        return [f"the {name} split of {source.name}, row {i}" for i in range(len(split))]
    unit = "line" if file.lower().endswith(".jsonl") else "row"
    return [f"{file}, {unit} {i + 1}" for i in range(len(split))]


def _read_rows(split: datasets.Dataset, name: str, columns: tuple[str, str], source: RawSource, names):
    """(sentences, tags as strings, where) of one split, every row checked; empty sentences dropped."""
    words_column, tags_column = columns
    sentences, tags, where = [], [], []
    for words, labels, place in zip(split[words_column], split[tags_column], _where(split, name, source), strict=True):
        if words is None or labels is None:
            raise DataError(f"{place}: the {'words' if words is None else 'tags'} are missing. Fix or drop the row.")
        if not all(isinstance(w, str) for w in words):
            raise DataError(
                f"{place}: the words in {words_column!r} must all be strings, got {words[:8]!r}. Fix the row."
            )
        if len(words) != len(labels):
            raise DataError(
                f"{place}: {len(words)} words but {len(labels)} tags ({words[:6]!r} ... / {labels[:6]!r} ...). "
                "Every word needs exactly one tag; fix the row."
            )
        if not words:
            continue
        if names is not None:
            labels = [names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in labels]
        sentences.append([str(w) for w in words])
        tags.append([str(t) for t in labels])
        where.append(place)
    return sentences, tags, where


def _check_tags(tags: list[list[str]], where: list[str], known: dict[str, int], split: str) -> None:
    for sentence, place in zip(tags, where, strict=True):
        unknown = [t for t in sentence if t not in known]
        if unknown:
            raise DataError(
                f"{place}: tag {unknown[0]!r} of the {split} split never occurs in train (train tags: "
                f"{', '.join(known)}). Fix the tag, or put sentences with it in train."
            )


def tagging_task(
    source: RawSource, train_tags: list[list[str]], names: tuple[str, ...] | None, decoding: str = "viterbi"
) -> TaskSpec:
    """The tags in id order (a ClassLabel's order, else sorted with O first); entity F1 ranks runs when the tags
    spell entities, word accuracy otherwise (POS tags); the tag scheme the training tags follow, which `decoding`
    (viterbi) keeps predictions to."""
    if names is None:
        seen = {t for sentence in train_tags for t in sentence}
        names = tuple(sorted(seen, key=lambda t: (t != OUTSIDE, t)))
    if len(names) < 2:
        raise DataError(
            f"The train split of {source.name} has a single tag ({names[0]!r}); a tagger needs at least two. "
            "Check label_column."
        )
    primary = "f1" if is_chunk_scheme(names) else "accuracy"
    scheme = detect_scheme(train_tags) if primary == "f1" else ""
    return TaskSpec(
        source.name, names, False, primary, False, token_level=True, tag_scheme=scheme, tag_decoding=decoding
    )


def encode_split(tokenizer, sentences, tags, task: TaskSpec, config: DataConfig) -> TaggedSplit:
    """Subword rows of one split with their position labels (first subword, or every subword with
    label_all_tokens) and the word each position predicts."""
    encoded = encode_words(tokenizer, sentences, config.max_seq_length, config.window_overlap)
    index = {name: i for i, name in enumerate(task.label_names)}
    ids = [np.asarray([index[t] for t in sentence], dtype=np.int32) for sentence in tags]  # [words] per sentence
    inside = np.asarray([index.get(inside_tag(name), i) for i, name in enumerate(task.label_names)], np.int32)
    word_index = padded_matrix([[w + 1 for w in row] for row in encoded["word_index"]], config.max_seq_length) - 1
    subword_of = padded_matrix([[w + 1 for w in row] for row in encoded["subword_of"]], config.max_seq_length) - 1
    documents = np.asarray(encoded["document"], dtype=np.int32)  # [N]
    labels = np.full(word_index.shape, IGNORE, dtype=np.int32)  # [N, L]
    for row, sentence in enumerate(documents):
        first = word_index[row] >= 0
        labels[row, first] = ids[sentence][word_index[row, first]]
        if config.label_all_tokens:
            later = subword_of[row] >= 0
            labels[row, later] = inside[ids[sentence][subword_of[row, later]]]
    lengths = np.asarray(encoded["length"], dtype=np.int32)
    return TaggedSplit(
        input_ids=padded_matrix(encoded["input_ids"], config.max_seq_length),
        token_type_ids=np.zeros((len(lengths), config.max_seq_length), dtype=np.int32),
        lengths=lengths,
        labels=labels,
        documents=documents,
        word_index=word_index.astype(np.int32),
        word_labels=np.concatenate(ids) if ids else np.zeros(0, np.int32),
        word_counts=np.asarray([len(s) for s in sentences], dtype=np.int32),
    )


def prepare_tagging(config: DataConfig, tokenizer, source: RawSource, columns: tuple[str, str]):
    """Read, check, split (80/10/10 with split_seed when the source lacks validation/test), encode."""
    names = _tag_names(source.splits["train"].features[columns[1]])
    stats = CleaningStats()
    rows = {}
    for name, split in source.splits.items():
        stats.rows_read[name] = len(split)
        sentences, tags, where = _read_rows(split, name, columns, source, names)
        if not sentences:
            raise DataError(f"The {name} split of {source.name} has no sentence with words. Point at tagged data.")
        stats.empty_text_dropped[name] = len(split) - len(sentences)
        rows[name] = datasets.Dataset.from_dict({"tokens": sentences, "tags": tags, "where": where})
    task = tagging_task(source, list(rows["train"]["tags"]), names, config.tag_decoding)
    known = {t: i for i, t in enumerate(task.label_names)}
    for name, split in rows.items():  # train too when a ClassLabel named the tags
        _check_tags(list(split["tags"]), list(split["where"]), known, name)
    splits = cap_samples(make_splits(datasets.DatasetDict(rows), None, config.split_seed, stats), config)
    arrays = {
        name: encode_split(tokenizer, list(split["tokens"]), list(split["tags"]), task, config)
        for name, split in splits.items()
    }
    buckets = fit_buckets(arrays["train"].lengths, config.max_seq_length, config.max_buckets, config.bucket_multiple)
    texts = {
        name: split.map(lambda row: {"text": " ".join(row["tokens"])}).select_columns(["text", "tokens", "tags"])
        for name, split in splits.items()
    }
    windows = {name: len(a) - a.num_texts for name, a in arrays.items() if len(a) > a.num_texts}
    if windows:
        log.info("sentences longer than max_seq_length read as windows (extra rows): %s", windows)
    return PreparedData(task, arrays, buckets, texts, stats, source)


def tag_warnings(data: PreparedData) -> list[str]:
    """Tags with fewer than 5 training words, and tags validation never shows (their recall is undefined there)."""
    names, count = data.task.label_names, data.task.num_labels
    train = np.bincount(data.splits["train"].word_labels, minlength=count)
    validation = np.bincount(data.splits["validation"].word_labels, minlength=count)
    found = []
    few = [f"{names[i]} ({train[i]})" for i in np.flatnonzero(train < 5)]
    if few:
        found.append(f"{len(few)} of {count} tags occur on fewer than 5 training words: {', '.join(few[:20])}")
    missing = [names[i] for i in np.flatnonzero(validation == 0)]
    if missing:
        found.append(f"{len(missing)} of {count} tags never occur in validation: {', '.join(missing[:20])}")
    return found
