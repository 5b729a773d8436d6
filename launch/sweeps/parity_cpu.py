"""Parity at the paper's size on a CPU: 10 taus from 1e-4 to 0.1, 4 networks each, and no ACT.

64 bits, tanh RNN 128, batch 128, M = 100, with the first-k layout and Adam
1e-3 (``parity.py:first_k``), the setting that learned within 100k steps on 2
CPU cores (docs/results.md). One trial per tau trains its 4 networks together
(vmapped, seeds seed..seed+3). ``num_steps`` may be raised later: rerunning the
sweep resumes unfinished trials (finished ones keep their results).
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/parity.py:first_k"
COMMON = {"num_networks": 4, "num_steps": 100_000}  # every trial: 4 networks of one tau
# 1, 2 and 5 x 10^-j: 1e-4, 2e-4, 5e-4, 1e-3, ..., 5e-2, 0.1 (all on the paper's grid).
TAUS = [tau for tau in grids.tau_grid((1, 2, 5), range(1, 5)) if tau <= 0.1]


def get_sweep() -> list[dict[str, Any]]:
  """One trial per tau, then the no-ACT baseline."""
  return [{"tau": tau} for tau in TAUS] + [{"mode": "none"}]
