"""The speed levers of issue 24 change no result they claim to keep: the CPU dropout bits, the 16-bit matmul's
gradients, the gradient/update split's compile log and its persistent-cache hits, and the GPU benchmark's tiny
mode. (Their speed is measured by benchmarks/, never asserted here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bertcls.config import OptimConfig
from bertcls.model.bert import BertClassifier, low_precision_matmul
from bertcls.model.config import ModelConfig
from bertcls.runtime.xla import use_unrolled_threefry_on_cpu
from bertcls.train.optim import make_optimizer
from bertcls.train.steps import Trainer, make_data_mesh

ROOT = Path(__file__).resolve().parent.parent

# Dropout masks as the model draws them (bernoulli over threefry bits) and raw bits, at a few shapes and keys.
BITS = """
import sys, jax, numpy as np
{patch}
keys = [jax.random.fold_in(jax.random.key(seed), step) for seed in (0, 42) for step in (0, 7)]
out = {{}}
for i, key in enumerate(keys):
    out[f"mask{{i}}"] = np.asarray(jax.jit(lambda k: jax.random.bernoulli(k, 0.9, (4, 12, 33, 33)))(key))
    out[f"bits{{i}}"] = np.asarray(jax.jit(lambda k: jax.random.bits(k, (5, 1000)))(key))
np.savez(sys.argv[1], **out)
"""


def _bits(tmp_path: Path, name: str, patch: str) -> dict[str, np.ndarray]:
    script = tmp_path / f"{name}.py"
    script.write_text(BITS.format(patch=patch), encoding="utf-8")
    out = tmp_path / f"{name}.npz"
    subprocess.run(
        [sys.executable, str(script), str(out)], check=True, timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"}
    )
    return dict(np.load(out))


def test_unrolled_threefry_draws_the_bits_of_jax_own_cpu_lowering(tmp_path):
    """Bit for bit, in two fresh processes: jax's rolled lowering and ours (which must really be in effect)."""
    default = _bits(tmp_path, "default", "")
    patch = "from bertcls.runtime.xla import use_unrolled_threefry_on_cpu; assert use_unrolled_threefry_on_cpu()"
    unrolled = _bits(tmp_path, "unrolled", patch)
    assert default.keys() == unrolled.keys()
    for name in default:
        np.testing.assert_array_equal(unrolled[name], default[name], err_msg=name)
    assert 0.85 < default["mask0"].mean() < 0.95  # real masks, not constants


def test_unrolled_threefry_leaves_no_loop_in_the_compiled_program():
    assert use_unrolled_threefry_on_cpu()
    compiled = jax.jit(lambda k: jax.random.bits(k, (64, 64))).lower(jax.random.key(0)).compile().as_text()
    assert "while" not in compiled


