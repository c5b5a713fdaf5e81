"""Hugging Face export: the key names and shapes of the reference *ForSequenceClassification models (recorded
by scripts/make_goldens.py from transformers), a lossless round trip through our Hugging Face loader, the
model card, and the refusals. Where torch is installed, transformers itself loads the export.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from safetensors import safe_open

from bertcls.config import DataConfig, TrainConfig
from bertcls.errors import ExportError, HubPushError
from bertcls.export import huggingface as hf_export
from bertcls.jobs import export as export_job
from bertcls.jobs import train as train_job
from bertcls.model.config import ModelConfig
from bertcls.model.weights import load_hf_checkpoint, load_model, save_model
from bertcls.serving.predictor import Predictor, softmax
from bertcls.tracking.registry import resolve_model_uri
from tests.conftest import write_sms_csv

TEXTS = ["WINNER!! claim your free cash prize, call 09061701461 now", "see you at lunch tomorrow", "ok"]


def _keys_and_shapes(directory) -> dict[str, list[int]]:
    with safe_open(str(directory / "model.safetensors"), framework="numpy") as handle:
        return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-distilbert", "tiny-bert-token", "tiny-distilbert-token"])
def test_export_has_the_reference_key_names_and_shapes_and_loads_back_unchanged(golden_dir, tmp_path, name):
    source = golden_dir / name
    head = "token" if name.endswith("-token") else "linear"
    config = ModelConfig.from_json_file(source / "config.json", head=head)
    model, _ = load_hf_checkpoint(source, config)
    save_model(model, tmp_path / "ours", ["a", "b", "c"])
    out = hf_export.export(tmp_path / "ours", tmp_path / "hf", "card")

    reference = json.loads((golden_dir / "state_dict_keys.json").read_text())[name]
    assert _keys_and_shapes(out) == reference  # what transformers' own model of this config holds
    exported = json.loads((out / "config.json").read_text())
    assert exported["id2label"] == {"0": "a", "1": "b", "2": "c"} and exported["label2id"]["c"] == 2
    classes = hf_export.HF_TOKEN_CLASSES if head == "token" else hf_export.HF_CLASSES
    assert exported["architectures"] == [classes[config.model_type]]

    again, report = load_hf_checkpoint(out, ModelConfig.from_json_file(out / "config.json", head=head))
    assert report.initialized == () and report.unused == ()  # every tensor read back, nothing made up
    ids = np.array([[2, 17, 45, 9, 3, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    types = np.zeros_like(ids)
    np.testing.assert_allclose(np.asarray(again(ids, mask, types)), np.asarray(model(ids, mask, types)), atol=1e-6)


def test_a_head_without_a_hugging_face_counterpart_and_a_used_directory_are_refused(golden_dir, tmp_path):
    source = golden_dir / "tiny-bert"
    model, _ = load_hf_checkpoint(source, ModelConfig.from_json_file(source / "config.json", head="mean"))
    save_model(model, tmp_path / "mean", ["a", "b", "c"])
    with pytest.raises(ExportError, match="head=mean.*Train with head=linear to export"):
        hf_export.export(tmp_path / "mean", tmp_path / "out", "card")
    assert not (tmp_path / "out").exists()

    linear, _ = load_hf_checkpoint(source, ModelConfig.from_json_file(source / "config.json", head="linear"))
    save_model(linear, tmp_path / "linear", ["a", "b", "c"])
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not empty"):
        hf_export.export(tmp_path / "linear", tmp_path / "used", "card")
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"


def test_pushing_offline_is_a_clear_error_and_the_export_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "export").mkdir()
    with pytest.raises(HubPushError, match="Could not push .* needs network access and a token"):
        export_job._push(tmp_path / "export", "someone/bertcls-test")


@pytest.fixture(scope="module")
def exported(small_model_dir, tmp_path_factory, store_template):
    """A head=linear model trained for 1 epoch on 120 real SMS texts (its own sqlite store), then exported."""
    import shutil

    import mlflow

    home = tmp_path_factory.mktemp("export")
    shutil.copy(store_template, home / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        texts = write_sms_csv(home / "sms.csv")
        config = TrainConfig(
            model=str(small_model_dir),
            head="linear",
            epochs=1,
            batch_size=16,
            eval_batch_size=16,
            data=DataConfig(train_file=str(texts), max_seq_length=32, max_buckets=1),
        )
        trained = train_job.train(config, experiment="export")
        ref = resolve_model_uri(f"runs:/{trained.run_id}/model")
        outcome = export_job.export(f"runs:/{trained.run_id}/model", str(home / "hf"))
        yield trained, ref, outcome, softmax(Predictor.from_dir(ref.local_dir).predict(TEXTS).astype(np.float64))


@pytest.mark.slow
@pytest.mark.xdist_group("export")  # `exported` trains once: one xdist worker runs its tests
def test_a_trained_model_exports_with_its_card_and_predicts_the_same(exported):
    from mlflow import MlflowClient

    trained, ref, outcome, expected = exported
    card = (ref.local_dir / "model_card.md").read_text()  # the logged MLflow model carries its card
    assert "ham" in card and f"{trained.metrics['test_accuracy']:.4f}" in card and "runs:/" in card
    readme = (outcome.directory / "README.md").read_text()
    assert "base_model:" in readme and "AutoModelForSequenceClassification" in readme
    assert f"{trained.metrics['test_accuracy']:.4f}" in readme
    logged = {a.path for a in MlflowClient().list_artifacts(trained.run_id, "hf_export")}
    assert "hf_export/model.safetensors" in logged and "hf_export/config.json" in logged

    ours = Predictor.from_dir(ref.local_dir)
    exported_config = ModelConfig.from_json_file(outcome.directory / "config.json", head="linear")
    back = Predictor(load_hf_checkpoint(outcome.directory, exported_config)[0], ours.tokenizer, ours.settings)
    np.testing.assert_allclose(softmax(back.predict(TEXTS).astype(np.float64)), expected, atol=1e-5)
    assert load_model(ref.local_dir)[1]["label_names"] == ["ham", "spam"]


@pytest.mark.slow
@pytest.mark.xdist_group("export")
@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="torch is not installed (make test never pulls it); pip install torch==2.13.0 to run this",
)
def test_transformers_loads_the_export_and_predicts_the_same(exported):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, _, outcome, expected = exported
    model = AutoModelForSequenceClassification.from_pretrained(str(outcome.directory)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(outcome.directory))
    with torch.no_grad():
        batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
        probabilities = torch.softmax(model(**batch).logits.double(), -1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert model.config.id2label == {0: "ham", 1: "spam"}
