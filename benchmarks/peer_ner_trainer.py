"""The NER peer: Hugging Face `Trainer` + `AutoModelForTokenClassification` on PyTorch (CPU), same checkpoint,
same tweets, same recipe as `bertcls` with `dataset=btc` (benchmarks/quality.py --ner runs both).

Runs in the peer venv (`make bench-peer-env`, plus seqeval from peer-requirements.txt), never in bertcls's own.
As Hugging Face's run_ner.py does it: words tokenized with `is_split_into_words=True, truncation=True,
max_length=128`, each word labelled at its first subword (the others -100), `DataCollatorForTokenClassification`
(pads each batch to its longest row), `train_sampling_strategy="group_by_length"` as benchmarks/peer_trainer.py
for training (in transformers 5 it would order evaluation rows by length too; here they stay in order),
validation every epoch scored by seqeval (default mode, micro), and the best epoch by validation entity F1 kept
(`load_best_model_at_end=True, metric_for_best_model="f1"`). The recipe of bertcls's defaults: AdamW, peak lr
`--lr`, weight decay 0.01 (not biases or LayerNorm), round(10 %) linear warmup steps then linear decay to 0,
clipping at 1.0, batch 32, seed 42.

    python benchmarks/peer_ner_trainer.py DATA_DIR MODEL_DIR OUT_JSON [--epochs 3] [--lr 5e-5] [--batch-size 32]

DATA_DIR holds train/validation/test.jsonl ({"tokens": [...], "tags": [...]}, tags as strings) and optionally
labels.json (the tag names in id order; else sorted with O first), as benchmarks/quality.py --ner writes them.
Validation and test are scored on every word: a word with no first subword in the row (truncated away, or one
the tokenizer drops) counts as predicted "O", as bertcls scores a word its tokenizer drops (bertcls windows long
sentences instead of truncating, so it predicts every other word). Writes test precision / recall / F1 / word
accuracy, per-epoch validation scores, the best epoch, steady-state training examples/s (optimizer steps after
the first `--warmup-steps`, validation excluded) and wall times to OUT_JSON, and every test word's first-subword
logits to OUT_JSON with the suffix `.logits.npz`, so benchmarks/quality.py can also score the Trainer's model
under bertcls's tag decoding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from seqeval import metrics as seqeval_metrics
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
    set_seed,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_trainer import Rows, StepClock, read_jsonl  # noqa: E402 - the text peer's helpers, same venv

IGNORE = -100
OUTSIDE = "O"


def label_names(data_dir: Path, splits: dict[str, list[dict]]) -> list[str]:
    """labels.json when given (bertcls's id order), else the train tags sorted with O first."""
    if (data_dir / "labels.json").exists():
        return json.loads((data_dir / "labels.json").read_text(encoding="utf-8"))
    seen = {t for row in splits["train"] for t in row["tags"]}
    return sorted(seen, key=lambda t: (t != OUTSIDE, t))


def encode(tokenizer, rows: list[dict], index: dict[str, int], max_length: int) -> tuple[Rows, list[list[int]]]:
    """run_ner.py's tokenize_and_align_labels (label_all_tokens=False): subword rows labelled at each word's first
    subword; also, per row, the position of each word's first subword (-1: none in the row)."""
    encoded = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True, max_length=max_length)
    out, firsts = [], []
    for i, row in enumerate(rows):
        word_ids = encoded.word_ids(i)
        labels, first = [], [-1] * len(row["tokens"])
        previous = None
        for position, word in enumerate(word_ids):
            if word is None or word == previous:
                labels.append(IGNORE)
            else:
                labels.append(index[row["tags"][word]])
                first[word] = position
            previous = word
        out.append({**{k: v[i] for k, v in encoded.items()}, "labels": labels})
        firsts.append(first)
    return Rows(out), firsts


