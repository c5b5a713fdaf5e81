"""tracking: params already logged by `mlflow run` are skipped; run status follows how the block ended."""

from __future__ import annotations

import mlflow
import pytest

from bertcls import tracking


@pytest.fixture
def client(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    mlflow.MlflowClient(uri).create_experiment("t", artifact_location=str(tmp_path / "artifacts"))
    return mlflow.MlflowClient(uri)


def test_params_logged_by_mlflow_run_are_not_logged_again(client):
    with tracking.tracked_run("t") as run:
        mlflow.log_param("lr", "2e-5")  # what `mlflow run -P lr=2e-5` logs before our code runs
        tracking.log_params({"lr": 2e-05, "epochs": 3, "train_file": None})  # "2e-05" would raise if re-logged
    params = client.get_run(run.info.run_id).data.params
    assert params == {"lr": "2e-5", "epochs": "3", "train_file": ""}


@pytest.mark.parametrize(
    ("error", "status"), [(None, "FINISHED"), (RuntimeError, "FAILED"), (tracking.RunInterrupted, "KILLED")]
)
def test_run_status_follows_the_block(client, error, status):
    try:
        with tracking.tracked_run("t") as run:
            if error:
                raise error("stop")
    except (RuntimeError, KeyboardInterrupt):
        pass
    assert client.get_run(run.info.run_id).info.status == status
    assert mlflow.active_run() is None
