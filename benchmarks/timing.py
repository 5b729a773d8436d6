"""Timing helpers shared by the benchmarks: compile time and interleaved medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def compile_seconds(fn, *args) -> float:
  """Seconds to lower and compile the jitted ``fn`` for ``args``."""
  start = time.perf_counter()
  fn.lower(*args).compile()
  return time.perf_counter() - start


def median_seconds(fns: dict[str, Callable], args, rounds: int) -> dict[str, float]:
  """Median seconds per call of each function, interleaved round by round.

  Interleaving puts every variant under the same load on a shared, noisy
  machine, so their ratios mean more than their absolute times.
  """
  for fn in fns.values():  # warm up (and compile)
    jax.block_until_ready(fn(*args))
  samples = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      samples[name].append(time.perf_counter() - start)
  return {name: statistics.median(times) for name, times in samples.items()}
