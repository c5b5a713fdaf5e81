"""The pretrain job: continued masked-LM pre-training, logged as a run whose `encoder` artifact fine-tunes."""

from __future__ import annotations

import dataclasses
import logging
import shlex
import time

from bertcls.config import DEFAULT_EXPERIMENT
from bertcls.config.jobs import job_params
from bertcls.evaluation import figures
from bertcls.export.model_card import base_licence, render_encoder
from bertcls.model.mlm_weights import save_encoder
from bertcls.tracking import artifacts, runs
from bertcls.tracking.artifacts import resolve_model
from bertcls.train.pretrain_setup import prepare_pretraining
from bertcls.train.pretraining import fit
from bertcls.train.progress import ProgressBar

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
    setup = prepare_pretraining(config, resolve_model)  # every refusal before the run exists
    values = {**dataclasses.asdict(config), **dataclasses.asdict(config.data)}
    params = {p.name: values[p.name] for p in job_params("pretrain") if p.name in values}
    with runs.tracked_run(experiment, run_name, system_metrics=system_metrics) as run:
        run_id = run.info.run_id
        runs.log_params({**params, **setup.facts()})
        runs.set_job_tag("pretrain")
        runs.set_tags({"dataset": setup.corpus.name})
        runs.set_environment_tags()

        bar = ProgressBar(rate_label="predictions_per_s")
        trainer, batch_size, epochs = setup.trainer, config.batch_size, config.epochs
        history = fit(trainer, setup.train_blocks, setup.heldout, setup.masking, batch_size, epochs, [bar, _Epochs()])
        runs.log_outputs(figures.mlm_curve(history))
        licence, corpus = base_licence(str(setup.model_dir)), setup.corpus
        shown = {k: str(v) for k, v in params.items()}
        card = render_encoder(config.model, licence, corpus.name, corpus.recipe, shown, history, run_id)
        with artifacts.staging_dir() as staging:
            encoder = save_encoder(setup.trainer.model(), setup.tokenizer, staging / "encoder", card)
            artifacts.log_artifacts_to(run_id, encoder, "encoder")
        encoder_uri = f"runs:/{run_id}/encoder"
        runs.set_tags({"encoder_uri": encoder_uri})
    experiment_name = runs.experiment_name(run.info.experiment_id)
    return PretrainOutcome(run_id, encoder_uri, history, time.perf_counter() - started, experiment_name)


class _Epochs:
    """Each epoch's MLM loss and perplexity to the active run (step = epoch; 0 = before training) and the log."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        runs.log_metrics(metrics, step=epoch)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def describe_pretrain(outcome: PretrainOutcome) -> str:
    """The lines printed at the end of `pretrain`."""

    before, after = outcome.history[0], outcome.history[-1]
    return "\n".join(
        [
            f"run {outcome.run_id}: {len(outcome.history) - 1} epoch(s), wall time {outcome.wall_time_s:.1f} s",
            f"  held-out MLM loss {before['val_mlm_loss']:.4f} -> {after['val_mlm_loss']:.4f} "
            f"(perplexity {before['val_perplexity']:.2f} -> {after['val_perplexity']:.2f})",
            f"encoder: {outcome.encoder_uri}",
            "fine-tune it: mlflow run . -e train --env-manager local "
            f"--experiment-name {shlex.quote(outcome.experiment)} "
            f"-P model={outcome.encoder_uri}   (plus your data: -P dataset=... as pretrained, or another)",
        ]
    )
