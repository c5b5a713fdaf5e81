"""Data: sources -> task (labels) -> splits -> tokenization -> length-bucketed static-shape batches.

`prepare_data` is imported lazily so that inference (bertcls.serving.predictor, the pyfunc model) can use the
batching and encoding modules without importing `datasets`, which the logged model does not require.
"""

__all__ = ["PreparedData", "prepare_data"]


def __getattr__(name: str):
    if name in __all__:
        from bertcls.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'bertcls.data' has no attribute {name!r}")
