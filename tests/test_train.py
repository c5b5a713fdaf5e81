"""Optimizer, sharded steps and the fit loop on 8 CPU devices, with a tiny model and real text."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from bertcls.config import OptimConfig, TrainConfig
from bertcls.errors import ConfigError
from bertcls.model.bert import BertClassifier
from bertcls.model.config import ModelConfig
from bertcls.train.loop import fit, steps_per_epoch
from bertcls.train.optim import decay_mask, learning_rate_schedule, make_optimizer
from bertcls.train.steps import Trainer, make_data_mesh


def test_schedule_warms_up_then_decays_to_zero():
    """Linear warm-up over 10 steps, then linear decay over 90: probed where linear and cosine decay (and a
    warm-up of another shape) disagree, e.g. step 25: linear 0.833, cosine 0.933 of the peak."""
    schedule = learning_rate_schedule(OptimConfig(lr=1e-3, warmup_ratio=0.1), total_steps=100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(3)) == pytest.approx(3e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    assert float(schedule(25)) == pytest.approx(1e-3 * 75 / 90)
    assert float(schedule(80)) == pytest.approx(1e-3 * 20 / 90)
    assert float(schedule(100)) == pytest.approx(0.0)


def test_weight_decay_only_on_matrices():
    model = BertClassifier(
        ModelConfig(
            vocab_size=20, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16, max_position_embeddings=16
        ),
        rngs=nnx.Rngs(0),
    )
    mask = nnx.to_flat_state(decay_mask(nnx.state(model, nnx.Param)))
    decayed = {".".join(map(str, path)) for path, flag in mask if bool(flag.get_value())}
    assert "encoder.layers.0.attention.query.kernel" in decayed
    assert "encoder.embeddings.word.embedding" in decayed
    assert not any(name.endswith(("bias", "scale")) for name in decayed)


def test_decay_leaves_biases_alone():
    """With zero gradients, AdamW shrinks decayed params and leaves biases and norms exactly."""
    model = BertClassifier(
        ModelConfig(
            vocab_size=20, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16, max_position_embeddings=16
        ),
        rngs=nnx.Rngs(0),
    )
    tx = make_optimizer(OptimConfig(lr=0.1, weight_decay=0.5, warmup_ratio=0.0), total_steps=10)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    zeros = jax.tree.map(np.zeros_like, nnx.state(model, nnx.Param))
    nnx.jit(lambda o, m, g: o.update(m, g))(optimizer, model, zeros)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    layer_before, layer_after = before["encoder"]["layers"][0], after["encoder"]["layers"][0]
    np.testing.assert_array_equal(layer_before["attention"]["query"]["bias"], layer_after["attention"]["query"]["bias"])
    np.testing.assert_array_equal(layer_before["ffn_norm"]["scale"], layer_after["ffn_norm"]["scale"])
    assert (
        np.abs(layer_after["attention"]["query"]["kernel"]).sum()
        < np.abs(layer_before["attention"]["query"]["kernel"]).sum()
    )


def test_config_errors():
    with pytest.raises(ConfigError, match="lr must be a positive"):
        OptimConfig(lr=0)
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="warmup_ratio"):
        OptimConfig(warmup_ratio=1.5)


def test_regression_loss_is_squared_error():
    """Errors 2.5 and 0.5 (a weight-0 row aside): squared 6.25 + 0.25, where L1 gives 3.0 and half-squared 3.25."""
    from bertcls.train.steps import weighted_loss

    outputs = np.array([[3.0], [2.5], [5.0]])
    loss_sum, weight_sum = weighted_loss(outputs, np.array([0.5, 2.0, 0.0]), np.array([1.0, 1.0, 0.0]), True)
    assert float(loss_sum) == pytest.approx(6.5) and float(weight_sum) == 2.0


def test_classification_loss_is_cross_entropy_of_the_labelled_class():
    """Logits that differ per class, so the label matters: -log softmax(z)[y], computed by hand, weighted."""
    from bertcls.train.steps import weighted_loss

    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    labels = np.array([2, 0])
    by_hand = [np.log(np.exp(z).sum()) - z[y] for z, y in zip(logits, labels, strict=True)]  # 1.74, 3.05
    loss_sum, weight_sum = weighted_loss(logits, labels, np.array([1.0, 0.5]), False)
    assert float(loss_sum) == pytest.approx(by_hand[0] + 0.5 * by_hand[1], rel=1e-6) and float(weight_sum) == 1.5
    other_labels, _ = weighted_loss(logits, np.array([0, 2]), np.array([1.0, 0.5]), False)
    assert abs(float(other_labels) - float(loss_sum)) > 1.0


def test_cross_entropy_ignores_weight_zero_rows():
    """Fill rows (weight 0) must not move the loss: the batch loss is that of the real rows alone."""
    from bertcls.train.steps import weighted_loss

    logits = np.array([[2.0, -1.0], [-3.0, 4.0], [9.0, -9.0]])  # the last row is a fill row
    loss_sum, weight_sum = weighted_loss(logits, np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]), False)
    real, _ = weighted_loss(logits[:2], np.array([0, 1]), np.array([1.0, 1.0]), False)
    assert float(loss_sum) == pytest.approx(float(real)) and float(weight_sum) == 2.0


def _updates(tx, grads_sequence, params):
    state = tx.init(params)
    for grads in grads_sequence:
        updates, state = tx.update(grads, state, params)
    return np.asarray(updates["w"])


def test_clipping_rescales_large_gradients_and_zero_turns_it_off():
    """Adam's first step is scale-free, so the check needs two steps: a huge gradient, then a small one."""
    params = {"w": np.ones((3, 2), np.float32)}
    big = {"w": np.full((3, 2), 1000.0, np.float32)}  # global norm ~2449
    small = {"w": np.array([[0.1, -0.2], [0.3, 0.0], [-0.1, 0.2]], np.float32)}
    norm = float(np.linalg.norm(big["w"]))
    clipped_big = {"w": big["w"] / norm}  # what clip_by_global_norm(1.0) makes of it
    config = dict(lr=1e-2, weight_decay=0.0, warmup_ratio=0.0)
    clipped = _updates(make_optimizer(OptimConfig(max_grad_norm=1.0, **config), 10), [big, small], params)
    by_hand = _updates(make_optimizer(OptimConfig(max_grad_norm=0.0, **config), 10), [clipped_big, small], params)
    unclipped = _updates(make_optimizer(OptimConfig(max_grad_norm=0.0, **config), 10), [big, small], params)
    np.testing.assert_allclose(clipped, by_hand, rtol=1e-5)
    assert np.abs(clipped - unclipped).max() > 1e-4  # max_grad_norm=0 really leaves the gradient alone


