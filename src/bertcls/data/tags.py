"""Word tags and the entities they spell: IOB1, IOB2 (BIO) and IOBES read as given, chunked as seqeval does, and
decoded from per-word logits into sequences the scheme allows (Viterbi).

A tag is `O`, or a prefix (B, I, E, S) and a type joined by `-` (`B-PER`); a tag without such a prefix
(the IO scheme's `PER`) reads as `I-PER`. Chunking follows seqeval's default (conlleval-compatible) rules, so
the entities the served model returns are the ones the entity F1 was computed on (a test checks this).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

OUTSIDE = "O"
PREFIXES = ("B", "I", "E", "S")


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag: ('O', '') for outside, ('B', 'PER') for B-PER, ('I', 'PER') for a bare PER."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    head, dash, rest = tag.partition("-")
    if dash and head in PREFIXES and rest:
        return head, rest
    return "I", tag


def is_chunk_scheme(tag_names: Sequence[str]) -> bool:
    """Whether the tags spell entities: `O` is among them, beside prefixed (`B-PER`) or bare (IO's `PER`) types,
    so entity F1 means something; without `O` (POS tags, tag ids without names) only word accuracy does."""
    return OUTSIDE in tag_names and len(tag_names) > 1


def prefixed(tag: str) -> str:
    """The tag with its prefix spelled out (IO's bare `PER` -> `I-PER`), as seqeval needs it: seqeval reads a
    tag's first letter as its prefix, so it would score a bare `PER` as type `ER`."""
    prefix, kind = split_tag(tag)
    return tag if prefix == OUTSIDE else f"{prefix}-{kind}"


def _ends_before(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """Whether an entity ending at the previous word closes before this one."""
    prev_prefix, prev_type = prev
    prefix, kind = cur
    if prev_prefix == OUTSIDE:
        return False
    if prev_prefix in ("E", "S"):
        return True
    return prefix in ("B", "S", OUTSIDE) or prev_type != kind


def _starts_at(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    """Whether an entity begins at this word."""
    prefix, kind = cur
    if prefix == OUTSIDE:
        return False
    if prefix in ("B", "S"):
        return True
    return prev[0] in ("E", "S", OUTSIDE) or prev[1] != kind


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every entity in one sentence's tags, in order (last word inclusive)."""
    spans, start = [], None
    prev = (OUTSIDE, "")
    for i, tag in enumerate([*tags, OUTSIDE]):
        cur = split_tag(tag)
        if start is not None and _ends_before(prev, cur):
            spans.append((prev[1], start, i - 1))
            start = None
        if _starts_at(prev, cur):
            start = i
        prev = cur
    return spans


def inside_tag(tag: str) -> str:
    """The tag a word's later subwords carry when every subword is labelled (label_all_tokens): B-X -> I-X."""
    prefix, kind = split_tag(tag)
    return f"I-{kind}" if prefix == "B" else tag


# Tag schemes, as detected from the training tags (`detect_scheme`). Only IOB2 and IOBES constrain decoding: in IOB1
# and IO any tag may follow any other, and tags that spell no entities (POS) have no scheme ("").
IOB1, IOB2, IOBES, IO = "IOB1", "IOB2", "IOBES", "IO"
IOB2_TOLERANCE = 0.01  # share of training entities that may begin with I- (annotation slips) in IOB2 data


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str:
    """The scheme the training tags follow: IOBES (E- or S- tags occur), IOB2 (entities begin with B-; at most
    1 % of them with I-), IOB1 (entities begin with I-, B- only between two of one type), IO (no B-); "" when
    the tags spell no entities (`is_chunk_scheme`)."""
    sentences = [list(s) for s in sentences]
    names = sorted({t for s in sentences for t in s})
    if not is_chunk_scheme(names):
        return ""
    prefixes = {split_tag(t)[0] for t in names}
    if prefixes & {"E", "S"}:
        return IOBES
    if "B" not in prefixes:
        return IO
    begins_with_b = begins_with_i = 0
    for tags in sentences:
        prev = (OUTSIDE, "")
        for tag in tags:
            cur = split_tag(tag)
            if cur[0] == "B":
                begins_with_b += 1
            elif cur[0] == "I" and _starts_at(prev, cur):
                begins_with_i += 1
            prev = cur
    return IOB2 if begins_with_i <= IOB2_TOLERANCE * (begins_with_b + begins_with_i) else IOB1


def allowed_transitions(label_names: Sequence[str], scheme: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first [C], follows [C, C] (previous, next), last [C]) booleans: which tags may open a sentence, follow one
    another and close a sentence under `scheme`. IOB2: I-X only after B-X or I-X. IOBES: besides, B-X and I-X go
    on with I-X or E-X only, and a sentence ends outside an entity. Other schemes allow everything."""
    parts = [split_tag(t) for t in label_names]
    count = len(parts)
    first, last = np.ones(count, bool), np.ones(count, bool)
    follows = np.ones((count, count), bool)
    if scheme not in (IOB2, IOBES):
        return first, follows, last
    for j, (prefix, kind) in enumerate(parts):
        continues = prefix in ("I", "E")  # must continue an open entity of its type
        if continues:
            first[j] = False
            follows[:, j] = [p in ("B", "I") and k == kind for p, k in parts]
        if scheme == IOBES and prefix in ("B", "I"):  # an open entity: only I-X or E-X of its type come next
            last[j] = False
            follows[j, :] = [p in ("I", "E") and k == kind for p, k in parts]
    return first, follows, last


def decode_tags(
    logits: np.ndarray, word_counts: np.ndarray, label_names: Sequence[str], scheme: str, decoding: str = "viterbi"
) -> np.ndarray:
    """[W] tag ids from [W, C] per-word logits, sentences of `word_counts` [T] words in order: each word's argmax,
    or (viterbi) the sequence of most probable words' tags (sum of log-softmax) that `scheme` allows, so that no
    entity is spelled by a broken sequence (an I-PER after O, a B-ORG followed by I-LOC). Where the argmax already
    spells valid entities the two agree."""
    logits = np.asarray(logits, dtype=np.float64)
    if decoding == "argmax" or scheme not in (IOB2, IOBES) or len(logits) == 0:
        return logits.argmax(axis=-1)
    first, follows, last = (np.where(a, 0.0, -np.inf) for a in allowed_transitions(label_names, scheme))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # [W, C]
    counts = np.asarray(word_counts, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])  # [T + 1]
    out = np.empty(len(logits), dtype=np.int64)
    order = np.argsort(counts, kind="stable")  # sentences of like length share a padded block
    for block in np.array_split(order, max(1, len(order) // _DECODE_BLOCK)):
        _viterbi_block(log_p, offsets, counts, block, (first, follows, last), out)
    return out


_DECODE_BLOCK = 256  # sentences decoded together (padded to the longest of them)


def _viterbi_block(log_p, offsets, counts, block, penalties, out) -> None:
    """Viterbi over the sentences `block` at once, padded to their longest; writes their tags into `out`."""
    first, follows, last = penalties  # [C], [C, C], [C]: 0 allowed, -inf forbidden
    lengths = counts[block]  # [B]
    width, tags = int(lengths.max(initial=0)), log_p.shape[1]
    if width == 0:
        return
    steps = np.minimum(np.arange(width)[None, :], np.maximum(lengths, 1)[:, None] - 1)  # [B, L]
    positions = np.minimum(offsets[block][:, None] + steps, len(log_p) - 1)  # past a sentence's end: never used
    scores = log_p[positions]  # [B, L, C]
    best = scores[:, 0] + first  # [B, C] best score of a path ending in each tag
    back = np.zeros((len(block), width, tags), dtype=np.int64)  # [B, L, C] the previous tag on that path
    keep = np.arange(tags)
    for t in range(1, width):
        candidates = best[:, :, None] + follows[None]  # [B, C prev, C next]
        back[:, t] = candidates.argmax(axis=1)
        moved = candidates.max(axis=1) + scores[:, t]
        going = (t < lengths)[:, None]  # [B, 1] sentences still running
        best = np.where(going, moved, best)
        back[:, t] = np.where(going, back[:, t], keep[None, :])
    tag = (best + last).argmax(axis=1)  # [B]
    path = np.empty((len(block), width), dtype=np.int64)
    path[:, width - 1] = tag
    for t in range(width - 1, 0, -1):
        tag = back[np.arange(len(block)), t, tag]
        path[:, t - 1] = tag
    for row, sentence in enumerate(block):
        start, count = offsets[sentence], lengths[row]
        out[start : start + count] = path[row, :count]
