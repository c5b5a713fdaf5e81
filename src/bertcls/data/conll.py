"""CoNLL-style files: one word per line (`word<TAB or spaces>...<TAB>tag`), a blank line between sentences.

The word is the first column and the tag the last (CoNLL-2003's POS and chunk columns in between are
ignored); `-DOCSTART-` lines are skipped. Each sentence remembers the line it starts on, so a bad
sentence is reported by file and line. Plain or gzip-compressed (`.gz`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from bertcls.errors import DataError

CONLL_SUFFIXES = (".conll", ".conll03", ".iob", ".iob2", ".bio", ".bioes")
DOCSTART = "-DOCSTART-"


def is_conll(path: str | Path) -> bool:
    """Whether the file's name says CoNLL (a `.gz` after the suffix is allowed)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in CONLL_SUFFIXES


def _lines(path: Path) -> list[str]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not valid UTF-8 ({err.reason} on line {line}). Re-save it as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}."
        ) from None
    return text.splitlines()


def read_conll(path: str | Path) -> dict[str, list]:
    """{'tokens': [[word, ...], ...], 'tags': [[tag, ...], ...], 'line': [first line of each sentence]}."""
    path = Path(path)
    tokens, tags, lines = [], [], []
    words: list[str] = []
    labels: list[str] = []
    start = 0
    for number, line in enumerate([*_lines(path), ""], start=1):
        # With tabs, a word may hold spaces or be only whitespace (tweets do); else fields are space-separated.
        fields = [f.strip("\r\n") for f in line.split("\t")] if "\t" in line else line.split()
        if not line.strip() or fields[0].strip() == DOCSTART:
            if words:
                tokens.append(words)
                tags.append(labels)
                lines.append(start)
            words, labels = [], []
            continue
        if len(fields) < 2 or not fields[-1].strip():
            raise DataError(
                f"{path}, line {number}: {line.strip()[:60]!r} has a word but no tag. A CoNLL file holds one word "
                "per line, then its tag after a tab or spaces (the tag in the last column), and a blank line "
                "between sentences; fix the line or remove it."
            )
        if not words:
            start = number
        words.append(fields[0])
        labels.append(fields[-1].strip())
    if not tokens:
        raise DataError(
            f"{path} holds no sentences. A CoNLL file holds one word per line with its tag after a tab or spaces, "
            "and a blank line between sentences."
        )
    return {"tokens": tokens, "tags": tags, "line": lines}
