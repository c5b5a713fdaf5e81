"""Quality beside speed: bertcls's default recipe vs TF-IDF + logistic regression on the bundled datasets.

    python benchmarks/quality.py [--datasets "sms_spam bbc_news"] [--store URI] [--out benchmarks/results/quality.json]

Both read the documented split (bertcls's own 80/10/10, split_seed 42, duplicates dropped) and are scored on
its test split by the same metric code (bertcls.evaluation.metrics). The baseline: word 1-2-gram TF-IDF (sublinear tf)
and a logistic regression whose C is picked on the validation split. bertcls: `bertcls train --dataset D`
with every default (the run `make train` makes), in its own process against `--store` (a temp sqlite store
unless given; an existing FINISHED default run of that dataset there is reused, so a store that already
holds `make train` runs costs nothing). Prints a table and writes JSON. Nothing is asserted.

    python benchmarks/quality.py --ner [--lrs "5e-5 1e-4"] [--seeds "42 43 44"] [--epochs 3]
                                 [--out benchmarks/results/quality_ner.json] [--work DIR [--reuse]]
                                 [--keep-from benchmarks/results/quality_ner.json]

Named-entity recognition (word tagging) on the bundled Broad Twitter Corpus (`dataset=btc`): bertcls vs the
Hugging Face Trainer with AutoModelForTokenClassification (benchmarks/peer_ner_trainer.py, in the peer venv
`make bench-peer-env`), the same checkpoint (all-MiniLM-L6-v2), the same split (bertcls's: sections A B E F G
train, 10 % of them validation, section H test), the same recipe (AdamW, weight decay 0.01 on matrices, 10 %
linear warmup then linear decay, clipping 1.0, batch 32, max_seq_length 128, first-subword labels, the best
epoch by validation entity F1, its test scores reported) at each peak lr of `--lrs` and each seed of `--seeds`
(the seed draws the new head's weights, the dropout masks and the batch order on both sides; their mean and
sample standard deviation are reported per lr, since one seed's F1 moves by tenths of a point). The split goes to
the peer as JSONL ({"tokens", "tags"}) with the tag names in bertcls's id order. Each job is its own process
(bertcls: `fine_tune` against a cold XLA cache), timed start to exit. Scores: entity precision / recall / F1
(seqeval, default mode, micro) and word accuracy over every test word as each tool answers (bertcls: its default
tag_decoding=viterbi, the most probable tag sequence IOB2 allows; the Trainer: each word's argmax, as run_ner.py
and the pipeline), and the F1 of both best models' test words decoded both ways by bertcls's decoder (`F1
argmax`, `F1 viterbi`: the models compared alone), with paired per-seed differences; training examples/s of the
steady state (bertcls: each epoch's, compiled ahead; the peer: its optimizer steps after the first 3).
`--keep-from` keeps the seeds an earlier JSON measured (same epochs, split and model; marked `kept_from`) and
runs only the new ones. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def baseline(dataset: str) -> dict:
    """TF-IDF + logistic regression on bertcls's split of `dataset`: test metrics, C, fit seconds."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from bertcls.config import DataConfig, TrainConfig
    from bertcls.data import prepare_data
    from bertcls.evaluation.metrics import classification_metrics
    from bertcls.hub import resolve_model
    from bertcls.model.tokenizer import load_tokenizer

    config = TrainConfig(data=DataConfig(dataset=dataset))
    data = prepare_data(config.data, load_tokenizer(resolve_model(config.model)))
    texts = {name: list(data.texts[name]["text"]) for name in ("train", "validation", "test")}
    labels = {name: data.splits[name].text_labels() for name in texts}  # [T] label ids
    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    train_x = vectorizer.fit_transform(texts["train"])
    best = None
    for c in (1.0, 10.0, 100.0):
        classifier = LogisticRegression(C=c, max_iter=2000).fit(train_x, labels["train"])
        score = classifier.score(vectorizer.transform(texts["validation"]), labels["validation"])
        if best is None or score > best[0]:
            best = (score, c, classifier)
    predictions = best[2].predict(vectorizer.transform(texts["test"]))
    metrics = classification_metrics(predictions, labels["test"], data.task.num_labels)
    return {
        "C": best[1],
        "fit_s": time.perf_counter() - start,
        "test": metrics,
        "splits": {name: len(t) for name, t in texts.items()},
    }


