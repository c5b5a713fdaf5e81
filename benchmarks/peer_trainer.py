"""The peer: Hugging Face `Trainer` on PyTorch (CPU), fine-tuning the same checkpoint on the same texts.

Runs in the peer venv (`make bench-peer-env`: torch, transformers, accelerate), never in bertcls's own.
Its best CPU setup for variable-length text: `DataCollatorWithPadding` (pad each batch to its longest text)
and `train_sampling_strategy="group_by_length"` (batches of similar lengths; `group_by_length=True` before
transformers 5). The same recipe as the bertcls jobs beside it: AdamW, peak lr `--lr` (5e-5), weight decay
0.01, 10 % linear warmup then linear decay, clipping at 1.0, validation every epoch.

    python benchmarks/peer_trainer.py DATA_DIR MODEL_DIR OUT_JSON [--epochs 1] [--batch-size 32] [--bf16]

DATA_DIR holds train/validation/test.jsonl ({"text", "label"}) written by benchmarks/peer.py. Writes
steady-state throughput (steps after the first `--warmup-steps`), test metrics and phase timings to OUT_JSON,
and saves the fine-tuned model beside OUT_JSON (`peer.json` -> `peer_model/`) for the inference benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class StepClock(TrainerCallback):
    """Wall time of each optimizer step, so steady state can exclude the first (warm-up) steps."""

    def __init__(self):
        self.durations: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._start)


class Rows(torch.utils.data.Dataset):
    def __init__(self, encodings: list[dict]):
        self.encodings = encodings

    def __len__(self):
        return len(self.encodings)

    def __getitem__(self, i):
        return self.encodings[i]


def training_arguments(args, total_steps: int) -> TrainingArguments:
    """The Trainer's settings matched to bertcls's defaults (AdamW, linear warmup 10 %, clipping, by-length)."""
    return TrainingArguments(
        output_dir=str(args.out.parent / "peer_trainer_output"),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        weight_decay=0.01,
        warmup_steps=math.ceil(0.1 * total_steps),
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        train_sampling_strategy="group_by_length",  # transformers 5: replaces group_by_length=True
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=args.seed,
        dataloader_num_workers=0,
        use_cpu=True,
        bf16=args.bf16,  # autocast: bf16 matmuls over fp32 weights (the Trainer's mixed precision)
        disable_tqdm=True,
    )


def steady_state(clock, args, train_examples: int, train_tokens: int) -> dict:
    """Steps, the first steps' time, and examples and real tokens per second after them."""
    skip = args.warmup_steps if len(clock.durations) > args.warmup_steps else 0  # a tiny run: every step
    steady = clock.durations[skip:]
    steady_examples = min(len(steady) * args.batch_size, train_examples * args.epochs)
    steady_seconds = sum(steady)
    mean_tokens = train_tokens / train_examples
    return {
        "steps": len(clock.durations),
        "first_steps_s": sum(clock.durations[:skip]),
        "examples_per_s": steady_examples / steady_seconds,
        "real_tokens_per_s": steady_examples * mean_tokens / steady_seconds,  # mean real length x examples/s
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps excluded from steady-state timing")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--bf16", action="store_true", help="TrainingArguments(bf16=True)")
    return parser.parse_args()


def padding_efficiency(trainer: Trainer) -> float:
    """Real tokens / padded tokens over one pass of the Trainer's own train batches (its sampler and collator)."""
    real = padded = 0
    for batch in trainer.get_train_dataloader():
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    return real / padded


def main() -> None:
    args = parse_args()
    job_start = time.perf_counter()

    splits = {name: read_jsonl(args.data_dir / f"{name}.jsonl") for name in ("train", "validation", "test")}
    num_labels = 1 + max(row["label"] for rows in splits.values() for row in rows)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir, num_labels=num_labels)

    def encode(rows: list[dict]) -> Rows:
        encoded = tokenizer([r["text"] for r in rows], truncation=True, max_length=args.max_seq_length)
        return Rows([{**{k: v[i] for k, v in encoded.items()}, "labels": r["label"]} for i, r in enumerate(rows)])

    datasets = {name: encode(rows) for name, rows in splits.items()}
    train_tokens = sum(len(e["input_ids"]) for e in datasets["train"].encodings)
    steps_per_epoch = math.ceil(len(datasets["train"]) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    training_args = training_arguments(args, total_steps)
    clock = StepClock()
    accuracy = lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}  # noqa: E731
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=[clock],
    )
    train_start = time.perf_counter()
    trainer.train()
    train_wall = time.perf_counter() - train_start
    prediction = trainer.predict(datasets["test"])
    test_logits = prediction.predictions  # [T, C], in the order of label_ids (not necessarily the file's)
    test_labels = prediction.label_ids  # [T]
    model_dir = args.out.parent / f"{args.out.stem}_model"  # peer.json -> peer_model/
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_examples": len(datasets["train"]),
        **steady_state(clock, args, len(datasets["train"]), train_tokens),
        "train_wall_s": train_wall,  # train() including its per-epoch validation
        "padding_efficiency": padding_efficiency(trainer),
        "bf16": args.bf16,
        "test_accuracy": float((np.argmax(test_logits, -1) == test_labels).mean()),
        "test_predictions": np.argmax(test_logits, -1).tolist(),
        "test_labels": np.asarray(test_labels).tolist(),
        "job_wall_in_process_s": time.perf_counter() - job_start,
        "pid": os.getpid(),
    }
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
