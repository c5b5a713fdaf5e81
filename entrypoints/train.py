"""MLproject `train` entry point: the same click command as `bertcls train`."""

from bertcls.cli import train

if __name__ == "__main__":
    train()