def default_bertcls_run(dataset: str, store: str) -> dict:
    """Test metrics of a FINISHED all-defaults `train` run on `dataset` in the store, training one if absent."""
    import mlflow

    from bertcls.config import DataConfig, TrainConfig
    from bertcls.tracking.registry import run_train_config

    mlflow.set_tracking_uri(store)
    client = mlflow.MlflowClient(store)
    wanted = TrainConfig(data=DataConfig(dataset=dataset))

    def find():
        experiment = client.get_experiment_by_name("bertcls")
        if experiment is None:
            return None
        for run in client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'"):
            trained = run.data.tags.get("bertcls_job", "train") == "train" and "test_accuracy" in run.data.metrics
            if trained and run_train_config(run) == wanted:
                return run
        return None

    run, wall = find(), None
    if run is None:
        start = time.perf_counter()
        command = [str(Path(sys.executable).parent / "bertcls"), "train", "--dataset", dataset]
        subprocess.run(command, env={**os.environ, "MLFLOW_TRACKING_URI": store}, check=True)
        wall = time.perf_counter() - start
        run = find()
    metrics = run.data.metrics
    names = ("accuracy", "macro_f1", "mcc", "f1")
    return {
        "run_id": run.info.run_id,
        "job_wall_s": wall,
        "test": {n: metrics[f"test_{n}"] for n in names if f"test_{n}" in metrics},
    }


HERE = Path(__file__).resolve().parent
NER_DATASET = "btc"
DEFAULT_SEED = 42
PEER_NAME = "HF Trainer (peer)"
SCORES = (
    "best_val_f1",
    "test_precision",
    "test_recall",
    "test_f1",
    "test_accuracy",
    "test_f1_argmax",
    "test_f1_viterbi",
    "examples_per_s",
    "wall_s",
)
SHOWN = 7  # SCORES printed with 4 decimals in the table


