"""MLproject `evaluate` entry point: the same click command as `bertcls evaluate`."""

from bertcls.cli import entry_point, evaluate

if __name__ == "__main__":
    entry_point(evaluate)
