"""Fojo, Campos & Giro-i-Nieto (2018) Table 1, side by side (docs/results.md section 1).

Parity in the first-k layout (``parity.py:first_k``: 64 bits, tanh RNN 128,
batch 128, M = 100, Adam 1e-3), up to 400k steps: ACT at the four taus of
their table, Repeat-RNN at their four repeat counts, and no ACT, each with
three seeds (one network per trial, so that no trial waits for another seed's
slowest ponder). Held-out error every 2,000 steps on 2,000 examples. Their
"solved" is accuracy >= 98 % after smoothing; here a trial
is solved, and stops, at the first evaluation where the mean error of the last
three evaluations (6,000 examples over 4,000 steps) is at most 2 %
(``tasks/solved.py``); ``results.json`` records that step as ``solved_step``.
Trials run seed by seed (every model's seed 0 first), and the slow ones last
(ACT at tau = 1e-3, whose ponder grows to about 30 steps here), so that a
partly run sweep has whole rows.
"""

from typing import Any

CONFIG = "tasks/configs/parity.py:first_k"
COMMON = {"num_steps": 400_000, "eval_every": 2_000, "eval_batches": 2,
          "solved_at": 0.02, "solved_evals": 3,
          "checkpoint_every": 10_000, "log_every": 1_000}
TAUS = (1e-1, 1e-2, 5e-3, 1e-3)  # ACT rows of their Table 1
SLOW_TAUS = (1e-3,)  # run after every other trial
REPEATS = (2, 3, 5, 8)  # Repeat-RNN rows
SEEDS = (0, 1, 2)


def get_sweep() -> list[dict[str, Any]]:
  """Every model of their table, three seeds each: seed by seed, the slow taus last."""
  models = ([{"tau": tau} for tau in TAUS if tau not in SLOW_TAUS]
            + [{"mode": "repeat", "repeats": repeats} for repeats in REPEATS]
            + [{"mode": "none"}])
  return ([{**model, "seed": seed} for seed in SEEDS for model in models]
          + [{"tau": tau, "seed": seed} for tau in SLOW_TAUS for seed in SEEDS])
