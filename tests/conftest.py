"""Shared fixtures: paths to the committed goldens and the bundled default model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

GOLDEN = Path(__file__).parent / "golden"
TINY_MODELS = ("tiny-bert", "tiny-bert-tanh", "tiny-distilbert")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from bertcls.hub import resolve_model

    return resolve_model("sentence-transformers/all-MiniLM-L6-v2")
