"""Write the parity goldens from the Hugging Face PyTorch reference (run once by hand, not by CI).

Needs torch and transformers:  python -m venv /tmp/golden && /tmp/golden/bin/pip install torch==2.13.0 \
    transformers safetensors numpy && /tmp/golden/bin/python scripts/make_goldens.py --minilm <dir>
Writes tests/golden/: tiny random BERT / DistilBERT checkpoints (every parameter redrawn with std 0.3,
LayerNorm scales around 1, so each tensor visibly shapes the output) as safetensors + config.json, their inputs,
logits and last hidden states (.npz), the state-dict key names and shapes of the matching
*ForSequenceClassification models (state_dict_keys.json), and the all-MiniLM-L6-v2 reference
(minilm_reference.npz: CLS and masked-mean states plus a 16-dim slice of every token state).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
)

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"
SPREAD = 0.3  # std of every redrawn parameter (HF's default init uses 0.02, zero biases, unit LayerNorm scales)
MINILM_SENTENCES = [
    "Free entry!",
    "The quick brown fox jumps over the lazy dog.",
    "Call 08452810075 now to claim your prize, a week's worth of free texts, T&C's apply.",
    "Parity tests compare our Flax encoder with the PyTorch reference, token by token, batch with padding.",
]


def tiny_inputs(vocab: int, with_token_types: bool) -> dict[str, np.ndarray]:
    """A padded batch: 3 rows of lengths 11, 7, 4 with [CLS]=2 first and [SEP]=3 last."""
    rng = np.random.default_rng(0)
    lengths = [11, 7, 4]
    ids = np.zeros((3, 11), dtype=np.int64)
    mask = np.zeros((3, 11), dtype=np.int64)
    types = np.zeros((3, 11), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, vocab, size=n)
        ids[row, 0], ids[row, n - 1] = 2, 3
        mask[row, :n] = 1
        if with_token_types:
            types[row, n // 2 : n] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if with_token_types:
        out["token_type_ids"] = types
    return out


def redraw_parameters(model: torch.nn.Module, seed: int, spread: float = SPREAD) -> None:
    """Give every parameter a distinctive value: HF's init leaves biases at 0 and LayerNorm scales at 1,
    so outputs barely depend on them and a swapped or misnamed tensor would still match the golden."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator) * spread
                centre = 1.0 if isinstance(module, torch.nn.LayerNorm) and name == "weight" else 0.0
                param.copy_(centre + noise)


def write_tiny(name: str, model: torch.nn.Module, with_token_types: bool, keys: dict) -> None:
    redraw_parameters(model, seed=len(keys))
    model.eval()
    out_dir = GOLDEN / name
    model.save_pretrained(out_dir)
    inputs = tiny_inputs(model.config.vocab_size, with_token_types)
    with torch.no_grad():
        result = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True)
    np.savez_compressed(
        GOLDEN / f"{name}.npz",
        **inputs,
        logits=result.logits.numpy(),
        last_hidden_state=result.hidden_states[-1].numpy(),
    )
    keys[name] = {k: list(v.shape) for k, v in model.state_dict().items()}


def write_minilm(model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    batch = tokenizer(MINILM_SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [4, S, 384]
    mask = batch["attention_mask"][..., None].float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    np.savez_compressed(
        GOLDEN / "minilm_reference.npz",
        sentences=np.array(MINILM_SENTENCES),
        input_ids=batch["input_ids"].numpy(),
        attention_mask=batch["attention_mask"].numpy(),
        cls_state=hidden[:, 0].numpy(),
        mean_state=mean.numpy(),
        token_states_slice=hidden[..., :16].numpy(),
    )


def write_token_models(keys: dict, bert: BertConfig, distil: DistilBertConfig) -> None:
    """*ForTokenClassification goldens (task=ner): logits per token, [B, S, num_labels]."""
    torch.manual_seed(1)
    write_tiny("tiny-bert-token", BertForTokenClassification(bert), True, keys)
    write_tiny("tiny-distilbert-token", DistilBertForTokenClassification(distil), False, keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm", type=Path, required=True, help="all-MiniLM-L6-v2 directory")
    args = parser.parse_args()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    common = dict(vocab_size=99, max_position_embeddings=32, num_labels=3, attn_implementation="eager")
    keys: dict[str, dict] = {}
    bert = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        type_vocab_size=2,
        hidden_act="gelu",
        **common,
    )
    write_tiny("tiny-bert", BertForSequenceClassification(bert), True, keys)
    bert_tanh = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        type_vocab_size=2,
        hidden_act="gelu_new",
        **common,
    )
    write_tiny("tiny-bert-tanh", BertForSequenceClassification(bert_tanh), True, keys)
    distil = DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, activation="gelu", **common)
    write_tiny("tiny-distilbert", DistilBertForSequenceClassification(distil), False, keys)
    write_token_models(keys, bert, distil)
    keys["_versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    (GOLDEN / "state_dict_keys.json").write_text(json.dumps(keys, indent=1, sort_keys=True) + "\n")
    write_minilm(args.minilm)
    print(f"wrote goldens to {GOLDEN}")


if __name__ == "__main__":
    main()
