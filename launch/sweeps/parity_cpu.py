"""Parity at the paper's size on a CPU: 10 taus from 1e-4 to 0.1, 4 networks each, and no ACT.

64 bits, tanh RNN 128, batch 128, M = 100, with the first-k layout and Adam
1e-3 (``parity.py:first_k``), the setting that learned within 100k steps on 2
CPU cores (docs/results.md). One trial per tau trains its 4 networks together
(vmapped, seeds seed..seed+3). One trial per tau rather than all 40 networks
in one program: a vmapped ponder loop runs until the slowest network of the
program halts, and the networks of the smallest taus ponder far longer.

Each trial trains for ``time_budget_minutes`` (9: the 11 trials take about an
hour two at a time on 2 cores). It is a resumable field: raise it (or
``num_steps``) here and rerun the sweep to train every trial further; delete a
trial's ``results.json`` to make the runner resume it.
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/parity.py:first_k"
COMMON = {"num_networks": 4, "num_steps": 100_000, "time_budget_minutes": 9.0,
          "eval_every": 5_000, "eval_batches": 2, "checkpoint_every": 1_000,
          "log_every": 500}
# 1, 2 and 5 x 10^-j: 1e-4, 2e-4, 5e-4, 1e-3, ..., 5e-2, 0.1 (all on the paper's grid).
TAUS = [tau for tau in grids.tau_grid((1, 2, 5), range(1, 5)) if tau <= 0.1]


def get_sweep() -> list[dict[str, Any]]:
  """One trial per tau, then the no-ACT baseline."""
  return [{"tau": tau} for tau in TAUS] + [{"mode": "none"}]
