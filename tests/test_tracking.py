"""tracking: params already logged by `mlflow run` are skipped; run status follows how the block ended."""

from __future__ import annotations

import mlflow
import pytest

from bertcls.runtime.interrupts import RunInterrupted, signals_deferred
from bertcls.tracking import runs


@pytest.fixture
def client(empty_store, tmp_path):
    mlflow.MlflowClient(empty_store).create_experiment("t", artifact_location=str(tmp_path / "artifacts"))
    return mlflow.MlflowClient(empty_store)


def test_params_logged_by_mlflow_run_are_not_logged_again(client):
    with runs.tracked_run("t") as run:
        mlflow.log_param("lr", "2e-5")  # what `mlflow run -P lr=2e-5` logs before our code runs
        runs.log_params({"lr": 2e-05, "epochs": 3, "train_file": None})  # "2e-05" would raise if re-logged
    params = client.get_run(run.info.run_id).data.params
    assert params == {"lr": "2e-5", "epochs": "3", "train_file": ""}


@pytest.mark.parametrize(
    ("error", "status"), [(None, "FINISHED"), (RuntimeError, "FAILED"), (RunInterrupted, "KILLED")]
)
def test_run_status_follows_the_block(client, error, status):
    if error is None:
        with runs.tracked_run("t") as run:
            pass
    else:
        with pytest.raises(error, match="stop"), runs.tracked_run("t") as run:  # re-raised, never swallowed
            raise error("stop")
    assert client.get_run(run.info.run_id).info.status == status
    assert mlflow.active_run() is None


def test_a_signal_during_the_model_write_waits_for_the_write(client, tmp_path):
    """SIGTERM inside signals_deferred(): the write finishes, then the run ends KILLED."""
    import os
    import signal

    written = tmp_path / "model.bin"
    with pytest.raises(RunInterrupted, match="SIGTERM"), runs.tracked_run("t") as run:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # delivered now, while "writing"
            with open(written, "wb") as handle:
                handle.write(b"x" * 1_000_000)
        raise AssertionError("the deferred signal must be raised when the critical section ends")
    assert written.stat().st_size == 1_000_000
    assert client.get_run(run.info.run_id).info.status == "KILLED"


def _log_together(run_ids: list[str], dataset, context: str) -> list[Exception]:
    """Each run logs `dataset` from its own thread, all released at once; the errors raised."""
    import threading

    barrier, errors = threading.Barrier(len(run_ids)), []

    def log(run_id: str) -> None:
        with mlflow.start_run(run_id=run_id):  # the active run is per thread
            barrier.wait()
            try:
                runs._log_input_once_shared(dataset, context)
            except Exception as error:  # noqa: BLE001 - collected and asserted on by the caller
                errors.append(error)

    threads = [threading.Thread(target=log, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_runs_logging_the_same_dataset_at_once_all_get_it(client):
    """Concurrent runs insert the same dataset row; the loser of the unique-key race retries (seen in CI)."""
    import pandas as pd

    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    dataset = mlflow.data.from_pandas(frame, name="d", targets="label")
    experiment_id = client.get_experiment_by_name("t").experiment_id
    for round_number in range(5):  # without the retry, about half the rounds of 8 threads hit the race
        run_ids = [client.create_run(experiment_id).info.run_id for _ in range(8)]
        assert _log_together(run_ids, dataset, f"train{round_number}") == []
        for run_id in run_ids:
            assert [i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs] == ["d"]


def test_a_resumed_run_completes_an_epoch_an_outage_cut_in_half_and_logs_no_point_twice(client):
    """The store took epoch 1's train metrics but not its val_* ones (the server stopped between the two calls):
    the resumed job logs exactly what is missing."""
    from bertcls.tracking.background import BackgroundLogger
    from bertcls.tracking.callback import MlflowCallback

    epochs = {
        1: {"train_loss": 0.5, "lr": 1e-4, "val_loss": 0.4, "val_accuracy": 0.8},
        2: {"train_loss": 0.3, "lr": 5e-5, "val_loss": 0.35, "val_accuracy": 0.85},
    }
    with runs.tracked_run("half") as run:
        run_id = run.info.run_id
        mlflow.log_metrics({"train_loss": 0.5, "lr": 1e-4}, step=1)  # the half that reached the store
        background = BackgroundLogger(runs.tracking_uri())
        callback = MlflowCallback(run_id, background, already_logged=runs.logged_metric_steps(run_id))
        for epoch, metrics in epochs.items():  # what the resume checkpoint's history holds
            callback.log_epoch(epoch, metrics)
        callback.log_epoch(2, epochs[2])  # again: nothing new
        assert background.flush(30)
    for key in ("train_loss", "lr", "val_loss", "val_accuracy"):
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert sorted(history) == [(1, epochs[1][key]), (2, epochs[2][key])], key
