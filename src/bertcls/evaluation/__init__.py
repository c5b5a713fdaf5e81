"""Evaluation: metrics, baselines, tables and promotion rules as pure functions; callers log them."""
