"""The other jobs' configs (evaluate, register, pretrain, sweep) and which parameters each job takes
(`job_params`: the click options, MLproject and the docs tables come from it)."""

from __future__ import annotations

import dataclasses

from bertcls.config.fields import Param, option, params_of
from bertcls.config.training import DEFAULT_EXPERIMENT, SPLITS, DataConfig, OptimConfig, RunOptions, TrainConfig
from bertcls.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate`: which model, on which split; data options left unset are the training run's."""

    model_uri: str = option(help="runs:/<run_id>/model, models:/<name>@<alias> or models:/<name>/<version>")
    split: str = option("test", "split to evaluate on", choices=SPLITS)
    batch_size: int = option(64, "batch size of the predictions")
    top_mistakes: int = option(20, "most confident mistakes to log")
    extra_metric: str | None = option(
        None,
        "Hugging Face `evaluate` metrics by local script path (offline) or hub id, space-separated, computed "
        "on label ids",
    )
    experiment: str = option(
        DEFAULT_EXPERIMENT, "experiment of the evaluation run (under `mlflow run`: --experiment-name)", mlproject=False
    )


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """`distill`: train a smaller student on a teacher's soft labels (docs/distillation.md); the other parameters
    are `train`'s, for the student."""

    teacher: str = option(help="the teacher: runs:/<run_id>/model, models:/<name>@<alias> or models:/<name>/<version>")
    student_layers: int = option(
        0, "a student of this many encoder layers, initialised from every k-th teacher layer (DistilBERT style)"
    )
    student: str | None = option(
        None, "or a smaller checkpoint to start from (Hugging Face name or path) with the teacher's tokenizer"
    )
    alpha: float = option(0.5, "weight of the soft-target loss (KL to the teacher at `temperature`); 1 - alpha: labels")
    temperature: float = option(2.0, "softmax temperature of the soft targets (Hinton et al.)")
    unlabeled_file: str | None = option(
        None,
        "extra texts (csv / tsv / jsonl / parquet with the text column) the teacher labels for the student",
        path=True,
    )

    def __post_init__(self) -> None:
        if bool(self.student_layers) == bool(self.student):
            raise ConfigError(
                "Give the student as student_layers=N (a copy of the teacher with N of its layers) or "
                "student=<checkpoint>, one of the two."
            )
        if self.student_layers < 0:
            raise ConfigError(f"student_layers must be at least 1, got {self.student_layers}.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be between 0 (labels only) and 1 (teacher only), got {self.alpha}.")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be above 0 (1: the teacher's own softmax), got {self.temperature}.")


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """`predict`: score a table file with a model into a new file (docs/deploy.md)."""

    model_uri: str = option(help="runs:/<run_id>/model, models:/<name>@<alias> or models:/<name>/<version>")
    input: str = option(
        help="the table to score: .csv, .tsv, .jsonl or .parquet (under `mlflow run` a local path or a URI MLflow "
        "downloads)",
        path=True,
    )
    output: str = option(
        help="the file to write, .csv, .tsv, .jsonl or .parquet: every input row once, in order, with its columns "
        "and the model's answer; it appears only when complete (under `mlflow run` give an absolute path: the job "
        "starts in the project directory, so a relative one lands there; the closing line prints the path written)"
    )
    text_column: str = option("text", "column holding the texts")
    text_pair_column: str | None = option(None, "column holding the second texts, for a pair model")
    batch_size: int = option(64, "texts per forward pass")
    chunk_rows: int = option(8192, "rows read, scored and written at a time (sorted by length within a chunk)")
    calibrated: bool = option(True, "calibrated probabilities (false: the model's own)")
    threshold: float | None = option(
        None, "multi-label: one decision threshold for every label (unset: each label's, tuned on validation)"
    )
    experiment: str = option(
        DEFAULT_EXPERIMENT, "experiment of the predict run (under `mlflow run`: --experiment-name)", mlproject=False
    )


@dataclasses.dataclass(frozen=True)
class RegisterConfig:
    """`register`: which runs compete, by which metric, under which registered name."""

    experiment: str = option(DEFAULT_EXPERIMENT, "experiment whose training runs compete")
    metric: str | None = option(
        None,
        "metric that ranks runs (unset: the runs' primary metric, the one that picked their best epoch: "
        "val_accuracy for classifiers, val_f1 for word taggers, val_micro_f1 for multi-label, val_pearson for "
        "regression; val_* compares the logged best epoch; test_* too; which way is better comes from a table: "
        "losses, mse, perplexity, error_rate lower)",
    )
    direction: str | None = option(
        None,
        "max or min: whether a higher or a lower metric is better, for a metric bertcls does not know",
    )
    name: str | None = option(None, "registered model name (default bertcls-<dataset>)")
    force: bool = option(False, "promote to @champion even if the candidate loses")
    dataset: str | None = option(None, "only runs on this dataset (their `dataset` tag)")
    run_id: str | None = option(None, "register this run instead of the best new one")


# The data options that describe a pre-training corpus (text only: labels, windows and buckets do not apply).
CORPUS_PARAMS = (
    "dataset",
    "dataset_config",
    "train_file",
    "validation_file",
    "text_column",
    "max_seq_length",
    "split_seed",
    "max_train_samples",
    "max_eval_samples",
)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """`pretrain`: continue masked-LM pre-training of an encoder on a corpus's text (docs/pretraining.md)."""

    model: str = TrainConfig.model  # the train job's `model` parameter (job_params below)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)  # its CORPUS_PARAMS only
    mlm_probability: float = option(
        0.15,
        "share of each block's ordinary tokens the model must predict (of them 80 % become [MASK], 10 % a "
        "random token, 10 % stay)",
    )
    lr: float = option(2e-5, "peak learning rate; low, so the encoder adapts to the domain without forgetting")
    new_head_lr: float = option(
        1e-3,
        "peak learning rate of an MLM head the checkpoint lacks (it starts from random; the encoder and the "
        "tied word embeddings stay at lr)",
    )
    weight_decay: float = option(0.01, "AdamW decoupled weight decay, on matrices only")
    warmup_ratio: float = option(0.06, "share of the steps with linear warmup, then linear decay to 0")
    epochs: int = option(1, "passes over the corpus's training texts")
    batch_size: int = option(32, "blocks of max_seq_length tokens per step (global, split over all devices)")
    seed: int = option(42, "MLM head init (when the checkpoint has none), masks, block order, dropout")

    def __post_init__(self) -> None:
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}. BERT used 0.15.")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}.")
        OptimConfig(lr=self.lr, weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio)  # same checks
        if not self.new_head_lr > 0:
            raise ConfigError(f"new_head_lr must be a positive learning rate, got {self.new_head_lr}. Try 1e-3.")

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(lr=self.lr, weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio)


# Train parameters a sweep varies: the sweep takes a space-separated list under the plural name (one value =
# fixed; unset = the train default), and a "<name>_range" where a TPE search samples a number.
SWEPT = {
    "lr": "lrs",
    "epochs": "epochs",
    "weight_decay": "weight_decays",
    "head": "heads",
    "finetune": "finetunes",
    "freeze_layers": "freeze_layers",
    "llrd": "llrds",
    "seed": "seeds",
}
PRUNERS = ("median", "none")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """`sweep`: a grid (trials=0) or a TPE search (trials=N) over train parameters, as Optuna trials."""

    lrs: str | None = option(None, "learning rates, space-separated (grid values, or TPE choices)")
    epochs: str | None = option(None, "epoch budgets, space-separated")
    weight_decays: str | None = option(None, "weight decays, space-separated")
    heads: str | None = option(None, "heads, space-separated (linear mean mlp)")
    finetunes: str | None = option(None, "fine-tuning strategies, space-separated (full partial head)")
    freeze_layers: str | None = option(None, "frozen layer counts for finetune=partial, space-separated")
    llrds: str | None = option(None, "layer-wise lr decays, space-separated")
    seeds: str | None = option(None, "seeds, space-separated (repeats of each setting)")
    trials: int = option(0, "0: the full grid of the lists above; N: N trials sampled by TPE (lists become choices)")
    lr_range: str | None = option(None, "TPE: 'low high' for lr, log-uniform (e.g. '1e-5 2e-4')")
    weight_decay_range: str | None = option(None, "TPE: 'low high' for weight_decay, uniform")
    llrd_range: str | None = option(None, "TPE: 'low high' for llrd, uniform")
    metric: str | None = option(
        None,
        "validation metric to optimise (accuracy, mcc, f1, ...; unset: the task's "
        "primary metric); direction from the metric (losses minimised)",
    )
    pruner: str = option(
        "median", "stop hopeless trials after an epoch (Optuna's median pruner), or none", choices=PRUNERS
    )
    storage: str | None = option(
        None,
        "Optuna storage URL shared by every worker (sqlite:///..., "
        "postgresql://...); unset: optuna.db beside the sqlite tracking store",
    )
    study_name: str | None = option(
        None, "Optuna study (unset: derived from the sweep's definition, so re-running the same sweep continues it)"
    )
    workers: int = option(1, "trial processes on this machine, sharing the study")
    sampler_seed: int = option(0, "seed of the TPE sampler and of the grid order")
    parent_run_id: str | None = option(
        None,
        "nest this worker's trials under another machine's sweep run (several machines, one parent)",
        mlproject=False,
    )

    def __post_init__(self) -> None:
        if self.trials < 0:
            raise ConfigError(f"trials must be >= 0 (0 = the whole grid), got {self.trials}.")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"Unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}.")
        if self.trials == 0 and any((self.lr_range, self.weight_decay_range, self.llrd_range)):
            raise ConfigError("A *_range needs trials=N (a TPE search); a grid takes lists (lrs='2e-5 5e-5').")


def job_params(job: str) -> list[Param]:
    """The parameters of `train`, `sweep`, `pretrain`, `evaluate`, `register`, `predict`, `distill` or
    `data-stats`, in the order shown."""
    if job == "train":
        return params_of(TrainConfig) + params_of(RunOptions)
    if job == "sweep":  # the swept train parameters become lists; every other one passes through to the trials
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return params_of(SweepConfig) + [p for p in params_of(TrainConfig) if p.name not in SWEPT] + run
    if job == "pretrain":  # the train job's model, the corpus's data options, its own MLM settings
        corpus = [p for p in params_of(DataConfig) if p.name in CORPUS_PARAMS]
        model = [p for p in params_of(TrainConfig) if p.name == "model"]
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return model + corpus + [p for p in params_of(PretrainConfig) if not p.group] + run
    if job == "evaluate":
        inherited = [p.as_inherited() for p in params_of(DataConfig) if not p.reading]
        return params_of(EvaluateConfig) + inherited
    if job == "register":
        return params_of(RegisterConfig)
    if job == "predict":
        return params_of(PredictConfig)
    if job == "distill":  # the student trains with every train parameter but `model` (the student replaces it)
        run = [p for p in params_of(RunOptions) if p.name in ("experiment", "run_name", "system_metrics")]
        return params_of(DistillConfig) + [p for p in params_of(TrainConfig) if p.name != "model"] + run
    if job == "data-stats":
        train = {p.name: p for p in params_of(TrainConfig)}
        return [train["model"], *params_of(DataConfig), train["batch_size"]]
    raise KeyError(job)
