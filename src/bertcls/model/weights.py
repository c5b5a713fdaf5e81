"""Hugging Face safetensors -> NNX by an explicit key table, and our own save/load format.

Loading fills an `nnx.eval_shape` skeleton: every parameter must come from the checkpoint with the exact
shape, except what must differ (a new head, a pooler the checkpoint lacks); every checkpoint tensor must
be used, except an explicit allow-list (position ids, dropped pooler, MLM/NSP heads, an old head). All
problems are collected and raised once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from bertcls.errors import CheckpointError
from bertcls.model.bert import BertClassifier, LinearHead, MLPHead, Pooler
from bertcls.model.config import ModelConfig

OWN_CONFIG = "bertcls_config.json"
OWN_WEIGHTS = "model.safetensors"
FORMAT_VERSION = 1

# Checkpoint tensors we may leave unused: what must differ between pre-training and our classifier.
UNUSED_ALLOWED = [
    re.compile(p)
    for p in (
        r"(^|\.)embeddings\.position_ids$",  # a buffer, not a weight
        r"^(bert\.)?pooler\.",  # a pooler the chosen head does not use
        r"^pre_classifier\.",  # DistilBERT's pooler, unused by mean/mlp heads
        r"^cls\.",  # BERT MLM / NSP pre-training heads
        r"^(vocab_transform|vocab_layer_norm|vocab_projector)\.",  # DistilBERT MLM head
        r"^classifier\.",  # an old task head replaced by a new one
    )
]
# Our parameters that may be missing from a checkpoint; they get a fresh initialisation.
FRESH_ALLOWED = re.compile(r"^(pooler|head)\.")
# What a model file holds: the parameters, and the running statistics of a batch-norm head.
SAVED = nnx.Any(nnx.Param, nnx.BatchStat)


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What a checkpoint load did: tensors copied, parameters freshly initialised, tensors left unused."""

    loaded: tuple[str, ...]
    initialized: tuple[str, ...]
    unused: tuple[str, ...]


def _linear(prefix: str) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    return {"kernel": (f"{prefix}.weight", np.transpose), "bias": (f"{prefix}.bias", _same)}


def _norm(prefix: str) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    return {"scale": (f"{prefix}.weight", _same), "bias": (f"{prefix}.bias", _same)}


def _same(array: np.ndarray) -> np.ndarray:
    return array


def hf_key_table(config: ModelConfig, encoder_prefix: str) -> dict[str, tuple[str, Callable]]:
    """Our flat parameter path -> (HF state-dict key, transform from HF layout to ours)."""
    p = encoder_prefix
    distil = config.model_type == "distilbert"
    layer_root = f"{p}transformer.layer" if distil else f"{p}encoder.layer"
    table: dict[str, tuple[str, Callable]] = {
        "encoder.embeddings.word.embedding": (f"{p}embeddings.word_embeddings.weight", _same),
        "encoder.embeddings.position.embedding": (f"{p}embeddings.position_embeddings.weight", _same),
    }
    if not distil:
        table["encoder.embeddings.token_type.embedding"] = (f"{p}embeddings.token_type_embeddings.weight", _same)
    parts = {"encoder.embeddings.norm": _norm(f"{p}embeddings.LayerNorm")}
    for i in range(config.num_layers):
        hf, ours = f"{layer_root}.{i}", f"encoder.layers.{i}"
        names = (
            {
                "attention.query": "attention.q_lin",
                "attention.key": "attention.k_lin",
                "attention.value": "attention.v_lin",
                "attention.output": "attention.out_lin",
                "ffn_in": "ffn.lin1",
                "ffn_out": "ffn.lin2",
            }
            if distil
            else {
                "attention.query": "attention.self.query",
                "attention.key": "attention.self.key",
                "attention.value": "attention.self.value",
                "attention.output": "attention.output.dense",
                "ffn_in": "intermediate.dense",
                "ffn_out": "output.dense",
            }
        )
        for ours_name, hf_name in names.items():
            parts[f"{ours}.{ours_name}"] = _linear(f"{hf}.{hf_name}")
        norms = (
            {"attention_norm": "sa_layer_norm", "ffn_norm": "output_layer_norm"}
            if distil
            else {"attention_norm": "attention.output.LayerNorm", "ffn_norm": "output.LayerNorm"}
        )
        for ours_name, hf_name in norms.items():
            parts[f"{ours}.{ours_name}"] = _norm(f"{hf}.{hf_name}")
    parts["pooler.dense"] = _linear("pre_classifier" if distil else f"{p}pooler.dense")
    parts["head.output"] = _linear("classifier")
    for module, leaves in parts.items():
        for leaf, entry in leaves.items():
            table[f"{module}.{leaf}"] = entry
    return table


