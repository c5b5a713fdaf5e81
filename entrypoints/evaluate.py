"""MLproject `evaluate` entry point: the same click command as `bertcls evaluate`."""

from bertcls.cli import evaluate

if __name__ == "__main__":
    evaluate()
