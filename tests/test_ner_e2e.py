"""Token classification end to end: `mlflow run . -e train -P dataset=btc` on a slice of the bundled Broad Twitter
Corpus (1-layer MiniLM, one CPU device), then what a user does next: register by val_f1, load @champion and read
entities whose character offsets slice real tweets (punctuation, emoji, accents), serve them over REST with the
strict input contract, evaluate, export to a *ForTokenClassification directory."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from bertcls.config import DataConfig
from bertcls.data.sources import load_source
from bertcls.jobs import evaluate as evaluate_job
from bertcls.jobs import export as export_job
from bertcls.jobs import register as register_job
from tests import e2e

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ner_e2e")]
ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = "ner"
SLICE = {"max_train_samples": 600, "max_eval_samples": 100, "max_buckets": 3, "epochs": 3, "lr": "5e-4"}
# Real sentences with what tokenizers get wrong: accents, punctuation glued to names, emoji, an ellipsis, CJK.
SENTENCES = [
    "Leon Derczynski and Kalina Bontcheva flew from Sheffield to Copenhagen (Denmark) on Monday.",
    'Zoë Schröder told the BBC: "São Paulo was wonderful!" 🎉',
    "RT @UKLabour: Ed Miliband speaks in Manchester today… #Labour",
    "Barack Obama met Angela Merkel in Berlin, then visited Google in London. 日本語",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_model_dir, store_template):
    """One `mlflow run` train of the tagger, its run id, and the store it logged to."""
    root = tmp_path_factory.mktemp("ner")
    with e2e.mlflow_run_train(
        root, store_template, EXPERIMENT, {"dataset": "btc", "model": small_model_dir, **SLICE}
    ) as (uri, run):
        yield root, uri, run


def test_the_run_logs_entity_metrics_per_epoch_and_per_type(trained):
    _, uri, run = trained
    client = MlflowClient(uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["task_kind"] == "ner" and run.data.params["primary_metric"] == "f1"
    assert run.data.params["tag_scheme"] == "IOB2" and run.data.params["tag_decoding"] == "viterbi"
    assert run.data.tags["task"] == "ner"
    history = client.get_metric_history(run.info.run_id, "val_f1")
    assert [m.step for m in history] == [1, 2, 3]
    assert run.data.metrics["best_val_f1"] > 0.2 and run.data.metrics["test_f1"] > 0.2  # the baseline scores 0
    assert run.data.metrics["baseline_val_f1"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"val_entity_types.json", "test_entity_types.json"} <= artifacts
    table = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/val_entity_types.json")  # what the UI shows
    types = {row[table["columns"].index("type")] for row in table["data"]}
    assert types == {"LOC", "ORG", "PER", "micro avg"}
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/val_confusion_matrix.png" in figures


def test_champion_entities_slice_real_texts_to_their_surface(trained):
    _, _, run = trained
    outcome = register_job.register(EXPERIMENT, name="ner-btc", dataset="btc")  # ranks by val_f1, the primary
    assert outcome.alias == "champion" and outcome.task == "ner"  # the printed load line shows a sentence
    assert MlflowClient().get_model_version("ner-btc", outcome.version).tags["metric"] == "best_val_f1"
    model = mlflow.pyfunc.load_model("models:/ner-btc@champion")
    tweets = list(load_source(DataConfig(dataset="btc")).splits["test"].select(range(60))["tokens"])
    texts = [*SENTENCES, *(" ".join(words) for words in tweets)]
    answer = model.predict(texts)
    found = [(text, entity) for text, entities in zip(texts, answer["entities"], strict=True) for entity in entities]
    assert len(found) >= 5, answer
    for text, entity in found:
        assert text[entity["start"] : entity["end"]] == entity["text"], (text, entity)
        assert entity["type"] in {"PER", "LOC", "ORG"} and 0 < entity["score"] <= 1
    assert any(any(ord(c) > 127 for c in text) for text, _ in found)  # offsets held on non-ASCII texts too

    words = model.predict({"tokens": [["Barack", "Obama", "visited", "London", "."]]}, params={"return_tags": True})
    assert words["words"][0] == ["Barack", "Obama", "visited", "London", "."] and len(words["tags"][0]) == 5
    for entity in words["entities"][0]:
        assert "Barack Obama visited London ."[entity["start"] : entity["end"]] == entity["text"]


def _spells_iob2(tags: list[str]) -> bool:
    """No I-X but right after B-X or I-X."""
    return all(not t.startswith("I-") or p[2:] == t[2:] != "" for p, t in zip(["O", *tags[:-1]], tags, strict=True))


def test_tags_are_decoded_to_sequences_the_scheme_allows(trained):
    """The model's own decoding (viterbi) never answers an I- that continues nothing; argmax on request, which agrees
    wherever its own tags are valid."""
    _, _, run = trained
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    tweets = list(load_source(DataConfig(dataset="btc")).splits["test"].select(range(200))["tokens"])
    viterbi = model.predict({"tokens": tweets}, params={"return_tags": True})
    argmax = model.predict({"tokens": tweets}, params={"return_tags": True, "tag_decoding": "argmax"})
    assert all(_spells_iob2(list(tags)) for tags in viterbi["tags"])
    for decoded, plain in zip(viterbi["tags"], argmax["tags"], strict=True):
        if _spells_iob2(list(plain)):
            assert list(decoded) == list(plain)
    with pytest.raises(MlflowException, match="'tag_decoding' must be one of viterbi, argmax"):
        model.predict({"tokens": tweets[:1]}, params={"tag_decoding": "beam"})


def test_rest_serving_answers_entities_and_refuses_bad_input(trained):
    _, uri, run = trained
    with e2e.served(uri, f"runs:/{run.info.run_id}/model") as port:
        status, reply = e2e.post(port, {"inputs": SENTENCES[:2]})
        assert status == 200 and len(reply["predictions"]) == 2
        for text, row in zip(SENTENCES, reply["predictions"], strict=False):
            assert all(text[e["start"] : e["end"]] == e["text"] for e in row["entities"])
        status, reply = e2e.post(
            port,
            {"dataframe_records": [{"tokens": ["Leon", "lives", "in", "Sheffield"]}], "params": {"return_tags": True}},
        )
        assert status == 200 and len(reply["predictions"][0]["tags"]) == 4
        status, reply = e2e.post(port, {"inputs": SENTENCES[:1], "params": {"tag_decoding": "argmax"}})
        assert status == 200 and len(reply["predictions"]) == 1
        status, reply = e2e.post(port, {"inputs": SENTENCES[:1], "params": {"tag_decoding": "beam"}})
        assert status == 400 and "tag_decoding" in reply["message"]
        status, reply = e2e.post(port, {"dataframe_records": [{"tokens": "not a list"}]})
        assert status == 400 and "must hold lists of strings" in reply["message"]
        status, reply = e2e.post(port, {"dataframe_records": [{"txt": "x"}]})
        assert status == 400 and "neither a 'text' nor a 'tokens' column" in reply["message"]


def test_evaluate_and_export_a_tagger(trained):
    root, uri, run = trained
    outcome = evaluate_job.evaluate(f"runs:/{run.info.run_id}/model", split="test", experiment=EXPERIMENT)
    assert outcome.metrics["test_f1"] == pytest.approx(run.data.metrics["test_f1"], abs=1e-6)
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(outcome.run_id)}
    assert "test_entity_types.json" in artifacts
    exported = export_job.export(f"runs:/{run.info.run_id}/model", str(root / "hf"))
    config = json.loads((exported.directory / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"] and "B-PER" in config["label2id"]
    assert "AutoModelForTokenClassification" in (exported.directory / "README.md").read_text()