def test_low_precision_matmul_matches_autodiff_and_keeps_an_f32_kernel_gradient():
    """Forward and both gradients equal jax's own differentiation of the same bf16-input, f32-accumulating dot
    (to bf16 rounding of the input gradient); the kernel's gradient is f32 and within bf16 error of exact f32."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, 7, 48)), jnp.bfloat16)  # [B, S, I]
    kernel = jnp.asarray(rng.normal(size=(48, 24)) * 0.1, jnp.float32)  # [I, O]
    weights = jnp.asarray(rng.normal(size=(6, 7, 24)), jnp.float32)

    def ours(x, kernel):
        return (low_precision_matmul(x, kernel) * weights).sum()

    def reference(x, kernel):
        return (jnp.dot(x, kernel.astype(jnp.bfloat16), preferred_element_type=jnp.float32) * weights).sum()

    def exact(x, kernel):
        return (jnp.dot(x.astype(jnp.float32), kernel, precision="highest") * weights).sum()

    np.testing.assert_allclose(ours(x, kernel), reference(x, kernel), rtol=1e-6)
    (dx, dk), (ref_dx, ref_dk) = jax.grad(ours, (0, 1))(x, kernel), jax.grad(reference, (0, 1))(x, kernel)
    assert dx.dtype == jnp.bfloat16 and dk.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(dx, np.float32), np.asarray(ref_dx, np.float32), rtol=1e-2, atol=1e-2)
    exact_dk = jax.grad(exact, 1)(x, kernel)
    scale = float(jnp.abs(exact_dk).max())
    assert float(jnp.abs(dk - exact_dk).max()) < 1e-2 * scale  # bf16 weights gradient rounding, f32 accumulation
    assert float(jnp.abs(dk - ref_dk).max()) < 1e-2 * scale


def _tiny_trainer(dtype: str = "float32") -> Trainer:
    config = ModelConfig(
        vocab_size=50,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        num_labels=2,
        compute_dtype=dtype,
    )
    model = BertClassifier(config, rngs=nnx.Rngs(0))
    return Trainer(model, make_optimizer(OptimConfig(lr=1e-3), 10), make_data_mesh(jax.devices()[:1]), False, 0)


def _batch(seq_len: int) -> dict:
    from bertcls.data.batching import place_on_mesh

    rows = {
        "input_ids": np.ones((8, seq_len), np.int32),
        "attention_mask": np.ones((8, seq_len), np.int32),
        "token_type_ids": np.zeros((8, seq_len), np.int32),
        "labels": np.zeros(8, np.int32),  # one input, one label: learnable in a few steps
        "weights": np.ones(8, np.float32),
    }
    return place_on_mesh(rows, make_data_mesh(jax.devices()[:1]))


def test_the_update_compiles_once_for_every_batch_shape():
    trainer = _tiny_trainer()
    trainer.precompile("train", [_batch(8), _batch(16)])
    trainer.train(_batch(24))  # a third shape compiled on first use
    kinds = [(c["kind"], tuple(c["shape"])) for c in trainer.compile_log]
    assert sorted(kinds) == [("train", (8, 8)), ("train", (8, 16)), ("train", (8, 24)), ("update", ())]
    assert trainer.compiled_shapes == [("train", (8, 8)), ("train", (8, 16)), ("train", (8, 24))]
    assert all(c["seconds"] > 0 for c in trainer.compile_log)
    assert trainer.optimizer_step() == 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_training_lowers_the_loss_in_either_precision(dtype):
    trainer, batch = _tiny_trainer(dtype), _batch(8)
    losses = [float(trainer.train(batch)["loss_sum"]) for _ in range(8)]
    assert losses[-1] < 0.9 * losses[0], losses


COMPILE_TWICE = """
import json, sys, jax
sys.path.insert(0, {tests!r})
from test_speed import _batch, _tiny_trainer
from bertcls.train.steps import enable_compilation_cache
enable_compilation_cache(sys.argv[1])
trainer = _tiny_trainer()
trainer.precompile("train", [_batch(8), _batch(16)])
trainer.evaluate(_batch(8))
print(json.dumps(trainer.compile_log))
"""


@pytest.mark.slow
def test_a_second_process_is_served_every_program_by_the_persistent_cache(tmp_path):
    """Cold: every program compiled (misses); warm, same cache: every one a hit, eval shapes included."""
    script = tmp_path / "compile.py"
    script.write_text(COMPILE_TWICE.format(tests=str(ROOT / "tests")), encoding="utf-8")

    def compile_log() -> list[dict]:
        command = [sys.executable, str(script), str(tmp_path / "xla-cache")]
        done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold, warm = compile_log(), compile_log()
    assert len(cold) == len(warm) == 4  # train x 2 shapes, update, eval
    assert not any(c["cache_hit"] for c in cold)
    assert all(c["cache_hit"] for c in warm), warm


@pytest.mark.slow
def test_the_gpu_benchmark_runs_in_tiny_mode_on_cpu(tmp_path):
    """benchmarks/gpu.py --tiny: bertcls's steps timed, the JSON written; the peer skipped here (no torch)."""
    out = tmp_path / "gpu.json"
    command = [sys.executable, "benchmarks/gpu.py", "--tiny", "--work", str(tmp_path), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    tiny = result["models"]["tiny"]
    assert tiny["bertcls"]["tokens_per_s"] > 0 and 0 < tiny["bertcls"]["mfu"] < 1
    assert result["peak_tflops"] > 0 and result["device"]["backend"] == "cpu"
    has_torch = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
    assert ("hf_trainer" in tiny) == has_torch, tiny
    assert ("bertcls / Trainer" in done.stdout) == has_torch and "tiny       bertcls" in done.stdout