def _fit_history(setup, epochs: int, patience: int, lr: float):
    config, data, build_model = setup
    config = dataclasses.replace(
        config, epochs=epochs, early_stopping_patience=patience, optim=dataclasses.replace(config.optim, lr=lr)
    )
    total = steps_per_epoch(len(data.splits["train"]), config.batch_size) * config.epochs
    steps = Trainer(build_model(), make_optimizer(config.optim, total), make_data_mesh(), False, config.seed)
    return fit(steps, data, config, [])


def test_early_stopping_stops_after_patience_epochs_without_improvement(one_shape_setup):
    """lr 1e-12 leaves the model as it is: validation never improves after epoch 1."""
    stopped = _fit_history(one_shape_setup, epochs=5, patience=2, lr=1e-12)
    assert stopped.stopped_early and len(stopped.history) == 3 and stopped.best_epoch == 1
    assert stopped.history[0]["val_accuracy"] == stopped.history[2]["val_accuracy"]


def test_hyperparameters_are_traced_so_other_values_compile_the_same_train_step():
    """lr, epochs (schedule length), warmup and weight decay are optimizer-state arrays, not constants:
    the lowered gradient step and update are identical, so XLA's persistent cache serves a second run or
    sweep trial."""
    from flax import nnx

    from bertcls.model.bert import BertClassifier

    def lowered(optim: OptimConfig, total_steps: int) -> str:
        config = ModelConfig(
            vocab_size=50,
            hidden_size=32,
            num_layers=1,
            num_heads=4,
            intermediate_size=48,
            max_position_embeddings=40,
            num_labels=2,
        )
        steps = Trainer(
            BertClassifier(config, rngs=nnx.Rngs(0)),
            make_optimizer(optim, total_steps),
            make_data_mesh(jax.devices()[:1]),
            False,
            0,
        )
        batch = {
            "input_ids": np.ones((8, 16), np.int32),
            "attention_mask": np.ones((8, 16), np.int32),
            "token_type_ids": np.zeros((8, 16), np.int32),
            "labels": np.zeros(8, np.int32),
            "weights": np.ones(8, np.float32),
        }
        gradients = steps._jitted["train"].lower(*steps._args("train", batch)).as_text()
        update = steps._jitted["update"].lower(steps.model_state, steps.opt_state, steps._grads_spec).as_text()
        return gradients, update

    first = lowered(OptimConfig(lr=5e-5), total_steps=300)
    assert lowered(OptimConfig(lr=1e-4, weight_decay=0.0, warmup_ratio=0.3), total_steps=500) == first
    unclipped = lowered(OptimConfig(lr=5e-5, max_grad_norm=0.0), total_steps=300)
    assert unclipped[0] == first[0] and unclipped[1] != first[1]  # no clipping: another update, the same gradients


