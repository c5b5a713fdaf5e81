"""Calibration and class weights on the bundled datasets: what temperature scaling and `class_weights` change.

    python benchmarks/calibration.py [--store URI] [--out benchmarks/results/calibration.json]

Three jobs, each `bertcls train` with every default but the one named (its own process, against `--store`; a
temp sqlite store unless given; a FINISHED run there with the same run name is reused): sms_spam, sms_spam with
`class_weights=balanced`, bbc_news. Each run fits one temperature on its validation split after training and
scores its test split with and without it (bertcls.evaluation.calibration). The table: accuracy, macro-F1, spam
recall (sms_spam), ECE (15 bins), Brier score and NLL on the test split, before -> after. Prints the table and
writes JSON. Nothing is asserted: one seed each, and a test split of a few hundred texts moves ECE by a few
thousandths between seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

JOBS = {  # run name -> extra CLI arguments of `bertcls train`
    "calib_sms_spam": ["--dataset", "sms_spam"],
    "calib_sms_spam_balanced": ["--dataset", "sms_spam", "--class-weights", "balanced"],
    "calib_bbc_news": ["--dataset", "bbc_news"],
}
MEASURES = ("ece", "brier", "nll")


def _finished_run(client, name: str):
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"attributes.run_name = '{name}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0] if runs else None


def _row(name: str, run) -> dict:
    metrics, params = run.data.metrics, run.data.params
    row = {
        "run": name,
        "run_id": run.info.run_id,
        "dataset": params.get("dataset"),
        "class_weights": params.get("class_weights"),
        "temperature": metrics.get("temperature"),
        "test_accuracy": metrics.get("test_accuracy"),
        "test_macro_f1": metrics.get("test_macro_f1"),
        "test_recall_spam": metrics.get("test_recall_spam"),
    }
    for measure in MEASURES:
        row[f"test_{measure}_before"] = metrics.get(f"test_{measure}_uncalibrated")
        row[f"test_{measure}_after"] = metrics.get(f"test_{measure}")
    return row


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="tracking URI (default: a temp sqlite store)")
    parser.add_argument("--out", default="benchmarks/results/calibration.json")
    args = parser.parse_args()
    store = args.store or f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench_calib_')) / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = store

    import mlflow

    client = mlflow.MlflowClient(store)
    rows = []
    for name, extra in JOBS.items():
        run = _finished_run(client, name)
        if run is None:
            command = [sys.executable, "-m", "bertcls.cli", "train", *extra, "--run-name", name]
            print("+", " ".join(command[2:]), flush=True)
            subprocess.run(command, check=True, env=os.environ)
            run = _finished_run(client, name)
        rows.append(_row(name, run))

    head = "| run | T | accuracy | macro-F1 | spam recall | ECE before -> after | Brier before -> after"
    head += " | NLL before -> after |"
    print(head)
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pairs = [f"{_fmt(r[f'test_{m}_before'])} -> {_fmt(r[f'test_{m}_after'])}" for m in MEASURES]
        cells = [r["run"], _fmt(r["temperature"]), _fmt(r["test_accuracy"]), _fmt(r["test_macro_f1"])]
        print("| " + " | ".join([*cells, _fmt(r["test_recall_spam"]), *pairs]) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"store": store, "runs": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
