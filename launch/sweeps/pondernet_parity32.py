"""PonderNet beside ACT on 32-bit parity, otherwise PonderNet's setting (docs/results.md section 9).

``pondernet_parity16.py``'s grid at 32 bits, one seed (0) per model, on one budget of 300k
updates, a trial stopping once solved (the mean held-out error of its last three evaluations
at most 2 %): the step between the 16 bits both rules learn in minutes and the 64 bits where
both stay near chance for hundreds of thousands of updates. Two runners, one per core::

  for core in 0 1; do (for i in $(seq $core 2 5); do taskset -c $core python -m launch.sweep \\
      --sweep=launch/sweeps/pondernet_parity32.py --sweep_dir=$HOME/act-runs/pondernet_parity32 \\
      --devices=cpu --trial_index=$i; done &); done
  python -m launch.summarize --sweep_dir=$HOME/act-runs/pondernet_parity32
"""

from typing import Any

from launch.sweeps import grids, pondernet_parity16

CONFIG = pondernet_parity16.CONFIG
COMMON = {**pondernet_parity16.COMMON, "task_options.num_bits": 32, "num_steps": 300_000}


def get_sweep() -> list[dict[str, Any]]:
  """Seed 0 of every model of the 64-bit grid."""
  return grids.pondernet_and_act((0,))
