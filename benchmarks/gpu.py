"""Training-step throughput of bertcls beside the Hugging Face Trainer on one accelerator, at fixed shapes.

    python benchmarks/gpu.py                       # BERT-base and MiniLM-L6, seq 128, batch 32, bf16 (~5 min on a GPU)
    python benchmarks/gpu.py --precision fp32 --models minilm --seq 64   # e.g. a CPU step figure
    python benchmarks/gpu.py --tiny                # a 2-layer toy model in seconds (the test suite runs this)

Needs only jax (with CUDA on a GPU), flax, optax, and for the peer torch and transformers: no MLflow, no
downloads. bertcls is imported from `src/` beside this file (its library layer), the models are random inits
from built-in configs (speed does not depend on the weights), and every batch is full: `--seq` real tokens per
row, the same shapes for both sides. Per model it reports tokens/s, sequences/s and MFU against the device's
own measured matmul peak in the benchmark's precision (bf16: bf16 inputs with f32 accumulation).

bertcls: `bertcls.train.steps.Trainer` (the step `bertcls train` runs: AdamW, clipping, dropout, donated state)
with `precision` as its compute dtype over f32 master weights. The peer: `transformers.Trainer` with `bf16=True`
(autocast) or fp32, the same AdamW recipe, timed by a step callback. Nothing is asserted; JSON out.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

# Architectures (the fields of bertcls.model.config.ModelConfig; the same keys build the torch peer's BertConfig).
MODELS = {
    "bert-base": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072},
    "minilm": {"hidden_size": 384, "num_layers": 6, "num_heads": 12, "intermediate_size": 1536},  # all-MiniLM-L6-v2
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128},
}
COMMON = {"vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu"}


def model_config(name: str, precision: str, num_labels: int = 2):
    from bertcls.model.config import ModelConfig

    fields = {**COMMON, **MODELS[name]}
    dtype = "bfloat16" if precision == "bf16" else "float32"
    return ModelConfig(model_type="bert", **fields, head="linear", num_labels=num_labels, compute_dtype=dtype)


def matmul_peak_tflops(precision: str, sizes: tuple[int, ...], repeats: int = 10) -> float:
    """Best TFLOP/s of an n x n product on the default device (bf16: bf16 inputs, f32 accumulation)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.bfloat16 if precision == "bf16" else jnp.float32
    dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
        dot(a, a).block_until_ready()
        for _ in range(repeats):
            start = time.perf_counter()
            dot(a, a).block_until_ready()
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e12)
    return best


def flops_per_token(name: str, seq: int) -> float:
    """Training FLOPs per token: 6 N (N = non-embedding matmul parameters) + 12 L H S (attention)."""
    m = MODELS[name]
    h, i, layers = m["hidden_size"], m["intermediate_size"], m["num_layers"]
    n = layers * (4 * h * h + 2 * h * i) + h * h  # + the pooler
    return 6 * n + 12 * layers * h * seq


def random_batch(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(1000, COMMON["vocab_size"], (batch, seq), dtype=np.int32),
        "attention_mask": np.ones((batch, seq), np.int32),
        "token_type_ids": np.zeros((batch, seq), np.int32),
        "labels": rng.integers(0, 2, (batch,), dtype=np.int32),
        "weights": np.ones((batch,), np.float32),
    }


def bertcls_steps(name: str, args) -> dict:
    """Compile once, then time `args.steps` train steps after `args.warmup` (each waited for)."""
    import jax
    from flax import nnx

    from bertcls.config import OptimConfig
    from bertcls.data.batching import place_on_mesh
    from bertcls.model.bert import BertClassifier
    from bertcls.train.optim import make_optimizer
    from bertcls.train.steps import Trainer, make_data_mesh

    model = BertClassifier(model_config(name, args.precision), nnx.Rngs(0))
    total = args.warmup + args.steps
    trainer = Trainer(model, make_optimizer(OptimConfig(lr=5e-5), total), make_data_mesh(), False, seed=0)
    batch = place_on_mesh(random_batch(args.batch, args.seq), trainer.mesh)
    start = time.perf_counter()
    trainer.precompile("train", [batch])
    compile_s = time.perf_counter() - start
    durations = []
    for _ in range(total):
        start = time.perf_counter()
        jax.block_until_ready(trainer.train(batch))
        durations.append(time.perf_counter() - start)
    return {"compile_s": compile_s, "step_s": float(np.median(durations[args.warmup :]))}


