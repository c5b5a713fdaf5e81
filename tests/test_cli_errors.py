"""Bad input to `bertcls train`: a one-paragraph error, exit code 2, no traceback, and no run created."""

from __future__ import annotations

import mlflow
import pytest
from click.testing import CliRunner

from bertcls.cli import main


@pytest.fixture
def tracking(empty_store):
    return mlflow.MlflowClient(empty_store)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "0"], "lr must be a positive learning rate.*Try --lr 2e-5"),
        (["--lr", "-1e-5"], "lr must be a positive learning rate"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--max-seq-length", "1024"], "max_seq_length 1024 exceeds the model's position limit \\(512"),
        (["--model", "no-such-org/no-such-model"], "Cannot find model 'no-such-org/no-such-model'"),
        (["--model", "./missing/model/dir"], "does not exist"),
        (["--dataset", "sms_spma"], "Unknown dataset 'sms_spma'"),
        (["--epochs", "2.5"], "is not a whole number"),
        (["--compute-dtype", "bfloat16"], "compute_dtype was renamed precision. Use --precision bf16"),
        (["--compute_dtype", "float32"], "compute_dtype was renamed precision. Use --precision fp32"),
        (["--freeze-layers", "2"], "freeze_layers=2 applies only to finetune=partial"),
        (["--finetune", "partial", "--freeze-layers", "9"], "freeze_layers 9 exceeds the depth of .* \\(6 layers\\)"),
        (["--grad-accum-steps", "0"], "grad_accum_steps must be at least 1"),
        (["--early-stopping-patience", "-1"], "early_stopping_patience must be >= 0"),
        (["--llrd", "0"], "llrd must be in \\(0, 1\\]"),
        (["--resume-run-id", "0123456789abcdef0123456789abcdef"], "no run with this id in the tracking store"),
        (["--num-processes", "2"], "A multi-process run needs coordinator=host:port"),
        (["--class-weights", "1,-5"], "class_weights must be finite numbers >= 0"),
        (["--class-weights", "1,2,3", "--max-train-samples", "64"], "3 number\\(s\\) .* in this order: ham, spam"),
        (["--dataset", "btc", "--class-weights", "balanced", "--max-train-samples", "64"], "applies to text class"),
        (["--focal-gamma", "-2"], "focal_gamma must be a finite number >= 0"),
        (["--calibration-fraction", "0.7"], "calibration_fraction is the share .* between 0"),
        (["--calibration-fraction", "0.1", "--calibrate", "false", "--max-train-samples", "64"], "would be lost"),
        (["--dataset", "btc", "--calibration-fraction", "0.1", "--max-train-samples", "64"], "tags words"),
        (["--tag-decoding", "beam"], "beam"),  # click's choice: the option and its choices named
        (["--tag-decoding", "argmax", "--max-train-samples", "64"], "tag_decoding applies to word tagging"),
    ],
)
def test_train_bad_input(tracking, args, message):
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    import re

    assert re.search(message, result.output), result.output
    assert tracking.search_runs([e.experiment_id for e in tracking.search_experiments()]) == []


def test_focal_loss_on_a_regression_task_is_refused_before_a_run(tracking, tmp_path):
    scores = tmp_path / "scores.csv"
    scores.write_text("score,text\n" + "".join(f"{i / 80:.4f},text number {i}\n" for i in range(80)))
    result = CliRunner().invoke(
        main, ["train", "--train-file", str(scores), "--label-column", "score", "--focal-gamma", "2"]
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "focal_gamma applies to classification" in result.output, result.output
    assert tracking.search_runs([e.experiment_id for e in tracking.search_experiments()]) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mlm-probability", "0"], "mlm_probability must be in \\(0, 1\\)"),
        (["--mlm-probability", "1.5"], "mlm_probability must be in \\(0, 1\\)"),
        (["--lr", "0"], "lr must be a positive learning rate"),
        (["--new-head-lr", "-1"], "new_head_lr must be a positive learning rate"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--max-seq-length", "1024"], "max_seq_length 1024 exceeds the model's position limit \\(512"),
        (["--dataset", "sms_spma"], "Unknown dataset 'sms_spma'"),
        (["--model", "runs:/0123456789abcdef0123456789abcdef/encoder"], "Cannot fetch model 'runs:/0123.*run id"),
    ],
)
def test_pretrain_bad_input(tracking, args, message):
    """The same promise for `bertcls pretrain`: a paragraph, exit 2, no run."""
    import re

    result = CliRunner().invoke(main, ["pretrain", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert re.search(message, result.output), result.output
    assert tracking.search_runs([e.experiment_id for e in tracking.search_experiments()]) == []


def _model_dir(target, weights_from, tokenizer_from=None):
    """config.json and model.safetensors of `weights_from`, plus the tokenizer files of `tokenizer_from`."""
    import shutil

    target.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(weights_from / name, target / name)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if tokenizer_from is not None and (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, target / name)
    return target


@pytest.mark.parametrize("job", ["train", "pretrain"])
def test_a_model_without_its_tokenizer_is_refused_before_a_run(tracking, tmp_path, small_model_dir, golden_dir, job):
    """Weights without tokenizer files trained a model that saw every word as [UNK] (issue 22); a tokenizer with
    more ids than the model's embedding has rows cannot belong to it either."""
    bare = _model_dir(tmp_path / "bare", small_model_dir)
    result = CliRunner().invoke(main, [job, "--model", str(bare)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"No tokenizer in {bare}" in " ".join(result.output.split()) and "vocab.txt" in result.output

    foreign = _model_dir(tmp_path / "foreign", golden_dir / "tiny-bert", tokenizer_from=small_model_dir)
    result = CliRunner().invoke(main, [job, "--model", str(foreign), "--max-seq-length", "32"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "has 30,522 tokens but the model's config.json says vocab_size 99" in " ".join(result.output.split())
    assert tracking.search_runs([e.experiment_id for e in tracking.search_experiments()]) == []
