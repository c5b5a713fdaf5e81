"""The peer's inference: a `transformers` text-classification pipeline (PyTorch CPU) over the peer's model.

    python benchmarks/peer_pipeline.py MODEL_DIR TEXTS_JSON OUT_JSON [--batch-size 32]

Runs in the peer venv. Times pipeline construction (load), the first call over all texts and a warm one,
batched (`batch_size`, padding per batch, truncation at 128 tokens), as bertcls's pyfunc reads them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from transformers import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("texts", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text(encoding="utf-8"))

    start = time.perf_counter()
    classify = pipeline("text-classification", model=args.model_dir, device="cpu")
    loaded = time.perf_counter()
    classify(texts, batch_size=args.batch_size, truncation=True, max_length=128)
    first = time.perf_counter()
    classify(texts, batch_size=args.batch_size, truncation=True, max_length=128)
    warm = time.perf_counter()
    result = {
        "load_s": loaded - start,
        "first_texts_per_s": len(texts) / (first - loaded),
        "warm_texts_per_s": len(texts) / (warm - first),
        "batch_size": args.batch_size,
    }
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
