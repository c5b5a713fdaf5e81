"""The predict job: score a table file with a logged or registered model, in batches, into a new file.

Every input row comes out once, in order, with all its columns and the model's answer beside them (the pyfunc's
columns: `label` and `prob_<label>`, `labels` for multi-label, `score` for regression, `entities` for a word
tagger). The file is checked and the model loaded before the run starts; the output is written atomically
(`serving.tables`), so a bad row, an error or a kill leaves no partial output. The run logs the rows, the
throughput, the model's lineage and the input file as an MLflow dataset input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from bertcls.config import DEFAULT_EXPERIMENT
from bertcls.errors import ConfigError, DataError, InputError
from bertcls.serving.predictor import Predictor, predictions_frame
from bertcls.serving.tables import AtomicTableWriter, read_chunks, table_format
from bertcls.serving.tagging import entities_frame
from bertcls.tracking import runs
from bertcls.tracking.registry import ModelRef, resolve_model_uri

PREDICTED_PREFIX = "predicted_"  # an answer column whose name the input already uses gets this prefix


@dataclasses.dataclass
class PredictOutcome:
    run_id: str
    output: Path
    rows: int
    seconds: float
    renamed: dict[str, str]  # answer column -> the name it was written under (it clashed with an input column)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def predict(
    model_uri: str,
    input_path: str,
    output_path: str,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    chunk_rows: int = 8192,
    calibrated: bool = True,
    threshold: float | None = None,
    experiment: str | None = DEFAULT_EXPERIMENT,
    progress: bool = True,
) -> PredictOutcome:
    """Score `input_path` with the model into `output_path`; refuse a bad file or model before any run or write."""
    source, target = Path(input_path), Path(output_path)
    fmt_in, fmt_out = _check_paths(source, target, batch_size, chunk_rows, threshold)
    ref = resolve_model_uri(model_uri)
    predictor = Predictor.from_dir(ref.local_dir, batch_size)
    columns = _check_columns(source, fmt_in, predictor, text_column, text_pair_column)
    if threshold is not None and not predictor.is_multilabel:
        raise ConfigError(
            f"threshold applies to multi-label models; {model_uri} answers one label per text (or a score, or "
            "entities). Drop threshold."
        )
    total = _scan_texts(source, fmt_in, columns, chunk_rows)
    params = {
        "model_uri": model_uri,
        "input": str(source),
        "output": str(target),
        "text_column": text_column,
        "text_pair_column": text_pair_column or "",
        "batch_size": batch_size,
        "chunk_rows": chunk_rows,
        "calibrated": calibrated,
        "threshold": "" if threshold is None else threshold,
    }
    with runs.tracked_run(experiment, run_name=f"predict {ref.name or ref.source_run_id} on {source.name}") as run:
        runs.log_params(params)
        runs.set_tags(_lineage_tags(model_uri, ref))
        runs.set_environment_tags()
        start = time.perf_counter()
        renamed: dict[str, str] = {}
        bar = tqdm(total=total, unit="row", desc=f"scoring {source.name}", disable=not progress)
        with AtomicTableWriter(target, fmt_out) as writer:
            for chunk in read_chunks(source, fmt_in, chunk_rows):
                answers = _answers(predictor, chunk, columns, writer.rows, calibrated, threshold)
                writer.write(_beside(chunk, answers, renamed))
                bar.update(len(chunk))
            writer.commit()
        bar.close()
        seconds = time.perf_counter() - start
        runs.log_metrics({"rows": writer.rows, "seconds": seconds, "rows_per_s": writer.rows / max(seconds, 1e-9)})
        if renamed:
            runs.log_dict(renamed, "renamed_columns.json")
        runs.log_file_input(source, fmt_in, _digest(source), context="predict")
        return PredictOutcome(run.info.run_id, target, writer.rows, seconds, renamed)


def _check_paths(source: Path, target: Path, batch_size: int, chunk_rows: int, threshold) -> tuple[str, str]:
    """The input and output formats; DataError / ConfigError for what cannot work, before anything starts."""
    fmt_in, fmt_out = table_format(source, "input"), table_format(target, "output")
    if not source.is_file():
        raise DataError(f"The input file {str(source)!r} does not exist (or is not a file). Check the path.")
    if target.resolve() == source.resolve():
        raise ConfigError(
            f"The output {str(target)!r} is the input file: scoring would overwrite what it reads. Name another "
            "output file."
        )
    if not target.parent.is_dir():
        raise ConfigError(
            f"The output's folder {str(target.parent)!r} does not exist. Create it, or name an output file in an "
            "existing folder."
        )
    if batch_size < 1 or chunk_rows < 1:
        raise ConfigError(f"batch_size and chunk_rows must be at least 1, got {batch_size} and {chunk_rows}.")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a probability between 0 and 1, got {threshold}.")
    return fmt_in, fmt_out


def _check_columns(source: Path, fmt: str, predictor: Predictor, text_column: str, pair_column) -> tuple:
    """(text column, pair column or None) after checking the file's first rows hold them."""
    first = next(read_chunks(source, fmt, 16), pd.DataFrame())
    wanted = [text_column, *([pair_column] if predictor.has_text_pair else [])]
    if predictor.has_text_pair and not pair_column:
        raise ConfigError(
            "This model reads sentence pairs: name the second text's column with text_pair_column (and the first's "
            "with text_column)."
        )
    missing = [c for c in wanted if c not in first.columns]
    if missing:
        raise DataError(
            f"{str(source)!r} has no column {', '.join(repr(c) for c in missing)} (its columns: "
            f"{', '.join(repr(str(c)) for c in first.columns) or 'none'}). Name the text column with "
            "text_column (and text_pair_column for a pair model)."
        )
    return text_column, pair_column if predictor.has_text_pair else None


