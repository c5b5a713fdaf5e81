"""MLproject `pretrain` entry point: the same click command as `bertcls pretrain`."""

from bertcls.cli import pretrain

if __name__ == "__main__":
    pretrain()
