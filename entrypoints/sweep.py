"""MLproject `sweep` entry point: the same click command as `bertcls sweep`."""

from bertcls.cli import sweep

if __name__ == "__main__":
    sweep()
