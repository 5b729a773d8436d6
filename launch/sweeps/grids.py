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


# PonderNet's parity grids (Banino et al. 2021, appendix B): its prior lambda_p against ACT's tau
# at the ends and middle of the ACT paper's grid, beta and epsilon as in PonderNet's paper.
PONDERNET_LAMBDA_PS = (0.1, 0.2, 0.5)
PONDERNET_ACT_TAUS = (2e-4, 2e-3, 2e-2)


def pondernet_and_act(seeds: Sequence[int | None] = (None,)) -> list[dict[str, Any]]:
  """Seed by seed (None: the config's), one trial per PonderNet prior, then one per ACT tau."""
  models = ([{"halting": "pondernet", "beta": 0.01, "epsilon": 0.05, "lambda_p": lambda_p}
             for lambda_p in PONDERNET_LAMBDA_PS] + [{"tau": tau} for tau in PONDERNET_ACT_TAUS])
  return [{**model, **({} if seed is None else {"seed": seed})}
          for seed in seeds for model in models]
