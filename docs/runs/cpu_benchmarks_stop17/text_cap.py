"""The LM's training loop with every byte pondering to the cap (M = 20): ms per step.

  cd <repo> && PYTHONPATH=.:benchmarks python docs/runs/cpu_benchmarks_stop17/text_cap.py LABEL
"""
import sys
import tempfile

import train_loop as tl
from launch.train import use_compilation_cache

cache = tempfile.TemporaryDirectory()
use_compilation_cache(cache.name)
config = tl._text(8, halting_bias=-30.0, max_steps=20)  # pylint: disable=protected-access
config.steps_per_call = 2
for _ in range(2):
  print(sys.argv[1], "LM at the cap (M = 20), s per step",
        round(tl.loop_seconds_per_step(config)[0], 3), flush=True)
