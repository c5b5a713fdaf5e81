"""A printable summary of a prepared dataset: sizes, cleaning, labels, padding efficiency."""

from __future__ import annotations

import numpy as np

from bertcls.config import DataConfig
from bertcls.data.batching import pad_to_max_efficiency, padding_efficiency, plan_epoch
from bertcls.data.pipeline import class_warnings, prepare_data


def data_report(config: DataConfig, tokenizer, batch_size: int) -> str:
    data = prepare_data(config, tokenizer)
    buckets = data.buckets
    lines = [
        f"dataset: {data.source.name}  ({data.source.uri})",
        f"task: {data.task.kind}  "
        f"labels: {', '.join(data.task.label_names) or '-'}  primary metric: {data.task.primary_metric}",
        f"cleaning: rows read {data.stats.rows_read}, empty texts dropped {data.stats.empty_text_dropped}, "
        f"missing labels dropped {data.stats.missing_label_dropped} "
        f"(max_dropped_fraction {config.max_dropped_fraction:g})",
        f"splitting: duplicate texts dropped {data.stats.duplicates_dropped}, splits created "
        f"{list(data.stats.created_splits) or 'none'} (seed {config.split_seed}, stratified {data.stats.stratified})",
        f"max_seq_length {config.max_seq_length}, batch_size {batch_size}, buckets {list(buckets)}",
        "long sentences: overlapping windows, every word predicted once (a row is a window; texts are sentences, "
        "label counts are words)"
        if data.task.token_level
        else f"long texts: {config.long_text}"
        + (
            f" (windows of {config.max_seq_length} tokens sharing {config.window_overlap}, at most "
            f"{config.max_windows} per text; a row is a window)"
            if config.windowed
            else " (a row is a text; rows at max_seq_length were cut)"
        ),
        "",
        f"{'split':<11}{'texts':>7}{'rows':>7}{'at max':>8}{'mean len':>9}{'buckets eff':>12}{'pad-to-max eff':>15}",
    ]
    for name, split in data.splits.items():
        plans = plan_epoch(split.lengths, batch_size, buckets, shuffle=name == "train", seed=0)
        lines.append(
            f"{name:<11}{split.num_texts:>7}{len(split):>7}{int((split.lengths >= config.max_seq_length).sum()):>8}"
            f"{float(np.mean(split.lengths)):>9.1f}{padding_efficiency(split.lengths, plans, buckets):>12.3f}"
            f"{pad_to_max_efficiency(split.lengths, batch_size, config.max_seq_length):>15.3f}"
        )
    if not data.task.is_regression:
        lines.append("")
        lines.append(
            "label counts: "
            + "; ".join(
                f"{name}: "
                + ", ".join(
                    f"{label}={_label_count(s, i, data.task.multi_label)}"
                    for i, label in enumerate(data.task.label_names)
                )
                for name, s in data.splits.items()
            )
        )
    lines += [f"warning: {warning}" for warning in class_warnings(data)]
    return "\n".join(lines)


def _label_count(split, label: int, multi_label: bool) -> int:
    """Texts of `split` with the label (multi-label: among their labels)."""
    labels = split.text_labels()
    return int(labels[:, label].sum()) if multi_label else int((labels == label).sum())
