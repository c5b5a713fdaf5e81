"""A word tagger's answers: raw texts (or pre-split words) -> words -> tags -> entities with character offsets.

A text is split into words by the tokenizer's own pre-tokenizer (whitespace and punctuation for BERT), which
gives each word's character offsets in the original string. Each word is read at its first subword; the tags are
decoded as the model was scored (`data.tags.decode_tags`: by default the most probable sequence its tag scheme
allows, else each word's argmax), and a word's score is its tag's probability; entities are chunked from the tags
as the metrics chunk them
(`data.tags.entity_spans`) and scored by the mean of their words' scores, like the transformers pipeline's
`aggregation_strategy="first"`. An entity's `start`/`end` slice the text to its `text`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bertcls.data.batching import TaggedSplit
from bertcls.data.tags import OUTSIDE, decode_tags, entity_spans
from bertcls.data.tokenize import encode_words, padded_matrix
from bertcls.train.inference import infer_word_outputs

_FALLBACK_WORDS = re.compile(r"\w+|[^\w\s]")


def split_words(tokenizer, text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) of every word of `text`, offsets in characters of `text`."""
    pre = getattr(getattr(tokenizer, "backend_tokenizer", None), "pre_tokenizer", None)
    if pre is not None:
        return [(word, start, end) for word, (start, end) in pre.pre_tokenize_str(text)]
    return [(m.group(), m.start(), m.end()) for m in _FALLBACK_WORDS.finditer(text)]


def tag_sentences(
    predictor, sentences: Sequence[Sequence[str]], decoding: str | None = None
) -> list[tuple[list[str], np.ndarray]]:
    """(tags, [words] scores) per pre-split sentence, in order; `decoding` (viterbi, argmax) replaces the model's."""
    settings = predictor.settings
    encoded = encode_words(predictor.tokenizer, sentences, settings.max_seq_length, settings.window_overlap)
    lengths = np.asarray(encoded["length"], dtype=np.int32)
    split = TaggedSplit(
        input_ids=padded_matrix(encoded["input_ids"], settings.max_seq_length),
        token_type_ids=np.zeros((len(lengths), settings.max_seq_length), dtype=np.int32),
        lengths=lengths,
        labels=np.zeros((len(lengths), settings.max_seq_length), dtype=np.int32),
        documents=np.asarray(encoded["document"], dtype=np.int32),
        word_index=padded_matrix([[w + 1 for w in r] for r in encoded["word_index"]], settings.max_seq_length) - 1,
        word_counts=np.asarray([len(s) for s in sentences], dtype=np.int32),
    )
    names = predictor.label_names
    fallback = names.index(OUTSIDE) if OUTSIDE in names else 0
    logits, _ = infer_word_outputs(
        split, predictor.forward_batch, predictor.batch_size, predictor.buckets, len(names), fallback
    )  # [W, C]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)  # [W, C]
    decoding = decoding or settings.tag_decoding
    best = decode_tags(logits, split.word_counts, names, settings.tag_scheme, decoding)  # [W]
    out, start = [], 0
    for count in split.word_counts:
        ids = best[start : start + count]
        out.append(([names[i] for i in ids], probs[np.arange(start, start + count), ids].astype(np.float64)))
        start += count
    return out


def _entities(tags: list[str], scores: np.ndarray, spans: list[tuple[int, int]], text: str) -> list[dict]:
    """Entities of one sentence: type, text, start, end (characters of `text`), score."""
    found = []
    for kind, first, last in entity_spans(tags):
        start, end = spans[first][0], spans[last][1]
        found.append(
            {
                "type": kind,
                "text": text[start:end],
                "start": int(start),
                "end": int(end),
                "score": float(np.mean(scores[first : last + 1])),
            }
        )
    return found


def entities_frame(
    predictor,
    texts: list[str] | None,
    sentences: list[list[str]] | None,
    return_tags: bool = False,
    decoding: str | None = None,
) -> pd.DataFrame:
    """What a logged tagger answers: an `entities` column (a list per input), and with `return_tags` the `words` and
    their `tags`. For pre-split words, offsets are in the words joined by single spaces. `decoding`: viterbi or
    argmax instead of the model's own."""
    if texts is not None:
        split = [split_words(predictor.tokenizer, text) for text in texts]
        sentences = [[word for word, _, _ in words] for words in split]
        spans = [[(start, end) for _, start, end in words] for words in split]
        sources = texts
    else:
        spans, sources = [], []
        for words in sentences:
            starts = np.cumsum([0, *[len(w) + 1 for w in words]])[:-1]
            spans.append([(int(s), int(s) + len(w)) for s, w in zip(starts, words, strict=True)])
            sources.append(" ".join(words))
    tagged = tag_sentences(predictor, sentences, decoding) if sentences else []
    frame = pd.DataFrame(
        {"entities": [_entities(t, s, sp, src) for (t, s), sp, src in zip(tagged, spans, sources, strict=True)]}
    )
    if return_tags:
        frame["words"] = [list(words) for words in sentences]
        frame["tags"] = [tags for tags, _ in tagged]
    return frame
