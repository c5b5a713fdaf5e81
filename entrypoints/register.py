"""MLproject `register` entry point: the same click command as `bertcls register`."""

from bertcls.cli import register

if __name__ == "__main__":
    register()
