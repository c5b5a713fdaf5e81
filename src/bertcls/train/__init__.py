"""Optimizer, jitted steps and the epoch loop. Never imports mlflow: it reports through callbacks."""