def check_row_order(label_ids: np.ndarray, rows: Rows) -> None:
    """Refuse predictions whose rows are not the dataset's, in order: each row's returned labels ([N, S], padded
    with -100) must be the ones it was encoded with."""
    for i, encoding in enumerate(rows.encodings):
        expected = np.asarray(encoding["labels"])
        if not (
            np.array_equal(label_ids[i, : len(expected)], expected) and (label_ids[i, len(expected) :] == IGNORE).all()
        ):
            raise RuntimeError(f"predictions and rows are misaligned at row {i}: the eval rows are not in order")


def word_tags(logits: np.ndarray, firsts: list[list[int]], names: list[str]) -> list[list[str]]:
    """[N, S, C] logits (rows in order, padded) -> one predicted tag per word, "O" for words with no subword."""
    predicted = np.asarray(logits).argmax(-1)  # [N, S]
    return [[names[predicted[i, p]] if p >= 0 else OUTSIDE for p in first] for i, first in enumerate(firsts)]


def word_logits(logits: np.ndarray, firsts: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """[N, S, C] logits (rows in order) -> ([W, C] each word's first-subword logits, sentences in order; [W] whether
    the word had a subword (else its row is zeros)), for benchmarks/quality.py to decode as bertcls decodes."""
    logits = np.asarray(logits)
    rows = [
        logits[i, p] if p >= 0 else np.zeros(logits.shape[-1], logits.dtype) for i, f in enumerate(firsts) for p in f
    ]
    scored = [p >= 0 for first in firsts for p in first]
    return np.stack(rows).astype(np.float32), np.asarray(scored)


def scores(truth: list[list[str]], guess: list[list[str]]) -> dict[str, float]:
    """Entity precision / recall / F1 (seqeval default mode, micro) and word accuracy."""
    flat_truth = [t for sentence in truth for t in sentence]
    flat_guess = [t for sentence in guess for t in sentence]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no predicted entity: seqeval warns and scores 0
        return {
            "precision": float(seqeval_metrics.precision_score(truth, guess)),
            "recall": float(seqeval_metrics.recall_score(truth, guess)),
            "f1": float(seqeval_metrics.f1_score(truth, guess)),
            "accuracy": float(np.mean([t == g for t, g in zip(flat_truth, flat_guess, strict=True)])),
        }


class InOrderEvalTrainer(Trainer):
    """The Trainer with its evaluation and prediction rows in dataset order. transformers 5 applies
    `train_sampling_strategy="group_by_length"` to the eval sampler too, which reorders the rows of `predict`
    and of `compute_metrics`; words are matched to their sentences by row, so that order must hold (training keeps
    its length-grouped batches)."""

    def _get_eval_sampler(self, eval_dataset):
        return torch.utils.data.SequentialSampler(eval_dataset) if eval_dataset is not None else None


def training_arguments(args, total_steps: int) -> TrainingArguments:
    """The Trainer's settings matched to bertcls's defaults, keeping the best epoch by validation entity F1."""
    return TrainingArguments(
        output_dir=str(args.out.parent / f"{args.out.stem}_output"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        weight_decay=0.01,
        warmup_steps=int(round(0.1 * total_steps)),  # bertcls: round(warmup_ratio x total steps)
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        train_sampling_strategy="group_by_length",  # transformers 5: replaces group_by_length=True
        eval_strategy="epoch",
        save_strategy="epoch",  # load_best_model_at_end needs a checkpoint per evaluation
        save_only_model=True,  # no optimizer state: the checkpoints only serve load_best_model_at_end
        save_total_limit=1,  # the best one is kept besides
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        logging_strategy="no",
        report_to=[],
        seed=args.seed,
        dataloader_num_workers=0,
        use_cpu=True,
        disable_tqdm=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps excluded from steady-state timing")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr", type=float, default=5e-5)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    job_start = time.perf_counter()

    splits = {name: read_jsonl(args.data_dir / f"{name}.jsonl") for name in ("train", "validation", "test")}
    names = label_names(args.data_dir, splits)
    index = {name: i for i, name in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    set_seed(args.seed)  # before the model, as run_ner.py: the new classifier's init is seeded too
    model = AutoModelForTokenClassification.from_pretrained(
        args.model_dir, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index
    )
    encoded = {name: encode(tokenizer, rows, index, args.max_seq_length) for name, rows in splits.items()}
    datasets = {name: rows for name, (rows, _) in encoded.items()}
    truth = {name: [r["tags"] for r in rows] for name, rows in splits.items()}
    unpredicted = {
        name: sum(p < 0 for first in firsts for p in first) for name, (_, firsts) in encoded.items()
    }  # words scored as "O" without a prediction (truncated away or dropped by the tokenizer)

    truncated = {
        name: sum(
            len(ids) > args.max_seq_length
            for ids in tokenizer([r["tokens"] for r in rows], is_split_into_words=True)["input_ids"]
        )
        for name, rows in splits.items()
    }
    validation_firsts = encoded["validation"][1]
    validation_scores: list[dict] = []

    def compute_metrics(prediction) -> dict[str, float]:
        check_row_order(prediction.label_ids, datasets["validation"])
        found = scores(truth["validation"], word_tags(prediction.predictions, validation_firsts, names))
        validation_scores.append(found)
        return found

    train_examples = len(datasets["train"])
    train_tokens = sum(len(e["input_ids"]) for e in datasets["train"].encodings)
    total_steps = math.ceil(train_examples / args.batch_size) * args.epochs
    clock = StepClock()
    trainer = InOrderEvalTrainer(
        model=model,
        args=training_arguments(args, total_steps),
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[clock],
    )
    train_start = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - train_start
    best_epoch = 1 + int(np.argmax([s["f1"] for s in validation_scores]))  # the first best, as the Trainer keeps
    trainer.compute_metrics = None  # scores validation rows only; the test split is scored below
    test_start = time.perf_counter()
    prediction = trainer.predict(datasets["test"])
    check_row_order(prediction.label_ids, datasets["test"])
    test = scores(truth["test"], word_tags(prediction.predictions, encoded["test"][1], names))
    test_logits, test_scored = word_logits(prediction.predictions, encoded["test"][1])
    np.savez(args.out.with_suffix(".logits.npz"), test=test_logits, test_scored=test_scored, label_names=names)
    test_s = time.perf_counter() - test_start

    skip = args.warmup_steps if len(clock.durations) > args.warmup_steps else 0  # a tiny run: every step
    steady_seconds = sum(clock.durations[skip:])
    steady_examples = train_examples * args.epochs - skip * args.batch_size  # the first steps are full batches
    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "label_names": names,
        "train_examples": train_examples,
        "total_steps": total_steps,
        "warmup_steps": int(round(0.1 * total_steps)),
        "steps": len(clock.durations),
        "first_steps_s": sum(clock.durations[:skip]),
        "examples_per_s": steady_examples / steady_seconds,
        "real_tokens_per_s": steady_examples * (train_tokens / train_examples) / steady_seconds,
        "train_wall_s": train_wall,  # train() including per-epoch validation, checkpoints and the best reload
        "test_predict_s": test_s,
        "truncated_sentences": truncated,  # longer than max_seq_length subwords: their tail words unlabelled
        "unpredicted_words": unpredicted,
        "validation": validation_scores,
        "best_epoch": best_epoch,
        "best_val_f1": validation_scores[best_epoch - 1]["f1"],
        "trainer_best_metric": trainer.state.best_metric,  # the Trainer's own record of what it reloaded
        "trainer_best_checkpoint": trainer.state.best_model_checkpoint,
        **{f"test_{k}": v for k, v in test.items()},
        "job_wall_in_process_s": time.perf_counter() - job_start,
        "pid": os.getpid(),
    }
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
