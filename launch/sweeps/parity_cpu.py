"""The parity tau sweep at the paper's size in one program: 10 taus x 4 seeds, vmapped.

64 bits, tanh RNN 128, batch 128, M = 100, with the first-k layout and Adam
1e-3 (``parity.py:first_k``), the setting that learned within 100k steps on 2
CPU cores (docs/results.md). The 40 ACT networks (taus 1, 2, 5 x 10^-j from
1e-4 to 0.1, four networks each, seeds 0..39) train together in one jitted,
vmapped step (``num_networks = 40``); the no-ACT baseline is a second trial of
4 networks. ``time_budget_minutes`` bounds each trial's training time (it is a
resumable field: raise it and rerun the sweep to train further).
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/parity.py:first_k"
SEEDS_PER_TAU = 4
COMMON = {"num_steps": 100_000, "eval_every": 10_000, "eval_batches": 2,
          "checkpoint_every": 1_000, "log_every": 500}
# 1, 2 and 5 x 10^-j: 1e-4, 2e-4, 5e-4, 1e-3, ..., 5e-2, 0.1 (all on the paper's grid).
TAUS = [tau for tau in grids.tau_grid((1, 2, 5), range(1, 5)) if tau <= 0.1]


def get_sweep() -> list[dict[str, Any]]:
  """All ACT networks in one vmapped trial, then the no-ACT baseline."""
  taus = tuple(tau for tau in TAUS for _ in range(SEEDS_PER_TAU))
  return [{"mode": "act", "num_networks": len(taus), "taus": taus},
          {"mode": "none", "num_networks": SEEDS_PER_TAU}]
