"""setforge-text: text data for setforge (a source, augmenters, a downstream model)."""

__version__ = "0.1.0"
