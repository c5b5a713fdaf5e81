"""Tracking: everything that speaks to MLflow (runs, logged models, registry, store lock)."""