def _scan_texts(source: Path, fmt: str, columns: tuple, chunk_rows: int) -> int:
    """The file's row count, after reading its text column(s) through once: a row without text is refused here,
    before a run exists or a byte is written (reading one or two columns costs seconds; scoring, hours)."""
    wanted = [c for c in columns if c]
    rows = 0
    for chunk in read_chunks(source, fmt, max(chunk_rows, 65536), wanted):
        for column in wanted:
            _strings(chunk, column, rows)
        rows += len(chunk)
    return rows


def _strings(chunk: pd.DataFrame, column: str, offset: int) -> list[str]:
    """The column's cells as str; an InputError naming the file rows (1-based, after a header) that hold none."""
    values = chunk[column].tolist()
    bad = [i for i, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        shown = ", ".join(str(offset + i + 1) for i in bad[:10]) + (
            f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        )
        raise InputError(
            f"Column {column!r} holds no text in data row(s) {shown} (1-based, the header not counted). Fill them "
            "(an empty string is a valid text; in csv / tsv an empty cell reads as missing) or drop those rows. "
            "Nothing was written."
        )
    return values


def _answers(predictor: Predictor, chunk: pd.DataFrame, columns, offset: int, calibrated: bool, threshold):
    """The model's answer per row of the chunk, as the logged pyfunc gives it."""
    text_column, pair_column = columns
    if len(chunk) == 0:
        return pd.DataFrame(index=chunk.index)
    texts = _strings(chunk, text_column, offset)
    if predictor.is_tagger:
        return entities_frame(predictor, texts, None, False)
    pairs = _strings(chunk, pair_column, offset) if pair_column else None
    outputs = predictor.predict(texts, pairs)  # [R, C] logits or [R, 1] scores, in row order
    return predictions_frame(predictor, np.asarray(outputs), calibrated, threshold)


def _beside(chunk: pd.DataFrame, answers: pd.DataFrame, renamed: dict[str, str]) -> pd.DataFrame:
    """The input rows with the answer columns appended; an answer named like an input column is prefixed."""
    answers = answers.set_axis(chunk.index)
    names = {}
    for column in answers.columns:
        name = column if column not in chunk.columns else PREDICTED_PREFIX + column
        if name in chunk.columns:
            raise DataError(
                f"The input already has columns {column!r} and {name!r}: the answer column {column!r} has no free "
                "name. Rename one of them."
            )
        names[column] = name
        if name != column:
            renamed[column] = name
    return pd.concat([chunk, answers.rename(columns=names)], axis=1)


def _lineage_tags(model_uri: str, ref: ModelRef) -> dict[str, str]:
    return {
        "bertcls_job": "predict",
        "scored_model_uri": model_uri,
        "scored_model_name": ref.name or "",
        "scored_model_version": ref.version or "",
        "source_run_id": ref.source_run_id or "",
    }


def _digest(path: Path) -> str:
    """The first 16 hex digits of the file's SHA-256: the dataset input's digest (same bytes, same digest)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def describe(outcome: PredictOutcome) -> str:
    lines = [
        f"predict run {outcome.run_id}: {outcome.rows} rows -> {outcome.output.resolve()} in {outcome.seconds:.1f} s "
        f"({outcome.rows_per_s:.0f} rows/s)"
    ]
    lines += [
        f"  answer column {a!r} written as {b!r} (the input has a column {a!r})" for a, b in outcome.renamed.items()
    ]
    return "\n".join(lines)
