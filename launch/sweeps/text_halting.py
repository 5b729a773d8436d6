"""The Wikipedia LM's halting dynamics: which setting keeps ponder off both walls.

At Adam 1e-3 an LM's ponder collapses to N ~ 1 within 100 updates; at the
paper's 1e-4 it stays at N ~ 1 for a few hundred, then runs away to the cap
M = 100 over every character class. Short runs (2,000 updates each) on enwik6
(``text.py`` default: LSTM 256, 500-byte windows, batch 16), ranked by where
mean ponder settles (``mean_steps`` in ``metrics.jsonl``, the halting columns of
the evaluations) and by held-out bits per character against the no-ACT LM at
equal updates:

* the paper's knobs, every combination: tau in {1e-3, 6e-3, 1e-2, 3e-2, 1e-1}
  (the paper's language-model grid, including its larger values), the halting
  bias at initialisation (+1 as in the paper; -1 and -3, which start every
  byte pondering), Adam at 1e-4 (the paper's) and 3e-4;
* stated deviations from the paper, one at a time, at each tau with the
  paper's bias (+1) and learning rate (1e-4): the gradient's global norm
  clipped to 1 before Adam (``grad_clip_norm``), and the cap M = 10 instead of
  100 (``max_steps``);
* no ACT at each learning rate.

42 trials; run them where there are cores or GPUs to spare, then train the
best two (and no ACT) to 10,000 updates or more (raise ``num_steps`` for them):

  python -m launch.sweep --sweep=launch/sweeps/text_halting.py \\
      --sweep_dir=runs/text_halting --devices=0,1,2,3 --parallel=4
  python -m launch.text_dynamics --sweep_dir=runs/text_halting
  python -m launch.analyze_ponder --workdir=runs/text_halting/<trial id>
"""

from typing import Any

CONFIG = "tasks/configs/text.py"
COMMON = {"num_steps": 2_000, "eval_every": 500, "checkpoint_every": 500, "log_every": 50}
TAUS = (1e-3, 6e-3, 1e-2, 3e-2, 1e-1)
HALTING_BIASES = (1.0, -1.0, -3.0)
LEARNING_RATES = (1e-4, 3e-4)
# One at a time, at the paper's halting bias and learning rate.
DEVIATIONS = ({"grad_clip_norm": 1.0}, {"max_steps": 10})


def get_sweep() -> list[dict[str, Any]]:
  """No ACT, then ACT over tau x halting bias x learning rate, then the deviations."""
  grid = [{"learning_rate": lr, "halting_bias": bias, "tau": tau}
          for lr in LEARNING_RATES for bias in HALTING_BIASES for tau in TAUS]
  deviations = [{"learning_rate": LEARNING_RATES[0], "halting_bias": HALTING_BIASES[0],
                 "tau": tau, **deviation} for deviation in DEVIATIONS for tau in TAUS]
  return [{"mode": "none", "learning_rate": lr} for lr in LEARNING_RATES] + grid + deviations
