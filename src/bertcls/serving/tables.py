"""Tables scored in batches: csv / tsv / jsonl / parquet read in chunks and written atomically (no mlflow).

A chunk keeps the file's row order. CSV and TSV cells are read as strings (an empty cell is missing), so every
input column is written back as it was read. The output appears under its name only once every row is written:
it is built in a hidden file beside it and renamed over it at the end, so a failed or killed job leaves no partial
output, and an earlier output stays until the new one is complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertcls.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
SEPARATORS = {"csv": ",", "tsv": "\t"}
PARTIAL_SUFFIX = ".partial"  # the hidden file an output is built in: .<name>.partial beside it


def table_format(path: Path, role: str) -> str:
    """csv, tsv, jsonl or parquet from the file name; a DataError naming the accepted endings otherwise."""
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"Cannot tell the format of the {role} file {str(path)!r} from its name: name it .csv, .tsv, .jsonl "
            "(one JSON object per line) or .parquet."
        )
    return found


def read_chunks(path: Path, fmt: str, rows: int, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The table as DataFrames of up to `rows` rows, in file order (only `columns`, when given: csv and parquet
    then read nothing else); a DataError names the file when it does not parse as its format."""
    try:
        if fmt == "parquet":
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
                yield batch.to_pandas()
        elif fmt == "jsonl":
            for chunk in pd.read_json(path, lines=True, chunksize=rows, dtype=False, convert_dates=False):
                yield chunk if columns is None else chunk.reindex(columns=columns)
        else:
            yield from pd.read_csv(path, sep=SEPARATORS[fmt], dtype=str, chunksize=rows, usecols=columns)
    except (ValueError, pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise DataError(
            f"{str(path)!r} does not read as {fmt}: {first}. Check the file (its name says {fmt}), or convert it to "
            "one of .csv, .tsv, .jsonl, .parquet."
        ) from None


def partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{PARTIAL_SUFFIX}")


class AtomicTableWriter:
    """Appends DataFrames to a hidden file beside `output`; `commit()` renames it over `output`, `discard()` (or
    leaving the `with` block on an error) deletes it. List and dict cells are JSON text in csv / tsv / parquet,
    native in jsonl."""

    def __init__(self, output: Path, fmt: str):
        self.output, self.fmt = output, fmt
        self.partial = partial_path(output)
        self.partial.unlink(missing_ok=True)  # a job killed outright (SIGKILL) left it: it is not an output
        self._handle = None if fmt == "parquet" else open(self.partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._parquet: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "jsonl":
            if len(frame):
                text = frame.to_json(orient="records", lines=True, force_ascii=False)
                self._handle.write(text if text.endswith("\n") else text + "\n")
        elif self.fmt == "parquet":
            table = self._arrow(_json_cells(frame))
            self._parquet = self._parquet or pq.ParquetWriter(self.partial, table.schema)
            self._parquet.write_table(table)
        else:
            _json_cells(frame).to_csv(self._handle, sep=SEPARATORS[self.fmt], header=self.rows == 0, index=False)
        self.rows += len(frame)

    def _arrow(self, frame: pd.DataFrame) -> pa.Table:
        """The chunk as an Arrow table with the first chunk's schema (a column all-missing in one chunk keeps
        its type)."""
        if self._parquet is None:
            return pa.Table.from_pandas(frame, preserve_index=False)
        return pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def commit(self) -> None:
        """Make the output appear, complete (an empty table still gets its header row / schema)."""
        if self.fmt == "parquet" and self._parquet is None:
            self._parquet = pq.ParquetWriter(self.partial, pa.schema([]))
        self._close()
        os.replace(self.partial, self.output)

    def discard(self) -> None:
        self._close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> AtomicTableWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.discard()


def _json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """List / dict cells (label sets, entities) as JSON text, so csv and parquet columns keep one type."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda value: isinstance(value, (list, dict))).any():
            out[column] = out[column].map(lambda value: json.dumps(value, ensure_ascii=False))
    return out
