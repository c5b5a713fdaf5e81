"""The pretrain job: continued masked-LM pre-training, logged as a run whose `encoder` artifact fine-tunes."""

from __future__ import annotations

import dataclasses
import logging
import math
import shlex
import time

import jax
import numpy as np

from bertcls.config import DEFAULT_EXPERIMENT, ModelConfig
from bertcls.config.jobs import job_params
from bertcls.data.batching import check_batch_size
from bertcls.data.corpus import load_corpus, pack_blocks
from bertcls.errors import ConfigError
from bertcls.evaluation import figures
from bertcls.export.model_card import base_licence, render_encoder
from bertcls.model.mlm_weights import load_masked_lm, save_encoder
from bertcls.model.tokenizer import load_tokenizer
from bertcls.paths import cache_root
from bertcls.tracking import artifacts, runs
from bertcls.tracking.artifacts import resolve_model
from bertcls.train.optim import make_optimizer
from bertcls.train.pretraining import Masking, Pretrainer, fit, heldout_batches
from bertcls.train.progress import ProgressBar
from bertcls.train.steps import enable_compilation_cache, make_data_mesh
from bertcls.train.strategy import path_names

log = logging.getLogger("bertcls")


@dataclasses.dataclass
class PretrainOutcome:
    run_id: str
    encoder_uri: str
    history: list[dict[str, float]]  # [0] is the held-out score before training
    wall_time_s: float
    experiment: str  # where the run is: the fine-tuning command names it


def pretrain(
    config, experiment: str | None = DEFAULT_EXPERIMENT, run_name: str | None = None, system_metrics: bool = False
) -> PretrainOutcome:
    """Continue masked-LM pre-training (config: `PretrainConfig`); log per-epoch MLM loss and the adapted encoder
    as the run's `encoder` artifact, a Hugging Face directory that `train -P model=runs:/<id>/encoder` reads."""



    started = time.perf_counter()
    check_batch_size(config.batch_size, jax.device_count())
    model_dir = resolve_model(config.model)
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
    masking = Masking(np.asarray(tokenizer.all_special_ids), tokenizer.mask_token_id, arch.vocab_size,
                      config.mlm_probability)  # fmt: skip
    heldout = heldout_batches(*heldout_blocks, masking, config.batch_size, config.seed)
    model, head_from_checkpoint = load_masked_lm(model_dir, arch, seed=config.seed)
    enable_compilation_cache(cache_root("xla"))
    total_steps = math.ceil(len(train_blocks[0]) / config.batch_size) * config.epochs
    head_scale = 1.0 if head_from_checkpoint else config.new_head_lr / config.lr  # a random head must learn fast
    lr_scale = lambda path: head_scale if path_names(path)[0] == "mlm" else 1.0  # noqa: E731
    trainer = Pretrainer(model, make_optimizer(config.optim, total_steps, lr_scale), make_data_mesh(), config.seed)

    values = {**dataclasses.asdict(config), **dataclasses.asdict(config.data)}
    params = {p.name: values[p.name] for p in job_params("pretrain") if p.name in values}
    with runs.tracked_run(experiment, run_name, system_metrics=system_metrics) as run:
        run_id = run.info.run_id
        runs.log_params({**params, "model_dir": str(model_dir), "corpus_recipe": corpus.recipe,
                             "train_texts": len(corpus.texts["train"]), "heldout_texts": len(corpus.texts["heldout"]),
                             "train_blocks": len(train_blocks[0]), "heldout_blocks": len(heldout_blocks[0]),
                             "train_tokens": int(train_blocks[1].sum()),
                             "mlm_head": "from the checkpoint" if head_from_checkpoint else "new",
                             "optimizer_steps": total_steps})  # fmt: skip
        runs.set_job_tag("pretrain")
        runs.set_tags({"dataset": corpus.name})
        runs.set_environment_tags()

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            runs.log_metrics(metrics, step=epoch)
            log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))

        history = fit(trainer, train_blocks, heldout, masking, config.batch_size, config.epochs, on_epoch,
                      ProgressBar(rate_label="predictions_per_s"))  # fmt: skip
        runs.log_outputs(figures.mlm_curve(history))
        card = render_encoder(config.model, base_licence(str(model_dir)), corpus.name, corpus.recipe,
                              {k: str(v) for k, v in params.items()}, history, run_id)  # fmt: skip
        with artifacts.staging_dir() as staging:
            artifacts.log_artifacts_to(run_id, save_encoder(trainer.model(), tokenizer, staging / "encoder", card),
                                      "encoder")  # fmt: skip
        encoder_uri = f"runs:/{run_id}/encoder"
        runs.set_tags({"encoder_uri": encoder_uri})
    experiment_name = runs.experiment_name(run.info.experiment_id)
    return PretrainOutcome(run_id, encoder_uri, history, time.perf_counter() - started, experiment_name)


def describe_pretrain(outcome: PretrainOutcome) -> str:
    """The lines printed at the end of `pretrain`."""

    before, after = outcome.history[0], outcome.history[-1]
    return "\n".join([
        f"run {outcome.run_id}: {len(outcome.history) - 1} epoch(s), wall time {outcome.wall_time_s:.1f} s",
        f"  held-out MLM loss {before['val_mlm_loss']:.4f} -> {after['val_mlm_loss']:.4f} "
        f"(perplexity {before['val_perplexity']:.2f} -> {after['val_perplexity']:.2f})",
        f"encoder: {outcome.encoder_uri}",
        f"fine-tune it: mlflow run . -e train --env-manager local --experiment-name {shlex.quote(outcome.experiment)} "
        f"-P model={outcome.encoder_uri}   (plus your data: -P dataset=... as pretrained, or another)",
    ])  # fmt: skip
