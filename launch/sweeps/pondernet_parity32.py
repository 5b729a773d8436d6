"""PonderNet beside ACT on 32-bit parity, otherwise PonderNet's setting (docs/results.md section 9).

``pondernet_parity16.py``'s grid at 32 bits, one seed (0) per model, on one budget of 300k
updates, a trial stopping once solved (the mean held-out error of its last three evaluations
at most 2 %): the step between the 16 bits both rules learn in minutes and the 64 bits where
both stay near chance for hundreds of thousands of updates. Then one model of each rule again
with the gradient clipped to norm 1, which at 16 bits made every model that learns solve
sooner (``pondernet_parity16.py``). Two runners, one per core::

  for core in 0 1; do (for i in $(seq $core 2 7); do taskset -c $core python -m launch.sweep \\
      --sweep=launch/sweeps/pondernet_parity32.py --sweep_dir=$HOME/act-runs/pondernet_parity32 \\
      --devices=cpu --trial_index=$i; done &); done
  python -m launch.summarize --sweep_dir=$HOME/act-runs/pondernet_parity32
"""

from typing import Any

from launch.sweeps import grids, pondernet_parity16

CONFIG = pondernet_parity16.CONFIG
COMMON = {**pondernet_parity16.COMMON, "task_options.num_bits": 32, "num_steps": 300_000}


def get_sweep() -> list[dict[str, Any]]:
  """Seed 0 of every model of the 64-bit grid; then PonderNet at lambda_p = 0.2 and ACT at
  tau = 2e-3 again with the gradient clipped to a global norm of 1."""
  models = grids.pondernet_and_act((0,))
  return models + [{**model, "grad_clip_norm": 1.0} for model in models
                   if model.get("lambda_p") == 0.2 or model.get("tau") == 2e-3]
