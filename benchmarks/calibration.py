"""Calibration, class weights and focal loss on the bundled datasets: what temperature scaling changes.

    python benchmarks/calibration.py [--store URI] [--seeds 42 1 2] [--jobs calib_bbc_news ...]
        [--out benchmarks/results/calibration.json]

Five jobs, each `bertcls train` with every default but the one named, once per `--seed` (its own process, against
`--store`; a temp sqlite store unless given; a FINISHED run there with the same run name is reused): sms_spam,
sms_spam with `class_weights=balanced`, sms_spam with `focal_gamma=2`, bbc_news, and bbc_news with a fifth of its
training split held out to calibrate on (`calibration_fraction=0.2`). Each run fits one temperature after training
(on its validation split, or its calibration split) and scores its test split with and without it
(bertcls.evaluation.calibration).
The first table: accuracy, macro-F1, spam recall (sms_spam), ECE (15 bins), Brier score and NLL on the test split,
before -> after, per run. The second: per job, the mean over seeds before -> after and in how many seeds the
temperature lowered each measure. The third: what each way of fitting T gives: each run's model is reloaded, its
held-out logits recomputed, and test ECE is given at T = 1, at the plain maximum-likelihood T on validation, at the
prior's T (`LOG_T_PRIOR_SD`) and, for a run with `calibration_fraction`, at the T fitted on its calibration split
(the run's own) and on validation + calibration pooled, with the T that would have been best on test. Prints all
three and writes JSON. Nothing is asserted: a test split of a few hundred texts moves ECE by a few thousandths between
seeds (one text of bbc_news' 213 is 0.005), so one seed says little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

JOBS = {  # run name -> extra CLI arguments of `bertcls train`
    "calib_sms_spam": ["--dataset", "sms_spam"],
    "calib_sms_spam_balanced": ["--dataset", "sms_spam", "--class-weights", "balanced"],
    "calib_sms_spam_focal": ["--dataset", "sms_spam", "--focal-gamma", "2"],
    "calib_bbc_news": ["--dataset", "bbc_news"],
    # a fifth of train held out as a calibration split (340 texts): fitted there, not on validation's 213
    "calib_bbc_news_held": ["--dataset", "bbc_news", "--calibration-fraction", "0.2"],
}
FITS = ("t1", "plain", "prior", "held", "pooled")  # the temperatures `_refit_check` compares on test
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


def _refit_check(run) -> dict:
    """Test ECE of the run's model at T = 1 and at each temperature a fit could choose, all recomputed from its
    reloaded model: the maximum-likelihood T on validation (plain), the prior's T on validation, and where the run
    held out a calibration split, the T fitted there (held, the run's own) and on validation + calibration pooled
    (pooled); with the T that maximises the test likelihood (what no fit can see)."""
    import dataclasses

    import numpy as np

    from bertcls.data import prepare_data
    from bertcls.evaluation import calibration as cal
    from bertcls.serving.predictor import Predictor
    from bertcls.tracking.registry import resolve_model_uri, run_train_config

    predictor = Predictor.from_dir(resolve_model_uri(f"runs:/{run.info.run_id}/model").local_dir)
    data_config = dataclasses.replace(run_train_config(run).data, **predictor.settings.data_fields())
    splits = prepare_data(data_config, predictor.tokenizer).splits
    scored = {s: (predictor.outputs(splits[s]), splits[s].text_labels()) for s in splits if s != "train"}
    val, test = scored["validation"], scored["test"]
    temperatures = {
        "t1": 1.0,
        "plain": cal.fit_temperature(*val),
        "prior": cal.fit_temperature(*val, prior_sd=cal.LOG_T_PRIOR_SD),
    }
    if "calibration" in scored:
        held = scored["calibration"]
        temperatures["held"] = cal.fit_temperature(*held)
        temperatures["pooled"] = cal.fit_temperature(
            np.concatenate([val[0], held[0]]), np.concatenate([val[1], held[1]])
        )
    return {
        **{f"t_{name}": t for name, t in temperatures.items() if name != "t1"},
        "t_best_on_test": cal.fit_temperature(*test, prior_sd=None),
        "n_calibration": len(scored["calibration"][1]) if "calibration" in scored else 0,
        **{
            f"test_ece_{name}": cal.expected_calibration_error(cal.scaled_probs(test[0], t), test[1])
            for name, t in temperatures.items()
        },
    }


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _run_name(job: str, seed: int) -> str:
    """The default seed keeps the bare job name, so stores measured before `--seeds` existed are reused."""
    return job if seed == 42 else f"{job}_s{seed}"


def _summary(job: str, rows: list[dict]) -> dict:
    """Mean over seeds of each test measure before and after, and the seeds where the temperature lowered it."""
    summary = {"job": job, "seeds": len(rows), "test_accuracy": statistics.fmean(r["test_accuracy"] for r in rows)}
    for measure in MEASURES:
        before = [r[f"test_{measure}_before"] for r in rows]
        after = [r[f"test_{measure}_after"] for r in rows]
        summary[f"test_{measure}_before"] = statistics.fmean(before)
        summary[f"test_{measure}_after"] = statistics.fmean(after)
        summary[f"test_{measure}_lowered"] = sum(a < b for a, b in zip(after, before, strict=True))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", help="tracking URI (default: a temp sqlite store)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="`--seed` of each job's runs")
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS), help="which jobs to run")
    parser.add_argument("--out", default="benchmarks/results/calibration.json")
    args = parser.parse_args()
    store = args.store or f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench_calib_')) / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = store

    import mlflow

    client = mlflow.MlflowClient(store)
    rows, summaries, by_job = [], [], {}
    for job in args.jobs:
        extra, job_rows = JOBS[job], []
        for seed in args.seeds:
            name = _run_name(job, seed)
            run = _finished_run(client, name)
            if run is None:
                command = [sys.executable, "-m", "bertcls.cli", "train", *extra, "--seed", str(seed)]
                command += ["--run-name", name]
                print("+", " ".join(command[2:]), flush=True)
                subprocess.run(command, check=True, env=os.environ)
                run = _finished_run(client, name)
            job_rows.append(_row(name, run) | {"seed": seed} | _refit_check(run))
        rows += job_rows
        by_job[job] = job_rows
        summaries.append(_summary(job, job_rows))

    head = "| run | T | accuracy | macro-F1 | spam recall | ECE before -> after | Brier before -> after"
    head += " | NLL before -> after |"
    print(head)
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        pairs = [f"{_fmt(r[f'test_{m}_before'])} -> {_fmt(r[f'test_{m}_after'])}" for m in MEASURES]
        cells = [r["run"], _fmt(r["temperature"]), _fmt(r["test_accuracy"]), _fmt(r["test_macro_f1"])]
        print("| " + " | ".join([*cells, _fmt(r["test_recall_spam"]), *pairs]) + " |")
    print(f"\nmean over seeds {args.seeds} (lowered: seeds where the temperature lowered the measure)")
    print("| job | seeds | accuracy | ECE before -> after (lowered) | Brier | NLL |")
    print("|---|---|---|---|---|---|")
    for s in summaries:
        pairs = [
            f"{_fmt(s[f'test_{m}_before'])} -> {_fmt(s[f'test_{m}_after'])} ({s[f'test_{m}_lowered']}/{s['seeds']})"
            for m in MEASURES
        ]
        print("| " + " | ".join([s["job"], str(s["seeds"]), _fmt(s["test_accuracy"]), *pairs]) + " |")
    print("\nthe fits compared on test: ECE at T = 1 and at the T fitted on validation (plain, prior) and, where held")
    print("out, on the calibration split (held) and on validation + calibration (pooled)")
    print(
        "| run | T plain | T prior | T held | T pooled | T best on test | "
        + " | ".join(f"ECE {f}" for f in FITS)
        + " |"
    )
    print("|---|---|---|---|---|---|" + "---|" * len(FITS))
    for r in rows:
        cells = [r.get(f"t_{k}") for k in ("plain", "prior", "held", "pooled", "best_on_test")]
        cells += [r.get(f"test_ece_{f}") for f in FITS]
        print("| " + " | ".join([r["run"], *map(_fmt, cells)]) + " |")
    for job, mine in by_job.items():
        found = [f for f in FITS if f"test_ece_{f}" in mine[0]]
        means = {f: statistics.fmean(r[f"test_ece_{f}"] for r in mine) for f in found}
        lowered = {f: sum(r[f"test_ece_{f}"] < r["test_ece_t1"] for r in mine) for f in found}
        parts = [f"T=1 {means['t1']:.4f}"]
        parts += [f"{f} {means[f]:.4f} (lowered {lowered[f]}/{len(mine)})" for f in found if f != "t1"]
        print(f"{job}: mean test ECE " + ", ".join(parts))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"store": store, "seeds": args.seeds, "runs": rows, "summary": summaries}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
