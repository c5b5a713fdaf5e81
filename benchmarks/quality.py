"""Quality beside speed: bertcls's default recipe vs TF-IDF + logistic regression on the bundled datasets.

    python benchmarks/quality.py [--datasets "sms_spam bbc_news"] [--store URI] [--out benchmarks/results/quality.json]

Both read the documented split (bertcls's own 80/10/10, split_seed 42, duplicates dropped) and are scored on
its test split by the same metric code (bertcls.evaluation.metrics). The baseline: word 1-2-gram TF-IDF (sublinear tf)
and a logistic regression whose C is picked on the validation split. bertcls: `bertcls train --dataset D`
with every default (the run `make train` makes), in its own process against `--store` (a temp sqlite store
unless given; an existing FINISHED default run of that dataset there is reused, so a store that already
holds `make train` runs costs nothing). Prints a table and writes JSON. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sms_spam bbc_news")
    parser.add_argument("--store", default=None, help="MLflow tracking URI to find or log the bertcls runs in")
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    args = parser.parse_args()
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
