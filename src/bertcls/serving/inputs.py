"""What a loaded model accepts: texts (and text pairs) by name, strings only, checked before inference.

Accepted: a list / tuple / 1-D array / Series of strings, one string, a DataFrame or a dict with a
`text` column (and `text_pair` for pair models) wherever it stands (other columns are ignored). Anything
else, and any value that is not a string (None, NaN, numbers, bytes), is refused with an InputError that
names what was expected, what came, and the offending row positions. An empty string is a valid text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bertcls.errors import InputError

TEXT, TEXT_PAIR = "text", "text_pair"
_SHOWN = 10  # offending rows named in a message


def _usage(has_text_pair: bool) -> str:
    if has_text_pair:
        return (
            "This model reads sentence pairs: pass a DataFrame (or {'dataframe_records': [...]} over REST) with "
            "the columns 'text' and 'text_pair'."
        )
    return (
        "Pass a list of strings, or a DataFrame with a 'text' column (over REST: {'inputs': [...]} or "
        "{'dataframe_records': [{'text': ...}]})."
    )


def _strings(values: Sequence, column: str) -> list[str]:
    """The values as a list of str; an InputError naming the rows that are not strings."""
    bad = [i for i, value in enumerate(values) if not isinstance(value, str)]
    if bad:
        shown = ", ".join(f"{i} ({_describe(values[i])})" for i in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise InputError(
            f"Column {column!r} must hold strings, but {len(bad)} of {len(values)} rows "
            f"{'does' if len(bad) == 1 else 'do'} not: {'row' if len(bad) == 1 else 'rows'} (0-based) {shown}{more}. "
            "Replace missing values with text (an empty string is allowed) or drop those rows; convert numbers "
            "and bytes to str yourself if they really are text."
        )
    return [str(value) for value in values]


def _describe(value) -> str:
    if isinstance(value, np.generic):  # numpy scalars from REST arrays: say int, not int64 np.int64(...)
        value = value.item()
    if value is None:
        return "null"
    if isinstance(value, float) and np.isnan(value):
        return "NaN"
    return f"{type(value).__name__} {value!r:.40}"


def _column(frame: pd.DataFrame, name: str, has_text_pair: bool) -> list[str]:
    if name not in frame.columns:
        expected = "'text' and 'text_pair'" if has_text_pair else "'text'"
        positional = len(frame.columns) > 0 and all(isinstance(c, int) or str(c).isdigit() for c in frame.columns)
        spark = (
            " Columns named by position come from mlflow.pyfunc.spark_udf called on bare columns: call it on a "
            "struct, udf(struct('text')), so they keep their names."
            if positional
            else ""
        )
        raise InputError(
            f"The input has no {name!r} column: expected {expected}, received "
            f"{', '.join(repr(str(c)) for c in frame.columns) or 'no columns'}. {_usage(has_text_pair)}{spark}"
        )
    return _strings(list(frame[name]), name)


def _as_rows(model_input) -> pd.DataFrame | list:
    """A DataFrame for named inputs, a plain list for positional ones."""
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, Mapping):
        columns = {
            k: list(v) if isinstance(v, list | tuple | np.ndarray | pd.Series) else [v] for k, v in model_input.items()
        }
        if len({len(v) for v in columns.values()}) > 1:
            raise InputError(
                f"The input columns have different lengths ({', '.join(f'{k}: {len(v)}' for k, v in columns.items())})."
                " Give every column one value per row."
            )
        return pd.DataFrame(columns)
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.Series):
        return list(model_input)
    if isinstance(model_input, np.ndarray):
        if model_input.ndim != 1:
            raise InputError(
                f"Expected a 1-D array of strings, got an array of shape {model_input.shape}. "
                "Pass one string per row, or a DataFrame with named columns."
            )
        return list(model_input)
    if isinstance(model_input, Sequence) and not isinstance(model_input, bytes | bytearray):
        return list(model_input)
    raise InputError(f"Cannot read texts from a {type(model_input).__name__}. {_usage(False)}")


def read_texts(model_input, has_text_pair: bool) -> tuple[list[str], list[str] | None]:
    """(texts, pairs or None) from any accepted input; InputError for anything else."""
    if model_input is None:
        raise InputError(f"No input was given (None). {_usage(has_text_pair)}")
    rows = _as_rows(model_input)
    if len(rows) == 0:
        raise InputError(f"The input is empty: there is no text to classify. {_usage(has_text_pair)}")
    if isinstance(rows, pd.DataFrame):
        texts = _column(rows, TEXT, has_text_pair)
        pairs = _column(rows, TEXT_PAIR, has_text_pair) if has_text_pair else None
        return texts, pairs
    if has_text_pair:
        raise InputError(f"A plain list of texts has no text pairs. {_usage(True)}")
    if all(isinstance(row, Mapping) for row in rows):  # records: [{"text": ...}, ...]
        return read_texts(pd.DataFrame([dict(row) for row in rows]), has_text_pair)
    return _strings(rows, TEXT), None


TOKENS = "tokens"


def _tagging_usage() -> str:
    return (
        "This model tags words: pass a list of strings or a DataFrame with a 'text' column (over REST: {'inputs': "
        "[...]} or {'dataframe_records': [{'text': ...}]}), or pre-split words as a 'tokens' column of string lists "
        "({'dataframe_records': [{'tokens': ['Leon', 'lives', 'in', 'Sheffield']}]})."
    )


def _word_lists(values: Sequence) -> list[list[str]]:
    """The 'tokens' column as lists of str; an InputError naming the rows that are not lists of strings."""
    bad = [
        i
        for i, value in enumerate(values)
        if not isinstance(value, list | tuple | np.ndarray) or not all(isinstance(w, str) for w in value)
    ]
    if bad:
        shown = ", ".join(f"{i} ({_describe(values[i])})" for i in bad[:_SHOWN])
        raise InputError(
            f"Column 'tokens' must hold lists of strings (the words of each sentence), but {len(bad)} of "
            f"{len(values)} rows do not: rows (0-based) {shown}. {_tagging_usage()}"
        )
    return [[str(w) for w in value] for value in values]


def read_tagging_input(model_input) -> tuple[list[str] | None, list[list[str]] | None]:
    """(texts, None) or (None, word lists) for a word tagger; InputError for anything else."""
    if model_input is None:
        raise InputError(f"No input was given (None). {_tagging_usage()}")
    rows = _as_rows(model_input)
    if isinstance(rows, list) and rows and all(isinstance(row, Mapping) for row in rows):
        rows = pd.DataFrame([dict(row) for row in rows])
    if len(rows) == 0:
        raise InputError(f"The input is empty: there is nothing to tag. {_tagging_usage()}")
    if isinstance(rows, pd.DataFrame):
        if TOKENS in rows.columns and TEXT not in rows.columns:
            return None, _word_lists(list(rows[TOKENS]))
        if TEXT not in rows.columns:
            raise InputError(
                f"The input has neither a 'text' nor a 'tokens' column (received "
                f"{', '.join(repr(str(c)) for c in rows.columns) or 'no columns'}). {_tagging_usage()}"
            )
        return _strings(list(rows[TEXT]), TEXT), None
    return _strings(rows, TEXT), None
