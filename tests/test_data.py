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


@pytest.mark.slow  # starts a fresh interpreter
def test_same_seed_same_split_in_a_fresh_process(tokenizer):
    here = _split_digest(prepare_data(DataConfig(dataset="sms_spam"), tokenizer))
    code = (
        "import hashlib, json; from bertcls.config import DataConfig; from bertcls.data import prepare_data; "
        "from bertcls.model.tokenizer import load_tokenizer; from bertcls.hub import resolve_model; "
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
    frame = _frame(n_repeat=10)  # 3 of 70 rows: under max_dropped_fraction
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


# --- missing values: dropped and counted per split and reason, never a class --------------------------


def _write(frame: pd.DataFrame, path) -> None:
    """Write `frame` as the file format its suffix names."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif path.suffix == ".json":
        path.write_text(json.dumps(frame.astype(object).where(frame.notna(), None).to_dict(orient="records")))
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)


def _file_config(path, **kwargs) -> DataConfig:
    return DataConfig(dataset="", train_file=str(path), text_column="sms", label_column="kind", **kwargs)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_missing_labels_are_dropped_not_a_class(tmp_path, tokenizer, suffix):
    frame = _frame(n_repeat=10)  # 70 rows
    frame.loc[[3, 40], "kind"] = None
    path = tmp_path / f"train{suffix}"
    _write(frame, path)
    data = prepare_data(_file_config(path), tokenizer)
    assert data.task.label_names == ("ham", "spam")
    assert data.stats.missing_label_dropped == {"train": 2}
    assert data.stats.empty_text_dropped == {"train": 0}
    assert sum(s.num_texts for s in data.splits.values()) == 68


def test_blank_label_string_is_missing(tmp_path, tokenizer):
    path = tmp_path / "train.jsonl"
    rows = [{"sms": t, "kind": k} for t, k in _frame(n_repeat=10).itertuples(index=False)]
    rows[0]["kind"] = "  "
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = prepare_data(_file_config(path), tokenizer)
    assert data.task.label_names == ("ham", "spam") and data.stats.missing_label_dropped == {"train": 1}


def test_int_labels_with_a_gap_keep_int_names(tmp_path, tokenizer):
    frame = pd.DataFrame({"sms": [f"message number {i}" for i in range(40)], "kind": [i % 2 for i in range(40)]})
    frame["kind"] = frame["kind"].astype(object)
    frame.loc[7, "kind"] = None
    path = tmp_path / "train.csv"
    _write(frame, path)
    data = prepare_data(_file_config(path), tokenizer)
    assert data.task.label_names == ("0", "1") and not data.task.is_regression
    assert data.stats.missing_label_dropped == {"train": 1}
    assert sorted(np.unique(np.concatenate([s.labels for s in data.splits.values()]))) == [0, 1]


def test_integer_valued_float_labels_are_named_as_ints(tmp_path, tokenizer):
    frame = pd.DataFrame({"sms": [f"message number {i}" for i in range(20)], "kind": [float(i % 3) for i in range(20)]})
    path = tmp_path / "train.json"
    _write(frame, path)
    data = prepare_data(_file_config(path), tokenizer)
    assert data.task.label_names == ("0", "1", "2")


def test_missing_text_and_missing_label_counted_separately(tmp_path, tokenizer, caplog):
    frame = _frame(n_repeat=20)  # 140 rows
    frame.loc[[1, 2], "sms"] = None
    frame.loc[3, "sms"] = "  "
    frame.loc[[10, 11], "kind"] = None
    frame.loc[12, ["sms", "kind"]] = None  # both missing: counted once, as an empty text
    path = tmp_path / "train.csv"
    _write(frame, path)
    data = prepare_data(_file_config(path), tokenizer)
    assert data.task.label_names == ("ham", "spam")
    assert data.stats.empty_text_dropped == {"train": 4}
    assert data.stats.missing_label_dropped == {"train": 2}
    assert data.stats.rows_read == {"train": 140}
    assert sum(s.num_texts for s in data.splits.values()) + data.stats.duplicates_dropped == 134
    assert "train: dropped 6 of 140 rows (4 empty text, 2 missing label)" in caplog.text  # the train job's log line


def test_missing_labels_counted_per_split(tmp_path, tokenizer):
    train, dev = _frame(n_repeat=10), _frame(n_repeat=5)
    train.loc[4, "kind"] = None
    dev.loc[[0], "kind"] = None
    _write(train, tmp_path / "train.csv")
    _write(dev, tmp_path / "dev.csv")
    config = DataConfig(
        dataset="",
        train_file=str(tmp_path / "train.csv"),
        validation_file=str(tmp_path / "dev.csv"),
        text_column="sms",
        label_column="kind",
        max_dropped_fraction=0.1,
    )
    data = prepare_data(config, tokenizer)
    assert data.stats.missing_label_dropped == {"train": 1, "validation": 1}
    assert len(data.splits["validation"]) == len(dev) - 1


def test_too_many_dropped_rows_is_an_error_naming_share_and_parameter(tmp_path, tokenizer):
    frame = _frame(n_repeat=10)  # 70 rows, 7 without a label: 10%
    frame.loc[range(0, 70, 10), "kind"] = None
    path = tmp_path / "train.csv"
    _write(frame, path)
    with pytest.raises(DataError, match=r"7 of the 70 rows \(10\.0%\) of the train split.*max_dropped_fraction"):
        prepare_data(_file_config(path), tokenizer)
    data = prepare_data(_file_config(path, max_dropped_fraction=0.2), tokenizer)
    assert data.stats.missing_label_dropped == {"train": 7} and data.task.label_names == ("ham", "spam")


def test_every_label_missing_names_the_label_column(tmp_path, tokenizer):
    frame = _frame()
    frame["kind"] = None
    path = tmp_path / "train.csv"
    _write(frame, path)
    with pytest.raises(DataError, match="Every row of the train split has a missing label in 'kind'"):
        prepare_data(_file_config(path), tokenizer)


def test_regression_rows_without_a_score_are_dropped(tmp_path, tokenizer):
    frame = pd.DataFrame({"sms": [f"sentence number {i}" for i in range(40)], "kind": [i / 7 for i in range(40)]})
    frame.loc[5, "kind"] = None
    path = tmp_path / "train.csv"
    _write(frame, path)
    data = prepare_data(_file_config(path), tokenizer)
    assert all(np.isfinite(s.labels).all() for s in data.splits.values())
    assert data.task.is_regression and data.stats.missing_label_dropped == {"train": 1}


def test_max_dropped_fraction_is_validated():
    from bertcls.errors import ConfigError

    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError, match="max_dropped_fraction"):
            DataConfig(max_dropped_fraction=bad)


def test_data_stats_prints_and_run_logs_the_dropped_counts(tmp_path, tokenizer, monkeypatch):
    import mlflow
    from click.testing import CliRunner

    from bertcls.cli import main
    from bertcls.tracking import runs

    frame = _frame(n_repeat=10)
    frame.loc[[3, 40], "kind"] = None
    frame.loc[5, "sms"] = None
    path = tmp_path / "train.csv"
    _write(frame, path)
    args = ["--dataset", "", "--train-file", str(path), "--text-column", "sms", "--label-column", "kind"]
    result = CliRunner().invoke(main, ["data-stats", *args])
    assert result.exit_code == 0, result.output
    assert "missing labels dropped {'train': 2}" in result.output
    assert "empty texts dropped {'train': 1}" in result.output
    result = CliRunner().invoke(main, ["data-stats", *args, "--max-dropped-fraction", "0.01"])
    assert result.exit_code == 2 and "max_dropped_fraction" in result.output and "Traceback" not in result.output

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("data")
    with mlflow.start_run() as run:
        runs.log_dataset_inputs(prepare_data(_file_config(path), tokenizer))
    params = mlflow.MlflowClient(uri).get_run(run.info.run_id).data.params
    assert params["missing_labels_dropped"] == "2" and params["empty_texts_dropped"] == "1"
    assert params["label_names"] == "ham,spam"


def test_train_fails_before_a_run_exists_when_too_many_rows_are_dropped(tmp_path, monkeypatch):
    import mlflow
    from click.testing import CliRunner

    from bertcls.cli import main

    frame = _frame(n_repeat=10)
    frame.loc[range(0, 70, 10), "kind"] = None
    path = tmp_path / "train.csv"
    _write(frame, path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    args = ["--dataset", "", "--train-file", str(path), "--text-column", "sms", "--label-column", "kind"]
    result = CliRunner().invoke(main, ["train", *args, "--max-dropped-fraction", "0.05"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "(10.0%)" in result.output and "max_dropped_fraction" in result.output
    client = mlflow.MlflowClient(uri)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_evaluate_reads_max_dropped_fraction_back_from_the_run():
    from bertcls.config.saved import train_config_from_params
    from bertcls.jobs.data_config import data_config_for

    trained = DataConfig(max_dropped_fraction=0.2, split_seed=7)
    assert data_config_for(trained, {}).max_dropped_fraction == 0.2
    assert data_config_for(trained, {"max_dropped_fraction": 0.3}).max_dropped_fraction == 0.3
    legacy = train_config_from_params({"dataset": "sms_spam", "max_dropped_fraction": "0.2", "split_seed": "42.0"})
    assert legacy.data.max_dropped_fraction == 0.2 and legacy.data.split_seed == 42


# --- file readers: what the fuzzer (tests/test_data_fuzz.py) found, pinned -----------------------------


def _plain_config(path) -> DataConfig:
    return DataConfig(dataset="", train_file=str(path))


def test_json_with_an_empty_list_is_a_data_error(tmp_path, tokenizer):
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(DataError, match="No rows in .*train.json.*one list of objects"):
        prepare_data(_plain_config(tmp_path / "train.json"), tokenizer)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_file_is_a_data_error_naming_it(tmp_path, tokenizer, suffix):
    (tmp_path / f"train{suffix}").write_text("\n")
    with pytest.raises(DataError, match=f"The train file .*train{suffix} is empty"):
        prepare_data(_plain_config(tmp_path / f"train{suffix}"), tokenizer)


def test_latin1_jsonl_is_a_data_error_not_a_decode_crash(tmp_path, tokenizer):
    rows = [{"text": f"caf\xe9 number {i}", "label": ["ham", "spam"][i % 2]} for i in range(30)]
    path = tmp_path / "train.jsonl"
    path.write_bytes("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("latin-1"))
    with pytest.raises(DataError, match=r"train file .*train.jsonl is not valid UTF-8.*Latin-1.*iconv -f latin1"):
        prepare_data(_plain_config(path), tokenizer)


def test_utf16_tsv_is_recognised(tmp_path, tokenizer):
    path = tmp_path / "train.tsv"
    path.write_bytes(_frame().rename(columns={"sms": "text", "kind": "label"}).to_csv(sep="\t").encode("utf-16"))
    with pytest.raises(DataError, match="looks like UTF-16.*iconv -f utf-16"):
        prepare_data(_plain_config(path), tokenizer)


def test_regression_score_beyond_float32_is_a_data_error(tmp_path, tokenizer):
    frame = pd.DataFrame({"text": [f"sentence number {i}" for i in range(30)], "label": [i / 7 for i in range(30)]})
    frame.loc[3, "label"] = 3.5e38  # float32 would make it inf
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="1 infinite or out-of-range value"):
        prepare_data(_plain_config(tmp_path / "train.csv"), tokenizer)


def test_a_class_left_only_in_duplicate_texts_is_not_a_class(tmp_path, tokenizer):
    frame = _frame(n_repeat=10).rename(columns={"sms": "text", "kind": "label"})
    frame.loc[len(frame)] = [frame.loc[0, "text"], "phishing"]  # the same text again, another label
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = prepare_data(_plain_config(tmp_path / "train.csv"), tokenizer)
    assert data.task.label_names == ("ham", "spam") and data.stats.duplicates_dropped == 1


def test_text_and_label_naming_one_column_is_a_data_error(tmp_path, tokenizer):
    path = tmp_path / "train.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(DataError, match="must name different columns; got 'sms', 'sms'"):
        prepare_data(DataConfig(dataset="", train_file=str(path), text_column="sms", label_column="sms"), tokenizer)


def test_numbers_in_the_text_column_are_read_as_text(tmp_path, tokenizer):
    frame = pd.DataFrame({"text": range(40), "label": ["odd" if i % 2 else "even" for i in range(40)]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = prepare_data(_plain_config(tmp_path / "train.csv"), tokenizer)
    assert data.texts["train"].features["text"].dtype == "string" and sum(len(s) for s in data.splits.values()) == 40


def test_mixed_type_json_text_column_is_a_data_error(tmp_path, tokenizer):
    rows = [{"text": f"message {i}" if i % 3 else i, "label": ["ham", "spam"][i % 2]} for i in range(30)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="Column 'text' of the train split holds mixed-type JSON values, not text"):
        prepare_data(_plain_config(tmp_path / "train.jsonl"), tokenizer)


def test_rare_classes_and_classes_missing_from_validation_are_warned_about(tmp_path, tokenizer):
    from bertcls.data.pipeline import class_warnings

    train = [(f"common {c}", f"text {i} of common class {c}") for c in range(4) for i in range(30)]
    train += [("rare", f"one of two rare texts {i}") for i in range(2)]
    validation = [(f"common {c}", f"held-out text {i} of class {c}") for c in range(4) for i in range(5)]
    for name, rows in (("train", train), ("validation", validation)):
        pd.DataFrame(rows, columns=["label", "text"]).to_csv(tmp_path / f"{name}.csv", index=False)
    config = DataConfig(
        dataset="", train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "validation.csv")
    )
    found = class_warnings(prepare_data(config, tokenizer))
    assert found == [
        "1 of 5 classes have fewer than 5 training texts: rare (2)",
        "1 of 5 classes have no validation text: rare",
    ], found
    assert class_warnings(prepare_data(DataConfig(max_train_samples=200, max_eval_samples=60), tokenizer)) == []


def test_a_semicolon_separated_csv_is_named_as_such_with_the_way_out(tmp_path, tokenizer):
    path = tmp_path / "semi.csv"
    path.write_text("label;text\nham;see you at lunch\nspam;WIN a prize now\n" * 20, encoding="utf-8")
    with pytest.raises(DataError, match="looks semicolon-separated.*sep=';'"):
        prepare_data(DataConfig(dataset="", train_file=str(path)), tokenizer)
