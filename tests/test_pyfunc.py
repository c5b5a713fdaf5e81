"""The logged pyfunc model reads texts by column name, refuses what is not text, and holds no pickle.

Real models are logged to a sqlite store in a temp dir and loaded back with mlflow.pyfunc.load_model
(a 1-layer MiniLM with a fresh head: the answers are arbitrary but must be well formed and consistent).
"""

from __future__ import annotations

import math
import stat
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException

from bertcls.errors import InputError
from bertcls.serving.inputs import read_texts
from tests import e2e

LABELS = e2e.UNTRAINED_LABELS

pytestmark = pytest.mark.xdist_group("pyfunc")  # its module fixtures build models once: one xdist worker


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pyfunc")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(mlflow.MlflowClient().create_experiment("pyfunc", artifact_location=str(root / "art")))
    yield root
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def single_uri(store, small_model_dir):
    return e2e.log_untrained_model(store / "single", small_model_dir, pairs=False)


@pytest.fixture(scope="module")
def single(single_uri):
    return mlflow.pyfunc.load_model(single_uri)


@pytest.fixture(scope="module")
def tempered_uri(store, small_model_dir):
    return e2e.log_untrained_model(store / "tempered", small_model_dir, pairs=False, temperature=3.0)


@pytest.fixture(scope="module")
def paired(store, small_model_dir):
    return mlflow.pyfunc.load_model(e2e.log_untrained_model(store / "paired", small_model_dir, pairs=True))


def _well_formed(frame: pd.DataFrame, rows: int) -> None:
    assert list(frame.columns) == ["label", "prob_ham", "prob_spam"]
    assert len(frame) == rows and set(frame["label"]) <= set(LABELS)
    assert np.allclose(frame["prob_ham"] + frame["prob_spam"], 1.0)


def test_text_column_is_read_by_name_wherever_it_stands(single):
    by_name = single.predict(pd.DataFrame({"id": ["7"], "text": ["free entry"]}))
    expected = single.predict(["free entry"])
    the_id = single.predict(["7"])
    assert by_name["prob_spam"].iloc[0] == pytest.approx(expected["prob_spam"].iloc[0], abs=1e-7)
    assert by_name["prob_spam"].iloc[0] != pytest.approx(the_id["prob_spam"].iloc[0], abs=1e-7)


@pytest.mark.parametrize(
    "given",
    [
        ["free entry", "see you"],
        ("free entry", "see you"),
        np.array(["free entry", "see you"]),
        np.array(["free entry", "see you"], dtype=object),
        pd.Series(["free entry", "see you"]),
        pd.DataFrame({"text": ["free entry", "see you"]}),
        {"text": ["free entry", "see you"]},
        [{"text": "free entry"}, {"text": "see you"}],
    ],
    ids=["list", "tuple", "array", "object-array", "series", "frame", "dict", "records"],
)
def test_accepted_inputs_agree(single, given):
    out = single.predict(given)
    _well_formed(out, 2)
    assert np.allclose(out["prob_spam"], single.predict(["free entry", "see you"])["prob_spam"], atol=1e-7)


def test_one_string_and_the_empty_string(single):
    _well_formed(single.predict("free entry"), 1)
    _well_formed(single.predict(["", "free entry"]), 2)  # an empty text is a text: the model answers it


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (pd.DataFrame({"txt": ["free entry"]}), r"no 'text' column: expected 'text', received 'txt'"),
        (pd.DataFrame({"id": ["7"], "body": ["x"]}), r"received 'id', 'body'"),
        (pd.DataFrame(["free entry"]), r"no 'text' column: expected 'text', received '0'"),
        (["ok", None, "fine"], r"1 of 3 rows does not: row \(0-based\) 1 \(null\)"),
        (["ok", float("nan")], r"row \(0-based\) 1 \(NaN\)"),
        ([3, "ok"], r"row \(0-based\) 0 \(int 3\)"),
        ([b"x"], r"row \(0-based\) 0 \(bytes b'x'\)"),
        (pd.DataFrame({"text": ["a", None, 5]}), r"2 of 3 rows do not: rows \(0-based\) 1 \(null\), 2 \(int 5\)"),
        ([], r"The input is empty"),
        (pd.DataFrame({"text": []}), r"The input is empty"),
        (None, r"No input was given"),
        (np.array([["a", "b"]]), r"1-D array of strings, got an array of shape \(1, 2\)"),
        ({"text": ["a", "b"], "other": ["c"]}, r"different lengths"),
    ],
)
def test_bad_input_is_refused_with_what_was_expected(single, given, message):
    with pytest.raises(MlflowException, match=message) as caught:
        single.predict(given)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_pair_model_needs_both_columns(paired):
    frame = pd.DataFrame({"text_pair": ["b", "d"], "id": [1, 2], "text": ["a", "c"]})
    _well_formed(paired.predict(frame), 2)
    with pytest.raises(MlflowException, match="A plain list of texts has no text pairs"):
        paired.predict(["a", "b"])
    with pytest.raises(MlflowException, match="no 'text_pair' column: expected 'text' and 'text_pair'"):
        paired.predict(pd.DataFrame({"text": ["a"]}))