def test_optimizer_equals_optax_adamw_with_the_schedule():
    """The traced-hyperparameter chain gives exactly optax's adamw + join_schedules updates."""
    config = OptimConfig(lr=1e-3, weight_decay=0.1, warmup_ratio=0.2, max_grad_norm=1.0)
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, 1e-3, 2), optax.linear_schedule(1e-3, 0.0, 8)], boundaries=[2]
    )
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.1, mask=decay_mask))
    ours = make_optimizer(config, total_steps=10)
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    state_ref, state_ours, p_ref, p_ours = reference.init(params), ours.init(params), params, params
    for _ in range(12):  # past the end of the schedule
        grads = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
        update, state_ref = reference.update(grads, state_ref, p_ref)
        p_ref = optax.apply_updates(p_ref, update)
        update, state_ours = jax.jit(ours.update)(grads, state_ours, p_ours)
        p_ours = optax.apply_updates(p_ours, update)
    for key in params:
        np.testing.assert_allclose(p_ours[key], p_ref[key], rtol=1e-6, atol=1e-7)


def _tiny_steps(finetune: str = "full", freeze_layers: int = 0, llrd: float = 1.0, weight_decay: float = 0.01):
    """A 2-layer model on 8 devices with the strategy's filter and layer-wise scales, and two real batches."""
    from bertcls.data.batching import place_on_mesh
    from bertcls.train.strategy import lr_scale_fn, trainable_filter

    config = ModelConfig(
        vocab_size=50,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        num_labels=2,
        head="mean",
    )
    optim = OptimConfig(lr=1e-2, warmup_ratio=0.0, max_grad_norm=0.0, weight_decay=weight_decay, llrd=llrd)
    tx = make_optimizer(optim, total_steps=10, lr_scale=lr_scale_fn(llrd, config.num_layers))
    steps = Trainer(
        BertClassifier(config, rngs=nnx.Rngs(0)),
        tx,
        make_data_mesh(),
        False,
        3,
        trainable_filter(finetune, freeze_layers, config.num_layers),
    )
    rng = np.random.default_rng(1)
    batches = [
        place_on_mesh(
            {
                "input_ids": rng.integers(1, 50, size=(8, 12)).astype(np.int32),
                "attention_mask": np.ones((8, 12), np.int32),
                "token_type_ids": np.zeros((8, 12), np.int32),
                "labels": rng.integers(0, 2, size=8).astype(np.int32),
                "weights": np.ones(8, np.float32),
            },
            steps.mesh,
        )
        for _ in range(2)
    ]
    return steps, batches


def _flat(steps: Trainer) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(steps.host_model_state())
    return {".".join(map(str, path)): np.asarray(v.get_value()) for path, v in flat}


