"""Data: sources -> task (labels) -> splits -> tokenization -> length-bucketed static-shape batches."""

from bertcls.data.pipeline import PreparedData, prepare_data

__all__ = ["PreparedData", "prepare_data"]
