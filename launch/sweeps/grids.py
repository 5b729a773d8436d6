"""The paper's tau grids (docs/equations.md section 11), and trial lists shared by sweeps."""

from collections.abc import Iterable, Sequence
from typing import Any


def tau_grid(multipliers: Iterable[int], exponents: Iterable[int]) -> list[float]:
  """The distinct values ``i * 10**-j`` (i in ``multipliers``, j in ``exponents``), ascending.

  Each value is the float nearest its decimal (``3e-4`` is ``0.0003``, not
  ``3 * 1e-4 = 0.00030000000000000003``), so ids and configs show it plainly.
  """
  return sorted({float(f"{i}e-{j}") for i in multipliers for j in exponents})


# Synthetic tasks: i in 1..10, j in 1..4 -> 37 distinct values from 1e-4 to 1.0.
SYNTHETIC_TAUS = tau_grid(range(1, 11), range(1, 5))
# The Wikipedia language model: j in 1..3 -> 28 distinct values from 1e-3 to 1.0.
LANGUAGE_MODEL_TAUS = tau_grid(range(1, 11), range(1, 4))
# The paper trains 20 randomly initialised networks per tau.
NETWORKS_PER_TAU = 20


def act_and_no_act(seeds: Sequence[int]) -> list[dict[str, Any]]:
  """No ACT for every seed, then ACT for every seed (the fast trials first)."""
  return ([{"mode": "none", "seed": seed} for seed in seeds]
          + [{"mode": "act", "seed": seed} for seed in seeds])


# aakhundov's downsized addition and sort runs (``*_downsized.py``): LSTM 128 instead of
# their 512 (a trial on a CPU core); held-out error on 1,000 examples every 5,000 steps.
DOWNSIZED_COMMON = {"hidden_size": 128, "eval_every": 5_000, "eval_batch_size": 1_000,
                    "eval_batches": 1, "log_every": 1_000, "checkpoint_every": 10_000}