def test_calibrated_probabilities_by_default_and_raw_on_request(tempered_uri):
    model = mlflow.pyfunc.load_model(tempered_uri)
    assert "calibrated" in [spec.name for spec in model.metadata.get_params_schema().params]
    texts = ["free entry to win a prize", "see you at noon", "call me"]
    calibrated, raw = model.predict(texts), model.predict(texts, params={"calibrated": False})
    _well_formed(calibrated, 3)
    _well_formed(raw, 3)
    # softmax(z / T): the log-odds shrink by exactly the fitted temperature, and the argmax never moves
    log_odds = lambda f: np.log(f["prob_spam"]) - np.log(f["prob_ham"])  # noqa: E731
    assert np.allclose(log_odds(raw), 3.0 * log_odds(calibrated), atol=1e-4)
    assert list(raw["label"]) == list(calibrated["label"])
    with pytest.raises(MlflowException, match="calibrated"):
        model.predict(texts, params={"calibrated": "maybe"})


def test_logged_model_holds_no_pickle_and_is_readable_by_others(single_uri):
    local = Path(mlflow.artifacts.download_artifacts(single_uri))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    weights = next(p for p in files if p.name == "model.safetensors")
    assert weights.stat().st_mode & stat.S_IROTH, oct(weights.stat().st_mode)


def test_saved_model_files_follow_the_umask(tmp_path, small_model_dir):
    import os

    from bertcls.model.config import ModelConfig
    from bertcls.model.weights import load_hf_checkpoint, save_model

    config = ModelConfig.from_json_file(small_model_dir / "config.json", num_labels=2)
    model, _ = load_hf_checkpoint(small_model_dir, config)
    previous = os.umask(0o022)
    try:
        saved = save_model(model, tmp_path / "m", LABELS)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in saved.iterdir()} == {0o644}


# Fuzzing: any value a caller may pass; read_texts either gives strings or raises InputError.
_scalars = st.one_of(
    st.text(max_size=30),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.binary(max_size=8),
)
_nested = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_column_names = st.sampled_from(["text", "text_pair", "id", "label", "0", "Text"])
_frames = st.integers(min_value=0, max_value=4).flatmap(
    lambda rows: st.dictionaries(_column_names, st.lists(_scalars, min_size=rows, max_size=rows), max_size=3).map(
        pd.DataFrame
    )
)
_inputs = st.one_of(_nested, _frames, st.lists(st.text(max_size=20), max_size=5), _column_names)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(value=_inputs, pairs=st.booleans())
def test_read_texts_fuzz(value, pairs):
    try:
        texts, text_pairs = read_texts(value, pairs)
    except InputError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert texts and all(isinstance(t, str) for t in texts)
    assert (text_pairs is not None) == pairs
    if pairs:
        assert len(text_pairs) == len(texts) and all(isinstance(t, str) for t in text_pairs)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(_frames, _nested))
def test_loaded_model_fuzz(single, value):
    try:
        out = single.predict(value)
    except MlflowException as err:
        assert err.error_code == "INVALID_PARAMETER_VALUE" and str(err.message)
        return
    _well_formed(out, len(out))
    assert len(out) >= 1 and not any(math.isnan(p) for p in out["prob_spam"])
