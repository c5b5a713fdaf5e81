"""ONNX export: the hand-written graph gives our logits for every head, pooling and family; `bertcls export
--format onnx --quantize int8` writes checked files, a report and the run's onnx_* metrics (ONNX Runtime, real)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bertcls.cli import main
from bertcls.export.onnx import build_onnx, run_logits, session
from bertcls.model.config import ModelConfig
from bertcls.model.weights import load_hf_checkpoint
from tests import e2e
from tests.conftest import GOLDEN

CASES = [  # (golden checkpoint, head, batch norm in the MLP head)
    ("tiny-bert", "linear", False),  # BERT's pooler (dense + tanh) on [CLS]
    ("tiny-bert", "mean", False),
    ("tiny-bert", "mlp", False),
    ("tiny-bert", "mlp", True),  # BatchNorm's running statistics
    ("tiny-bert-tanh", "linear", False),  # tanh-approximated GELU
    ("tiny-distilbert", "linear", False),  # no token types; pre_classifier + ReLU
    ("tiny-distilbert", "mean", False),
    ("tiny-bert-token", "token", False),  # a tag per token: [B, S, L]
]


def _batch(config: ModelConfig, rng) -> dict[str, np.ndarray]:
    """A right-padded batch of random ids: rows of 1 to 24 real tokens in a 24-token shape."""
    lengths = np.array([24, 1, 7, 13, 24, 2])
    mask = (np.arange(24)[None, :] < lengths[:, None]).astype(np.int32)  # [B, S]
    ids = rng.integers(1, config.vocab_size, size=mask.shape).astype(np.int32) * mask
    types = (rng.random(mask.shape) < 0.5).astype(np.int32) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("name, head, batchnorm", CASES)
def test_the_onnx_graph_gives_our_logits(tmp_path, name, head, batchnorm):
    config = ModelConfig.from_json_file(GOLDEN / name / "config.json", head=head)
    config = dataclasses.replace(config, head_batchnorm=batchnorm, num_labels=config.num_labels or 3)
    model, _ = load_hf_checkpoint(GOLDEN / name, config, seed=3)
    if batchnorm:  # running statistics that are not the identity, so the graph must apply them
        model.head.norm1.mean.set_value(model.head.norm1.mean.get_value() + 0.3)
        model.head.norm1.var.set_value(model.head.norm1.var.get_value() * 2.0)
    batch = _batch(config, np.random.default_rng(0))
    ours = np.asarray(model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]))
    path = tmp_path / "model.onnx"
    path.write_bytes(build_onnx(model).SerializeToString())
    theirs = run_logits(session(path), batch)
    assert theirs.shape == ours.shape
    if head == "token":  # padded positions are undefined: compare the real tokens
        real = batch["attention_mask"].astype(bool)
        ours, theirs = ours[real], theirs[real]
    np.testing.assert_allclose(theirs, ours, atol=2e-5, rtol=0)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, small_model_dir):
    with e2e.store_with_untrained_model(tmp_path_factory.mktemp("onnx"), small_model_dir, "onnx") as found:
        yield found


@pytest.mark.slow
def test_export_onnx_int8_writes_checked_files_and_logs_the_report(logged, tmp_path):
    """A 1-layer MiniLM with a fresh head, on sms_spam's test split (the run's default recipe)."""
    root, uri, model_uri = logged
    out = tmp_path / "onnx"
    result = CliRunner().invoke(main, ["export", model_uri, str(out), "--format", "onnx", "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert {"model.onnx", "model.int8.onnx", "tokenizer.json", "bertcls_config.json", "onnx_report.json"} <= {
        p.name for p in out.iterdir()
    }
    report = json.loads((out / "onnx_report.json").read_text())
    assert report["onnx_max_prob_diff"] <= 1e-4 and report["onnx_agreement"] == 1.0
    assert report["onnx_test_texts"] > 400 and 0 <= report["onnx_int8_test_accuracy"] <= 1
    # int8 moves probabilities by a few hundredths: an untrained head near 0.5 flips some answers, not most
    assert report["onnx_int8_texts_per_s"] > 0 and report["onnx_int8_agreement"] > 0.8
    run_id = mlflow.MlflowClient(uri).get_logged_model(model_uri.removeprefix("models:/")).source_run_id
    metrics = mlflow.MlflowClient(uri).get_run(run_id).data.metrics
    assert metrics["onnx_int8_speedup_vs_fp32"] == pytest.approx(report["onnx_int8_speedup_vs_fp32"])
    onnx_uri = re.search(r"as (models:/m-[0-9a-f]+), an MLflow model", result.output).group(1)
    onnx_model = Path(mlflow.artifacts.download_artifacts(artifact_uri=onnx_uri))
    assert (onnx_model / "artifacts" / out.name / "model.int8.onnx").is_file()
    assert "graph: model.int8.onnx" in (onnx_model / "MLmodel").read_text()  # it serves the int8 graph

    again = CliRunner().invoke(main, ["export", model_uri, str(out), "--format", "onnx"])
    assert again.exit_code == 2 and "exists and is not empty" in again.output
    mixed = CliRunner().invoke(main, ["export", model_uri, str(tmp_path / "hf"), "--quantize", "int8"])
    assert mixed.exit_code == 2 and "--quantize applies to --format onnx" in mixed.output
    assert not (tmp_path / "hf").exists()

    # docs/export.md's snippet, as written, reads the export with onnxruntime and tokenizers alone
    block = re.search(
        r"```python\n(import json, numpy.*?)```", (e2e.PROJECT_ROOT / "docs" / "export.md").read_text(), re.S
    )
    (tmp_path / "sms-spam-onnx").symlink_to(out)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        scope: dict = {}
        exec(block.group(1), scope)  # noqa: S102 - the documented code, run as a user would
    np.testing.assert_allclose(
        scope["probs"] / scope["probs"].sum(-1, keepdims=True),
        mlflow.pyfunc.load_model(model_uri)
        .predict(["free entry!!", "see you at 6"])[["prob_ham", "prob_spam"]]
        .to_numpy(),
        atol=1e-4,
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv", path=str(Path(sys.executable).parent)) is None, reason="uv is not installed")
def test_the_onnx_model_serves_in_an_environment_without_jax(logged, tmp_path):
    """`mlflow models serve --env-manager uv` builds the environment from the ONNX model's own requirements: no
    jax, flax or transformers in it, and the REST answers equal the JAX model's (within 1e-4) and refuse bad input."""
    root, uri, model_uri = logged
    result = CliRunner().invoke(main, ["export", model_uri, str(tmp_path / "onnx"), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    onnx_uri = re.search(r"as (models:/m-[0-9a-f]+), an MLflow model", result.output).group(1)
    requirements = (Path(mlflow.artifacts.download_artifacts(artifact_uri=onnx_uri)) / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and not re.search(r"^(jax|flax|transformers)\b", requirements, re.M)
    env_root = tmp_path / "envs"
    texts = ["Free entry in 2 a wkly comp to win FA Cup final tkts", "Ok lar... Joking wif u oni...", "ünïcödé 😀"]
    with e2e.served(uri, onnx_uri, timeout=600, env_manager="uv", MLFLOW_ENV_ROOT=str(env_root)) as port:
        status, answer = e2e.post(port, {"inputs": texts})
        bad_status, bad = e2e.post(port, {"dataframe_records": [{"body": "no text column"}]})
    assert status == 200, answer
    served = pd.DataFrame(answer["predictions"])
    expected = mlflow.pyfunc.load_model(model_uri).predict(texts)
    np.testing.assert_allclose(served[["prob_ham", "prob_spam"]], expected[["prob_ham", "prob_spam"]], atol=1e-4)
    assert served["label"].tolist() == expected["label"].tolist()
    assert bad_status == 400 and "no 'text' column" in bad["message"]
    (python,) = env_root.glob("*/bin/python")
    probe = "import importlib.util as u; print([m for m in ('jax', 'flax', 'transformers', 'torch') if u.find_spec(m)])"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize(("agreement", "warned"), [(0.49, True), (0.995, False)])
def test_an_int8_graph_that_answers_otherwise_is_flagged_in_the_summary(agreement, warned):
    from bertcls.jobs.export_onnx import OnnxOutcome, describe

    report = {"onnx_test_texts": 53.0, "onnx_max_prob_diff": 1e-7, "onnx_texts_per_s": 300.0, "jax_texts_per_s": 290.0}
    report |= {"onnx_int8_max_prob_diff": 0.3, "onnx_int8_texts_per_s": 500.0, "onnx_int8_speedup_vs_fp32": 1.67}
    text = describe(OnnxOutcome(Path("out"), None, report | {"onnx_int8_agreement": agreement}))
    assert f"same answer on {agreement:.1%} of test texts" in text
    assert ("warning: the int8 graph answers differently" in text) is warned
