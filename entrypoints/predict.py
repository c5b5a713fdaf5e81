"""MLproject `predict` entry point: the same click command as `bertcls predict`."""

from bertcls.cli import entry_point, predict

if __name__ == "__main__":
    entry_point(predict)
