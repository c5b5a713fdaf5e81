"""Model behaviour: padding invariance, train/eval modes, dtypes, heads, our own save format."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bertcls.model.bert import BertClassifier
from bertcls.model.config import ModelConfig
from bertcls.model.weights import flat_params, load_hf_checkpoint, load_model, save_model
from tests.conftest import GOLDEN

TINY = dict(
    vocab_size=50,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    intermediate_size=48,
    max_position_embeddings=40,
    num_labels=3,
)


def _tiny_model(**overrides) -> BertClassifier:
    return BertClassifier(ModelConfig(**{**TINY, **overrides}), rngs=nnx.Rngs(0))


def _batch():
    ids = np.array([[2, 11, 12, 13, 3, 0, 0, 0], [2, 21, 22, 23, 24, 25, 26, 3]])  # [2, 8]
    mask = (ids != 0).astype(np.int32)
    return ids, mask


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
@pytest.mark.parametrize("head", ["linear", "mean", "mlp"])
def test_padding_invariance(model_type, head):
    model = _tiny_model(model_type=model_type, head=head, type_vocab_size=0 if model_type == "distilbert" else 2)
    ids, mask = _batch()
    forward = nnx.jit(lambda m, i, k: m(i, k))  # one compile per shape, not one per op
    alone = forward(model, ids[:1, :5], mask[:1, :5])  # the short sentence with no padding at all
    batched = forward(model, ids, mask)
    assert np.abs(np.asarray(alone[0]) - np.asarray(batched[0])).max() <= 1e-5


def test_mean_pooling_averages_the_real_token_states_only():
    """head=mean: the head sees the mean of the real tokens' states, computed by hand; sum, max, [CLS] or a mean
    that counts padding would each give other vectors here."""
    from bertcls.model.bert import masked_mean

    model = _tiny_model(head="mean")
    ids, mask = _batch()
    hidden = np.asarray(model.encoder(ids, mask, None))  # [2, 8, H]
    by_hand = np.stack([hidden[b, mask[b] == 1].mean(axis=0) for b in range(2)])  # [2, H]
    pooled = np.asarray(model.pool(jnp.asarray(hidden), jnp.asarray(mask)))
    np.testing.assert_allclose(pooled, by_hand, rtol=1e-5, atol=1e-6)
    wrong = {"sum": hidden[0, :5].sum(0), "max": hidden[0, :5].max(0), "cls": hidden[0, 0], "all": hidden[0].mean(0)}
    for name, other in wrong.items():
        assert np.abs(other - by_hand[0]).max() > 1e-3, name
    np.testing.assert_allclose(
        np.asarray(masked_mean(jnp.asarray(hidden), jnp.asarray(mask))), by_hand, rtol=1e-5, atol=1e-6
    )
    logits = np.asarray(model(ids, mask))
    np.testing.assert_allclose(logits, np.asarray(model.head(jnp.asarray(by_hand), None)), rtol=1e-5, atol=1e-6)


def test_eval_is_deterministic_and_train_applies_dropout():
    model = _tiny_model(hidden_dropout=0.3, attention_dropout=0.3)
    ids, mask = _batch()
    first, second = model(ids, mask), model(ids, mask)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    train_a = model(ids, mask, rngs=nnx.Rngs(dropout=1))
    train_b = model(ids, mask, rngs=nnx.Rngs(dropout=2))
    assert np.abs(np.asarray(train_a) - np.asarray(first)).max() > 1e-4
    assert np.abs(np.asarray(train_a) - np.asarray(train_b)).max() > 1e-4
    np.testing.assert_array_equal(np.asarray(model(ids, mask, rngs=nnx.Rngs(dropout=1))), np.asarray(train_a))


def test_bf16_compute_close_to_fp32(minilm_dir):
    config = ModelConfig.from_json_file(minilm_dir / "config.json")
    fp32, _ = load_hf_checkpoint(minilm_dir, config)
    bf16, _ = load_hf_checkpoint(
        minilm_dir, ModelConfig.from_json_file(minilm_dir / "config.json", compute_dtype="bfloat16")
    )
    ids = np.array([[101, 2023, 2003, 1037, 3231, 6251, 102, 0], [101, 2748, 102, 0, 0, 0, 0, 0]])
    mask = (ids != 0).astype(np.int32)
    ref = np.asarray(fp32.encoder(ids, mask))  # [B, S, H]
    low = np.asarray(bf16.encoder(ids, mask)).astype(np.float32)
    assert bf16.encoder.layers[0].ffn_in.kernel.get_value().dtype == jnp.float32  # params stay fp32
    assert bf16.encoder(ids, mask).dtype == jnp.bfloat16  # the compute really ran in bf16
    real = mask.astype(bool)
    error = np.linalg.norm((low - ref)[real], axis=-1) / np.linalg.norm(ref[real], axis=-1)  # per real token
    # bf16 keeps ~3 significant digits; six layers measured 0.6-2.1 % per token. Zeros would give 1.0.
    assert error.max() <= 5e-2 and error.mean() <= 2e-2, error


@pytest.mark.parametrize("num_labels", [1, 2, 5])
def test_heads_shapes_and_jit(num_labels):
    for head in ("linear", "mean", "mlp"):
        model = _tiny_model(head=head, num_labels=num_labels)
        ids, mask = _batch()
        logits = nnx.jit(lambda m, i, k: m(i, k))(model, ids, mask)
        assert logits.shape == (2, num_labels) and logits.dtype == jnp.float32


def test_own_format_round_trip_is_bit_exact(tmp_path):
    config = ModelConfig.from_json_file(GOLDEN / "tiny-distilbert" / "config.json", head="mlp", num_labels=2)
    model, _ = load_hf_checkpoint(GOLDEN / "tiny-distilbert", config)
    save_model(model, tmp_path / "saved", label_names=["ham", "spam"])
    loaded, meta = load_model(tmp_path / "saved")
    assert meta["label_names"] == ["ham", "spam"] and loaded.config == model.config
    before, after = flat_params(model), flat_params(loaded)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    ids, mask = _batch()
    np.testing.assert_array_equal(np.asarray(model(ids % 99, mask)), np.asarray(loaded(ids % 99, mask)))


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = _tiny_model()
    save_model(model, tmp_path / "m", label_names=["a", "b", "c"])
    import bertcls.model.weights as weights

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", explode)
    with pytest.raises(OSError):
        save_model(_tiny_model(head="mlp"), tmp_path / "m")
    loaded, meta = load_model(tmp_path / "m")  # the earlier save is intact, no staging dirs left
    assert meta["label_names"] == ["a", "b", "c"] and loaded.config.head == "linear"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_gradients_flow_to_every_param():
    model = _tiny_model()
    ids, mask = _batch()

    def loss(m):
        return m(ids, mask, rngs=nnx.Rngs(dropout=0)).sum()

    grads = nnx.jit(nnx.grad(loss))(model)
    norms = jax.tree.map(lambda g: float(jnp.abs(g).sum()), nnx.to_pure_dict(grads))
    assert all(v > 0 for v in jax.tree.leaves(norms))


def _one_hot_values(batch: int, seq_len: int, heads: int) -> np.ndarray:
    """Values that make attention return its probabilities: v[b, k, n, :] = e_k, so context = probs."""
    return np.broadcast_to(np.eye(seq_len, dtype=np.float32)[None, :, None, :], (batch, seq_len, heads, seq_len))


def _qk_mask(seed: int = 0):
    rng = np.random.default_rng(seed)
    batch, seq_len, heads = 3, 8, 2
    q = rng.normal(0, 1.5, (batch, seq_len, heads, seq_len)).astype(np.float32)  # head_dim = seq_len
    k = rng.normal(0, 1.5, (batch, seq_len, heads, seq_len)).astype(np.float32)
    lengths = np.array([8, 5, 2])
    mask = (np.arange(seq_len)[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, S]
    return q, k, _one_hot_values(batch, seq_len, heads), mask


def test_training_attention_equals_the_fused_path_without_dropout():
    """The explicit-softmax path (train mode) must scale by 1/sqrt(d) and mask padded keys exactly as the
    fused inference path does; compared on padded batches with dropout 0."""
    from bertcls.model.bert import _attention_with_dropout

    q, k, v, mask = _qk_mask()
    fused = np.asarray(jax.nn.dot_product_attention(q, k, v, mask=mask))  # [B, S, N, S] = probabilities
    explicit = np.asarray(_attention_with_dropout(q, k, v, mask, nnx.Dropout(0.0), nnx.Rngs(dropout=0)))
    np.testing.assert_allclose(explicit, fused, atol=1e-6)
    padded_keys = ~mask[:, 0, 0, :]  # [B, S]
    assert np.all(explicit[np.broadcast_to(padded_keys[:, None, None, :], explicit.shape)] == 0)
    np.testing.assert_allclose(explicit.sum(-1), 1.0, atol=1e-6)


def test_training_attention_dropout_statistics():
    """Dropout hits the attention probabilities at its rate and rescales the survivors by 1/(1 - rate)."""
    from bertcls.model.bert import _attention_with_dropout

    rate = 0.25
    q, k, v, mask = _qk_mask(1)
    probs = np.asarray(jax.nn.dot_product_attention(q, k, v, mask=mask))
    live = np.broadcast_to(mask[:, 0, 0, None, None, :], probs.shape)  # real keys
    kept, draws = [], 40
    for seed in range(draws):
        dropped = np.asarray(_attention_with_dropout(q, k, v, mask, nnx.Dropout(rate), nnx.Rngs(dropout=seed)))
        assert np.all(dropped[~live] == 0)  # padded keys stay masked
        survivors = dropped[live] != 0
        np.testing.assert_allclose(dropped[live][survivors], probs[live][survivors] / (1 - rate), rtol=1e-5)
        kept.append(survivors.mean())
    assert abs(1 - np.mean(kept) - rate) < 0.02  # 40 x 336 Bernoulli draws: the std of the mean is ~0.004
