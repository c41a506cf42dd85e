"""fm_engine: composition -> property multi-task models and inverse design of compositions."""

__version__ = "0.1.0"
