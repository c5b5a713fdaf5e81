"""long_text=windows: long texts become overlapping windows; outputs are averaged back to one per text."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bertcls.config import DataConfig
from bertcls.data import prepare_data
from bertcls.data.batching import TokenizedSplit, pool_by_text
from bertcls.data.tokenize import encode_texts
from bertcls.errors import ConfigError, DataError

LONG = " ".join(f"word{i}" for i in range(300))  # several hundred word pieces
SHORT = "a short text"


def _content(tokenizer, ids: list[int]) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i in ids if i not in special]


def test_windows_cover_the_text_and_share_exactly_the_overlap(tokenizer):
    full = _content(tokenizer, tokenizer(LONG)["input_ids"])
    encoded = encode_texts(tokenizer, [SHORT, LONG], None, max_seq_length=64, windows=(16, 100))
    texts = encoded["document"]
    assert texts[0] == 0 and texts[1:] == [1] * (len(texts) - 1)  # the short text is one window, in order
    windows = [_content(tokenizer, ids) for ids, t in zip(encoded["input_ids"], texts, strict=True) if t == 1]
    assert len(windows) == -(-(len(full) - 16) // (62 - 16))  # ceil((n - overlap) / stride), 62 = 64 - [CLS], [SEP]
    assert all(len(ids) <= 64 for ids in encoded["input_ids"])
    assert encoded["length"] == [len(ids) for ids in encoded["input_ids"]]
    for previous, current in zip(windows, windows[1:], strict=False):
        assert previous[-16:] == current[:16]
    rebuilt = windows[0] + [t for w in windows[1:] for t in w[16:]]
    assert rebuilt == full


def test_max_windows_keeps_the_first_windows(tokenizer):
    every = encode_texts(tokenizer, [LONG, SHORT, LONG], None, 64, windows=(0, 100))
    capped = encode_texts(tokenizer, [LONG, SHORT, LONG], None, 64, windows=(0, 2))
    assert capped["document"] == [0, 0, 1, 2, 2]
    first_two = [ids for ids, t in zip(every["input_ids"], every["document"], strict=True) if t == 0][:2]
    assert capped["input_ids"][:2] == first_two


def test_truncation_is_one_row_per_text(tokenizer):
    encoded = encode_texts(tokenizer, [LONG, SHORT], None, 64)
    assert encoded["document"] == [0, 1] and encoded["length"][0] == 64


def test_pooling_averages_each_texts_windows():
    rows = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0]], dtype=np.float32)  # [N, C]
    documents = np.array([0, 0, 1, 2])
    np.testing.assert_allclose(pool_by_text(rows, documents), [[2.0, 1.0], [5.0, 5.0], [0.0, 1.0]])
    split = TokenizedSplit(
        input_ids=np.zeros((4, 8), np.int32),
        token_type_ids=np.zeros((4, 8), np.int32),
        lengths=np.full(4, 8, np.int32),
        labels=np.array([1, 1, 0, 1], np.int32),
        documents=documents,
    )
    assert split.num_texts == 3
    np.testing.assert_array_equal(split.text_labels(), [1, 0, 1])
    assert split.text_labels().dtype == np.int32
    unwindowed = TokenizedSplit(split.input_ids, split.token_type_ids, split.lengths, split.labels)
    assert unwindowed.text_outputs(rows) is rows and unwindowed.num_texts == 4


def test_prepared_windows_carry_their_texts_labels(tokenizer):
    base = dict(dataset="bbc_news", max_seq_length=128, max_train_samples=40, max_eval_samples=20)
    truncated = prepare_data(DataConfig(**base), tokenizer)
    windowed = prepare_data(DataConfig(**base, long_text="windows", window_overlap=32, max_windows=3), tokenizer)
    for name in ("train", "validation", "test"):
        rows, texts = windowed.splits[name], truncated.splits[name]
        assert rows.num_texts == len(texts) and len(texts) < len(rows) <= 3 * len(texts)
        assert np.all(np.diff(rows.documents) >= 0)  # grouped by text, in the split's order
        np.testing.assert_array_equal(rows.labels, texts.labels[rows.documents])
        np.testing.assert_array_equal(rows.text_labels(), texts.labels)
        first = np.searchsorted(rows.documents, np.arange(len(texts)))  # each text's first window
        np.testing.assert_array_equal(rows.input_ids[first], texts.input_ids)  # = the truncated text


def test_predictor_windows_match_pooled_rows(tokenizer, small_model_dir):
    from bertcls.data.reading import ReadingSettings
    from bertcls.model.config import ModelConfig
    from bertcls.model.weights import load_hf_checkpoint
    from bertcls.serving.predictor import Predictor

    config = ModelConfig.from_json_file(small_model_dir / "config.json", head="mean", num_labels=3)
    model, _ = load_hf_checkpoint(small_model_dir, config)
    meta = {"label_names": ["a", "b", "c"], "max_seq_length": 64}  # a model saved before the settings object
    windowed_meta = {**meta, "long_text": "windows", "window_overlap": 16, "max_windows": 4}
    windowed = Predictor(model, tokenizer, ReadingSettings.from_model_meta(windowed_meta))
    truncating = Predictor(model, tokenizer, ReadingSettings.from_model_meta(meta))
    split = windowed.tokenize([LONG, SHORT])
    assert split.num_texts == 2 and len(split) == 5  # 4 capped windows + 1
    rows = truncating.outputs(TokenizedSplit(split.input_ids, split.token_type_ids, split.lengths, split.labels))
    got = windowed.predict([LONG, SHORT])  # [2, 3]
    np.testing.assert_allclose(got, [rows[:4].mean(0), rows[4]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], truncating.predict([SHORT])[0], rtol=1e-5, atol=1e-6)
    assert windowed.settings.data_fields() == {
        "max_seq_length": 64,
        "long_text": "windows",
        "window_overlap": 16,
        "max_windows": 4,
        "tag_decoding": "viterbi",
    }


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"long_text": "chunks"}, "long_text must be one of truncate, windows"),
        ({"long_text": "windows", "window_overlap": 100}, "window_overlap must be between 0 and half"),
        ({"long_text": "windows", "max_windows": 0}, "max_windows must be at least 1"),
    ],
)
def test_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(max_seq_length=128, **fields)


def test_text_pairs_cannot_be_windowed(tmp_path, tokenizer):
    path = tmp_path / "pairs.csv"
    path.write_text("premise,hypothesis,label\n" + "".join(f"p {i},h {i},{i % 2}\n" for i in range(20)))
    config = DataConfig(dataset="", train_file=str(path), text_column="premise", text_pair_column="hypothesis")
    with pytest.raises(DataError, match="text-pair task; long_text=windows"):
        prepare_data(DataConfig(**{**config.__dict__, "long_text": "windows"}), tokenizer)


def test_inference_imports_nothing_the_logged_model_does_not_require():
    """The pyfunc model's requirements omit datasets and torch: loading it must not import them."""
    code = "import sys, bertcls.serving.pyfunc, bertcls.serving.predictor; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not loaded & {"datasets", "torch", "evaluate", "matplotlib"}


