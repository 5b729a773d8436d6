"""Parity as the paper sets it, trained long (docs/results.md section 2).

64 bits at random positions, tanh RNN 128, batch 128, M = 100, Adam 1e-4
(``parity.py:paper``), tau = 1e-3 and 1e-2, 2M steps each, one network per
trial, the ponder batch compacted as examples halt (the default). Held-out
error, N and what the halting unit does (share of one-step examples, mean
first weight p^1, largest N) every 5,000 steps on 4,000 examples; at the end,
error and N for each k on 1,000 examples (Fig. 6). On a 2-core CPU a trial runs
for hours: rerun the same command to resume it from its checkpoint.
"""

from typing import Any

CONFIG = "tasks/configs/parity.py:paper"
COMMON = {"num_steps": 2_000_000, "log_every": 2_000, "eval_every": 5_000,
          "checkpoint_every": 20_000}
TAUS = (1e-3, 1e-2)


def get_sweep() -> list[dict[str, Any]]:
  """One trial per tau."""
  return [{"tau": tau} for tau in TAUS]
