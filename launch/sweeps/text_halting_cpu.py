"""The LM halting sweep (``text_halting.py``) sized for a CPU: 100-byte windows, 1,000 updates.

The same 42 trials as ``text_halting.py`` (tau x halting bias x Adam, then
gradient clipping and M = 10, and no ACT), each on 100-byte windows instead of
the paper's 500 (a stated deviation: updates 5 times cheaper, the state still
reset per window) for 1,000 updates or ``time_budget_minutes``, whichever comes
first, so a trial that runs away to the cap stops in minutes and records where
it got to. On one core of a 2-core CPU a trial takes 2 (no ACT) to 7 minutes.

  python -m launch.sweep --sweep=launch/sweeps/text_halting_cpu.py \\
      --sweep_dir=$HOME/act-runs/text_halting_cpu --devices=cpu
  python -m launch.text_dynamics --sweep_dir=$HOME/act-runs/text_halting_cpu
"""

from typing import Any

from launch.sweeps import text_halting

CONFIG = text_halting.CONFIG
COMMON = {**text_halting.COMMON, "task_options.window": 100, "num_steps": 1_000,
          "time_budget_minutes": 6.0, "checkpoint_every": 250}


def get_sweep() -> list[dict[str, Any]]:
  """The trials of ``text_halting.py``."""
  return text_halting.get_sweep()
