"""A shared tracking server as a team runs it: PostgreSQL backend store, proxied artifacts, basic auth.

Everything is real and bound to 127.0.0.1: a throwaway PostgreSQL cluster, `mlflow server` processes, and
`bertcls` jobs in subprocesses that reach the server only through MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tests import e2e
from tests.pg import PG_BIN, PG_MISSING, Postgres

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "server-e2e"
MODEL = "bertcls-server-e2e"
# A fresh interpreter loads the champion over HTTP and prints its prediction frame as JSON.
PREDICT = (
    "import json, sys, mlflow; model = mlflow.pyfunc.load_model(sys.argv[1]); "
    "print(model.predict(json.loads(sys.argv[2])).to_json(orient='split'))"
)
TEXTS = ["WINNER!! claim your free cash prize, call 09061701461 now", "see you at lunch tomorrow"]


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PG_BIN is None, reason=PG_MISSING),
    pytest.mark.xdist_group("server_e2e"),  # one xdist worker: fixtures train once
]


@dataclasses.dataclass
class Shared:
    url: str
    artifacts: Path
    work: Path  # cwd of every bertcls / client subprocess
    postgres: Postgres
    database: str

    def run(self, *args: str, timeout_s: float = 300) -> str:
        """`args` in a subprocess that knows the server only through MLFLOW_TRACKING_URI; returns stdout."""
        done = subprocess.run(
            [sys.executable, *args],
            cwd=self.work,
            env=e2e.subprocess_env(MLFLOW_TRACKING_URI=self.url),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout


@pytest.fixture(scope="module")
def shared(postgres, tmp_path_factory):
    """An `mlflow server` on PostgreSQL with proxied artifacts, as a team would share it."""
    home = tmp_path_factory.mktemp("shared-server")
    artifacts, work = home / "artifacts", home / "work"
    work.mkdir()
    uri = postgres.create_database("mlflow")  # through the environment: no password in the process list
    with e2e.mlflow_server(["--artifacts-destination", str(artifacts)], home, MLFLOW_BACKEND_STORE_URI=uri) as url:
        yield Shared(url, artifacts, work, postgres, "mlflow")


def _train_command(model_dir: Path, lr: str) -> list[str]:
    """A real `bertcls train` on a slice of sms_spam with the 1-layer model: well under a minute."""
    command = ["-m", "bertcls.cli", "train", "--model", str(model_dir), "--experiment", EXPERIMENT, "--lr", lr]
    for key, value in {"max-train-samples": 300, "max-eval-samples": 100, "epochs": 2, "max-buckets": 2}.items():
        command += [f"--{key}", str(value)]
    return command


def _train_concurrently(server: Shared, model_dir: Path, lrs: tuple[str, ...]) -> list[str]:
    """One `bertcls train` subprocess per lr, all at once; returns their run ids in the same order."""
    env = e2e.subprocess_env(MLFLOW_TRACKING_URI=server.url)
    logs = [server.work.parent / f"train-{i}.log" for i in range(len(lrs))]
    processes = []
    for lr, log in zip(lrs, logs, strict=True):
        with log.open("w") as out:
            command = [sys.executable, *_train_command(model_dir, lr)]
            processes.append(
                subprocess.Popen(command, cwd=server.work, env=env, stdout=out, stderr=out, start_new_session=True)
            )
    try:
        codes = [p.wait(timeout=420) for p in processes]
    finally:
        for process in processes:
            e2e.stop_process(process, grace_s=5)
    outputs = [log.read_text() for log in logs]
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0, output[-4000:]
    return [re.search(r"^run ([0-9a-f]{32}):", output, re.MULTILINE).group(1) for output in outputs]


def _local_stores(directory: Path) -> dict[str, int]:
    """MLflow's local fallbacks in `directory`: name -> mtime (ns)."""
    names = ("mlflow.db", "mlruns", "mlartifacts")
    return {n: (directory / n).stat().st_mtime_ns for n in names if (directory / n).exists()}


def test_concurrent_trainings_register_and_load_through_server(shared, small_model_dir):
    repo_before = _local_stores(ROOT)
    good, bad = _train_concurrently(shared, small_model_dir, ("5e-4", "1e-6"))

    client = MlflowClient(shared.url)
    runs = {run_id: client.get_run(run_id) for run_id in (good, bad)}
    assert [r.info.status for r in runs.values()] == ["FINISHED", "FINISHED"]
    good_mcc, bad_mcc = (runs[r].data.metrics["best_val_mcc"] for r in (good, bad))
    assert good_mcc > bad_mcc, (good_mcc, bad_mcc)
    first, second = (runs[r].info for r in (good, bad))
    assert first.start_time < second.end_time and second.start_time < first.end_time  # they did overlap
    sql = "SELECT run_uuid, status FROM runs WHERE run_uuid = ANY(%s)"
    stored = shared.postgres.execute(sql, [good, bad], database=shared.database)
    assert sorted(stored) == sorted([(good, "FINISHED"), (bad, "FINISHED")])  # the rows live in PostgreSQL
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:/") for r in runs.values())

    out = shared.run("-m", "bertcls.cli", "evaluate", "--model-uri", f"runs:/{good}/model", "--experiment", EXPERIMENT)
    evaluation = client.get_run(out.split("evaluation run ", 1)[1].split(":", 1)[0])
    for key in ("test_accuracy", "test_mcc"):
        assert evaluation.data.metrics[key] == pytest.approx(runs[good].data.metrics[key], abs=1e-12), key
    assert evaluation.data.tags["source_run_id"] == good

    out = shared.run(
        "-m", "bertcls.cli", "register", "--experiment", EXPERIMENT, "--metric", "val_mcc", "--name", MODEL
    )
    assert "first champion" in out, out
    assert client.get_model_version_by_alias(MODEL, "champion").run_id == good

    out = shared.run("-c", PREDICT, f"models:/{MODEL}@champion", json.dumps(TEXTS))
    frame = json.loads(out.strip().splitlines()[-1])
    assert frame["columns"] == ["label", "prob_ham", "prob_spam"] and len(frame["data"]) == len(TEXTS)
    assert [row[0] for row in frame["data"]] == ["spam", "ham"]
    assert all(abs(row[1] + row[2] - 1) < 1e-6 and 0 <= row[1] <= 1 for row in frame["data"])

    for info in (first, second):  # artifacts went through the server's proxy to --artifacts-destination
        assert (shared.artifacts / info.experiment_id / info.run_id / "artifacts/figures/learning_curves.png").is_file()
    assert len(list(shared.artifacts.glob("*/models/*/artifacts/MLmodel"))) == 2  # one logged model per training
    assert not _local_stores(shared.work), sorted(p.name for p in shared.work.iterdir())
    assert _local_stores(ROOT) == repo_before


