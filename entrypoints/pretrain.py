"""MLproject `pretrain` entry point: the same click command as `bertcls pretrain`."""

from bertcls.cli import entry_point, pretrain

if __name__ == "__main__":
    entry_point(pretrain)
