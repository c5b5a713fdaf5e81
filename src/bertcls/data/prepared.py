"""What `prepare_data` hands to training: the task, tokenized splits, buckets, the rows as read, cleaning counts."""

from __future__ import annotations

import dataclasses

import datasets

from bertcls.data.batching import TokenizedSplit
from bertcls.data.sources import RawSource
from bertcls.data.splits import CleaningStats
from bertcls.data.tasks import TaskSpec


@dataclasses.dataclass
class PreparedData:
    task: TaskSpec
    splits: dict[str, TokenizedSplit]  # train, validation, and test when it has labels (tagging: TaggedSplit)
    buckets: tuple[int, ...]  # padded lengths a batch may have, fitted to the train lengths
    texts: dict[str, datasets.Dataset]  # the same rows as text/text_pair/label (tagging: text/tokens/tags)
    stats: CleaningStats
    source: RawSource