def test_training_and_predictor_share_one_inference_loop(tokenizer, small_model_dir):
    """predict_split (compiled eval step on the 8-device mesh) and Predictor agree on a windowed split whose
    last batch is padded: the same plan, scatter and per-text pooling."""
    import dataclasses as dc

    import optax

    from bertcls.data.reading import ReadingSettings
    from bertcls.data.tasks import TaskSpec
    from bertcls.model.config import ModelConfig
    from bertcls.model.weights import load_hf_checkpoint
    from bertcls.serving.predictor import Predictor
    from bertcls.train.loop import predict_split
    from bertcls.train.steps import Trainer, make_data_mesh

    config = ModelConfig.from_json_file(small_model_dir / "config.json", head="mean", num_labels=3)
    model, _ = load_hf_checkpoint(small_model_dir, config)
    meta = {"label_names": ["a", "b", "c"], "max_seq_length": 64, "buckets": [32, 64]}
    settings = ReadingSettings.from_model_meta({**meta, "long_text": "windows", "window_overlap": 16, "max_windows": 4})
    predictor = Predictor(model, tokenizer, settings, batch_size=8)
    split = predictor.tokenize([LONG, SHORT, SHORT + " again", LONG[:300], "one more"])
    assert len(split) % 8 != 0  # the last batch has padding rows
    split = dc.replace(split, labels=np.zeros(len(split), np.int32))
    task = TaskSpec("t", ("a", "b", "c"), False, "accuracy", False)
    steps = Trainer(model, optax.sgd(0.0), make_data_mesh(), regression=False, seed=0)
    trained_path = predict_split(steps, split, task, 8, settings.buckets).outputs  # [T, 3]
    np.testing.assert_allclose(trained_path, predictor.outputs(split), rtol=1e-5, atol=1e-6)
    assert trained_path.shape == (5, 3)
