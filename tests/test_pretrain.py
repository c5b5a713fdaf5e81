"""Masked-LM pre-training: BERT's masking rule, packing, the tied head, the encoder's round trip, and the
`pretrain` job end to end (held-out MLM loss falls in one epoch; `train` fine-tunes from runs:/<id>/encoder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from mlflow import MlflowClient

from bertcls.data.corpus import pack_blocks
from bertcls.data.masking import mask_tokens, max_predictions
from bertcls.model.config import ModelConfig
from bertcls.model.mlm import MaskedLM
from bertcls.model.mlm_weights import load_masked_lm, mlm_state_dict, save_encoder
from bertcls.model.weights import flat_params
from tests import e2e

ROOT = Path(__file__).resolve().parents[1]
CLS, SEP, PAD, MASK, VOCAB = 1, 2, 0, 3, 1000
SPECIAL = np.array([PAD, CLS, SEP, MASK])


def _rows(rng, count=2000, length=64):
    """Rows of [CLS] ordinary tokens [SEP] then padding, with random real lengths."""
    ids = np.full((count, length), PAD, dtype=np.int32)
    mask = np.zeros_like(ids)
    for row in range(count):
        n = int(rng.integers(3, length + 1))
        ids[row, :n] = [CLS, *rng.integers(4, VOCAB, size=n - 2), SEP]
        mask[row, :n] = 1
    return ids, mask


def test_masking_chooses_bert_count_of_ordinary_tokens_only():
    ids, mask = _rows(np.random.default_rng(0))
    out = mask_tokens(ids, mask, SPECIAL, MASK, VOCAB, np.random.default_rng(1))
    assert out.positions.shape == (len(ids), max_predictions(ids.shape[1], 0.15)) == (len(ids), 10)
    for row in range(len(ids)):
        ordinary = int(mask[row].sum()) - 2  # all but [CLS] and [SEP]
        count = int(out.target_weights[row].sum())
        assert count == min(10, max(1, round(0.15 * ordinary)))
        assert out.target_weights[row, :count].all() and not out.target_weights[row, count:].any()
        chosen = out.positions[row, :count]
        assert len(set(chosen.tolist())) == count  # without replacement
        assert not np.isin(ids[row, chosen], SPECIAL).any() and mask[row, chosen].all()  # never special or padding
        np.testing.assert_array_equal(out.targets[row, :count], ids[row, chosen])  # the originals are the labels
        untouched = np.setdiff1d(np.arange(ids.shape[1]), chosen)
        np.testing.assert_array_equal(out.input_ids[row, untouched], ids[row, untouched])


def test_masking_draws_positions_uniformly_and_random_tokens_from_the_whole_vocabulary():
    """Every ordinary position is equally likely to be chosen (not the first n, not the last), rows of the same
    text get different positions, and replacements spread over the vocabulary."""
    length, count = 42, 3000
    ids = np.full((count, length), PAD, dtype=np.int32)
    ids[:, 0], ids[:, 1:-1], ids[:, -1] = CLS, np.arange(4, 44), SEP  # the same 40 ordinary tokens in every row
    mask = np.ones_like(ids)
    out = mask_tokens(ids, mask, SPECIAL, MASK, VOCAB, np.random.default_rng(6))
    per_row = 6  # round(0.15 x 40)
    assert (out.target_weights.sum(axis=1) == per_row).all()
    chosen = out.positions[:, :per_row]
    frequency = np.bincount(chosen.ravel(), minlength=length)[1:-1] / count  # [40] share of rows choosing each
    assert np.abs(frequency - per_row / 40).max() < 0.04, frequency  # 0.15 each; first-n would give 1.0 or 0.0
    assert len({tuple(row) for row in chosen.tolist()}) > 0.99 * count  # not one pattern reused across rows
    seen = out.input_ids[np.arange(count)[:, None], chosen]
    randomised = seen[(seen != MASK) & (seen != ids[np.arange(count)[:, None], chosen])]
    assert len(np.unique(randomised)) > 0.8 * VOCAB * (1 - np.exp(-len(randomised) / VOCAB)) > 100


def test_masking_80_10_10():
    ids, mask = _rows(np.random.default_rng(2), count=4000)
    out = mask_tokens(ids, mask, SPECIAL, MASK, VOCAB, np.random.default_rng(3))
    rows, slots = np.nonzero(out.target_weights)
    seen = out.input_ids[rows, out.positions[rows, slots]]
    original = out.targets[rows, slots]
    total = len(seen)
    assert total > 15000  # the shares below are within 0.01 at > 4 standard deviations
    masked = (seen == MASK).mean()
    kept = (seen == original).mean()
    randomised = ((seen != MASK) & (seen != original)).mean()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(randomised - 0.1) < 0.01, (masked, kept)
    assert seen[(seen != MASK) & (seen != original)].max() < VOCAB  # random tokens come from the vocabulary


def test_masking_is_seeded_and_skips_rows_without_ordinary_tokens():
    ids, mask = _rows(np.random.default_rng(4), count=50)
    ids[0], mask[0] = PAD, 0  # a padding row
    first = mask_tokens(ids, mask, SPECIAL, MASK, VOCAB, np.random.default_rng(5))
    again = mask_tokens(ids, mask, SPECIAL, MASK, VOCAB, np.random.default_rng(5))
    np.testing.assert_array_equal(first.input_ids, again.input_ids)
    np.testing.assert_array_equal(first.positions, again.positions)
    assert first.target_weights[0].sum() == 0


def test_pack_blocks_keeps_every_token_once(tokenizer):
    texts = ["the first text is short", "a second, somewhat longer text about markets and shares " * 6, "third"]
    ids, mask = pack_blocks(tokenizer, texts, 32)
    assert ids.shape[1] == 32 and (ids[:, 0] == tokenizer.cls_token_id).all()
    lengths = mask.sum(axis=1)
    assert (lengths[:-1] == 32).all() and lengths[-1] <= 32  # full rows, the last one padded
    assert all(ids[r, lengths[r] - 1] == tokenizer.sep_token_id for r in range(len(ids)))
    inner = np.concatenate([ids[r, 1 : lengths[r] - 1] for r in range(len(ids))])
    expected = [
        t for text in texts for t in (*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.sep_token_id)
    ]
    np.testing.assert_array_equal(inner, expected)


TINY = ModelConfig(
    vocab_size=50,
    hidden_size=16,
    num_layers=2,
    num_heads=2,
    intermediate_size=32,
    max_position_embeddings=32,
    hidden_dropout=0.0,
    attention_dropout=0.0,
)


def test_mlm_head_is_tied_to_the_word_embeddings():
    model = MaskedLM(TINY, nnx.Rngs(0))
    shapes = {k: v.shape for k, v in flat_params(model).items()}
    assert [k for k, s in shapes.items() if s == (50, 16)] == ["encoder.embeddings.word.embedding"]  # no decoder copy
    ids = jnp.array([[1, 7, 8, 9, 2]])
    mask, positions = jnp.ones_like(ids), jnp.array([[1, 3]])
    logits = nnx.jit(lambda m: m(ids, mask, positions))(model)  # [1, 2, V]
    assert logits.shape == (1, 2, 50)

    grads = nnx.jit(nnx.grad(lambda m: m(ids, mask, positions).sum()))(model)
    grad = {".".join(map(str, path)): v.get_value() for path, v in nnx.to_flat_state(grads)}[
        "encoder.embeddings.word.embedding"
    ]
    untouched_input_rows = np.setdiff1d(np.arange(50), np.asarray(ids))
    assert np.abs(np.asarray(grad)[untouched_input_rows]).sum() > 0  # the output layer reads the embedding matrix


def test_encoder_round_trip_keeps_head_and_weights(tmp_path, tokenizer):
    """save_encoder writes *ForMaskedLM key names; loading it back continues with the same head and encoder."""
    config = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    model = MaskedLM(config, nnx.Rngs(3))
    model.mlm.bias.set_value(jnp.linspace(-1, 1, config.vocab_size))
    keys = set(mlm_state_dict(model))
    assert {
        "cls.predictions.bias",
        "cls.predictions.transform.dense.weight",
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.output.dense.weight",
    } <= keys
    assert not any("decoder" in k or "pooler" in k for k in keys)
    out = save_encoder(model, tokenizer, tmp_path / "encoder", "card")
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    loaded, head_from_checkpoint = load_masked_lm(out, ModelConfig.from_json_file(out / "config.json"))
    assert head_from_checkpoint
    before, after = flat_params(model), flat_params(loaded)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_default_checkpoint_has_no_mlm_head(small_model_dir):
    """all-MiniLM-L6-v2 is a sentence-embedding model: pretrain starts its MLM head fresh (and says so)."""
    config = ModelConfig.from_json_file(small_model_dir / "config.json")
    _, head_from_checkpoint = load_masked_lm(small_model_dir, config)
    assert not head_from_checkpoint


@pytest.mark.slow
def test_pretrain_lowers_heldout_loss_and_train_fine_tunes_from_it(small_model_dir, empty_store, tmp_path):
    """`mlflow run . -e pretrain` on bbc_news texts: one epoch lowers the held-out MLM loss; the logged encoder is a
    model `train -P model=runs:/<id>/encoder` fine-tunes from."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "-e",
        "pretrain",
        "--env-manager",
        "local",
        "--experiment-name",
        "mlm",
        "-P",
        f"model={small_model_dir}",
        "-P",
        "dataset=bbc_news",
        "-P",
        "max_seq_length=64",
        "-P",
        "max_train_samples=60",
        "-P",
        "max_eval_samples=20",
        "-P",
        "batch_size=16",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=e2e.subprocess_env(empty_store), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(empty_store)
    (run,) = client.search_runs([client.get_experiment_by_name("mlm").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["bertcls_job"] == "pretrain"
    held_out = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_mlm_loss")}
    assert sorted(held_out) == [0, 1] and held_out[1] < held_out[0], held_out
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_perplexity")] == [1]
    assert run.data.params["mlm_head"].startswith("new") and run.data.params["lr"] in ("2e-05", "2e-5")
    assert "the classifier's train split" in run.data.params["corpus_recipe"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "encoder")}
    assert {"encoder/config.json", "encoder/model.safetensors", "encoder/README.md"} <= artifacts
    encoder_uri = run.data.tags["encoder_uri"]
    assert encoder_uri == f"runs:/{run.info.run_id}/encoder"

    fine_tuned = e2e.train(
        empty_store,
        tmp_path,
        "mlm",
        encoder_uri,
        dataset="bbc_news",
        max_train_samples=60,
        max_eval_samples=20,
        max_seq_length=64,
        epochs=1,
        max_buckets=2,
    )
    classifier = client.get_run(fine_tuned)
    assert classifier.info.status == "FINISHED" and classifier.data.params["model"] == encoder_uri
    assert classifier.data.params["params_initialized"].startswith("head.")  # the encoder came from the artifact
    adapted = load_masked_lm(
        Path(classifier.data.params["model_dir"]), ModelConfig.from_json_file(small_model_dir / "config.json")
    )[0]
    base = load_masked_lm(small_model_dir, ModelConfig.from_json_file(small_model_dir / "config.json"))[0]
    kernel = "encoder.layers.0.ffn_in.kernel"
    changed = flat_params(adapted)[kernel] - flat_params(base)[kernel]
    assert np.abs(changed).max() > 0  # one epoch moved the encoder (a little, at lr 2e-5)


def test_transformers_reads_the_encoder_as_a_masked_lm(small_model_dir, tmp_path, tokenizer):
    """Where torch is installed: AutoModelForMaskedLM loads the logged encoder and predicts what ours does."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0 to run this)")
    from transformers import AutoModelForMaskedLM

    config = ModelConfig.from_json_file(small_model_dir / "config.json")
    model, _ = load_masked_lm(small_model_dir, config, seed=7)
    model.mlm.bias.set_value(jnp.linspace(-0.5, 0.5, config.vocab_size))  # a head that is not all zeros
    out = save_encoder(model, tokenizer, tmp_path / "encoder", "card")
    reference = AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    encoded = tokenizer(
        ["stocks fell sharply on monday", "the [MASK] won the cup final"], padding=True, return_tensors="np"
    )
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    ours = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(positions)))  # [B, S, V]
    with torch.no_grad():
        theirs = reference(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4, rtol=1e-4)
