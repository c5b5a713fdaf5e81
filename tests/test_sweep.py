"""`sweep`: Optuna trials as MLflow child runs. A real grid, a failing trial, TPE with pruning, a re-run that
skips finished trials, two worker processes sharing a PostgreSQL storage, and the refusals that come before
anything runs. Trials are real trainings of a 1-layer MiniLM on 120 real SMS texts.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import mlflow
import optuna
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from bertcls.cli import main
from bertcls.config import DataConfig, SweepConfig, TrainConfig
from bertcls.errors import ConfigError
from bertcls.jobs import runs as runs_job
from bertcls.jobs import sweep as sweep_job
from bertcls.sweep import parameters, search
from tests import e2e
from tests.pg import PG_BIN, PG_MISSING


@pytest.fixture
def base(small_model_dir, sms_csv) -> TrainConfig:
    return TrainConfig(
        model=str(small_model_dir),
        batch_size=16,
        eval_batch_size=16,
        data=DataConfig(train_file=str(sms_csv), max_seq_length=32, max_buckets=2),
    )


def _children(parent_run_id: str):
    run = MlflowClient().get_run(parent_run_id)
    return MlflowClient().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")


def _sweep_command(base: TrainConfig, lrs: str, storage: str, study: str) -> list[str]:
    """`bertcls sweep` over `lrs` (1 epoch each) on the `base` fixture's model and data, as a subprocess runs it."""
    return [
        *(sys.executable, "-m", "bertcls.cli", "sweep", "--model", base.model, "--train-file", base.data.train_file),
        *("--max-seq-length", "32", "--max-buckets", "2", "--batch-size", "16", "--eval-batch-size", "16"),
        *("--lrs", lrs, "--epochs", "1", "--pruner", "none", "--storage", storage, "--study-name", study),
        *("--experiment", "sweep", "--system-metrics", "false"),
    ]


# ---- refusals, before anything runs (quick) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (SweepConfig(lrs="2e-5"), "The grid is empty"),
        (SweepConfig(), "The grid is empty"),
        (SweepConfig(trials=4, lr_range="2e-4 1e-5"), "low 0.0002 is above high 1e-05"),
        (SweepConfig(trials=4, lr_range="0 1e-3"), "log scale: both ends must be > 0"),
        (SweepConfig(trials=4, lr_range="1e-5"), "give two numbers 'low high'"),
        (SweepConfig(lrs="2e-5 fast"), "'fast' is not a number"),
        (SweepConfig(lrs="2e-5 2e-5"), "repeats a value"),
        (SweepConfig(heads="mean pooled"), "unknown head 'pooled'"),
        (SweepConfig(trials=3, lrs="1e-5 2e-5", lr_range="1e-5 1e-4"), "given both as a list"),
    ],
)
def test_search_space_refuses_what_cannot_be_searched(sweep, message):
    with pytest.raises(ConfigError, match=message):
        parameters.search_space(sweep)


