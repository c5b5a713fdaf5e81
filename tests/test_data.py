"""Data sources, cleaning, deterministic splits, tokenization cache, and every bad-input error."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bertcls.config import DataConfig
from bertcls.data import prepare_data
from bertcls.errors import DataError

SPAM = ["WINNER!! claim your free prize now", "Free entry, text WIN to 80082", "URGENT call now to win cash"]
HAM = ["see you at lunch", "are we still on for tonight?", "ok, call me when you land", "thanks for dinner"]


def _frame(n_repeat: int = 4) -> pd.DataFrame:
    rows = [(f"{t} #{i}", "spam") for i in range(n_repeat) for t in SPAM]
    rows += [(f"{t} #{i}", "ham") for i in range(n_repeat) for t in HAM]
    return pd.DataFrame(rows, columns=["sms", "kind"])


def _split_digest(data) -> str:
    return hashlib.sha256(json.dumps({k: list(v["text"]) for k, v in data.texts.items()}).encode()).hexdigest()


def test_sms_spam_counts_and_split(tokenizer):
    data = prepare_data(DataConfig(dataset="sms_spam"), tokenizer)
    assert len(data.source.splits["train"]) == 4862
    assert data.stats.duplicates_dropped == 328
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 3627, "validation": 453, "test": 454}
    assert data.task.label_names == ("ham", "spam") and data.task.primary_metric == "accuracy"
    spam_share = [float(np.mean(s.labels == 1)) for s in data.splits.values()]
    assert max(spam_share) - min(spam_share) < 0.01  # stratified
    all_texts = [t for split in data.texts.values() for t in split["text"]]
    assert len(all_texts) == len(set(all_texts))  # no text in two splits


def test_bbc_news_counts_and_split(tokenizer):
    data = prepare_data(DataConfig(dataset="bbc_news", max_seq_length=256), tokenizer)
    assert len(data.source.splits["train"]) == 2225 and data.stats.duplicates_dropped == 98
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 1701, "validation": 213, "test": 213}
    assert data.task.label_names == ("business", "entertainment", "politics", "sports", "tech")
    assert data.buckets[-1] == 256


def test_same_seed_same_split_in_a_fresh_process(tokenizer):
    here = _split_digest(prepare_data(DataConfig(dataset="sms_spam"), tokenizer))
    code = (
        "import hashlib, json; from bertcls.config import DataConfig; from bertcls.data import prepare_data; "
        "from bertcls.tokenizer import load_tokenizer; from bertcls.hub import resolve_model; "
        "d = prepare_data(DataConfig(dataset='sms_spam'), "
        "load_tokenizer(resolve_model('sentence-transformers/all-MiniLM-L6-v2'))); "
        "print(hashlib.sha256(json.dumps({k: list(v['text']) for k, v in d.texts.items()}).encode()).hexdigest())"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert fresh == here
    other = _split_digest(prepare_data(DataConfig(dataset="sms_spam", split_seed=7), tokenizer))
    assert other != here


def test_split_matches_plain_scikit_learn(tokenizer):
    """The documented recipe, written out with pandas + scikit-learn, gives the same test split."""
    from sklearn.model_selection import train_test_split

    from bertcls.data.sources import load_source

    frame = load_source(DataConfig(dataset="sms_spam")).splits["train"].to_pandas()
    frame = frame.drop_duplicates("text", keep="first").reset_index(drop=True)
    idx = np.arange(len(frame))
    _, held = train_test_split(idx, test_size=0.2, stratify=frame["label"], random_state=42)
    _, test = train_test_split(np.arange(len(held)), test_size=0.5, stratify=frame["label"][held], random_state=42)
    data = prepare_data(DataConfig(dataset="sms_spam"), tokenizer)
    assert list(data.texts["test"]["text"]) == list(frame["text"][held[test]])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_local_file_formats(tmp_path, tokenizer, suffix):
    frame = _frame()
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    data = prepare_data(DataConfig(dataset="", train_file=str(path), text_column="sms", label_column="kind"), tokenizer)
    assert data.task.label_names == ("ham", "spam")
    assert sum(len(s) for s in data.splits.values()) == len(frame)


def test_headerless_tsv_by_column_index(tmp_path, tokenizer):
    path = tmp_path / "train.tsv"
    _frame()[["kind", "sms"]].to_csv(path, index=False, header=False, sep="\t")
    data = prepare_data(DataConfig(dataset="", train_file=str(path), text_column="1", label_column="0"), tokenizer)
    assert data.task.label_names == ("ham", "spam") and len(data.splits["train"]) > 0


def test_sentence_pairs_and_given_validation(tmp_path, tokenizer):
    pairs = pd.DataFrame(
        {
            "a": [f"question {i}" for i in range(12)],
            "b": [f"answer {i % 5}" for i in range(12)],
            "label": [i % 2 for i in range(12)],
        }
    )
    pairs.to_csv(tmp_path / "train.csv", index=False)
    pairs.head(4).to_csv(tmp_path / "dev.csv", index=False)
    config = DataConfig(
        dataset="",
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "dev.csv"),
        text_column="a",
        text_pair_column="b",
    )
    data = prepare_data(config, tokenizer)
    assert data.task.has_text_pair and set(data.splits) == {"train", "validation"}
    assert len(data.splits["train"]) == 12  # nothing created when validation is given
    first = data.splits["train"]
    assert first.token_type_ids[0, : first.lengths[0]].max() == 1  # the pair gets token type 1


def test_regression_targets(tmp_path, tokenizer):
    frame = pd.DataFrame({"text": [f"sentence number {i}" for i in range(20)], "label": [i / 7 for i in range(20)]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = prepare_data(DataConfig(dataset="", train_file=str(tmp_path / "train.csv")), tokenizer)
    assert data.task.is_regression and data.task.num_labels == 1 and data.task.primary_metric == "pearson"
    assert data.splits["train"].labels.dtype == np.float32


def test_empty_texts_skipped_and_counted(tmp_path, tokenizer):
    frame = _frame()
    frame.loc[[0, 5], "sms"] = None
    frame.loc[7, "sms"] = "   "
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = prepare_data(
        DataConfig(dataset="", train_file=str(tmp_path / "train.csv"), text_column="sms", label_column="kind"),
        tokenizer,
    )
    assert data.stats.empty_text_dropped["train"] == 3
    assert sum(len(s) for s in data.splits.values()) == len(frame) - 3


def test_tokenization_is_cached(tmp_path, tokenizer, monkeypatch):
    _frame().to_csv(tmp_path / "train.csv", index=False)
    config = DataConfig(dataset="", train_file=str(tmp_path / "train.csv"), text_column="sms", label_column="kind")
    first = prepare_data(config, tokenizer)
    calls = []
    original = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    second = prepare_data(config, tokenizer)
    assert calls == []  # served from the cache files
    np.testing.assert_array_equal(first.splits["train"].input_ids, second.splits["train"].input_ids)
    third = prepare_data(DataConfig(**{**config.__dict__, "max_seq_length": 16}), tokenizer)
    assert calls and third.splits["train"].input_ids.shape[1] == 16  # a new length re-tokenizes


# --- bad input: one clear DataError each -------------------------------------------------------------


def _local(tmp_path, frame=None, **kwargs):
    path = tmp_path / "train.csv"
    (_frame() if frame is None else frame).to_csv(path, index=False)
    return DataConfig(dataset="", train_file=str(path), text_column="sms", label_column="kind", **kwargs)


def test_error_missing_file(tokenizer):
    with pytest.raises(DataError, match="does not exist"):
        prepare_data(DataConfig(dataset="", train_file="/no/such/train.csv"), tokenizer)


def test_error_unknown_column_lists_columns(tmp_path, tokenizer):
    config = _local(tmp_path)
    config = DataConfig(**{**config.__dict__, "text_column": "message"})
    with pytest.raises(DataError, match="'message' not found.*Columns that exist: sms, kind"):
        prepare_data(config, tokenizer)


def test_error_empty_dataset(tmp_path, tokenizer):
    (tmp_path / "train.csv").write_text("sms,kind\n")
    with pytest.raises(DataError, match="empty"):
        prepare_data(
            DataConfig(dataset="", train_file=str(tmp_path / "train.csv"), text_column="sms", label_column="kind"),
            tokenizer,
        )


def test_error_single_class(tmp_path, tokenizer):
    frame = _frame()
    frame["kind"] = "ham"
    with pytest.raises(DataError, match="single class \\('ham'\\)"):
        prepare_data(_local(tmp_path, frame), tokenizer)


def test_error_validation_label_unseen_in_train(tmp_path, tokenizer):
    _frame().to_csv(tmp_path / "train.csv", index=False)
    dev = _frame().head(3).assign(kind="phishing")
    dev.to_csv(tmp_path / "dev.csv", index=False)
    config = DataConfig(
        dataset="",
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "dev.csv"),
        text_column="sms",
        label_column="kind",
    )
    with pytest.raises(DataError, match="labels never seen in train: phishing"):
        prepare_data(config, tokenizer)


def test_error_all_texts_empty(tmp_path, tokenizer):
    frame = _frame()
    frame["sms"] = ""
    with pytest.raises(DataError, match="Every row of the train split has an empty text"):
        prepare_data(_local(tmp_path, frame), tokenizer)


def test_error_non_utf8_bytes(tmp_path, tokenizer):
    path = tmp_path / "train.csv"
    path.write_bytes(b"sms,kind\n" + "caf\xe9 au lait,ham\n".encode("latin-1") * 20)
    with pytest.raises(DataError, match="not valid UTF-8.*iconv"):
        prepare_data(DataConfig(dataset="", train_file=str(path), text_column="sms", label_column="kind"), tokenizer)


def test_error_unknown_bundled_name_lists_known(tokenizer):
    with pytest.raises(DataError, match="Unknown dataset 'sms_spma'.*sms_spam, bbc_news"):
        prepare_data(DataConfig(dataset="sms_spma"), tokenizer)


def test_error_hub_dataset_offline_without_cache(tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="neither the Hugging Face cache nor the hub has it"):
        prepare_data(DataConfig(dataset="glue/cola"), tokenizer)
