"""Everything continued masked-LM pre-training needs, loaded and checked before a run exists (no tracking): the
model with its MLM head, the tokenizer, the corpus packed into blocks, the masking rule and the trainer."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bertcls.data.batching import check_batch_size
from bertcls.data.corpus import load_corpus, pack_blocks
from bertcls.errors import ConfigError
from bertcls.hub import resolve_model
from bertcls.model.config import ModelConfig
from bertcls.model.mlm_weights import load_masked_lm
from bertcls.model.tokenizer import load_tokenizer
from bertcls.paths import cache_root
from bertcls.train.optim import make_optimizer
from bertcls.train.pretraining import Masking, Pretrainer, heldout_batches
from bertcls.train.steps import enable_compilation_cache, make_data_mesh
from bertcls.train.strategy import path_names


@dataclasses.dataclass
class PretrainSetup:
    model_dir: Path
    tokenizer: Any
    corpus: Any  # bertcls.data.corpus.Corpus: name, recipe, texts["train" | "heldout"]
    train_blocks: tuple[np.ndarray, np.ndarray]  # ([N, S] ids, [N, S] mask)
    heldout_blocks: tuple[np.ndarray, np.ndarray]
    masking: Masking
    heldout: list[dict]  # the held-out batches, masked once
    trainer: Pretrainer
    head_from_checkpoint: bool  # False: a new MLM head (it learns at new_head_lr)
    total_steps: int

    def facts(self) -> dict[str, Any]:
        """What the run records about its corpus and head, beside the parameters."""
        return {
            "model_dir": str(self.model_dir),
            "corpus_recipe": self.corpus.recipe,
            "train_texts": len(self.corpus.texts["train"]),
            "heldout_texts": len(self.corpus.texts["heldout"]),
            "train_blocks": len(self.train_blocks[0]),
            "heldout_blocks": len(self.heldout_blocks[0]),
            "train_tokens": int(self.train_blocks[1].sum()),
            "mlm_head": "from the checkpoint" if self.head_from_checkpoint else "new",
            "optimizer_steps": self.total_steps,
        }


def prepare_pretraining(config, resolve: Callable[[str], Path] = resolve_model) -> PretrainSetup:
    """Load and check everything for `config` (a `PretrainConfig`); `resolve` finds the model's directory."""
    check_batch_size(config.batch_size, jax.device_count())
    model_dir = resolve(config.model)
    arch = ModelConfig.from_json_file(model_dir / "config.json")
    length = config.data.max_seq_length
    if length > arch.max_position_embeddings:
        raise ConfigError(
            f"max_seq_length {length} exceeds the model's position limit ({arch.max_position_embeddings} positions "
            f"in {config.model}). Use max_seq_length <= {arch.max_position_embeddings}."
        )
    tokenizer = load_tokenizer(model_dir, arch.vocab_size)
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"The tokenizer of {config.model} has no [MASK] token: it cannot train as a masked LM.")
    corpus = load_corpus(config.data)
    train_blocks = pack_blocks(tokenizer, corpus.texts["train"], length)  # ([N, S] ids, [N, S] mask)
    heldout_blocks = pack_blocks(tokenizer, corpus.texts["heldout"], length)
    special = np.asarray(tokenizer.all_special_ids)
    masking = Masking(special, tokenizer.mask_token_id, arch.vocab_size, config.mlm_probability)
    heldout = heldout_batches(*heldout_blocks, masking, config.batch_size, config.seed)
    model, head_from_checkpoint = load_masked_lm(model_dir, arch, seed=config.seed)
    enable_compilation_cache(cache_root("xla"))
    total_steps = math.ceil(len(train_blocks[0]) / config.batch_size) * config.epochs
    head_scale = 1.0 if head_from_checkpoint else config.new_head_lr / config.lr  # a random head must learn fast
    lr_scale = lambda path: head_scale if path_names(path)[0] == "mlm" else 1.0  # noqa: E731
    trainer = Pretrainer(model, make_optimizer(config.optim, total_steps, lr_scale), make_data_mesh(), config.seed)
    return PretrainSetup(
        model_dir,
        tokenizer,
        corpus,
        train_blocks,
        heldout_blocks,
        masking,
        heldout,
        trainer,
        head_from_checkpoint,
        total_steps,
    )
