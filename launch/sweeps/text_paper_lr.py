"""The Wikipedia LM at the paper's learning rate (docs/results.md section 7).

enwik6, LSTM 256, 500-byte windows, batch 16 (``text.py`` default) with Adam
1e-4 (the paper's): ACT at tau = 1e-3 and 6e-3, and no ACT, the same number of
steps each, so that held-out bits per character compare at equal steps.
Evaluation every 1,000 steps on the 50,000 held-out bytes. On a 2-core CPU a
trial takes hours (an ACT LM at Adam 1e-3 ran about 2,700 steps an hour on shared
cores); raise ``num_steps`` here and rerun to train every trial further (they
resume).
"""

from typing import Any

CONFIG = "tasks/configs/text.py"
COMMON = {"learning_rate": 1e-4, "num_steps": 10_000, "eval_every": 1_000,
          "checkpoint_every": 500, "log_every": 100}
TAUS = (1e-3, 6e-3)


def get_sweep() -> list[dict[str, Any]]:
  """ACT at each tau, then no ACT."""
  return [{"tau": tau} for tau in TAUS] + [{"mode": "none"}]
