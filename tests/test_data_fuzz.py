"""Fuzzing the file readers: any CSV / TSV / JSON / JSONL file gives a well-formed dataset or a BertclsError.

Generated files vary column names and counts, cell types (ints, floats, strings, bools, nulls), encodings
(UTF-8, UTF-8 with a BOM, Latin-1, UTF-16), quoting, delimiters and newlines inside cells, huge cells, ragged
rows, empty and header-only files. Every case goes through `prepare_data` and either raises a BertclsError with
a message or gives a well-formed result: non-empty splits, label ids 0..C-1 all used, real label names, every
row read kept or counted as dropped (for plausible files: exactly the rows written without text or label).
A plausible, well-formed file must be read: it may be refused only for a reason `_refusal_expected` names.

Cases are derandomized (the same on every run). 150 per format by default (about 20 s in all); a longer hunt:
BERTCLS_FUZZ_EXAMPLES=2000 pytest tests/test_data_fuzz.py --hypothesis-show-statistics (events sort the outcomes).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import re
import tempfile
from pathlib import Path

import datasets
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bertcls.config import DataConfig
from bertcls.data import prepare_data
from bertcls.errors import BertclsError

FUZZ = settings(
    max_examples=int(os.environ.get("BERTCLS_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=True,  # the same cases on every run and machine
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Strings a user's file may hold: delimiters, quotes, newlines, BOMs, blanks, spellings pandas reads as missing.
TRICKY = [",", "\t", '"', "'", ";", "\n", "\r\n", "\r", 'say "hi", ok', "a\tb", "line 1\nline 2", "  ", "", "\ufeff"]
TRICKY += ["NA", "null", "None", "nan", "N/A", "True", "1", "1.5", "-0", "1e400", "café", "naïve ☃", "\x00"]
LABELS = ["ham", "spam", "eggs", "positive", "negative", " padded ", "ÄÖÜ", "a,b", 'q"t']
HUGE = "lorem ipsum dolor " * 12_000  # a 216k-character cell

cell_text = st.one_of(st.text(max_size=25), st.sampled_from(TRICKY))
VALUES = {  # nasty values of each kind; how often each appears is up to the table's random generator
    "text": st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(TRICKY)),
    "int": st.integers(-3, 3) | st.integers(-(2**70), 2**70),
    "float": st.floats(allow_nan=True, allow_infinity=True),
    "any": st.one_of(cell_text, st.integers(), st.floats(), st.booleans(), st.none()),
}
column_name = st.one_of(
    st.sampled_from(["text", "label", "sms", "kind", "Text", "label ", "", "a,b", 'q"c', "line\nbreak", "é"]),
    st.text(min_size=1, max_size=10),
)


def _text_cell(draw, rnd, row: int):
    """Mostly distinct plain texts (so enough rows survive), else anything a text column may hold."""
    return f"message {row} {rnd.choice(LABELS)}" if rnd.random() < 0.85 else draw(VALUES["text"])


def _other_cell(draw, rnd, kind: str):
    """A cell of a column that is not read: mostly plain, now and then anything of its kind."""
    plain = {"text": "other", "int": rnd.randrange(100), "float": rnd.random(), "any": rnd.choice([1, "x", True])}
    return plain[kind] if rnd.random() < 0.9 else draw(VALUES[kind])


def _label_cell(draw, rnd, kind: str, classes: list):
    """A label of the column's kind: a class name, a small int, a bool, a float score, or anything."""
    if kind == "label":
        return rnd.choice(classes)
    if kind == "int":
        return rnd.choice([0, 1, 2]) if rnd.random() < 0.9 else draw(VALUES["int"])
    if kind == "bool":
        return rnd.random() < 0.5
    if kind == "float":
        return rnd.choice([0.0, 1.0, 2.0, round(rnd.uniform(0, 5), 3)]) if rnd.random() < 0.9 else draw(VALUES["float"])
    return draw(VALUES["any"])


