"""How close bertcls training runs to this machine's limit: fp32 matmul peak and model FLOPs utilization.

    python benchmarks/limit.py [--train-samples 1024] [--out benchmarks/results/limit.json]
    python benchmarks/limit.py --peak-only      # one line: the matmul peak (what `make test` prints beside its timings)

1. Peak: the best sustained fp32 GFLOP/s of a large jitted `jnp.dot` (several square sizes).
2. Steady-state training of the default model (all-MiniLM-L6-v2) on sms_spam, batch 32, max_seq_length 128,
   fitted buckets as shipped: one epoch after every shape is compiled (fit() compiles ahead of each epoch
   and excludes it from `epoch_time_s`), real tokens/s and examples/s from its own metrics.
3. MFU = (6 N + 12 L H S) FLOPs per real token x real tokens/s / peak, N = non-embedding parameters,
   L layers, H hidden size, S the mean padded length of the epoch's batches.
Prints a table and writes JSON. Nothing here is asserted: it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np


def matmul_peak_gflops(sizes=(1024, 2048, 3072), repeats: int = 5) -> dict[str, float]:
    """Best fp32 GFLOP/s of an n x n @ n x n product per size (compiled once, timed after a warm-up)."""
    results = {}
    for n in sizes:
        a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
        dot = jax.jit(jnp.dot)
        dot(a, a).block_until_ready()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            dot(a, a).block_until_ready()
            best = min(best, time.perf_counter() - start)
        results[str(n)] = 2 * n**3 / best / 1e9
    return results


def non_embedding_params(model) -> int:
    """Parameters outside the embedding tables (the N of the 6N FLOPs-per-token rule)."""
    from bertcls.model.weights import flat_params

    return int(sum(v.size for k, v in flat_params(model).items() if not k.startswith("encoder.embeddings.")))


def model_size(model_dir, head: str = "mean", num_labels: int = 2) -> dict[str, int]:
    """N (non-embedding parameters), layers and hidden size of a checkpoint with bertcls's head."""
    from bertcls.model.config import ModelConfig
    from bertcls.model.weights import load_hf_checkpoint

    arch = ModelConfig.from_json_file(model_dir / "config.json", head=head, num_labels=num_labels)
    model, _ = load_hf_checkpoint(model_dir, arch, seed=0)
    return {"non_embedding_params": non_embedding_params(model), "layers": arch.num_layers, "hidden": arch.hidden_size}


def flops_per_real_token(size: dict[str, int], mean_padded_length: float) -> float:
    """Training FLOPs per token: 6 N (forward + backward matmuls) + 12 L H S (attention scores and context)."""
    return 6 * size["non_embedding_params"] + 12 * size["layers"] * size["hidden"] * mean_padded_length


def machine() -> dict:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "jax": jax.__version__,
    }


def steady_state_training(train_samples: int, seed: int = 42) -> dict:
    """One epoch of the default model on sms_spam after compilation: its logged throughput and shapes."""
    import bertcls
    from bertcls.data.batching import FILL, bucket_for, plan_epoch

    config = bertcls.TrainConfig(epochs=1, data=bertcls.DataConfig(max_train_samples=train_samples), seed=seed)
    tuned = bertcls.fine_tune(config, progress_bar=False)  # the library: no tracking store involved
    data, history = tuned.setup.data, tuned.result.history[0]
    size = model_size(tuned.setup.model_dir, config.head, data.task.num_labels)
    train = data.splits["train"]
    plans = plan_epoch(train.lengths, config.batch_size, data.buckets, shuffle=True, seed=config.seed, epoch=1)
    padded = [bucket_for(int(train.lengths[p[p != FILL]].max()), data.buckets) for p in plans]
    return {
        "examples_per_s": history["train_examples_per_s"],
        "real_tokens_per_s": history["train_tokens_per_s"],
        "epoch_time_s": history["epoch_time_s"],
        "compile_time_s": history["compile_time_s"],
        "padding_efficiency": history["padding_efficiency"],
        "mean_padded_length": float(np.mean(padded)),
        "batches": len(plans),
        **size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=1024)
    parser.add_argument("--out", default="benchmarks/results/limit.json")
    parser.add_argument("--peak-only", action="store_true", help="print the fp32 matmul peak and stop (no JSON)")
    args = parser.parse_args()

    peak_by_size = matmul_peak_gflops()
    peak = max(peak_by_size.values())
    if args.peak_only:
        sizes = ", ".join(f"{n}: {g:.0f}" for n, g in peak_by_size.items())
        devices = f"{jax.device_count()} {jax.default_backend()} device(s)"
        print(f"fp32 matmul peak {peak:.1f} GFLOP/s ({devices}; by size {sizes})")
        return
    run = steady_state_training(args.train_samples)
    flops_per_token = flops_per_real_token(run, run["mean_padded_length"])
    achieved = flops_per_token * run["real_tokens_per_s"] / 1e9  # GFLOP/s on real tokens
    result = {
        "machine": machine(),
        "matmul_peak_gflops": peak,
        "matmul_gflops_by_size": peak_by_size,
        "training": run,
        "flops_per_real_token": flops_per_token,
        "achieved_gflops": achieved,
        "mfu": achieved / peak,
    }
    rows = [
        ("fp32 matmul peak", f"{peak:.1f} GFLOP/s"),
        ("training examples/s", f"{run['examples_per_s']:.1f}"),
        ("training real tokens/s", f"{run['real_tokens_per_s']:.0f}"),
        ("mean padded length", f"{run['mean_padded_length']:.1f} (padding efficiency {run['padding_efficiency']:.3f})"),
        ("FLOPs per real token", f"{flops_per_token / 1e6:.1f} M (N = {run['non_embedding_params'] / 1e6:.2f} M)"),
        ("achieved", f"{achieved:.1f} GFLOP/s"),
        ("MFU", f"{100 * achieved / peak:.1f} % of the measured peak"),
        ("compile (excluded above)", f"{run['compile_time_s']:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
