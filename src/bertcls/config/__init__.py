"""Settings: the option machinery (`fields`), the fine-tuning's configs (`training`), the other jobs' (`jobs`),
the saved train config (`saved`) and the generated MLproject and docs tables (`generate`). The configs are
importable from here: `from bertcls.config import TrainConfig`. A checkpoint's architecture is
`bertcls.model.config.ModelConfig`."""

from bertcls.config.jobs import (
    CORPUS_PARAMS,
    PRUNERS,
    SWEPT,
    DistillConfig,
    EvaluateConfig,
    PredictConfig,
    PretrainConfig,
    RegisterConfig,
    SweepConfig,
    job_params,
)
from bertcls.config.training import (
    AUTO_PRECISION,
    CHECKPOINT_MODES,
    DEFAULT_EXPERIMENT,
    FINETUNE_STRATEGIES,
    LONG_TEXT_MODES,
    PRECISION_DTYPES,
    SPLITS,
    DataConfig,
    OptimConfig,
    RunOptions,
    TrainConfig,
)

__all__ = [
    "CHECKPOINT_MODES",
    "CORPUS_PARAMS",
    "DEFAULT_EXPERIMENT",
    "FINETUNE_STRATEGIES",
    "LONG_TEXT_MODES",
    "AUTO_PRECISION",
    "PRECISION_DTYPES",
    "PRUNERS",
    "SPLITS",
    "SWEPT",
    "DataConfig",
    "DistillConfig",
    "EvaluateConfig",
    "OptimConfig",
    "PredictConfig",
    "PretrainConfig",
    "RegisterConfig",
    "RunOptions",
    "SweepConfig",
    "TrainConfig",
    "job_params",
]
