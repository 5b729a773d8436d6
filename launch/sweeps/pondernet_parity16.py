"""PonderNet beside ACT on 16-bit parity, otherwise PonderNet's setting (docs/results.md section 9).

``parity.py:pondernet`` (random positions, tanh RNN 128, batch 128, Adam 3e-4, M = 20) at 16
bits instead of 64, the size at which both rules learn within minutes on one CPU core:
PonderNet (beta = 0.01, epsilon = 0.05) at lambda_p 0.1, 0.2 and 0.5 and ACT at tau 2e-4,
2e-3 and 2e-2, the grid of ``pondernet_parity64.py``, three seeds each, one network per trial
(seed by seed), on one budget of 150k updates. Held-out error every 2,500 updates on 4,096
examples (PonderNet's at a halting step sampled from p); a trial is solved, and stops, at the
first evaluation where its last three average at most 2 % (``tasks/solved.py``). Then every
model and seed again with the gradient clipped to a global norm of 1 (``grad_clip_norm``; neither
paper clips): unclipped, a tanh RNN unrolled to 20 steps can blow up after it has learned the task,
its gradient norm jumping from 1-9 to 29-256 and its halting mass moving to step 20
(docs/results.md section 9). Two runners, one per core, share the sweep (the manifest is locked)::

  for core in 0 1; do (for i in $(seq $core 2 35); do taskset -c $core python -m launch.sweep \\
      --sweep=launch/sweeps/pondernet_parity16.py --sweep_dir=$HOME/act-runs/pondernet_parity16 \\
      --devices=cpu --trial_index=$i; done &); done
  python -m launch.curves --out=/tmp/curves.png $HOME/act-runs/pondernet_parity16/*seed=0
"""

from typing import Any

from launch.sweeps import grids

CONFIG = "tasks/configs/parity.py:pondernet"
COMMON = {"task_options.num_bits": 16, "num_steps": 150_000, "eval_every": 2_500,
          "solved_at": 0.02, "solved_evals": 3, "log_every": 2_500, "checkpoint_every": 10_000}
SEEDS = (0, 1, 2)


def get_sweep() -> list[dict[str, Any]]:
  """Every model of the 64-bit grid, three seeds each; then the same again, seed by seed, with
  the gradient clipped to a global norm of 1 (a deviation from both papers)."""
  return grids.pondernet_and_act(SEEDS) + [
      {**trial, "grad_clip_norm": 1.0} for trial in grids.pondernet_and_act(SEEDS)]
