"""Which parameters train, and at what share of the learning rate: fine-tuning strategies and layer-wise decay.

A parameter's depth orders the network bottom-up: the embeddings are 0, encoder layer i is i + 1, and
everything above the encoder (pooler, head) is L + 1 for an L-layer encoder.
- `full` trains everything; `partial` freezes the embeddings and the first `freeze_layers` layers;
  `head` freezes the whole encoder. Frozen parameters get no gradient and no optimizer state.
- Layer-wise learning-rate decay (`llrd`): a parameter at depth d trains at lr x llrd^(L + 1 - d), so the
  head gets the full rate and each layer below a factor `llrd` less (1.0 = off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx


def path_names(path: Sequence[Any]) -> tuple:
    """A pytree or NNX path as plain names: ('encoder', 'layers', 0, 'ffn_in', 'kernel')."""
    return tuple(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)


def depth(path: Sequence[Any], num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, num_layers + 1 above the encoder."""
    names = path_names(path)
    if names[:2] == ("encoder", "embeddings"):
        return 0
    if names[:2] == ("encoder", "layers"):
        return int(names[2]) + 1
    return num_layers + 1


def frozen_depth(finetune: str, freeze_layers: int, num_layers: int) -> int:
    """Parameters with depth below this are frozen: 0 (full), freeze_layers + 1 (partial), L + 1 (head)."""
    return {"full": 0, "partial": freeze_layers + 1, "head": num_layers + 1}[finetune]


def trainable_filter(finetune: str, freeze_layers: int, num_layers: int):
    """The NNX filter of the parameters that train (the optimizer's `wrt` and the gradient's argnums)."""
    if finetune == "full":
        return nnx.Param
    below = frozen_depth(finetune, freeze_layers, num_layers)
    return nnx.All(nnx.Param, lambda path, _: depth(path, num_layers) >= below)


def lr_scale_fn(llrd: float, num_layers: int) -> Callable[[Sequence[Any]], float]:
    """path -> the share of the learning rate its parameter trains at."""
    return lambda path: float(llrd ** (num_layers + 1 - depth(path, num_layers)))
