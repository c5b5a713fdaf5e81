"""Length-bucketed, static-shape batches: every example exactly once per pass, padding rows weighted 0.

Bucket lengths are fitted once to the training lengths (at most `max_buckets` multiples of
`bucket_multiple`, always ending at max_seq_length) to minimise padding, so only that many shapes are
ever compiled. Training order: a seeded shuffle per epoch, examples grouped by bucket (random order
inside each), cut into batches, batch order shuffled. Each batch is padded to the smallest bucket that
fits its longest example. The one partial batch (of the shortest examples) is filled with rows of weight 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from bertcls.errors import ConfigError

FILL = -1  # index of a padding row in a batch plan


@dataclasses.dataclass(frozen=True)
class TokenizedSplit:
    """A split as dense arrays: token matrices padded to max_seq_length, lengths, labels.

    A row is one example, or one window of a long text when `documents` is set (long_text="windows");
    `documents` then maps each row to its text, ascending, and every row carries its text's label.
    """

    input_ids: np.ndarray  # [N, L] int32
    token_type_ids: np.ndarray  # [N, L] int32
    lengths: np.ndarray  # [N] int32, real tokens per row
    labels: np.ndarray  # [N] int32 (classification), float32 (regression), or [N, L] float32 multi-hot (multi-label)
    documents: np.ndarray | None = None  # [N] int32 text index of each row; None: one row per text
    weights: np.ndarray | None = None  # [N] float32 loss weight of each row (class_weights); None: all 1
    soft_targets: np.ndarray | None = None  # [N, C] float32 a teacher's logits per row (distillation); None: none

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_texts(self) -> int:
        return len(self) if self.documents is None else (int(self.documents.max()) + 1 if len(self) else 0)

    def text_labels(self) -> np.ndarray:
        """[T] one label per text, or [T, L] label sets (the labels of a text's windows are all the same)."""
        if self.documents is None:
            return self.labels
        if self.labels.ndim == 2:  # [N, L] multi-hot label sets
            return pool_by_text(self.labels, self.documents)
        return pool_by_text(self.labels[:, None], self.documents)[:, 0]

    def text_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """[T, C] per-text outputs from [N, C] per-row outputs: the mean over each text's windows."""
        return outputs if self.documents is None else pool_by_text(outputs, self.documents)


@dataclasses.dataclass(frozen=True)
class TaggedSplit(TokenizedSplit):
    """A word-tagging split: `labels` [N, L] are per position (IGNORE where nothing is learned); every row is a
    window of the sentence `documents` names, and `word_index` says which word a position predicts."""

    word_index: np.ndarray | None = None  # [N, L] int32: the word (index in its sentence) predicted there, else -1
    word_labels: np.ndarray | None = None  # [W] int32: every word's tag id, sentences in order
    word_counts: np.ndarray | None = None  # [T] int32: words per sentence

    @property
    def num_texts(self) -> int:
        return len(self.word_counts)

    def text_labels(self) -> np.ndarray:
        """[W] the tag of every word: what a tagger is scored on."""
        return self.word_labels


IGNORE = -100  # a position's label when it carries no loss (special tokens, later subwords, padding)


def pool_by_text(rows: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """[T, C] mean of the [N, C] rows of each text; documents: [N] text index, every text present."""
    num_texts = int(documents.max()) + 1 if len(documents) else 0
    sums = np.zeros((num_texts, rows.shape[1]), dtype=np.float64)
    np.add.at(sums, documents, rows)
    counts = np.bincount(documents, minlength=num_texts)[:, None]  # [T, 1]
    return (sums / counts).astype(rows.dtype)


def check_batch_size(batch_size: int, num_devices: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    if batch_size % num_devices:
        lower = max(num_devices, batch_size - batch_size % num_devices)
        raise ConfigError(
            f"batch_size {batch_size} is not divisible by the {num_devices} devices it is split across. "
            f"Use a multiple of {num_devices}, e.g. {lower} or {lower + num_devices}."
        )


def bucket_for(length: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket >= length (buckets sorted ascending; the last is max_seq_length)."""
    index = int(np.searchsorted(np.asarray(buckets), length, side="left"))
    return buckets[min(index, len(buckets) - 1)]


def fit_buckets(lengths: np.ndarray, max_seq_length: int, max_buckets: int = 12, multiple: int = 4) -> tuple:
    """Bucket lengths minimising total padded tokens when each example pads to its bucket (exact DP)."""
    candidates = np.array(sorted({*range(multiple, max_seq_length, multiple), max_seq_length}))
    hist = np.bincount(np.minimum(lengths, max_seq_length), minlength=max_seq_length + 1)
    cumulative = np.concatenate([[0], np.cumsum(hist)])  # examples with length < x: cumulative[x]
    below = cumulative[candidates + 1]  # examples with length <= candidate
    n = len(candidates)
    # cost[k, i]: padded tokens with k+1 buckets, the largest being candidates[i], covering lengths <= it
    cost = np.full((max_buckets, n), np.inf)
    parent = np.zeros((max_buckets, n), dtype=np.int64)
    cost[0] = below * candidates
    for k in range(1, max_buckets):
        for i in range(1, n):
            options = cost[k - 1, :i] + (below[i] - below[:i]) * candidates[i]  # [i]
            parent[k, i] = int(np.argmin(options))
            cost[k, i] = options[parent[k, i]]
    k, i = int(np.argmin(cost[:, n - 1])), n - 1
    chosen = []
    while True:
        chosen.append(int(candidates[i]))
        if k == 0:
            break
        i, k = parent[k, i], k - 1
    return tuple(sorted(chosen))


def plan_epoch(
    lengths: np.ndarray, batch_size: int, buckets: tuple[int, ...], *, shuffle: bool, seed: int = 0, epoch: int = 0
) -> list[np.ndarray]:
    """Index batches of exactly `batch_size` (FILL pads the last one) covering every example once."""
    n = len(lengths)
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n)
        bucket_ids = np.searchsorted(np.asarray(buckets), lengths[order], side="left")
        order = order[np.argsort(bucket_ids, kind="stable")]  # grouped by bucket, random inside
    else:
        order = np.argsort(lengths, kind="stable")  # eval: tightest padding, deterministic
    # The partial batch takes the shortest examples (order is ascending by bucket), so its fill rows
    # cost the fewest padded tokens.
    partial = n % batch_size
    batches = [order[i : i + batch_size] for i in range(partial, n, batch_size)]
    if partial:
        first = np.full(batch_size, FILL, dtype=np.int64)
        first[:partial] = order[:partial]
        batches.insert(0, first)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(split: TokenizedSplit, plan: np.ndarray, buckets: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Gather one planned batch into arrays padded to its bucket; FILL rows repeat a real row, weight 0 (real rows:
    the split's row weights, or 1)."""
    real = plan != FILL
    rows = np.where(real, plan, plan[0])  # plan[0] is always real
    width = bucket_for(int(split.lengths[rows].max()), buckets)
    positions = np.arange(width)[None, :]  # [1, S]
    return {
        "input_ids": split.input_ids[rows, :width],  # [B, S]
        "token_type_ids": split.token_type_ids[rows, :width],  # [B, S]
        "attention_mask": (positions < split.lengths[rows][:, None]).astype(np.int32),  # [B, S]
        "labels": split.labels[rows, :width]
        if isinstance(split, TaggedSplit)
        else split.labels[rows],  # [B, S], [B(, L)]
        "weights": real * split.weights[rows] if split.weights is not None else real.astype(np.float32),  # [B]
        **({"soft_targets": split.soft_targets[rows]} if split.soft_targets is not None else {}),  # [B, C]
    }


def iterate_batches(
    split: TokenizedSplit,
    batch_size: int,
    buckets: tuple[int, ...],
    *,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    for plan in plan_epoch(split.lengths, batch_size, buckets, shuffle=shuffle, seed=seed, epoch=epoch):
        yield collate(split, plan, buckets)


def padding_efficiency(lengths: np.ndarray, plans: list[np.ndarray], buckets: tuple[int, ...]) -> float:
    """Real tokens / padded tokens (FILL rows count as padding) over a whole pass."""
    real = int(lengths.sum())
    padded = 0
    for plan in plans:
        width = bucket_for(int(lengths[plan[plan != FILL]].max()), buckets)
        padded += len(plan) * width
    return real / padded if padded else 1.0


def pad_to_max_efficiency(lengths: np.ndarray, batch_size: int, max_seq_length: int) -> float:
    """The same ratio when every batch is padded to max_seq_length (the old Flax GLUE example's way)."""
    batches = -(-len(lengths) // batch_size)
    return int(lengths.sum()) / (batches * batch_size * max_seq_length) if batches else 1.0


def place_on_mesh(batch: dict[str, np.ndarray], mesh, micro_batches: int = 1) -> dict:
    """Shard a host batch over the mesh's 'data' axis.

    Every process passes the same whole batch (plans are a function of the seed); each places only the
    rows of its own devices, so with many hosts every process feeds its shard.

    With `micro_batches` k > 1, rows [k x B] become [k, B] (micro-batch i = rows i*B..(i+1)*B-1) and each
    micro-batch is sharded over the devices, for gradient accumulation inside the train step.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    if micro_batches > 1:
        batch = {k: v.reshape(micro_batches, -1, *v.shape[1:]) for k, v in batch.items()}  # [k, B, ...]
        sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    else:
        sharding = NamedSharding(mesh, PartitionSpec("data"))
    return {k: jax.make_array_from_process_local_data(sharding, v, v.shape) for k, v in batch.items()}