def export_ner(out_dir: Path) -> tuple[Path, dict]:
    """bertcls's split of btc as JSONL ({"tokens", "tags"}) and labels.json (tag names in id order) for the peer;
    the model directory and the split's sizes."""
    from bertcls.config import DataConfig, TrainConfig
    from bertcls.data import prepare_data
    from bertcls.hub import resolve_model
    from bertcls.model.tokenizer import load_tokenizer

    config = TrainConfig(data=DataConfig(dataset=NER_DATASET))
    model_dir = resolve_model(config.model)
    data = prepare_data(config.data, load_tokenizer(model_dir))
    info = {
        "model": config.model,
        "label_names": list(data.task.label_names),
        "tag_scheme": data.task.tag_scheme,
        "splits": {},
    }
    for name in ("train", "validation", "test"):
        split = data.texts[name]
        rows = (json.dumps({"tokens": w, "tags": t}) for w, t in zip(split["tokens"], split["tags"], strict=True))
        (out_dir / f"{name}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
        info["splits"][name] = {
            "sentences": len(split),
            "words": sum(len(w) for w in split["tokens"]),
            "bertcls_rows": len(data.splits[name]),  # a sentence over max_seq_length: several windows
            "mean_subwords": float(np.mean(data.splits[name].lengths)),
        }
    (out_dir / "labels.json").write_text(json.dumps(info["label_names"]) + "\n", encoding="utf-8")
    return model_dir, info


def bertcls_ner_worker(out: Path, lr: float, epochs: int, seed: int) -> None:
    """In its own process: `fine_tune` on btc with every default but lr, epochs and seed; metrics and history to
    `out`."""
    from bertcls.config import DataConfig, OptimConfig, TrainConfig
    from bertcls.train.fine_tune import fine_tune

    start = time.perf_counter()
    data = DataConfig(dataset=NER_DATASET)
    config = TrainConfig(data=data, epochs=epochs, batch_size=32, seed=seed, optim=OptimConfig(lr=lr))
    tuned = fine_tune(config, progress_bar=False)
    history = tuned.result.history
    test, task = tuned.test, tuned.setup.data.task
    result = {
        "model": config.model,
        "seed": config.seed,
        "metrics": {k: float(v) for k, v in tuned.metrics.items() if isinstance(v, int | float)},
        "decoded": {  # the same best model's test words decoded both ways (its own test_f1: task.tag_decoding)
            decoding: decoded_scores(task, test.outputs, test.labels, test.word_counts, decoding)
            for decoding in ("argmax", "viterbi")
        },
        "history": [{k: float(v) for k, v in epoch.items() if isinstance(v, int | float)} for epoch in history],
        "examples_per_s": float(np.mean([h["train_examples_per_s"] for h in history])),
        "real_tokens_per_s": float(np.mean([h["train_tokens_per_s"] for h in history])),
        "train_s": float(sum(h["epoch_time_s"] for h in history)),
        "compile_time_s": float(history[-1]["compile_time_s"]),
        "job_wall_in_process_s": time.perf_counter() - start,
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    np.savez(out.with_suffix(".logits.npz"), test=test.outputs, labels=test.labels, word_counts=test.word_counts)


def decoded_scores(task, logits: np.ndarray, labels: np.ndarray, word_counts: np.ndarray, decoding: str) -> dict:
    """Entity precision / recall / F1 (seqeval) and word accuracy of [W, C] word logits decoded by `decoding`."""
    import dataclasses

    from bertcls.evaluation.tagging import predicted_tags, tagging_metrics

    task = dataclasses.replace(task, tag_decoding=decoding)
    return tagging_metrics(task, predicted_tags(task, logits, word_counts), labels, word_counts)


def peer_decoded(peer_json: Path, data_dir: Path, scheme: str) -> dict[str, dict]:
    """The peer's best model's test words (its `.logits.npz`) decoded by bertcls both ways: what the Trainer's model
    scores under bertcls's decoding."""
    from bertcls.data.tasks import TaskSpec

    saved = np.load(peer_json.with_suffix(".logits.npz"))
    names = tuple(str(n) for n in saved["label_names"])
    index = {name: i for i, name in enumerate(names)}
    rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    labels = np.asarray([index[t] for row in rows for t in row["tags"]])  # [W]
    counts = np.asarray([len(row["tags"]) for row in rows])  # [T]
    logits = saved["test"].copy()  # [W, C]
    logits[~saved["test_scored"]] = np.where(np.arange(len(names)) == index["O"], 0.0, -1e4)  # unread words: O
    task = TaskSpec(NER_DATASET, names, False, "f1", False, token_level=True, tag_scheme=scheme)
    return {d: decoded_scores(task, logits, labels, counts, d) for d in ("argmax", "viterbi")}


def ner_process(name: str, command: list[str], env: dict[str, str], work: Path, reuse: bool, cold=None) -> dict:
    """Run one job to completion (wall s, peak RSS, load average before and after), its record kept beside its
    output as NAME.process.json; with `reuse`, a job of `work` that already finished is not run again. `cold`: a
    cache directory emptied first (what a killed earlier try compiled into it)."""
    sys.path.insert(0, str(HERE))
    from peer import timed_process

    record = work / f"{name}.process.json"
    if reuse and record.exists() and (work / f"{name}.json").exists():
        return {**json.loads(record.read_text()), "reused": True}
    if cold is not None:
        shutil.rmtree(cold, ignore_errors=True)
    load_before = os.getloadavg()  # [1, 5, 15 min]: another process on the cores slows the job beside it
    process = timed_process(command, env, work / f"{name}.log")
    process["loadavg_before_after"] = [load_before, os.getloadavg()]
    record.write_text(json.dumps(process) + "\n", encoding="utf-8")
    return process


def ner_jobs(
    lr: float, seed: int, epochs: int, work: Path, data_dir: Path, model_dir: Path, reuse: bool, scheme: str
) -> dict[str, dict]:
    """bertcls and the peer at one lr and seed, each in its own process: scores (each tool's own, and both models'
    test words decoded by argmax and by bertcls's viterbi under `scheme`), throughput, wall time and peak RSS."""
    sys.path.insert(0, str(HERE))
    from peer import PEER_PYTHON

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    tag = f"lr{lr:g}" if seed == DEFAULT_SEED else f"lr{lr:g}_seed{seed}"  # seed 42: the names of earlier work dirs
    ours_name, peer_name = f"bertcls_{tag}", f"peer_{tag}"
    command = [sys.executable, str(Path(__file__).resolve()), "--bertcls-ner-job", str(work / f"{ours_name}.json")]
    command += ["--lr", str(lr), "--epochs", str(epochs), "--seed", str(seed)]
    cache = work / f"cache_{tag}"  # cold: every program compiled in the job
    ours_process = ner_process(ours_name, command, {**env, "BERTCLS_CACHE": str(cache)}, work, reuse, cold=cache)
    ours = json.loads((work / f"{ours_name}.json").read_text())
    metrics = ours["metrics"]
    bertcls = {
        **ours_process,
        "best_epoch": int(metrics["best_epoch"]),
        "best_val_f1": metrics["best_val_f1"],
        **{f"test_{k}": metrics[f"test_{k}"] for k in ("precision", "recall", "f1", "accuracy")},
        **{k: ours[k] for k in ("examples_per_s", "real_tokens_per_s", "train_s", "compile_time_s", "seed")},
        "test_f1_argmax": ours["decoded"]["argmax"]["f1"],
        "test_f1_viterbi": ours["decoded"]["viterbi"]["f1"],
        "decoded": ours["decoded"],
        "validation_f1": [h["val_f1"] for h in ours["history"]],
        "history": ours["history"],
        "metrics": metrics,
    }

    command = [str(PEER_PYTHON), str(HERE / "peer_ner_trainer.py"), str(data_dir), str(model_dir)]
    command += [str(work / f"{peer_name}.json"), "--lr", str(lr), "--epochs", str(epochs), "--seed", str(seed)]
    peer_process = ner_process(peer_name, command, env, work, reuse)
    peer = json.loads((work / f"{peer_name}.json").read_text())
    peer["validation_f1"] = [v["f1"] for v in peer["validation"]]
    peer["decoded"] = peer_decoded(work / f"{peer_name}.json", data_dir, scheme)  # its own test_f1: argmax
    peer["test_f1_argmax"], peer["test_f1_viterbi"] = (peer["decoded"][d]["f1"] for d in ("argmax", "viterbi"))
    return {"bertcls": bertcls, PEER_NAME: {**peer_process, **peer}}


def paired(differences: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, standard error and t of per-seed differences (points of F1)."""
    values = np.asarray(differences, dtype=np.float64)
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    se = sd / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "sd": sd, "se": float(se), "t": float(values.mean() / se) if se else 0.0}


def summarize(by_seed: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model, each score's mean and sample standard deviation over the seeds (std 0 for one seed)."""
    names = next(iter(by_seed.values())).keys()
    return {
        name: {
            k: {
                "mean": float(np.mean(values := [jobs[name][k] for jobs in by_seed.values()])),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
            for k in SCORES
        }
        for name in names
    }


def _kept_ner_runs(path: str, epochs: int, data: dict) -> dict:
    """The per-seed job records of an earlier quality_ner.json (lr -> seed -> jobs), to add seeds to it without
    running the old ones again; refused unless it was measured with the same epochs, data split and model."""
    earlier = json.loads(Path(path).read_text(encoding="utf-8"))
    setup = earlier["setup"]
    same = setup["epochs"] == epochs and setup["splits"] == data["splits"] and setup["model"] == data["model"]
    if not same:
        sys.exit(f"{path} was measured with another setup (epochs, split or model): run every seed again instead.")
    if any(
        "test_f1_viterbi" not in job
        for by_seed in earlier["runs"].values()
        for jobs in by_seed.values()
        for job in jobs.values()
    ):
        sys.exit(f"{path} was measured before both decodings were reported: run every seed again instead.")
    return {
        lr: {seed: {**jobs, "kept_from": path} for seed, jobs in by_seed.items()}
        for lr, by_seed in earlier["runs"].items()
    }


def ner_main(args) -> None:
    """bertcls vs the Hugging Face Trainer on btc at each lr: the table and quality_ner.json."""
    sys.path.insert(0, str(HERE))
    from limit import machine
    from peer import PEER_PYTHON

    if not PEER_PYTHON.exists():
        sys.exit(f"The peer venv {PEER_PYTHON.parent.parent} is missing. Create it with: make bench-peer-env")
    os.environ["HF_HUB_OFFLINE"] = "1"
    work = Path(args.work or tempfile.mkdtemp(prefix="bertcls-quality-ner-"))
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    model_dir, data = export_ner(data_dir)
    lrs, seeds = [float(v) for v in args.lrs.split()], [int(v) for v in args.seeds.split()]
    kept = _kept_ner_runs(args.keep_from, args.epochs, data) if args.keep_from else {}
    runs = {
        f"{lr:g}": {
            str(seed): kept.get(f"{lr:g}", {}).get(str(seed))
            or ner_jobs(lr, seed, args.epochs, work, data_dir, model_dir, args.reuse, data["tag_scheme"])
            for seed in seeds
        }
        for lr in lrs
    }
    summary = {lr: summarize(by_seed) for lr, by_seed in runs.items()}

    header = ["lr", "seed", "model", "best epoch", "val F1", "test P", "test R", "test F1", "word acc", "F1 argmax"]
    header += ["F1 viterbi", "train ex/s", "job wall s"]
    rows = [
        [lr, seed, name, str(job["best_epoch"]), *(f"{job[k]:.4f}" for k in SCORES[:SHOWN])]
        + [f"{job['examples_per_s']:.1f}", f"{job['wall_s']:.0f}"]
        for lr, by_seed in runs.items()
        for seed, jobs in by_seed.items()
        for name, job in jobs.items()
    ]
    if len(seeds) > 1:
        rows += [
            [lr, f"mean of {len(seeds)}", name, "", *(f"{m[k]['mean']:.4f}" for k in SCORES[:SHOWN])]
            + [f"{m['examples_per_s']['mean']:.1f}", f"{m['wall_s']['mean']:.0f}"]
            for lr, by_model in summary.items()
            for name, m in by_model.items()
        ]
        rows += [
            [lr, "std", name, "", *(f"{m[k]['std']:.4f}" for k in SCORES[:SHOWN]), "", ""]
            for lr, by_model in summary.items()
            for name, m in by_model.items()
        ]
    splits = data["splits"]
    title = (
        f"{NER_DATASET}: {splits['train']['sentences']} / {splits['validation']['sentences']} / "
        f"{splits['test']['sentences']} tweets, {data['model']}, {args.epochs} epochs, batch 32, max_seq_length 128"
    )
    print(title)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    result = {
        "machine": machine(),
        "setup": {"dataset": NER_DATASET, "epochs": args.epochs, "batch_size": 32, "max_seq_length": 128, **data},
        "seeds": seeds,
        "runs": runs,
        "summary": summary,
        "ratio_vs_peer": {
            lr: {
                "examples_per_s": by_model["bertcls"]["examples_per_s"]["mean"]
                / by_model[PEER_NAME]["examples_per_s"]["mean"],
                "job_wall_s": by_model["bertcls"]["wall_s"]["mean"] / by_model[PEER_NAME]["wall_s"]["mean"],
                "test_f1_points": 100
                * (by_model["bertcls"]["test_f1"]["mean"] - by_model[PEER_NAME]["test_f1"]["mean"]),
                "test_f1_points_by_seed": {
                    seed: 100 * (jobs["bertcls"]["test_f1"] - jobs[PEER_NAME]["test_f1"])
                    for seed, jobs in runs[lr].items()
                },
                "test_f1_points_paired": paired(
                    [100 * (jobs["bertcls"]["test_f1"] - jobs[PEER_NAME]["test_f1"]) for jobs in runs[lr].values()]
                ),
                **{  # the models alone: both decoded alike
                    f"test_f1_points_both_{d}": paired(
                        [
                            100 * (jobs["bertcls"][f"test_f1_{d}"] - jobs[PEER_NAME][f"test_f1_{d}"])
                            for jobs in runs[lr].values()
                        ]
                    )
                    for d in ("argmax", "viterbi")
                },
            }
            for lr, by_model in summary.items()
        },
    }
    out = Path(args.out or "benchmarks/results/quality_ner.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} (logs, data and the peer's checkpoints in {work})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sms_spam bbc_news")
    parser.add_argument("--store", default=None, help="MLflow tracking URI to find or log the bertcls runs in")
    parser.add_argument("--out", default=None, help="default benchmarks/results/quality.json (--ner: quality_ner.json)")
    parser.add_argument("--ner", action="store_true", help="word tagging on btc: bertcls vs the HF Trainer")
    parser.add_argument("--lrs", default="5e-5", help="--ner: the peak learning rates, one pair of jobs each")
    parser.add_argument("--seeds", default="42", help="--ner: the seeds, one pair of jobs per lr and seed")
    parser.add_argument("--epochs", type=int, default=3, help="--ner: epochs of every job")
    parser.add_argument("--work", default=None, help="--ner: keep data, logs and checkpoints here (default: temp)")
    parser.add_argument("--reuse", action="store_true", help="--ner: keep the jobs of --work that finished")
    parser.add_argument("--keep-from", default=None, help="--ner: an earlier quality_ner.json whose seeds are kept")
    parser.add_argument("--bertcls-ner-job", type=Path, default=None, help=argparse.SUPPRESS)  # the bertcls process
    parser.add_argument("--lr", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bertcls_ner_job is not None:
        bertcls_ner_worker(args.bertcls_ner_job, args.lr, args.epochs, args.seed)
        return
    if args.ner:
        ner_main(args)
        return
    args.out = args.out or "benchmarks/results/quality.json"
    store = args.store or f"sqlite:///{tempfile.mkdtemp(prefix='bertcls-quality-')}/mlflow.db"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    result = {}
    for dataset in args.datasets.split():
        result[dataset] = {"tfidf_logreg": baseline(dataset), "bertcls": default_bertcls_run(dataset, store)}

    header = ["dataset", "model", "test accuracy", "macro F1", "MCC"]
    rows = [
        [dataset, name, *(f"{entry['test'].get(m, float('nan')):.4f}" for m in ("accuracy", "macro_f1", "mcc"))]
        for dataset, models in result.items()
        for name, entry in models.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
