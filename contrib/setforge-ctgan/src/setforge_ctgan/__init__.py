"""setforge-ctgan: the ctgan package's CTGAN as a setforge generator."""

__version__ = "0.1.0"
