"""MLproject `sweep` entry point: the same click command as `bertcls sweep`."""

from bertcls.cli import entry_point, sweep

if __name__ == "__main__":
    entry_point(sweep)
