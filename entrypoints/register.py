"""MLproject `register` entry point: the same click command as `bertcls register`."""

from bertcls.cli import entry_point, register

if __name__ == "__main__":
    entry_point(register)
