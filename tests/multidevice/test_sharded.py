"""Data parallelism on 8 CPU devices: sharded batches, one trace per step kind, the 1-device trajectory.

Runs in an interpreter started with 8 devices (BERTCLS_TEST_DEVICES=8; tests/test_multi_device.py does it, or
`BERTCLS_TEST_DEVICES=8 pytest tests/multidevice`), since XLA fixes the device count when jax starts.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from bertcls.config import OptimConfig
from bertcls.data.batching import iterate_batches, place_on_mesh
from bertcls.model.bert import BertClassifier
from bertcls.model.config import ModelConfig
from bertcls.train.loop import fit, predict_split, steps_per_epoch
from bertcls.train.optim import make_optimizer
from bertcls.train.steps import Trainer, make_data_mesh
from tests.test_batching import _split


def test_this_interpreter_has_eight_devices():
    assert jax.device_count() == 8, "run with BERTCLS_TEST_DEVICES=8 (tests/test_multi_device.py does)"


@pytest.mark.parametrize("job", ["train", "pretrain"])
def test_a_batch_that_does_not_split_over_the_devices_is_refused_before_a_run(job, empty_store):
    """One paragraph naming the batch sizes that work, exit 2, no run (tests/test_cli_errors.py's promise)."""
    import mlflow
    from click.testing import CliRunner

    from bertcls.cli import main

    result = CliRunner().invoke(main, [job, "--batch-size", "12"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "batch_size 12 is not divisible by the 8 devices" in result.output, result.output
    client = mlflow.MlflowClient(empty_store)
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_batches_are_placed_on_a_data_mesh():
    mesh = jax.make_mesh((8,), ("data",))
    split = _split(np.array([3, 5, 7, 9] * 4), 16)
    batch = next(iterate_batches(split, 16, (8, 16), shuffle=False))
    placed = place_on_mesh(batch, mesh)
    assert placed["input_ids"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(placed["input_ids"].addressable_shards) == 8
    assert placed["input_ids"].addressable_shards[0].data.shape == (2, 16)
    np.testing.assert_array_equal(np.asarray(placed["labels"]), batch["labels"])


@pytest.mark.slow  # the quick lane keeps the trace-once test, sharded steps equal to a direct jit
def test_fit_on_eight_devices_learns_compiles_once_per_shape_and_follows_the_one_device_trajectory(
    small_setup, tokenizer
):
    """2 epochs on 128 real texts in 2 buckets over 8 devices: it learns, compiles each shape once, keeps the best
    state, and train loss, validation loss, gradient norm and accuracy per epoch are those of the same training
    on one device (same global batch) within float reassociation (1e-5)."""
    from bertcls.data import prepare_data

    config, _, build_model = small_setup
    config = dataclasses.replace(
        config,
        optim=dataclasses.replace(config.optim, lr=1e-3),
        data=dataclasses.replace(config.data, max_train_samples=128, max_eval_samples=48, max_buckets=2),
    )
    data = prepare_data(config.data, tokenizer)
    assert jax.device_count() == 8
    total = steps_per_epoch(len(data.splits["train"]), config.batch_size) * config.epochs
    steps = Trainer(build_model(), make_optimizer(config.optim, total), make_data_mesh(), False, config.seed)
    seen = []

    class Recorder:
        def on_train_start(self, info):
            seen.append(("start", info))

        def on_epoch_end(self, epoch, metrics):
            seen.append((epoch, metrics))

    result = fit(steps, data, config, [Recorder()])
    assert [s[0] for s in seen] == ["start", 1, 2]
    assert steps.optimizer_step() == total
    history = result.history
    assert history[1]["train_loss"] < history[0]["train_loss"]
    labels = data.splits["validation"].text_labels()
    majority = np.bincount(labels).max() / len(labels)  # what always answering the larger class scores
    assert history[-1]["val_accuracy"] > majority and history[-1]["val_mcc"] >= 0.5, (majority, history[-1])
    train_shapes = {shape for kind, shape in steps.compiled_shapes if kind == "train"}
    assert {s[1] for s in train_shapes} <= set(data.buckets) and len(train_shapes) <= len(data.buckets)
    assert history[1]["compile_time_s"] == history[0]["compile_time_s"]  # epoch 2 compiled nothing new
    # the kept best state reproduces the best validation metrics exactly
    steps.load_model_state(result.best_model_state)
    again = predict_split(steps, data.splits["validation"], data.task, config.eval_batch_size, data.buckets)
    assert again.metrics == result.best_validation.metrics

    total = steps_per_epoch(len(data.splits["train"]), config.batch_size) * config.epochs
    one_device = Trainer(
        build_model(), make_optimizer(config.optim, total), make_data_mesh(jax.devices()[:1]), False, config.seed
    )
    one = fit(one_device, data, config, []).history
    for name in ("train_loss", "val_loss", "grad_norm", "val_accuracy"):
        np.testing.assert_allclose(
            [h[name] for h in history], [h[name] for h in one], rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_steps_trace_once_per_kind_and_match_a_direct_jit_bit_for_bit():
    """Every padded length reuses one trace (symbolic sequence length, compiled in parallel), and the
    refined executables compute exactly what jax.jit of the same two programs (gradients, update) does at that
    shape with the same XLA options, on 8 devices."""
    import functools

    from bertcls.data.batching import place_on_mesh
    from bertcls.runtime.xla import compiler_options
    from bertcls.train.steps import gradient_step, update_step

    config = ModelConfig(
        vocab_size=50,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        num_labels=3,
    )
    optim = make_optimizer(OptimConfig(lr=1e-3), total_steps=10)
    rng = np.random.default_rng(0)

    def batch(seq_len: int) -> dict:
        mask = (np.arange(seq_len)[None, :] < rng.integers(1, seq_len + 1, size=(8, 1))).astype(np.int32)
        return {
            "input_ids": rng.integers(1, 50, size=(8, seq_len)).astype(np.int32) * mask,
            "attention_mask": mask,
            "token_type_ids": np.zeros((8, seq_len), np.int32),
            "labels": rng.integers(0, 3, size=8).astype(np.int32),
            "weights": np.ones(8, np.float32),
        }

    steps = Trainer(BertClassifier(config, rngs=nnx.Rngs(0)), optim, make_data_mesh(), False, 7)
    batches = [place_on_mesh(batch(n), steps.mesh) for n in (4, 12)]
    direct = Trainer(BertClassifier(config, rngs=nnx.Rngs(0)), optim, make_data_mesh(), False, 7)
    gradients = jax.jit(functools.partial(gradient_step, direct.model_def, False, nnx.Param))
    update = jax.jit(functools.partial(update_step, direct.model_def, direct.opt_def))

    options = compiler_options("cpu")  # the XLA options the Trainer compiles with

    def step(model_state, opt_state, batch, key):  # the Trainer's two programs, jitted directly
        args = (model_state, opt_state, batch, key)
        model_state, grads, stats = gradients.lower(*args).compile(options)(*args)
        return (*update.lower(model_state, opt_state, grads).compile(options)(model_state, opt_state, grads), stats)

    steps.precompile("train", batches)
    assert steps.compiled_shapes == [("train", (8, 4)), ("train", (8, 12))]
    assert list(steps._traced) == [("train", (8,))]  # one trace served both lengths
    for b in batches + batches[::-1]:
        stats = steps.train(b)
        direct.model_state, direct.opt_state, expected = step(direct.model_state, direct.opt_state, b, direct.base_key)
        assert float(stats["loss_sum"]) == float(expected["loss_sum"])
    got, want = jax.tree.leaves(steps.host_model_state()), jax.tree.leaves(direct.host_model_state())
    for mine, theirs in zip(got, want, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    evaluate = direct._jitted["eval"].lower(direct.model_state, batches[1]).compile(options)
    np.testing.assert_array_equal(steps.evaluate(batches[1]), evaluate(direct.model_state, batches[1]))
    assert list(steps._traced) == [("train", (8,)), ("eval", (8,))]
