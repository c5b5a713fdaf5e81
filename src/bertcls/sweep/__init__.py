"""Sweeps: the search space and the Optuna study behind `bertcls sweep`."""
