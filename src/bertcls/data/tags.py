"""Word tags and the entities they spell: IOB1, IOB2 (BIO) and IOBES read as given, chunked as seqeval does.

A tag is `O`, or a prefix (B, I, E, S) and a type joined by `-` (`B-PER`); a tag without such a prefix
(the IO scheme's `PER`) reads as `I-PER`. Chunking follows seqeval's default (conlleval-compatible) rules, so
the entities the served model returns are the ones the entity F1 was computed on (a test checks this).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    """Whether the tags spell entities (O or prefixed tags): entity F1 means something; else (POS tags) only
    word accuracy does."""
    return any(t == OUTSIDE for t in tag_names) and all(
        t == OUTSIDE or t.partition("-")[0] in PREFIXES for t in tag_names
    )


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
