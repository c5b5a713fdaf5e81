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
from bertcls.data.tags import allowed_transitions, decode_tags, detect_scheme, entity_spans, inside_tag
from bertcls.data.tasks import TaskSpec
from bertcls.data.tokenize import encode_words
from bertcls.errors import ConfigError, DataError
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


def test_bare_io_tags_are_entities_scored_as_their_i_tags(tmp_path, tokenizer):
    """IO data (`PER`, `LOC` beside `O`) is scored by entity F1 with the types it names; seqeval alone would read
    `PER` as a chunk of type `ER`."""
    io = [(w, [t.partition("-")[2] or t for t in tags]) for w, tags in SENTENCES]
    data = prepare_data(DataConfig(train_file=str(write_conll(tmp_path / "io.conll", io * 5))), tokenizer)
    assert (data.task.primary_metric, data.task.tag_scheme) == ("f1", "IO")
    names = data.task.label_names
    counts = np.asarray([len(w) for w, _ in io])
    labels = np.asarray([names.index(t) for _, tags in io for t in tags])
    predicted = labels.copy()
    predicted[np.flatnonzero(labels)[0]] = 0  # one entity word missed
    as_i = [[f"I-{names[i]}" if i else "O" for i in s] for s in np.split(labels, np.cumsum(counts)[:-1])]
    guess = [[f"I-{names[i]}" if i else "O" for i in s] for s in np.split(predicted, np.cumsum(counts)[:-1])]
    assert names[0] == "O" and f1_score(as_i, guess) < 1
    assert tagging_metrics(data.task, predicted, labels, counts)["f1"] == pytest.approx(f1_score(as_i, guess))
    table = entity_type_table(data.task, predicted, labels, counts)
    assert set(table["type"]) == {t for t in names if t != "O"} | {"micro avg"}


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


IOB2_TAGS = ("O", "B-LOC", "B-PER", "I-LOC", "I-PER")
IOBES_TAGS = ("O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER")