@pytest.mark.parametrize(
    ("finetune", "freeze_layers", "frozen_prefixes"),
    [
        ("head", 0, ("encoder.",)),
        ("partial", 1, ("encoder.embeddings.", "encoder.layers.0.")),
    ],
)
def test_frozen_parameters_stay_bit_identical_and_get_no_optimizer_state(finetune, freeze_layers, frozen_prefixes):
    steps, batches = _tiny_steps(finetune, freeze_layers)
    before = _flat(steps)
    for batch in batches:
        steps.train(batch)
    after = _flat(steps)
    frozen = {name for name in before if name.startswith(frozen_prefixes)}
    assert frozen
    for name in before:
        if name in frozen:
            np.testing.assert_array_equal(before[name], after[name], err_msg=name)  # bit for bit
        else:
            assert not np.array_equal(before[name], after[name]), f"{name} did not train"
    counts = steps.parameter_counts()
    assert counts["frozen_params"] == sum(before[name].size for name in frozen)
    assert counts["trainable_params"] == sum(v.size for name, v in before.items() if name not in frozen)
    adam_leaves = [leaf for leaf in jax.tree.leaves(steps.opt_state) if leaf.ndim > 0]  # moments and lr scales
    assert sum(leaf.size for leaf in adam_leaves) == 2 * counts["trainable_params"]  # mu and nu of trained ones only


@pytest.mark.slow  # about 8 s: compiles two models on 8 devices
def test_layer_wise_decay_scales_each_depth_by_llrd_per_layer_below_the_head():
    """Same grads (same seed and batch), Adam's first step: the update at depth d is llrd^(L+1-d) of llrd=1's."""
    updates = {}
    for llrd in (1.0, 0.5):
        steps, batches = _tiny_steps(llrd=llrd, weight_decay=0.0)
        before = _flat(steps)
        steps.train(batches[0])
        updates[llrd] = {name: _flat(steps)[name] - value for name, value in before.items()}
    expected_scale = {"encoder.embeddings.": 0.125, "encoder.layers.0.": 0.25, "encoder.layers.1.": 0.5, "head.": 1.0}
    for name, update in updates[0.5].items():
        scale = next(v for prefix, v in expected_scale.items() if name.startswith(prefix))
        # atol: float32 rounding of p + d at the parameters' magnitude; a wrong power of llrd is 1e-3 off
        np.testing.assert_allclose(update, scale * updates[1.0][name], rtol=1e-5, atol=2e-7, err_msg=name)


def test_strategy_config_errors():
    with pytest.raises(ConfigError, match="freeze_layers=2 applies only to finetune=partial"):
        TrainConfig(freeze_layers=2)
    with pytest.raises(ConfigError, match="Unknown finetune 'top'"):
        TrainConfig(finetune="top")
    with pytest.raises(ConfigError, match=r"llrd must be in \(0, 1\]"):
        OptimConfig(llrd=1.5)
    from bertcls.train.fine_tune import check_model_against_data

    with pytest.raises(ConfigError, match="freeze_layers 7 exceeds the depth of .* \\(6 layers\\)"):
        check_model_against_data(ModelConfig(num_layers=6), TrainConfig(finetune="partial", freeze_layers=7))


def test_gradient_accumulation_4_x_8_gives_the_update_of_1_x_32():
    """Same rows (four of them padding, weight 0), no dropout, SGD so the update is the gradient itself:
    four micro-batches of 8 summed in the step equal one batch of 32 within 1e-5, on 8 devices."""
    from bertcls.data.batching import place_on_mesh

    config = ModelConfig(
        vocab_size=50,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        num_labels=3,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        classifier_dropout=0.0,
    )
    rng = np.random.default_rng(5)
    lengths = rng.integers(2, 17, size=32)
    mask = (np.arange(16)[None, :] < lengths[:, None]).astype(np.int32)
    weights = np.ones(32, np.float32)
    weights[-4:] = 0.0
    rows = {
        "input_ids": rng.integers(1, 50, size=(32, 16)).astype(np.int32) * mask,
        "attention_mask": mask,
        "token_type_ids": np.zeros((32, 16), np.int32),
        "labels": rng.integers(0, 3, size=32).astype(np.int32),
        "weights": weights,
    }
    results = {}
    for micro in (1, 4):
        steps = Trainer(BertClassifier(config, rngs=nnx.Rngs(0)), optax.sgd(1.0), make_data_mesh(), False, 0)
        before = _flat(steps)
        stats = steps.train(place_on_mesh(rows, steps.mesh, micro_batches=micro))
        results[micro] = ({k: float(v) for k, v in stats.items()}, {n: _flat(steps)[n] - v for n, v in before.items()})
    (one_stats, one_update), (four_stats, four_update) = results[1], results[4]
    assert four_stats["weight_sum"] == one_stats["weight_sum"] == 28.0
    np.testing.assert_allclose(four_stats["loss_sum"], one_stats["loss_sum"], rtol=1e-5)
    np.testing.assert_allclose(four_stats["grad_norm"], one_stats["grad_norm"], rtol=1e-5)
    assert max(float(np.abs(u).max()) for u in one_update.values()) > 1e-3  # the update is not trivially zero
    for name, update in one_update.items():
        np.testing.assert_allclose(four_update[name], update, atol=1e-5, err_msg=name)


