"""Distillation: the student keeps every k-th teacher layer, the loss is Hinton's, and `bertcls distill` trains a
student on a real teacher's logits and logs the teacher beside it (a sqlite store in a temp dir)."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import special

from bertcls.cli import main
from bertcls.config import DistillConfig
from bertcls.errors import ConfigError
from bertcls.export.huggingface import hf_state_dict
from bertcls.model.config import ModelConfig
from bertcls.model.weights import flat_params, load_hf_checkpoint
from bertcls.train.distillation import kept_layers, student_from_teacher
from bertcls.train.steps import Objective, weighted_loss
from tests import e2e
from tests.conftest import GOLDEN, make_small_minilm


def test_the_student_keeps_evenly_spaced_layers_with_the_last():
    assert kept_layers(12, 6) == [1, 3, 5, 7, 9, 11] and kept_layers(6, 3) == [1, 3, 5] and kept_layers(6, 1) == [5]
    assert kept_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="between 1 and the teacher's 6 layers"):
        kept_layers(6, 7)


@pytest.mark.parametrize("head", ["mean", "linear"])
def test_a_student_is_the_teacher_with_fewer_layers_and_survives_the_checkpoint_it_is_written_as(tmp_path, head):
    config = dataclasses.replace(ModelConfig.from_json_file(GOLDEN / "tiny-bert" / "config.json", head=head))
    teacher, _ = load_hf_checkpoint(GOLDEN / "tiny-bert", dataclasses.replace(config, num_labels=3), seed=1)
    ids = np.array([[101, 7, 9, 12, 102, 0], [101, 5, 102, 0, 0, 0]], np.int32)
    mask = (ids > 0).astype(np.int32)
    whole = student_from_teacher(teacher, teacher.config.num_layers)
    np.testing.assert_allclose(np.asarray(whole(ids, mask)), np.asarray(teacher(ids, mask)), atol=1e-6)
    student = student_from_teacher(teacher, 1)
    last = teacher.config.num_layers - 1
    ours, theirs = flat_params(student), flat_params(teacher)
    assert ours["encoder.layers.0.ffn_in.kernel"] is not None and "encoder.layers.1.ffn_in.kernel" not in ours
    np.testing.assert_array_equal(
        ours["encoder.layers.0.ffn_in.kernel"], theirs[f"encoder.layers.{last}.ffn_in.kernel"]
    )
    np.testing.assert_array_equal(ours["head.output.kernel"], theirs["head.output.kernel"])
    # written as a Hugging Face checkpoint and read back, as the distill job starts from it
    tensors = hf_state_dict(student, mapped_only=True)
    back, report = load_hf_checkpoint(tmp_path, student.config, tensors=tensors)
    assert report.initialized == ()
    np.testing.assert_allclose(np.asarray(back(ids, mask)), np.asarray(student(ids, mask)), atol=1e-6)


@pytest.mark.parametrize("alpha, temperature", [(0.5, 2.0), (1.0, 4.0), (0.0, 2.0)])
def test_the_loss_is_hintons_soft_target_loss_plus_the_label_cross_entropy(alpha, temperature):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(8, 3)) * 2, rng.normal(size=(8, 3)) * 3  # [B, C]
    labels, weights = rng.integers(0, 3, size=8), np.ones(8, np.float32)
    objective = Objective("cross_entropy", distill_alpha=alpha, distill_temperature=temperature)
    total, weight = weighted_loss(jnp.asarray(student), jnp.asarray(labels), jnp.asarray(weights), objective, teacher)
    p_teacher = special.softmax(teacher / temperature, axis=-1)
    kl = (p_teacher * (np.log(p_teacher) - special.log_softmax(student / temperature, axis=-1))).sum(-1)
    cross_entropy = -special.log_softmax(student, axis=-1)[np.arange(8), labels]
    expected = (alpha * temperature**2 * kl + (1 - alpha) * cross_entropy).mean()
    np.testing.assert_allclose(float(total / weight), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "one of the two"),
        ({"student_layers": 3, "student": "x"}, "one of the two"),
        ({"student_layers": 3, "alpha": 1.5}, "alpha must be between 0"),
        ({"student_layers": 3, "temperature": 0.0}, "temperature must be above 0"),
    ],
)
def test_bad_distill_settings_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        DistillConfig(teacher="runs:/x/model", **values)


@pytest.mark.slow
def test_distill_trains_a_student_and_logs_the_teacher_beside_it(tmp_path, minilm_dir, empty_store):
    """A 2-layer MiniLM teacher (fresh head) distilled into 1 layer on a slice of sms_spam."""
    teacher_dir = make_small_minilm(minilm_dir, tmp_path / "teacher-2layer", layers=2)
    mlflow.set_experiment("teachers")
    teacher_uri = e2e.log_untrained_model(tmp_path / "teacher", teacher_dir, pairs=False)
    args = ["distill", "--teacher", teacher_uri, "--student-layers", "1", "--max-train-samples", "160"]
    args += ["--max-eval-samples", "64", "--epochs", "1", "--max-seq-length", "32", "--experiment", "students"]
    result = CliRunner().invoke(main, [*args, "--system-metrics", "false"])
    assert result.exit_code == 0, result.output
    assert "teacher vs student:" in result.output and "texts/s:" in result.output
    client = mlflow.MlflowClient(empty_store)
    (run,) = client.search_runs([client.get_experiment_by_name("students").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["bertcls_job"] == "train"  # a candidate like any run
    assert run.data.tags["distilled_from"] == teacher_uri and run.data.params["distill_alpha"] == "0.5"
    metrics = run.data.metrics
    assert metrics["student_params"] < metrics["teacher_params"] and metrics["student_texts_per_s"] > 0
    assert 0 <= metrics["teacher_test_accuracy"] <= 1 and 0 <= metrics["test_accuracy"] <= 1
    assert "students" in run.data.params["model"]  # the student checkpoint written under the cache

    refused = CliRunner().invoke(main, ["distill", "--teacher", teacher_uri, "--student", str(tmp_path / "nope")])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