@pytest.mark.parametrize(
    ("sentences", "scheme"),
    [
        ([["B-PER", "I-PER", "O"], ["O", "B-LOC", "B-LOC"]], "IOB2"),
        ([["S-PER", "O", "B-LOC", "E-LOC"]], "IOBES"),
        ([["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]], "IOB1"),  # entities begin with I-; B- only between two LOC
        ([["I-PER", "O", "I-LOC"]], "IO"),
        ([["PER", "PER", "O", "LOC"]], "IO"),  # bare types: the IO scheme
        ([["NN", "VBZ", "DT"]], ""),  # POS tags spell no entities
    ],
)
def test_the_tag_scheme_is_read_from_the_training_tags(sentences, scheme):
    assert detect_scheme(sentences) == scheme


def test_iob2_tolerates_a_rare_slip_in_the_training_tags():
    clean = [["B-PER", "I-PER", "O"]] * 200
    assert detect_scheme([*clean, ["O", "I-PER"]]) == "IOB2"  # 1 entity in 201 begins with I-
    assert detect_scheme([*clean[:20], ["O", "I-PER"]]) == "IOB1"  # 1 in 21


def _valid(tags: np.ndarray, transitions) -> np.ndarray:
    """[N, L] tag ids -> [N] whether each sequence is one the scheme allows."""
    first, follows, last = transitions
    return first[tags[:, 0]] & last[tags[:, -1]] & follows[tags[:, :-1], tags[:, 1:]].all(axis=1)


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.mark.parametrize(("names", "scheme"), [(IOB2_TAGS, "IOB2"), (IOBES_TAGS, "IOBES")])
def test_viterbi_finds_the_most_probable_sequence_the_scheme_allows(names, scheme):
    """Against brute force over every tag sequence, on random logits, sentences of 0 to 4 words."""
    import itertools

    transitions = tuple(np.asarray(a, dtype=bool) for a in allowed_transitions(names, scheme))
    every = {n: np.asarray(list(itertools.product(range(len(names)), repeat=n))) for n in range(1, 5)}  # [T^n, n]
    rng = np.random.default_rng(1)
    for _ in range(40):
        counts = rng.integers(0, 5, size=6)
        logits = rng.normal(scale=3.0, size=(counts.sum(), len(names)))
        decoded = decode_tags(logits, counts, names, scheme)
        log_p, start = _log_softmax(logits), 0
        for count in counts:
            if count:
                rows = log_p[start : start + count]  # [n, T]
                valid = every[count][_valid(every[count], transitions)]  # [V, n]
                best = rows[np.arange(count), valid].sum(axis=1).max()
                got = np.asarray(decoded[start : start + count])[None]  # [1, n]
                assert _valid(got, transitions)[0], [names[t] for t in got[0]]
                assert rows[np.arange(count), got[0]].sum() == pytest.approx(best, abs=1e-9)
            start += count


def test_viterbi_mends_a_broken_entity_and_keeps_a_valid_argmax():
    names = IOB2_TAGS
    index = {n: i for i, n in enumerate(names)}
    logits = np.full((3, len(names)), -4.0)
    for word, (tag, other) in enumerate([("B-PER", "B-LOC"), ("I-LOC", "I-PER"), ("O", "I-PER")]):
        logits[word, index[tag]], logits[word, index[other]] = 2.0, 1.5 + 0.3 * (word == 1)  # argmax: B-PER I-LOC O
    argmax = decode_tags(logits, np.asarray([3]), names, "IOB2", "argmax")
    viterbi = decode_tags(logits, np.asarray([3]), names, "IOB2")
    assert [names[t] for t in argmax] == ["B-PER", "I-LOC", "O"]  # not IOB2; seqeval reads two entities, PER and LOC
    assert [names[t] for t in viterbi] == ["B-PER", "I-PER", "O"]  # one PER
    valid = np.random.default_rng(2).normal(size=(50, len(names)))
    valid[:, index["I-LOC"]] = valid[:, index["I-PER"]] = -10.0  # argmax never picks an I-: always valid
    counts = np.asarray([10, 20, 20])
    assert np.array_equal(decode_tags(valid, counts, names, "IOB2"), valid.argmax(-1))


@pytest.mark.parametrize("scheme", ["IOB1", "IO", ""])
def test_schemes_without_constraints_decode_by_argmax(scheme):
    logits = np.random.default_rng(3).normal(size=(30, len(IOB2_TAGS)))
    assert np.array_equal(decode_tags(logits, np.asarray([10, 20]), IOB2_TAGS, scheme), logits.argmax(-1))


def test_viterbi_in_blocks_equals_one_sentence_at_a_time():
    """Over a thousand sentences of mixed lengths (decoded in padded blocks, sorted by length) as each alone."""
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 40, size=1000)
    logits = rng.normal(scale=2.0, size=(counts.sum(), len(IOBES_TAGS)))
    together = decode_tags(logits, counts, IOBES_TAGS, "IOBES")
    starts = np.concatenate([[0], np.cumsum(counts)])
    alone = [
        decode_tags(logits[a:b], np.asarray([b - a]), IOBES_TAGS, "IOBES")
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]
    assert np.array_equal(together, np.concatenate(alone))


def test_tag_decoding_is_checked_and_applies_to_word_tagging_only(sms_csv, tokenizer):
    with pytest.raises(ConfigError, match="tag_decoding must be one of viterbi, argmax"):
        DataConfig(tag_decoding="beam")
    with pytest.raises(ConfigError, match="tag_decoding applies to word tagging"):
        DataConfig(task="text", tag_decoding="argmax")
    with pytest.raises(DataError, match="tag_decoding applies to word tagging"):
        prepare_data(DataConfig(train_file=str(sms_csv), tag_decoding="argmax"), tokenizer)


def test_the_bundled_btc_is_iob2_and_its_task_decodes_by_viterbi(tokenizer):
    data = prepare_data(DataConfig(dataset="btc", max_train_samples=64, max_eval_samples=32), tokenizer)
    assert (data.task.tag_scheme, data.task.tag_decoding) == ("IOB2", "viterbi")
    argmax = prepare_data(DataConfig(dataset="btc", max_train_samples=64, tag_decoding="argmax"), tokenizer)
    assert argmax.task.tag_decoding == "argmax"
