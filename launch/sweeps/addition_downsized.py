"""Addition, aakhundov's downsized runs beside ours (docs/results.md section 5).

Their published single-seed logs (docs/published/README.md; addition: 2..5 numbers of
1..5 digits, LSTM 512, batch 32, M = 10, Adam 1e-3, tau = 1e-3 (their scripts' default), 250k steps;
sequence error on 1,000 held-out examples every 1,000 steps): addition 8-15.5 %
(noisy) with ACT, 59.4 % without. Here: the same task sizes, M, optimizer and
step cap (``addition.py:downsized``), but LSTM 128 instead of their 512, so
that a trial fits a CPU core (30-50 ACT steps/s); ACT and no ACT with two seeds
each, one network per trial (vmapped ACT networks run the slowest one's ponder
loop). Held-out sequence error on 1,000 examples every 5,000 steps; at the end,
Fig. 14's examples (sequences of 3 numbers by digits per number),
1,000 per level. No-ACT trials run first (they take minutes); rerun the
command to resume.
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/addition.py:downsized"
COMMON = grids.DOWNSIZED_COMMON
SEEDS = (0, 1)


def get_sweep() -> list[dict[str, Any]]:
  """No ACT for every seed, then ACT for every seed."""
  return grids.act_and_no_act(SEEDS)
