"""Shared fixtures: paths to the committed goldens and the bundled default model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Multi-device code is tested on CPU: 8 host devices, set before anything imports jax.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach for the hub

GOLDEN = Path(__file__).parent / "golden"
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
    from bertcls.tokenizer import load_tokenizer

    return load_tokenizer(minilm_dir)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Tokenization cache per test session, never the user's ~/.cache."""
    monkeypatch.setenv("BERTCLS_CACHE", str(tmp_path_factory.getbasetemp() / "bertcls-cache"))
