"""bertcls beside the Hugging Face Trainer: same weights, same texts, same batch, same machine, one run.

    python benchmarks/peer.py [--train-samples 2048] [--epochs 1] [--out benchmarks/results/peer.json]

Needs the peer venv (`make bench-peer-env`: torch CPU, transformers, accelerate in benchmarks/.venv-peer).
Each training job is its own process, timed from start to exit (whole-job wall time, peak RSS from
wait4), all on the same threads (every core: XLA's default pool, torch's default intra-op threads):

- bertcls, buckets as shipped: `bertcls train` (tokenize, compile, train, validate each epoch, test, log the
  model to MLflow), cold XLA cache, then again warm (the second run of a user or a sweep trial);
- bertcls padded to 128 for every batch (`--max-buckets 1`: how the old Flax GLUE example ran);
- bertcls with `--precision bf16` (bf16 matmuls accumulating in f32 over f32 master weights);
- the peer: `Trainer` with `DataCollatorWithPadding` and `group_by_length` (benchmarks/peer_trainer.py), in
  fp32 and with `bf16=True`; its padding efficiency is measured on its own batches.

Every compiled program of the bertcls jobs is listed from the run's `compile_log.json` (kind, shape, seconds,
whether XLA's persistent cache served it).

Then inference on 1,000 texts, first call and warm: the logged bertcls pyfunc model vs a `transformers`
text-classification pipeline over the peer's fine-tuned model (benchmarks/peer_pipeline.py).
Prints tables and writes JSON with `ratio_vs_peer` and `mfu`. Nothing is asserted: it is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / ".venv-peer" / "bin" / "python"
INFERENCE_TEXTS = 1000


def timed_process(command: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Run a command to completion: wall seconds and the peak resident memory of that process (GiB)."""
    start = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        sys.exit(f"{' '.join(command[:4])} ... failed with exit code {process.returncode}; its log {log}:\n{tail}")
    return {"wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20}  # ru_maxrss: KiB on Linux


def export_texts(train_samples: int, eval_samples: int | None, out_dir: Path) -> tuple[Path, dict]:
    """The exact splits bertcls trains and tests on, as JSONL for the peer; plus the model directory."""
    from bertcls.config import DataConfig, TrainConfig
    from bertcls.data import prepare_data
    from bertcls.hub import resolve_model
    from bertcls.model.tokenizer import load_tokenizer

    config = TrainConfig(data=DataConfig(max_train_samples=train_samples, max_eval_samples=eval_samples))
    model_dir = resolve_model(config.model)
    data = prepare_data(config.data, load_tokenizer(model_dir))
    counts = {}
    for name in ("train", "validation", "test"):
        texts, labels = data.texts[name]["text"], data.splits[name].text_labels()  # [T]
        assert len(texts) == len(labels), (name, len(texts), len(labels))
        rows = (json.dumps({"text": t, "label": int(y)}) for t, y in zip(texts, labels, strict=True))
        (out_dir / f"{name}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
        counts[name] = len(texts)
    lengths = data.splits["train"].lengths
    return model_dir, {"splits": counts, "mean_train_tokens": float(np.mean(lengths))}


def bertcls_job(name: str, extra: list[str], args, work: Path, cache: Path) -> dict:
    """`bertcls train` in its own process against a temp MLflow store; its logged metrics and timings."""
    import mlflow

    store = f"sqlite:///{work / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "BERTCLS_CACHE": str(cache)}
    command = [str(Path(sys.executable).parent / "bertcls"), "train", "--run-name", name, "--epochs", str(args.epochs)]
    command += ["--max-train-samples", str(args.train_samples), "--lr", str(args.lr), *extra]
    if args.eval_samples:
        command += ["--max-eval-samples", str(args.eval_samples)]
    process = timed_process(command, env, work / f"{name}.log")
    client = mlflow.MlflowClient(store)
    run = client.search_runs(
        [client.get_experiment_by_name("bertcls").experiment_id],
        filter_string=f"attributes.run_name = '{name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]

    def history(key: str) -> list[float]:
        return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]

    examples = history("train_examples_per_s")
    efficiency = history("padding_efficiency")
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    compiles = []
    if "compile_log.json" in logged:  # bertcls before 2026-12 logged no compile table
        (work / name).mkdir(exist_ok=True)
        path = client.download_artifacts(run.info.run_id, "compile_log.json", str(work / name))
        table = json.loads(Path(path).read_text())
        compiles = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    return {
        **process,
        "run_id": run.info.run_id,
        "examples_per_s": float(np.mean(examples)),  # per epoch, compilation excluded (fit compiles ahead)
        "real_tokens_per_s": float(np.mean(history("train_tokens_per_s"))),
        "padding_efficiency": float(np.mean(efficiency)),
        "compile_time_s": history("compile_time_s")[-1],
        "test_accuracy": run.data.metrics["test_accuracy"],
        "test_mcc": run.data.metrics.get("test_mcc"),
        "compiles": compiles,
    }


def peer_job(args, work: Path, data_dir: Path, model_dir: Path, bf16: bool = False) -> dict:
    name = "peer_bf16" if bf16 else "peer"
    out = work / f"{name}.json"
    command = [str(PEER_PYTHON), str(HERE / "peer_trainer.py"), str(data_dir), str(model_dir), str(out)]
    command += ["--epochs", str(args.epochs), "--lr", str(args.lr), *(["--bf16"] if bf16 else [])]
    process = timed_process(command, {**os.environ, "TOKENIZERS_PARALLELISM": "false"}, work / f"{name}.log")
    result = json.loads(out.read_text())
    from sklearn.metrics import matthews_corrcoef

    mcc = matthews_corrcoef(result.pop("test_labels"), result.pop("test_predictions"))
    return {**process, **result, "test_mcc": float(mcc)}


def bertcls_inference(model_uri: str, texts: list[str], store: str) -> dict:
    """pyfunc load, first `predict` (compiles its shapes) and a warm one, over the same texts."""
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    mlflow.set_tracking_uri(store)
    frame = pd.DataFrame({"text": texts})
    start = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_uri)
    loaded = time.perf_counter()
    model.predict(frame)
    first = time.perf_counter()
    model.predict(frame)
    warm = time.perf_counter()
    return {
        "load_s": loaded - start,
        "first_texts_per_s": len(texts) / (first - loaded),
        "warm_texts_per_s": len(texts) / (warm - first),
    }


def peer_inference(model_dir: Path, texts_file: Path, work: Path) -> dict:
    out = work / "peer_pipeline.json"
    command = [str(PEER_PYTHON), str(HERE / "peer_pipeline.py"), str(model_dir), str(texts_file), str(out)]
    timed_process(command, {**os.environ, "TOKENIZERS_PARALLELISM": "false"}, work / "peer_pipeline.log")
    return json.loads(out.read_text())


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([title, line(header), *(line(r) for r in rows)])


def ratios(jobs: dict, inference: dict) -> dict[str, float]:
    """bertcls over the peer: training throughput and wall time (cold and warm cache, padded), inference."""
    bertcls, peer = jobs["bertcls (buckets), cold cache"], jobs["HF Trainer (peer)"]
    warm, padded = jobs["bertcls (buckets), warm cache"], jobs["bertcls padded to 128"]
    ours, pipeline = inference["bertcls pyfunc"], inference["transformers pipeline (peer)"]
    bf16, peer_bf16 = jobs["bertcls precision=bf16"], jobs["HF Trainer bf16=True (peer)"]
    return {
        "examples_per_s": bertcls["examples_per_s"] / peer["examples_per_s"],
        "bf16_examples_per_s_vs_peer_fp32": bf16["examples_per_s"] / peer["examples_per_s"],
        "bf16_examples_per_s_vs_peer_bf16": bf16["examples_per_s"] / peer_bf16["examples_per_s"],
        "bf16_test_accuracy_points_vs_fp32": 100 * (bf16["test_accuracy"] - bertcls["test_accuracy"]),
        "examples_per_s_warm": warm["examples_per_s"] / peer["examples_per_s"],
        "job_wall_time_cold": bertcls["wall_s"] / peer["wall_s"],
        "job_wall_time_warm": warm["wall_s"] / peer["wall_s"],
        "padded_128_examples_per_s": padded["examples_per_s"] / peer["examples_per_s"],
        "inference_warm": ours["warm_texts_per_s"] / pipeline["warm_texts_per_s"],
        "inference_first": ours["first_texts_per_s"] / pipeline["first_texts_per_s"],
    }


def print_report(args, jobs: dict, inference: dict, result: dict) -> None:
    """The training, inference and ratio tables, and the MFU line."""
    rows = []
    for name, job in jobs.items():
        compile_s = f"{job['compile_time_s']:.1f}" if "compile_time_s" in job else f"({job['first_steps_s']:.1f})"
        rows.append(
            [
                name,
                f"{job['examples_per_s']:.1f}",
                f"{job['padding_efficiency']:.3f}",
                f"{job['real_tokens_per_s']:.0f}",
                compile_s,
                f"{job['wall_s']:.0f}",
                f"{job['peak_rss_gib']:.2f}",
                f"{job['test_accuracy']:.4f}",
                f"{job['test_mcc']:.4f}",
            ]
        )
    print(
        table(
            f"training: {args.train_samples} texts x {args.epochs} epoch(s), batch 32, max_seq_length 128",
            [
                "job",
                "examples/s",
                "padding eff.",
                "real tokens/s",
                "compile s",
                "job wall s",
                "peak RSS GiB",
                "test acc",
                "test MCC",
            ],
            rows,
        )
    )
    print()
    print(compile_table(jobs))
    print()
    print(
        table(
            f"inference: {INFERENCE_TEXTS} texts",
            ["model", "load s", "first texts/s", "warm texts/s"],
            [
                [k, f"{v['load_s']:.1f}", f"{v['first_texts_per_s']:.0f}", f"{v['warm_texts_per_s']:.0f}"]
                for k, v in inference.items()
            ],
        )
    )
    print()
    print(table("bertcls / peer", ["ratio", "value"], [[k, f"{v:.2f}"] for k, v in result["ratio_vs_peer"].items()]))
    mfu, peak = result["mfu"], result["matmul_peak_gflops"]
    print(f"\nMFU of bertcls (buckets) steady state: {100 * mfu:.1f} % of {peak:.0f} GFLOP/s")


def compile_table(jobs: dict) -> str:
    """Every program each bertcls job compiled: seconds, and 'hit' where XLA's persistent cache served it."""
    rows = []
    for name, job in jobs.items():
        for c in job.get("compiles", []):
            shape = "x".join(map(str, c["shape"])) or "-"
            rows.append([name, c["kind"], shape, f"{c['seconds']:.2f}", "hit" if c["cache_hit"] else "miss"])
        if job.get("compiles"):
            hits = sum(c["cache_hit"] for c in job["compiles"])
            total = sum(c["seconds"] for c in job["compiles"])
            rows.append([name, "all", f"{len(job['compiles'])} programs", f"{total:.1f}", f"{hits} hits"])
    return table(
        "compiled programs (seconds per program; compiles run in parallel)",
        ["job", "kind", "shape", "s", "cache"],
        rows,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=2048)
    parser.add_argument("--eval-samples", type=int, default=0, help="0 = the whole validation and test splits")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate of every training job")
    parser.add_argument("--out", default="benchmarks/results/peer.json")
    parser.add_argument("--work", default=None, help="keep logs, stores and models here (default: a temp dir)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not PEER_PYTHON.exists():
        sys.exit(f"The peer venv {PEER_PYTHON.parent.parent} is missing. Create it with: make bench-peer-env")

    sys.path.insert(0, str(HERE))
    from limit import flops_per_real_token, machine, matmul_peak_gflops, model_size

    work = Path(args.work or tempfile.mkdtemp(prefix="bertcls-peer-"))
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    model_dir, data = export_texts(args.train_samples, args.eval_samples or None, data_dir)

    jobs = {
        "bertcls (buckets), cold cache": bertcls_job("buckets-cold", [], args, work, work / "cache-buckets"),
        "bertcls (buckets), warm cache": bertcls_job("buckets-warm", [], args, work, work / "cache-buckets"),
        "bertcls padded to 128": bertcls_job("pad128", ["--max-buckets", "1"], args, work, work / "cache-pad128"),
        "bertcls precision=bf16": bertcls_job("bf16", ["--precision", "bf16"], args, work, work / "cache-bf16"),
        "HF Trainer (peer)": peer_job(args, work, data_dir, model_dir),
        "HF Trainer bf16=True (peer)": peer_job(args, work, data_dir, model_dir, bf16=True),
    }
    bertcls, peer = jobs["bertcls (buckets), cold cache"], jobs["HF Trainer (peer)"]

    texts = [json.loads(line)["text"] for line in (data_dir / "train.jsonl").read_text().splitlines()]
    texts = (texts * (1 + INFERENCE_TEXTS // len(texts)))[:INFERENCE_TEXTS]
    texts_file = work / "inference_texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    store = f"sqlite:///{work / 'mlflow.db'}"
    inference = {
        "bertcls pyfunc": bertcls_inference(f"runs:/{bertcls['run_id']}/model", texts, store),
        "transformers pipeline (peer)": peer_inference(work / "peer_model", texts_file, work),
    }

    peak = max(matmul_peak_gflops().values())
    size = model_size(model_dir)
    mean_padded = data["mean_train_tokens"] / bertcls["padding_efficiency"]
    mfu = flops_per_real_token(size, mean_padded) * bertcls["real_tokens_per_s"] / 1e9 / peak
    result = {
        "machine": machine(),
        "setup": {
            "train_samples": args.train_samples,
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": 32,
            "max_seq_length": 128,
            **data,
            "torch": peer["torch"],
            "torch_threads": peer["threads"],
        },
        "training": jobs,
        "inference": inference,
        "ratio_vs_peer": ratios(jobs, inference),
        "matmul_peak_gflops": peak,
        "mfu": mfu,
    }

    print_report(args, jobs, inference, result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} (logs, stores and models in {work})")


if __name__ == "__main__":
    main()