def _path_str(path: tuple) -> str:
    return ".".join(str(part) for part in path)


def _canonical_key(key: str) -> str:
    """Old TF-converted checkpoints name LayerNorm params gamma/beta."""
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))


def _safetensors_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    pickles = [
        name for name in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack") if (model_dir / name).exists()
    ]
    if pickles:
        raise CheckpointError(
            f"{model_dir} has only {', '.join(pickles)}, no model.safetensors. bertcls reads safetensors only "
            "(pickled .bin files can run code on load). Convert once where torch is installed: "
            'python -c "from transformers import AutoModel; '
            f"AutoModel.from_pretrained('{model_dir}').save_pretrained('{model_dir}')\"."
        )
    raise CheckpointError(
        f"No model weights in {model_dir}: expected model.safetensors (or a sharded "
        "model.safetensors.index.json). Point at a directory that holds a saved model."
    )


def _iter_tensors(files: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    for file in files:
        with safe_open(str(file), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                yield key, handle.get_tensor(key)


def _fresh_params(config: ModelConfig, seed: int) -> dict[str, np.ndarray]:
    """Freshly initialised pooler and head parameters (small modules, built for real)."""
    rngs = nnx.Rngs(params=seed)
    parts = {
        "pooler": Pooler(config, rngs),
        "head": MLPHead(config, rngs) if config.head == "mlp" else LinearHead(config, rngs),
    }
    fresh = {}
    for name, module in parts.items():
        for path, variable in nnx.to_flat_state(nnx.state(module, SAVED)):
            fresh[f"{name}.{_path_str(path)}"] = np.asarray(variable.get_value())
    return fresh


def model_from_params(config: ModelConfig, values: dict[str, np.ndarray]) -> BertClassifier:
    """Merge `values` (flat path -> array, already checked) into an eval_shape skeleton."""
    skeleton = nnx.eval_shape(lambda: BertClassifier(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(skeleton)
    flat = nnx.to_flat_state(state)
    for path, variable in flat:
        variable.set_value(jnp.asarray(values[_path_str(path)], dtype=jnp.float32))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Flat path -> shape of every parameter of the model described by `config` (no allocation)."""
    skeleton = nnx.eval_shape(lambda: BertClassifier(config, rngs=nnx.Rngs(0)))
    state = nnx.state(skeleton, SAVED)
    return {_path_str(path): tuple(v.get_value().shape) for path, v in nnx.to_flat_state(state)}


def checkpoint_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of the Hugging Face safetensors checkpoint in `model_dir`, under canonical key names."""
    return {_canonical_key(k): v for k, v in _iter_tensors(_safetensors_files(model_dir))}


def load_hf_checkpoint(
    model_dir: Path, config: ModelConfig, seed: int = 0, tensors: dict[str, np.ndarray] | None = None
) -> tuple[BertClassifier, LoadReport]:
    """Load HF safetensors from `model_dir` into a BertClassifier for `config`; strict, see module doc.

    tensors: the checkpoint already read (`checkpoint_tensors`), for a caller that needs more of it.
    """
    tensors = tensors if tensors is not None else checkpoint_tensors(model_dir)
    prefix = f"{config.model_type}." if any(k.startswith(f"{config.model_type}.") for k in tensors) else ""
    table = hf_key_table(config, prefix)
    shapes = param_shapes(config)

    values: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing, mismatched, reinit = [], [], []
    for path, shape in shapes.items():
        hf_key, transform = table.get(path, ("", _same))  # an MLP head has no HF counterpart
        if hf_key not in tensors:
            (reinit if FRESH_ALLOWED.match(path) else missing).append(path)
            continue
        array = transform(tensors[hf_key])
        if tuple(array.shape) != shape:
            if path.startswith("head."):  # an old task head with another label count: replace it
                reinit.append(path)
                continue
            mismatched.append(f"{hf_key}: checkpoint {tuple(array.shape)} vs model {shape} ({path})")
            continue
        values[path] = array
        used.add(hf_key)
    if reinit:
        fresh = _fresh_params(config, seed)
        values.update({path: fresh[path] for path in reinit})
    unused = sorted(set(tensors) - used)
    unexpected = [key for key in unused if not any(p.search(key) for p in UNUSED_ALLOWED)]

    problems = []
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(table.get(p, (p,))[0] for p in missing)}")
    if mismatched:
        problems.append(f"shape mismatches: {'; '.join(mismatched)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if problems:
        raise CheckpointError(
            f"The checkpoint in {model_dir} does not fit a {config.model_type} model with its config.json "
            f"({config.num_layers} layers, hidden {config.hidden_size}): " + "; ".join(problems) + ". "
            "Check that config.json belongs to these weights and that model_type is right."
        )
    report = LoadReport(
        loaded=tuple(sorted(values.keys() - set(reinit))), initialized=tuple(sorted(reinit)), unused=tuple(unused)
    )
    return model_from_params(config, values), report


def flat_params(model: BertClassifier) -> dict[str, np.ndarray]:
    """Flat path -> numpy array of every parameter and batch statistic (our own naming)."""
    state = nnx.state(model, SAVED)
    return {_path_str(path): np.asarray(v.get_value()) for path, v in nnx.to_flat_state(state)}


def save_model(
    model: BertClassifier, out_dir: Path, label_names: list[str] | None = None, extra: dict | None = None
) -> Path:
    """Write our format (model.safetensors + bertcls_config.json) atomically: all files or none.

    `extra` holds JSON metadata saved beside the config (e.g. max_seq_length, buckets, task).
    """
    with written_atomically(out_dir) as staging:
        save_file(flat_params(model), str(staging / OWN_WEIGHTS), metadata={"format": "bertcls"})
        meta = {
            "format": "bertcls",
            "version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "label_names": list(label_names) if label_names is not None else None,
            **(extra or {}),
        }
        (staging / OWN_CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return Path(out_dir)


@contextlib.contextmanager
def written_atomically(out_dir: Path) -> Iterator[Path]:
    """Yield a staging directory beside `out_dir`; when the block ends without error, give it the user's umask
    modes and rename it to `out_dir` (replacing what was there). A crash leaves the old directory or nothing."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield staging
        apply_umask(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def apply_umask(directory: Path) -> None:
    """Give the directory and its files the modes the user's umask asks for (mkdtemp and safetensors use 0700/0600,
    which would make a model on a shared store readable by its writer only)."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def is_own_format(model_dir: Path) -> bool:
    return (Path(model_dir) / OWN_CONFIG).is_file()


def load_model(model_dir: Path) -> tuple[BertClassifier, dict]:
    """Load our own format -> (model, metadata); every key must match exactly (no allow-list: we wrote it)."""
    model_dir = Path(model_dir)
    try:
        meta = json.loads((model_dir / OWN_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{model_dir} has no {OWN_CONFIG}: it is not a model saved by bertcls.") from None
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{model_dir} was saved by a newer bertcls (format {meta['version']}); upgrade bertcls to load it."
        )
    config = ModelConfig.from_dict(meta["model"])
    values = dict(_iter_tensors([model_dir / OWN_WEIGHTS]))
    shapes = param_shapes(config)
    missing = sorted(shapes.keys() - values.keys())
    extra = sorted(values.keys() - shapes.keys())
    wrong = [
        f"{k}: {values[k].shape} vs {shapes[k]}"
        for k in shapes.keys() & values.keys()
        if tuple(values[k].shape) != shapes[k]
    ]
    if missing or extra or wrong:
        raise CheckpointError(
            f"{model_dir / OWN_WEIGHTS} does not match its {OWN_CONFIG}: missing {missing}, unexpected {extra}, "
            f"shape mismatches {wrong}. The files were modified or mixed; re-save the model."
        )
    return model_from_params(config, values), meta
