"""MLproject `train` entry point: the same click command as `bertcls train`."""

from bertcls.cli import entry_point, train

if __name__ == "__main__":
    entry_point(train)
