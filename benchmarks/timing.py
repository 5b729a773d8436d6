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
  """Median seconds per call of each function, interleaved round by round (see
  :func:`interleaved_seconds`)."""
  return {name: statistics.median(times)
          for name, times in interleaved_seconds(fns, args, rounds).items()}


def interleaved_seconds(fns: dict[str, Callable], args, rounds: int) -> dict[str, list[float]]:
  """Seconds of one call of each function per round, the functions interleaved.

  Interleaving puts every variant under the same load on a shared, noisy
  machine, so their ratios (round by round) mean more than their absolute
  times. Each timed call follows an untimed call of the same function: the
  first call after a different program pays for the memory and caches that
  program left behind (on the CPU an LSTM forward pass timed right after a
  training step took twice its warm time), which a training loop, calling one
  program again and again, does not.
  """
  for fn in fns.values():  # warm up (and compile)
    jax.block_until_ready(fn(*args))
  samples = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      jax.block_until_ready(fn(*args))
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      samples[name].append(time.perf_counter() - start)
  return samples
