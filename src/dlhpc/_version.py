"""The version, in a module of its own: the package root imports nothing else eagerly."""

__version__ = "0.1.0"