def peer_steps(name: str, args) -> dict:
    """The Hugging Face Trainer on the same shapes; per-step wall time from a callback (median after warm-up)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

    m = MODELS[name]
    config = BertConfig(
        **{k: v for k, v in COMMON.items()},
        hidden_size=m["hidden_size"],
        num_hidden_layers=m["num_layers"],
        num_attention_heads=m["num_heads"],
        intermediate_size=m["intermediate_size"],
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    rows = random_batch(args.batch, args.seq)
    total = args.warmup + args.steps

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return args.batch * total

        def __getitem__(self, i):
            j = i % args.batch
            return {k: torch.tensor(rows[k][j]) for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}

    class Clock(TrainerCallback):
        durations: list[float] = []

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.durations.append(time.perf_counter() - self.start)

    clock = Clock()
    training_args = TrainingArguments(
        output_dir=str(Path(args.work) / f"peer-{name}"),
        per_device_train_batch_size=args.batch,
        max_steps=total,
        learning_rate=5e-5,
        weight_decay=0.01,
        warmup_steps=max(1, total // 10),
        max_grad_norm=1.0,
        bf16=args.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_drop_last=True,
        disable_tqdm=True,
    )
    Trainer(model=model, args=training_args, train_dataset=Rows(), callbacks=[clock]).train()
    return {"step_s": float(np.median(clock.durations[args.warmup :])), "torch": torch.__version__}


def throughput(name: str, step_s: float, args, peak_tflops: float) -> dict:
    tokens_per_s = args.batch * args.seq / step_s
    return {
        "step_ms": 1e3 * step_s,
        "sequences_per_s": args.batch / step_s,
        "tokens_per_s": tokens_per_s,
        "mfu": flops_per_token(name, args.seq) * tokens_per_s / 1e12 / peak_tflops,
    }


def device() -> dict:
    import jax

    return {
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "jax": jax.__version__,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert-base,minilm", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-peer", action="store_true", help="bertcls only (no torch needed)")
    parser.add_argument("--tiny", action="store_true", help="2-layer toy model, seq 16, batch 4, 3 steps")
    parser.add_argument("--work", default="/tmp/bertcls-gpu-bench")
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    args = parser.parse_args(argv)
    if args.tiny:
        args.models, args.seq, args.batch, args.steps, args.warmup = "tiny", 16, 4, 3, 1
    return args


def run(args) -> dict:
    """Every model: bertcls and (unless --no-peer, or torch is absent) the peer; returns the JSON result."""
    import jax

    sizes = (256,) if args.tiny else ((4096, 8192) if jax.default_backend() != "cpu" else (1024, 2048))
    peak = matmul_peak_tflops(args.precision, sizes)
    result = {"device": device(), "setup": {k: v for k, v in vars(args).items() if k != "out"}, "peak_tflops": peak}
    result["models"] = {}
    for name in args.models.split(","):
        ours = bertcls_steps(name, args)
        entry = {"bertcls": {**throughput(name, ours["step_s"], args, peak), "compile_s": ours["compile_s"]}}
        peer_skip = "--no-peer" if args.no_peer else _torch_missing()
        if peer_skip:
            entry["peer_skipped"] = peer_skip
        else:
            peer = peer_steps(name, args)
            entry["hf_trainer"] = {**throughput(name, peer["step_s"], args, peak), "torch": peer["torch"]}
            entry["tokens_per_s_ratio"] = entry["bertcls"]["tokens_per_s"] / entry["hf_trainer"]["tokens_per_s"]
        result["models"][name] = entry
    return result


def _torch_missing() -> str:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        return f"peer not run: {error}"
    return ""


def print_table(result: dict) -> None:
    setup, peak = result["setup"], result["peak_tflops"]
    where = f"{result['device']['device']} ({result['device']['backend']})"
    print(f"{where}: {setup['precision']} matmul peak {peak:.2f} TFLOP/s")
    print(f"batch {setup['batch']} x seq {setup['seq']}, median of {setup['steps']} steps after {setup['warmup']}")
    header = f"{'model':<10} {'side':<11} {'step ms':>9} {'seq/s':>9} {'tokens/s':>10} {'MFU %':>6}"
    print(header)
    for name, entry in result["models"].items():
        for side in ("bertcls", "hf_trainer"):
            if side in entry:
                r = entry[side]
                print(
                    f"{name:<10} {side:<11} {r['step_ms']:>9.1f} {r['sequences_per_s']:>9.1f} "
                    f"{r['tokens_per_s']:>10.0f} {100 * r['mfu']:>6.1f}"
                )
        if "tokens_per_s_ratio" in entry:
            print(f"{name:<10} bertcls / Trainer tokens/s: {entry['tokens_per_s_ratio']:.2f} x")
        else:
            print(f"{name:<10} ({entry['peer_skipped']})")


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
