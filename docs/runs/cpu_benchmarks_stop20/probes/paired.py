"""What the stop-20 timing probes share: interleaved samples of jitted calls, and ratios."""
import functools
import statistics

import timing  # benchmarks/timing.py


def samples(fns: dict, rounds: int) -> dict:
  """Seconds per round of each ``name: (fn, args)``, interleaved (timing.interleaved_seconds)."""
  return timing.interleaved_seconds(
      {name: functools.partial(fn, *args) for name, (fn, args) in fns.items()}, (), rounds)


def ratio(samples: dict, a: str, b: str) -> float:
  """The median over rounds of ``a``'s time over ``b``'s."""
  return statistics.median(x / y for x, y in zip(samples[a], samples[b]))


def medians_ms(samples: dict) -> dict:
  return {name: round(1e3 * statistics.median(times), 3) for name, times in samples.items()}
