"""Sort, the paper's grid (Graves 2016, section 3.4): 37 taus x 20 networks, and no ACT.

One trial per tau trains its 20 networks together (vmapped, seeds seed..seed+19).
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/sort.py:paper"
COMMON = {"num_networks": grids.NETWORKS_PER_TAU}  # every trial: 20 networks of one tau


def get_sweep() -> list[dict[str, Any]]:
  """One trial per tau of the grid, then the no-ACT baseline."""
  return [{"tau": tau} for tau in grids.SYNTHETIC_TAUS] + [{"mode": "none"}]
