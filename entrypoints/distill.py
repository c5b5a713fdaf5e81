"""MLproject `distill` entry point: the same click command as `bertcls distill`."""

from bertcls.cli import distill, entry_point

if __name__ == "__main__":
    entry_point(distill)
