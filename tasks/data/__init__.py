"""Synthetic data generators for the four algorithmic tasks of Graves (2016)."""

from tasks.data import addition, logic, parity, sort
from tasks.data.batch import Batch, batch_stream_key

__all__ = ["Batch", "addition", "batch_stream_key", "logic", "parity", "sort"]
