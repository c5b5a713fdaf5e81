"""Word tagging (task=ner), without training: CoNLL and list-column sources, bad rows named by file and line,
subword alignment and windows (every word predicted once), entity chunking and metrics against seqeval, and the
character offsets the served tagger answers with."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

from bertcls.config import DataConfig
from bertcls.data import prepare_data
from bertcls.data.batching import IGNORE
from bertcls.data.conll import read_conll
from bertcls.data.tags import entity_spans, inside_tag
from bertcls.data.tasks import TaskSpec
from bertcls.data.tokenize import encode_words
from bertcls.errors import DataError
from bertcls.evaluation.metrics import baseline_metrics
from bertcls.evaluation.tagging import entity_type_table, tagging_metrics
from bertcls.serving.tagging import _entities, split_words

SENTENCES = [
    (["Leon", "Derczynski", "lives", "in", "Sheffield", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
    (["The", "BBC", "reported", "it", "."], ["O", "B-ORG", "O", "O", "O"]),
    (["Zoë", "flew", "to", "São", "Paulo", "!"], ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]),
    (["nothing", "here"], ["O", "O"]),
]


def write_conll(path, sentences, columns: int = 2, docstart: bool = True):
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for words, tags in sentences:
        lines += [
            " ".join([w, *["X"] * (columns - 2), t]) if columns > 2 else f"{w}\t{t}"
            for w, t in zip(words, tags, strict=True)
        ]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_conll_reads_words_and_last_column_tags_and_skips_docstart(tmp_path):
    read = read_conll(write_conll(tmp_path / "train.conll", SENTENCES, columns=4))
    assert read["tokens"] == [w for w, _ in SENTENCES] and read["tags"] == [t for _, t in SENTENCES]
    assert read["line"][0] == 3  # after -DOCSTART- and its blank line


def test_conll_line_without_a_tag_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("Leon\tB-PER\nlives\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conll, line 2: 'lives' has a word but no tag"):
        read_conll(path)


@pytest.mark.parametrize("scheme", ["iob1", "iob2", "iobes"])
def test_entity_spans_match_seqeval(scheme):
    rng = random.Random(scheme)
    prefixes = {"iob1": "BI", "iob2": "BI", "iobes": "BIES"}[scheme]
    for _ in range(500):
        tags = [
            "O" if rng.random() < 0.4 else f"{rng.choice(prefixes)}-{rng.choice(['PER', 'LOC'])}"
            for _ in range(rng.randint(0, 12))
        ]
        assert entity_spans(tags) == get_entities(tags), tags


def test_inside_tag_turns_b_into_i():
    assert [inside_tag(t) for t in ("B-PER", "I-PER", "O", "S-LOC")] == ["I-PER", "I-PER", "O", "S-LOC"]


def test_words_predicted_once_across_windows(tokenizer):
    words = [f"word{i}" if i % 3 else "Copenhagen" for i in range(60)]  # far beyond 16 tokens
    rows = encode_words(tokenizer, [words, ["short"]], max_seq_length=16, overlap=4)
    first = [d for d in rows["document"] if d == 0]
    assert len(first) > 3 and rows["document"][-1] == 1
    predicted = [
        w for row, d in zip(rows["word_index"], rows["document"], strict=True) if d == 0 for w in row if w >= 0
    ]
    assert predicted == list(range(len(words)))  # each word once, in order
    assert all(len(ids) <= 16 and ids[0] == tokenizer.cls_token_id for ids in rows["input_ids"])


def test_conll_files_are_detected_as_ner_and_labelled_on_first_subwords(tmp_path, tokenizer):
    train = write_conll(tmp_path / "train.conll", SENTENCES * 5)
    validation = write_conll(tmp_path / "dev.conll", SENTENCES[:2])
    data = prepare_data(DataConfig(train_file=str(train), validation_file=str(validation)), tokenizer)
    assert data.task.token_level and data.task.primary_metric == "f1"
    assert data.task.label_names == ("O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-PER")
    split = data.splits["validation"]
    assert split.word_counts.tolist() == [6, 5] and len(split.word_labels) == 11
    row = split.labels[0, : split.lengths[0]]
    assert row[0] == IGNORE and row[-1] == IGNORE  # [CLS], [SEP]
    assert (row != IGNORE).sum() == 6  # one label per word, on its first subword ("Derczynski" has several)
    everywhere = prepare_data(
        DataConfig(train_file=str(train), validation_file=str(validation), label_all_tokens=True), tokenizer
    )
    row = everywhere.splits["validation"].labels[0, : split.lengths[0]]
    names = data.task.label_names
    assert (row != IGNORE).sum() > 6 and names.index("B-PER") in row and names.index("I-PER") in row


def test_jsonl_list_columns_with_tag_ids_and_bad_rows(tmp_path, tokenizer):
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]
    rows = [{"tokens": w, "tags": t} for w, t in SENTENCES * 5]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    data = prepare_data(DataConfig(train_file=str(path), task="ner"), tokenizer)
    assert data.task.token_level and set(data.splits) == {"train", "validation", "test"}
    assert set(data.task.label_names) == set(names)
    rows[7] = {"tokens": ["a", "b"], "tags": ["O"]}
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl, line 8: 2 words but 1 tags"):
        prepare_data(DataConfig(train_file=str(path)), tokenizer)


def test_unknown_validation_tag_is_named_by_file_and_line(tmp_path, tokenizer):
    train = write_conll(tmp_path / "train.conll", SENTENCES * 3)
    validation = write_conll(tmp_path / "dev.conll", [(["Acme", "Corp"], ["B-MISC", "I-MISC"])], docstart=False)
    with pytest.raises(DataError, match=r"dev\.conll, line 1: tag 'B-MISC' of the validation split never occurs"):
        prepare_data(DataConfig(train_file=str(train), validation_file=str(validation)), tokenizer)


def test_task_ner_on_text_data_says_what_is_missing(sms_csv, tokenizer):
    with pytest.raises(DataError, match="task=ner needs a column of word lists"):
        prepare_data(DataConfig(train_file=str(sms_csv), task="ner"), tokenizer)


def test_bundled_btc_split(tokenizer):
    data = prepare_data(DataConfig(dataset="btc", max_train_samples=64, max_eval_samples=32), tokenizer)
    assert data.task.label_names == ("O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER")
    assert data.stats.created_splits == ("validation",)  # test = section H, validation = 10% of the rest
    assert data.splits["train"].num_texts == 64 and data.splits["test"].num_texts == 32


def test_metrics_match_seqeval_and_the_baseline_finds_nothing():
    names = ("O", "B-LOC", "B-PER", "I-LOC", "I-PER")
    task = TaskSpec("t", names, False, "f1", False, token_level=True)
    rng = np.random.default_rng(0)
    counts = np.asarray([5, 7, 3, 9])
    labels = rng.integers(0, len(names), counts.sum())
    predicted = np.where(rng.random(counts.sum()) < 0.7, labels, rng.integers(0, len(names), counts.sum()))
    split = np.cumsum(counts)[:-1]
    truth = [[names[i] for i in s] for s in np.split(labels, split)]
    guess = [[names[i] for i in s] for s in np.split(predicted, split)]
    metrics = tagging_metrics(task, predicted, labels, counts)
    assert metrics["f1"] == pytest.approx(f1_score(truth, guess))
    assert metrics["precision"] == pytest.approx(precision_score(truth, guess))
    assert metrics["recall"] == pytest.approx(recall_score(truth, guess))
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == labels))
    table = entity_type_table(task, predicted, labels, counts)
    assert list(table["type"]) == ["LOC", "PER", "micro avg"]
    assert table["f1"].iloc[-1] == pytest.approx(metrics["f1"])
    assert baseline_metrics(task, np.zeros(10, int), labels)["f1"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        'Zoë Schröder flew to São Paulo (Brazil), then tweeted @BBCNews: "wow!" 🎉',
        "RT @UKLabour: Ed Miliband in #Manchester today – 日本語 too…",
    ],
)
def test_entity_offsets_slice_the_text(tokenizer, text):
    words = split_words(tokenizer, text)
    assert all(text[start:end] == word for word, start, end in words)
    tags = [
        "B-PER" if w[0].isupper() else "I-PER" if i and words[i - 1][0][0].isupper() else "O"
        for i, w in enumerate(words)
    ]
    spans = [(s, e) for _, s, e in words]
    entities = _entities(tags, np.ones(len(words)), spans, text)
    assert entities and all(text[e["start"] : e["end"]] == e["text"] for e in entities)


def test_parquet_with_class_label_tags_keeps_their_names_and_order(tmp_path, tokenizer):
    """What a Hugging Face dataset such as conll2003 holds: `tokens` and `ner_tags` as ClassLabel ids."""
    import datasets

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    rows = {
        "tokens": [w for w, _ in SENTENCES] * 5,
        "ner_tags": [[names.index(t) for t in tags] for _, tags in SENTENCES] * 5,
    }
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(path))
    data = prepare_data(DataConfig(train_file=str(path)), tokenizer)
    assert data.task.token_level and data.task.label_names == tuple(names)  # the ClassLabel's order, unused tags too
    assert data.texts["train"][0]["tags"][0] in names
