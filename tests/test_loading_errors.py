"""Bad model input gets one clear BertclsError naming the problem and the fix."""

from __future__ import annotations

import json
import shutil

import pytest

from bertcls.errors import BertclsError, CheckpointError, ConfigError, ModelNotFoundError
from bertcls.hub import resolve_model
from bertcls.model.config import ModelConfig
from bertcls.model.pretrained import load_pretrained
from bertcls.model.weights import load_hf_checkpoint
from tests.conftest import GOLDEN


@pytest.fixture
def tiny_copy(tmp_path):
    target = tmp_path / "tiny-bert"
    shutil.copytree(GOLDEN / "tiny-bert", target)
    return target


def _edit_config(model_dir, **changes):
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_missing_config_json(tiny_copy):
    (tiny_copy / "config.json").unlink()
    with pytest.raises(ConfigError, match="No config.json"):
        load_pretrained(str(tiny_copy))


def test_wrong_shapes_listed_together(tiny_copy):
    _edit_config(tiny_copy, intermediate_size=40, num_hidden_layers=3)
    with pytest.raises(CheckpointError) as caught:
        load_hf_checkpoint(tiny_copy, ModelConfig.from_json_file(tiny_copy / "config.json"))
    message = str(caught.value)
    assert "shape mismatches" in message and "intermediate.dense.weight" in message
    assert "missing from the checkpoint" in message and "bert.encoder.layer.2." in message


def test_unexpected_tensor_is_an_error(tiny_copy):
    _edit_config(tiny_copy, num_hidden_layers=1)
    with pytest.raises(CheckpointError, match=r"unexpected tensors: bert\.encoder\.layer\.1\."):
        load_hf_checkpoint(tiny_copy, ModelConfig.from_json_file(tiny_copy / "config.json"))


def test_unknown_model_type(tiny_copy):
    _edit_config(tiny_copy, model_type="roberta")
    with pytest.raises(ConfigError, match="Unsupported model_type 'roberta'"):
        load_pretrained(str(tiny_copy))


def test_pickle_only_checkpoint(tiny_copy):
    (tiny_copy / "model.safetensors").rename(tiny_copy / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="only pytorch_model.bin.*Convert once"):
        load_hf_checkpoint(tiny_copy, ModelConfig.from_json_file(tiny_copy / "config.json"))


def test_missing_directory():
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("./no/such/model-dir")


def test_hub_id_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("google-bert/bert-base-uncased")
    message = str(caught.value)
    for place in ("local path", "Hugging Face cache", "bundled mirror", "hub download: skipped"):
        assert place in message
    assert isinstance(caught.value, BertclsError)


def test_head_with_other_label_count_is_replaced():
    config = ModelConfig.from_json_file(GOLDEN / "tiny-bert" / "config.json", num_labels=5)
    _, report = load_hf_checkpoint(GOLDEN / "tiny-bert", config)
    assert report.initialized == ("head.output.bias", "head.output.kernel")


def test_bad_head_and_dtype():
    with pytest.raises(ConfigError, match="Unknown head"):
        ModelConfig(head="attention")
    with pytest.raises(ConfigError, match="compute dtype"):
        ModelConfig(compute_dtype="float16")


def _reference_logits(model_dir):
    import numpy as np

    golden = np.load(GOLDEN / "tiny-bert.npz")
    model, _ = load_hf_checkpoint(model_dir, ModelConfig.from_json_file(model_dir / "config.json"))
    return np.asarray(model(golden["input_ids"], golden["attention_mask"], golden["token_type_ids"]))


def test_sharded_checkpoint_with_gamma_beta_names_loads_the_same_model(tiny_copy):
    """Two shards + model.safetensors.index.json, LayerNorm tensors named gamma/beta (old TF exports)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    expected = _reference_logits(tiny_copy)
    tensors = load_file(str(tiny_copy / "model.safetensors"))
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in tensors.items()
    }
    assert sum(k.endswith((".gamma", ".beta")) for k in renamed) == 2 * 5  # embeddings + 2 per layer, 2 layers
    keys = sorted(renamed)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for shard, names in shards.items():
        save_file({k: renamed[k] for k in names}, str(tiny_copy / shard))
    weight_map = {k: shard for shard, names in shards.items() for k in names}
    (tiny_copy / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tiny_copy / "model.safetensors").unlink()
    np.testing.assert_array_equal(_reference_logits(tiny_copy), expected)
