"""Calibration, class weights and focal loss on the bundled datasets: what temperature scaling changes.

    python benchmarks/calibration.py [--store URI] [--seeds 42 1 2] [--out benchmarks/results/calibration.json]

Four jobs, each `bertcls train` with every default but the one named, once per `--seed` (its own process, against
`--store`; a temp sqlite store unless given; a FINISHED run there with the same run name is reused): sms_spam,
sms_spam with `class_weights=balanced`, sms_spam with `focal_gamma=2`, bbc_news. Each run fits one temperature on
its validation split after training and scores its test split with and without it (bertcls.evaluation.calibration).
The first table: accuracy, macro-F1, spam recall (sms_spam), ECE (15 bins), Brier score and NLL on the test split,
before -> after, per run. The second: per job, the mean over seeds before -> after and in how many seeds the
temperature lowered each measure. The third: what a prior on log T would do (`LOG_T_PRIOR_SD`): each run's model
is reloaded, its validation and test logits recomputed, and test ECE is given at T = 1, at the plain
maximum-likelihood T (the run's) and at the prior's T, with the T that would have been best on test. Prints all three
and writes JSON. Nothing is asserted: a test split of a few hundred texts moves ECE by a few thousandths between
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


def _prior_check(run) -> dict:
    """Test ECE of the run's model at T = 1, at the maximum-likelihood T and at the prior's T (both fitted on its
    validation logits, recomputed here), and the T that maximises the test likelihood (what no fit can see)."""
    import dataclasses

    from bertcls.data import prepare_data
    from bertcls.evaluation import calibration as cal
    from bertcls.serving.predictor import Predictor
    from bertcls.tracking.registry import resolve_model_uri, run_train_config

    predictor = Predictor.from_dir(resolve_model_uri(f"runs:/{run.info.run_id}/model").local_dir)
    data_config = dataclasses.replace(run_train_config(run).data, **predictor.settings.data_fields())
    splits = prepare_data(data_config, predictor.tokenizer).splits
    val, test = ((predictor.outputs(splits[s]), splits[s].text_labels()) for s in ("validation", "test"))
    plain, prior = cal.fit_temperature(*val), cal.fit_temperature(*val, prior_sd=cal.LOG_T_PRIOR_SD)
    return {
        "t_plain": plain,
        "t_prior": prior,
        "t_best_on_test": cal.fit_temperature(*test, prior_sd=None),
        **{
            f"test_ece_{name}": cal.expected_calibration_error(cal.scaled_probs(test[0], t), test[1])
            for name, t in (("t1", 1.0), ("plain", plain), ("prior", prior))
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
    parser.add_argument("--out", default="benchmarks/results/calibration.json")
    args = parser.parse_args()
    store = args.store or f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench_calib_')) / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = store

    import mlflow

    client = mlflow.MlflowClient(store)
    rows, summaries, by_job = [], [], {}
    for job, extra in JOBS.items():
        job_rows = []
        for seed in args.seeds:
            name = _run_name(job, seed)
            run = _finished_run(client, name)
            if run is None:
                command = [sys.executable, "-m", "bertcls.cli", "train", *extra, "--seed", str(seed)]
                command += ["--run-name", name]
                print("+", " ".join(command[2:]), flush=True)
                subprocess.run(command, check=True, env=os.environ)
                run = _finished_run(client, name)
            job_rows.append(_row(name, run) | {"seed": seed} | _prior_check(run))
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
    print("\nthe prior on log T: test ECE at T = 1, at the plain maximum-likelihood T, at the prior's T")
    print("| run | T plain | T prior | T best on test | ECE T=1 | ECE plain | ECE prior |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r[k] for k in ("t_plain", "t_prior", "t_best_on_test", "test_ece_t1", "test_ece_plain", "test_ece_prior")
        ]
        print("| " + " | ".join([r["run"], *map(_fmt, cells)]) + " |")
    for job, mine in by_job.items():
        means = [statistics.fmean(r[k] for r in mine) for k in ("test_ece_t1", "test_ece_plain", "test_ece_prior")]
        lowered = [sum(r[k] < r["test_ece_t1"] for r in mine) for k in ("test_ece_plain", "test_ece_prior")]
        print(
            f"{job}: mean ECE T=1 {means[0]:.4f}, plain {means[1]:.4f} (lowered {lowered[0]}/{len(mine)}), "
            f"prior {means[2]:.4f} (lowered {lowered[1]}/{len(mine)})"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {"store": store, "seeds": args.seeds, "runs": rows, "summary": summaries}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
