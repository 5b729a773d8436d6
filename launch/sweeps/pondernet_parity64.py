"""PonderNet beside ACT in PonderNet's parity setting (docs/results.md section 9).

64 bits at random positions, tanh RNN 128, batch 128, Adam 3e-4, M = 20 for both
rules (``parity.py:pondernet``): PonderNet (beta = 0.01, epsilon = 0.05) at lambda_p
0.1, 0.2 and 0.5, and ACT at tau 2e-4, 2e-3 and 2e-2 (the ends and middle of its
paper's grid), each trial three networks (seeds 0-2, vmapped), all on one budget
of 1M updates: one seed of each rule is still at chance after 190k (section 9).
PonderNet unrolls close to all 20 steps while it has not learned the task: one
network trained at a median 106 updates a second on one core of a 2-core CPU
(``steps_per_second`` in ``docs/runs/pondernet_extrapolation/``), so 1M updates
of one network take 2.6 hours there and a trial trains three (a sweep to run on
accelerators, one trial per device); rerun to resume, raise ``num_steps`` to
train further.

  python -m launch.sweep --sweep=launch/sweeps/pondernet_parity64.py \\
      --sweep_dir=$HOME/act-runs/pondernet_parity64_grid --devices=cpu
  python -m launch.curves --out=/tmp/curves.png $HOME/act-runs/pondernet_parity64_grid/*
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/parity.py:pondernet"
COMMON = {"num_networks": 3, "num_steps": 1_000_000, "log_every": 2_000, "eval_every": 10_000,
          "checkpoint_every": 10_000}


def get_sweep() -> list[dict[str, Any]]:
  """One trial per PonderNet prior, then one per ACT tau."""
  return grids.pondernet_and_act()