def test_a_grid_with_invalid_combinations_is_refused_naming_one():
    space = parameters.search_space(SweepConfig(finetunes="full partial", freeze_layers="0 2"))
    with pytest.raises(ConfigError, match=r"1 of 4 grid points are not valid.*'finetune': 'full', 'freeze_layers': 2"):
        parameters.check_grid(TrainConfig(), space)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lrz", "1e-4"], "No such option '--lrz'. \\(Did you mean one of: '--llrds', '--lrs'\\?\\)"),
        (["--lrs", "1e-4"], "The grid is empty"),
        (
            ["--lrs", "1e-4 2e-4", "--storage", "postgresql://nobody:secret@127.0.0.1:1/none"],
            "Cannot open the Optuna storage postgresql://nobody:\\*\\*\\*@127.0.0.1:1/none",
        ),
        (["--trials", "3", "--lr-range", "1e-3 1e-5"], "low 0.001 is above high 1e-05"),
    ],
)
def test_sweep_bad_input_is_one_paragraph_before_any_run(empty_store, small_model_dir, args, message):
    result = CliRunner().invoke(main, ["sweep", "--model", str(small_model_dir), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    client = MlflowClient(empty_store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


# ---- real sweeps (slow) -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_2x2_grid_makes_a_parent_and_4_children_and_a_rerun_skips_them(empty_store, base):
    sweep = SweepConfig(lrs="1e-4 3e-4", epochs="1 2", pruner="none")
    outcome = sweep_job.sweep(base, sweep, experiment="sweep")
    children = _children(outcome.parent_run_id)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    settings = {(c.data.params["lr"], c.data.params["epochs"]) for c in children}
    assert settings == {("0.0001", "1"), ("0.0001", "2"), ("0.0003", "1"), ("0.0003", "2")}
    assert {c.data.tags["trial"] for c in children} == {"0", "1", "2", "3"}
    for child in children:  # logged exactly like train: per-epoch metrics and a model
        steps = [m.step for m in MlflowClient().get_metric_history(child.info.run_id, "val_accuracy")]
        assert steps == list(range(1, int(child.data.params["epochs"]) + 1))
        assert "model_uri" in child.data.tags

    parent = MlflowClient().get_run(outcome.parent_run_id)
    assert parent.data.tags["bertcls_job"] == "sweep" and parent.data.tags["best_run_id"] == outcome.best_run_id
    assert parent.data.metrics["best_val_accuracy"] == outcome.best_value
    assert parent.data.metrics["trials_complete"] == 4
    artifacts = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert artifacts == {"figures/best_val_accuracy_by_lr.png", "figures/parallel_coordinates.png"}
    table = mlflow.load_table("trials.json", run_ids=[parent.info.run_id])
    assert sorted(table["trial"]) == [0, 1, 2, 3] and set(table["state"]) == {"COMPLETE"}
    assert set(table["run_id"]) == {c.info.run_id for c in children}
    best = [c for c in children if c.data.tags.get("best_trial") == "true"]
    assert [c.info.run_id for c in best] == [outcome.best_run_id]
    assert MlflowClient().get_run(outcome.best_run_id).data.metrics["best_val_accuracy"] == max(
        c.data.metrics["best_val_accuracy"] for c in children
    )

    again = sweep_job.sweep(base, sweep, experiment="sweep")  # the same sweep: the study is done
    assert again.study_name == outcome.study_name and again.trained == 0
    assert _children(again.parent_run_id) == [] and len(again.table) == 4


@pytest.mark.slow
def test_a_failing_trial_is_failed_in_mlflow_and_optuna_and_the_others_finish(empty_store, base):
    # the 1-layer model has 1 layer: freezing 5 is impossible, which only the trial can find out
    outcome = sweep_job.sweep(base, SweepConfig(finetunes="partial", freeze_layers="1 5", pruner="none"), "sweep")
    children = {c.data.params["freeze_layers"]: c for c in _children(outcome.parent_run_id)}
    assert children["1"].info.status == "FINISHED"
    assert children["5"].info.status == "FAILED"
    assert "freeze_layers 5 exceeds the depth" in children["5"].data.tags["error"]
    states = dict(zip(outcome.table["freeze_layers"], outcome.table["state"], strict=True))
    assert states == {1: "COMPLETE", 5: "FAIL"}


@pytest.mark.slow
def test_tpe_with_the_median_pruner_prunes_a_hopeless_trial(empty_store, base):
    sweep = SweepConfig(trials=4, lr_range="1e-7 1e-3", epochs="2", metric="loss", sampler_seed=3)
    outcome = sweep_job.sweep(base, sweep, experiment="sweep")
    pruned = outcome.table[outcome.table["state"] == "PRUNED"]
    assert len(pruned) >= 1, outcome.table
    for _, row in pruned.iterrows():
        child = MlflowClient().get_run(row["run_id"])
        assert child.info.status == "FINISHED" and child.data.tags["pruned"] == "true"
        assert int(child.data.tags["epochs_run"]) < 2
        assert len(MlflowClient().get_metric_history(row["run_id"], "val_loss")) == int(child.data.tags["epochs_run"])
    assert len(outcome.table) == 4 and outcome.parent_run_id


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_is_stale_and_a_rerun_at_once_trains_every_point(empty_store, tmp_path, base):
    """kill -9 during trial 0: the sweep run carries host/pid (so `runs --stale` finds it), and a re-run seconds
    later (well inside Optuna's 60 s heartbeat grace) sees the trial's process gone, ends its MLflow run FAILED
    and retrains that point, so the best is named over the whole grid."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = _sweep_command(base, "1e-4 3e-4", storage, "killed")
    log = tmp_path / "sweep.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=e2e.subprocess_env(empty_store),
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = MlflowClient(empty_store)

    def trial_0_started():
        found = client.get_experiment_by_name("sweep")
        return found is not None and client.search_runs([found.experiment_id], "tags.trial = '0'")

    try:
        e2e.wait_until(trial_0_started, process, log, "the sweep", 240)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    (killed_parent,) = client.search_runs([experiment], "tags.bertcls_job = 'sweep'")
    assert killed_parent.data.tags["pid"] == str(process.pid)
    stale = {r.run_id: r.stale_reason for r in runs_job.running_runs("sweep", heartbeat_timeout_s=3600)}
    assert f"its process {process.pid}" in stale[killed_parent.info.run_id]

    again = sweep_job.sweep(
        base,
        SweepConfig(lrs="1e-4 3e-4", epochs="1", pruner="none", storage=storage, study_name="killed"),
        experiment="sweep",
    )
    complete = again.table[again.table["state"] == "COMPLETE"]
    assert sorted(complete["lr"]) == [1e-4, 3e-4], again.table  # every grid point, the killed one retrained
    assert list(again.table[again.table["state"] == "FAIL"]["trial"]) == [0]
    (killed_trial,) = client.search_runs([experiment], "tags.trial = '0'")
    assert killed_trial.info.status == "FAILED", killed_trial.info
    assert f"its process {process.pid}" in killed_trial.data.tags["stale_reason"]
    assert again.best_run_id in set(complete["run_id"])


@pytest.mark.slow
@pytest.mark.skipif(PG_BIN is None, reason=PG_MISSING)
def test_three_workers_on_one_postgresql_storage_run_each_grid_point_once(postgres, tmp_path, base):
    storage = postgres.create_database("optuna_sweep")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = _sweep_command(base, "1e-4 2e-4 3e-4", storage, "shared")
    # two machines, as two commands; the first also runs a second worker process of its own (workers=2)
    workers = [
        subprocess.Popen(
            command + extra,
            cwd=tmp_path,
            env=e2e.subprocess_env(uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in (["--workers", "2"], [])
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]

    study = optuna.load_study(study_name="shared", storage=storage)
    trained = [t for t in study.trials if not t.user_attrs.get(search.SURPLUS)]
    assert sorted(t.params["lr"] for t in trained) == [1e-4, 2e-4, 3e-4]  # a point for each of 3 workers
    assert {t.state.name for t in trained} == {"COMPLETE"}
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep").experiment_id
    children = client.search_runs([experiment], "tags.trial != ''")
    assert sorted(c.data.tags["trial"] for c in children) == ["0", "1", "2"]  # each trial trained once
    parents = client.search_runs([experiment], "tags.bertcls_job = 'sweep'")
    assert len(parents) == 2 and {c.data.tags["mlflow.parentRunId"] for c in children} <= {
        p.info.run_id for p in parents
    }
    logs = [a.path for p in parents for a in client.list_artifacts(p.info.run_id, "workers")]
    assert logs == ["workers/worker-1.log"]  # the spawned worker's output, kept on its parent


def test_ties_on_the_metric_go_to_the_lower_validation_loss():
    import pandas as pd

    table = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3],
            "best_val_accuracy": [0.99, 0.99, 0.98, 0.99],
            "best_val_loss": [0.05, 0.03, 0.01, 0.03],
        }
    )
    assert sweep_job._best_trial(table, "best_val_accuracy", "max")["trial"] == 1
    assert (
        sweep_job._best_trial(table.rename(columns={"best_val_accuracy": "best_val_mse"}), "best_val_mse", "min")[
            "trial"
        ]
        == 2
    )