@dataclasses.dataclass
class Table:
    rnd: random.Random  # picks how the file is written, too
    names: list[str]
    rows: list[list]
    text_column: str
    text_pair_column: str | None
    label_column: str
    max_dropped_fraction: float
    hostile: bool  # odd names, kinds and shapes, broken files; else a plausible file with odd values

    def odd(self, p: float) -> bool:
        """True with probability p, in hostile cases only."""
        return self.hostile and self.rnd.random() < p


plain_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC_ é", min_size=1, max_size=8)


@st.composite
def tables(draw):
    """Column names, rows of cells and the columns to read, for one file.

    A seeded `random.Random` (drawn from hypothesis, so cases stay reproducible) picks the shape and how often
    each oddity appears; hypothesis draws the odd values themselves.
    """
    rnd = draw(st.randoms(use_true_random=True))
    hostile = rnd.random() < 0.5
    n_cols = rnd.choice([2, 2, 3, 3, 4, 5, 1] if hostile else [2, 3, 4])
    unique = not hostile or rnd.random() < 0.9
    names = draw(st.lists(column_name if hostile else plain_name, min_size=n_cols, max_size=n_cols, unique=unique))
    kinds = [rnd.choice(["text", "int", "float", "any"]) for _ in range(n_cols)]
    text_col, label_col = rnd.randrange(n_cols), rnd.randrange(n_cols)
    if label_col == text_col and n_cols > 1 and (not hostile or rnd.random() < 0.9):
        label_col = (text_col + 1) % n_cols
    kinds[text_col] = rnd.choice(["text"] * 6 + ["int", "any"]) if hostile else "text"
    kinds[label_col] = rnd.choice(["label"] * 4 + ["int", "int", "bool", "float"] + ["any"] * hostile)
    classes = rnd.sample(LABELS, rnd.choice([2, 2, 3, 1] if hostile else [2, 3]))
    null_rate = rnd.choice([0.0, 0.0, 0.0, 0.02, 0.05, 0.3, 1.0] if hostile else [0.0, 0.02, 0.05, 0.2])
    rows = []
    for i in range(rnd.choice([30, 30, 60, 12, 5, 1, 0] if hostile else [30, 60])):
        row = []
        for column, kind in enumerate(kinds):
            if rnd.random() < null_rate:
                row.append(None)
            elif column == label_col:
                row.append(_label_cell(draw, rnd, kind, classes))
            else:
                text = column == text_col and kind == "text"
                row.append(_text_cell(draw, rnd, i) if text else _other_cell(draw, rnd, kind))
        rows.append(row)
    if rows and rnd.random() < 0.1:  # a huge cell somewhere
        rows[rnd.randrange(len(rows))][text_col] = HUGE
    others = [c for c in range(n_cols) if c not in (text_col, label_col)]
    pair_col = rnd.choice(others or [text_col]) if rnd.random() < 0.15 else None
    pair = None if pair_col is None else names[pair_col]
    max_dropped = rnd.choice([0.05, 0.05, 0.3, 0.0, 0.99] if hostile else [0.05, 0.3, 0.5])
    return Table(rnd, names, rows, names[text_col], pair, names[label_col], max_dropped, hostile)


ENCODINGS = ["utf-8"] * 5 + ["utf-8-sig", "latin-1", "utf-16"]


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