# ---- basic auth -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class AuthServer:
    url: str
    admin: tuple[str, str]


@pytest.fixture(scope="module")
def auth_server(postgres, tmp_path_factory):
    """`mlflow server --app-name basic-auth`: tracking and user stores in PostgreSQL, nothing readable by default."""
    home = tmp_path_factory.mktemp("auth-server")
    admin = ("admin", secrets.token_urlsafe(16))
    config = home / "basic_auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {postgres.create_database('mlflow_users')}\n"
        f"admin_username = {admin[0]}\n"
        f"admin_password = {admin[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    args = ["--app-name", "basic-auth", "--artifacts-destination", str(home / "artifacts")]
    env = {
        "MLFLOW_BACKEND_STORE_URI": postgres.create_database("mlflow_auth_tracking"),
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    with e2e.mlflow_server(args, home, **env) as url:
        yield AuthServer(url, admin)


@contextlib.contextmanager
def _as_user(monkeypatch, user: tuple[str, str]):
    """MLflow clients in this process send `user`'s credentials (read per request)."""
    with monkeypatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
        patch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
        yield


def _rest(url: str, path: str, body: dict | None = None, user: tuple[str, str] | None = None) -> int:
    """HTTP status of a REST call (POST with a JSON body, else GET)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def _tiny_model_version(client: MlflowClient, tmp_path: Path) -> tuple[str, str]:
    """A run with a one-file `model` artifact, registered as version 1 of a new model; (run id, source)."""
    experiment_id = client.create_experiment("auth-e2e")
    run = client.create_run(experiment_id)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.txt").write_text("0.5\n")
    client.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    source = f"runs:/{run.info.run_id}/model"
    client.create_model_version(MODEL, source, run.info.run_id)
    return run.info.run_id, source


def test_basic_auth_read_permission_refuses_registry_writes(auth_server, monkeypatch, tmp_path):
    from mlflow.server import get_app_client

    url, admin = auth_server.url, auth_server.admin
    assert _rest(url, "experiments/search?max_results=1") == 401
    assert _rest(url, "experiments/search?max_results=1", user=("admin", "wrong")) == 401

    client = MlflowClient(url)
    reader = ("reader", secrets.token_urlsafe(16))
    with _as_user(monkeypatch, admin):
        run_id, source = _tiny_model_version(client, tmp_path)
        users = get_app_client("basic-auth", tracking_uri=url)
        users.create_user(*reader)
    with _as_user(monkeypatch, reader), pytest.raises(MlflowException) as unseen:  # no grant, default NO_PERMISSIONS
        client.get_registered_model(MODEL)
    assert unseen.value.error_code == "PERMISSION_DENIED"
    with _as_user(monkeypatch, admin):
        users.grant_user_permission(reader[0], "experiment", client.get_run(run_id).info.experiment_id, "READ")
        users.grant_user_permission(reader[0], "registered_model", MODEL, "READ")

    with _as_user(monkeypatch, reader):
        assert client.get_registered_model(MODEL).name == MODEL  # READ works
        assert client.get_run(run_id).info.status == "FINISHED"
        with pytest.raises(MlflowException) as refused:
            client.create_model_version(MODEL, source, run_id)
        assert refused.value.error_code == "PERMISSION_DENIED"
    alias = {"name": MODEL, "alias": "champion", "version": "1"}
    assert _rest(url, "registered-models/alias", alias, user=reader) == 403

    with _as_user(monkeypatch, admin):  # nothing changed; the admin may do both
        assert [v.version for v in client.search_model_versions(f"name = '{MODEL}'")] == ["1"]
        assert client.get_registered_model(MODEL).aliases == {}
        assert client.create_model_version(MODEL, source, run_id).version == "2"
        assert _rest(url, "registered-models/alias", alias, user=admin) == 200
        assert client.get_registered_model(MODEL).aliases == {"champion": "1"}
        users.revoke_user_permission(reader[0], "registered_model", MODEL)  # a grant is replaced, not stacked
        users.grant_user_permission(reader[0], "registered_model", MODEL, "EDIT")

    with _as_user(monkeypatch, reader):  # so may the user, once granted EDIT
        assert client.create_model_version(MODEL, source, run_id).version == "3"
    assert _rest(url, "registered-models/alias", {**alias, "version": "3"}, user=reader) == 200
    with _as_user(monkeypatch, admin):
        assert client.get_model_version_by_alias(MODEL, "champion").version == "3"