def test_runs_logged_with_compute_dtype_read_back_as_precision():
    """Runs from before the rename keep their precision: the config artifact and the params alike."""
    from bertcls.config.saved import train_config_from_dict, train_config_from_params, train_config_to_dict

    saved = train_config_to_dict(TrainConfig())
    del saved["config"]["precision"]
    saved["config"]["compute_dtype"] = "bfloat16"
    assert train_config_from_dict(saved).precision == "bf16"
    assert train_config_from_params({"compute_dtype": "bfloat16", "lr": "5e-05"}).precision == "bf16"
    assert train_config_from_params({"compute_dtype": "float32"}).precision == "fp32"
    assert train_config_from_params({"precision": "bf16"}).precision == "bf16"


@pytest.mark.slow  # about 8 s: compiles two models on 8 devices
def test_mlp_head_with_batch_norm_trains_its_statistics_and_saves_them(tmp_path):
    """finetune=head + head=mlp + head_batchnorm: the running statistics move with training (the encoder stays
    frozen), prediction uses them, and a saved model reloads them exactly."""
    from bertcls.data.batching import place_on_mesh
    from bertcls.model.weights import load_model, save_model
    from bertcls.train.strategy import trainable_filter

    config = ModelConfig(
        vocab_size=50,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        num_labels=2,
        head="mlp",
        head_batchnorm=True,
    )
    steps = Trainer(
        BertClassifier(config, rngs=nnx.Rngs(0)),
        optax.adam(1e-2),
        make_data_mesh(),
        False,
        0,
        trainable_filter("head", 0, 1),
    )
    rng = np.random.default_rng(2)
    batch = place_on_mesh(
        {
            "input_ids": rng.integers(1, 50, size=(16, 8)).astype(np.int32),
            "attention_mask": np.ones((16, 8), np.int32),
            "token_type_ids": np.zeros((16, 8), np.int32),
            "labels": rng.integers(0, 2, size=16).astype(np.int32),
            "weights": np.ones(16, np.float32),
        },
        steps.mesh,
    )
    before = _flat(steps)
    assert {"head.norm1.mean", "head.norm1.var", "head.norm2.mean"} <= set(before)
    for _ in range(3):
        steps.train(batch)
    after = _flat(steps)
    assert not np.array_equal(after["head.norm1.mean"], before["head.norm1.mean"])  # running statistics moved
    assert all(np.array_equal(after[k], before[k]) for k in before if k.startswith("encoder."))
    first, second = np.asarray(steps.evaluate(batch)), np.asarray(steps.evaluate(batch))
    np.testing.assert_array_equal(first, second)  # prediction: running statistics, deterministic

    save_model(steps.model(), tmp_path / "model", ["a", "b"])
    reloaded, _ = load_model(tmp_path / "model")
    assert reloaded.config.head_batchnorm
    host = {k: np.asarray(v) for k, v in batch.items()}
    np.testing.assert_allclose(
        np.asarray(reloaded(host["input_ids"], host["attention_mask"], host["token_type_ids"])),
        first,
        rtol=1e-6,
        atol=1e-6,
    )
    with pytest.raises(ConfigError, match="head_batchnorm applies to head=mlp only"):
        TrainConfig(head_batchnorm=True)
    with pytest.raises(ConfigError, match="head_batchnorm with grad_accum_steps > 1"):
        TrainConfig(head="mlp", head_batchnorm=True, grad_accum_steps=2)