def _csv_cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _csv_bytes(table: Table, delimiter: str) -> tuple[bytes, bool]:
    """The file's bytes, and whether it is well-formed (a header, every row whole, quotes balanced)."""
    rnd, clean = table.rnd, True
    out = io.StringIO()
    quoting = rnd.choice([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=rnd.choice(["\n", "\r\n"]))
    if table.odd(0.1):  # no header at all
        clean = False
    else:
        writer.writerow(table.names)
    ragged = rnd.randrange(len(table.rows)) if table.rows and table.odd(0.1) else None
    for i, row in enumerate(table.rows):
        cells = [_csv_cell(v) for v in row]
        if i == ragged:  # one cell short or one too many
            cells = cells[:-1] if rnd.random() < 0.5 else [*cells, "extra"]
            clean = False
        writer.writerow(cells)
        if quoting == csv.QUOTE_MINIMAL and any("\r" in c for c in cells):
            clean = False  # the csv module leaves a lone CR unquoted: readers rightly take it for a line break
    text = out.getvalue()
    if text and table.odd(0.1):  # a stray quote
        at = rnd.randrange(len(text))
        text = text[:at] + '"' + text[at:]
        clean = False
    return _encode(text, rnd.choice(ENCODINGS if table.hostile else ["utf-8", "utf-8-sig"])), clean


def _json_value(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _json_bytes(table: Table, lines: bool) -> tuple[bytes, bool]:
    """The file's bytes, and whether it is well-formed (one record per row, not cut short)."""
    rnd, clean = table.rnd, True
    records = [
        {n: _json_value(v) for n, v in zip(table.names, row, strict=True) if rnd.random() < 0.98}  # a key left out
        for row in table.rows
    ]
    table.rows = [[r.get(n) for n in table.names] for r in records]  # as a reader sees them
    ascii_only = rnd.random() < 0.5
    if lines:
        newline = rnd.choice(["\n", "\r\n"])
        text = newline.join(json.dumps(r, ensure_ascii=ascii_only) for r in records) + rnd.choice(["", "\n"])
    else:
        shape = rnd.choice(["columns", "scalar"]) if table.odd(0.2) else "records"
        clean = shape == "records"
        body = {"records": records, "columns": {n: [r.get(n) for r in records] for n in table.names}, "scalar": 42}
        text = json.dumps(body[shape], ensure_ascii=ascii_only, indent=rnd.choice([None, 2]))
    if text and table.odd(0.1):  # cut short
        text = text[: rnd.randrange(len(text))]
        clean = False
    return _encode(text, rnd.choice(ENCODINGS if table.hostile else ["utf-8", "utf-8-sig"])), clean


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    """Arrow caches of the generated files go to a temporary folder, not the user's Hugging Face cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets"))
        yield


# pandas' default na_values: a delimited cell spelled like this is read as missing.
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>"}
PANDAS_NA |= {"N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def _missing(value, delimited: bool) -> bool:
    """Whether the reader and cleaning see this written cell as missing (None, NaN, blank, an NA spelling)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    text = _csv_cell(value) if delimited else value
    return isinstance(text, str) and (not text.strip() or (delimited and text in PANDAS_NA))


def _expected_drops(table: Table, delimited: bool) -> tuple[int, int]:
    """(rows with an empty text or pair, rows with text but no label), counted from the rows as written."""
    texts = [table.names.index(c) for c in (table.text_column, table.text_pair_column) if c is not None]
    label = table.names.index(table.label_column)
    no_text = [any(_missing(row[i], delimited) for i in texts) for row in table.rows]
    no_label = [not t and _missing(row[label], delimited) for t, row in zip(no_text, table.rows, strict=True)]
    return sum(no_text), sum(no_label)


def _check_well_formed(data, table: Table, suffix: str, well_formed: bool) -> None:
    """Contiguous label ids, non-empty splits, real label names, and every row read accounted for.

    For a well-formed file the rows read are the rows written; for a plausible one (not hostile) the drops are
    exactly the rows written without text or label.
    """
    for name, split in data.splits.items():
        assert len(split) > 0, name
    if data.task.is_regression:
        assert all(np.isfinite(s.labels).all() for s in data.splits.values())
    else:
        names = data.task.label_names
        assert all(isinstance(n, str) for n in names) and len(set(names)) == len(names) >= 2
        assert not {"None", "nan", "NaN", "<NA>"} & set(names), names
        ids = np.concatenate([s.text_labels() for s in data.splits.values()])
        assert sorted(set(ids.tolist())) == list(range(len(names)))
    stats = data.stats
    kept = sum(s.num_texts for s in data.splits.values()) + stats.duplicates_dropped
    assert kept + stats.empty_text_dropped["train"] + stats.missing_label_dropped["train"] == stats.rows_read["train"]
    if well_formed and len(table.names) >= 2 and not any(c.isdigit() for c in (table.text_column, table.label_column)):
        assert stats.rows_read["train"] == len(table.rows)
        if not table.hostile:
            dropped = (stats.empty_text_dropped["train"], stats.missing_label_dropped["train"])
            assert dropped == _expected_drops(table, delimited=suffix in (".csv", ".tsv"))
            event(f"{suffix} ok: drop counts match the rows written")


def _kind_of(message: str, folder: str) -> str:
    """The error message without the file's folder, digits or quoted names: what kind of error it is."""
    message = re.sub(r"'[^']*'|\d+", "_", message.replace(folder, "<dir>"))
    return " ".join(message.split()[:12])


def _json_kinds(table: Table, column: str) -> int:
    """How many JSON kinds (string, number, boolean, other) a column's non-null values have."""
    index = table.names.index(column)
    values = [row[index] for row in table.rows if row[index] is not None]
    kinds = {bool: "bool", int: "number", float: "number", str: "str"}
    return len({kinds.get(type(value), "other") for value in values})


def _refusal_expected(table: Table, suffix: str, well_formed: bool) -> str | None:
    """Why this file may rightly be refused, or None for a plain, well-formed file that must be read."""
    if table.hostile or not well_formed:
        return "hostile or broken"
    if table.text_pair_column in (table.text_column, table.label_column):
        return "the pair column is the text or label column"
    label = table.names.index(table.label_column)
    if any(isinstance(row[label], float) and abs(row[label]) > 3.4e38 for row in table.rows):
        return "a label beyond float32"
    if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63 for row in table.rows for v in row):
        return "whole numbers beyond 64 bits (the error says to write them as text)"
    texts = [c for c in (table.text_column, table.text_pair_column) if c]
    if suffix in (".json", ".jsonl") and any(_json_kinds(table, c) > 1 for c in texts):
        return "a text column of mixed JSON types (strings beside numbers or booleans)"
    no_text, no_label = _expected_drops(table, delimited=suffix in (".csv", ".tsv"))
    if no_text + no_label > table.max_dropped_fraction * len(table.rows):
        return "more rows without text or label than max_dropped_fraction allows"
    return None


def _run_case(tokenizer, table: Table, suffix: str, content: bytes, well_formed: bool) -> None:
    """prepare_data on the file: a well-formed result, or a BertclsError with a message; nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"train{suffix}"
        path.write_bytes(content)
        try:
            config = DataConfig(
                dataset="",
                train_file=str(path),
                text_column=table.text_column,
                text_pair_column=table.text_pair_column,
                label_column=table.label_column,
                max_dropped_fraction=table.max_dropped_fraction,
            )
            data = prepare_data(config, tokenizer)
        except BertclsError as err:
            assert str(err).strip(), "an error without a message"
            reason = _refusal_expected(table, suffix, well_formed)
            assert reason, f"a readable file was refused: {err}"  # a reader that refuses everything fails here
            event(f"{suffix} error: {_kind_of(str(err), tmp)}")
            return
    event(f"{suffix} ok: {'regression' if data.task.is_regression else 'classification'}")
    _check_well_formed(data, table, suffix, well_formed)


@FUZZ
@given(table=tables())
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_fuzz_delimited_files(tokenizer, datasets_cache, suffix, table):
    content, well_formed = _csv_bytes(table, "\t" if suffix == ".tsv" else ",")
    _run_case(tokenizer, table, suffix, content, well_formed)


@FUZZ
@given(table=tables())
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_fuzz_json_files(tokenizer, datasets_cache, suffix, table):
    content, well_formed = _json_bytes(table, lines=suffix == ".jsonl")
    _run_case(tokenizer, table, suffix, content, well_formed)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl"])
@pytest.mark.parametrize("content", [b"", b"\n", b"\xef\xbb\xbf"])
def test_empty_files_are_a_data_error(tokenizer, datasets_cache, tmp_path, suffix, content):
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content)
    with pytest.raises(BertclsError, match="empty"):
        prepare_data(DataConfig(dataset="", train_file=str(path)), tokenizer)
