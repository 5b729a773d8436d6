r"""What the halting unit of a trained ACT network is told, checkpoint by checkpoint.

  python -m launch.train --config=tasks/configs/parity.py:paper --config.tau=1e-2 \
      --config.num_steps=50000 --config.checkpoint_every=2500 --config.keep_checkpoints=0 \
      --workdir=~/act-runs/collapse/tau=0.01
  python -m launch.halting_probe --workdir=~/act-runs/collapse/tau=0.01

For every checkpoint the run kept (``--config.keep_checkpoints=0`` keeps them
all), on the same ``--batches`` batches of the training distribution, the numbers
of :mod:`tasks.halting_probe`: each loss term's gradient on the halting unit (on
its bias, signed, and the norm on its kernel), the task term's noise between
batches, the share of a full Adam step the bias takes, N and p^1.

Writes ``halting_probe.jsonl`` (a row per checkpoint) and ``halting_probe.png``
(:func:`tasks.halting_probe.plot`), and prints a table; with ``--out_dir`` there
instead of the workdir.
"""

import json
import os

from absl import app, flags

from tasks import checkpoints, config_checks, halting_probe

_WORKDIR = flags.DEFINE_string("workdir", None, "An ACT training run's workdir.")
_BATCHES = flags.DEFINE_integer("batches", 64, "Training-distribution batches per checkpoint.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output directory (default: the workdir).")
_PLOT = flags.DEFINE_bool("plot", True, "Also write halting_probe.png (needs matplotlib).")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _BATCHES.value < 1:
    raise app.UsageError(f"--batches must be >= 1, got {_BATCHES.value}")
  steps = checkpoints.saved_steps(_WORKDIR.value)
  rows = []
  batches = None
  for step in steps:
    try:
      model, config, _ = checkpoints.load_trained_model(_WORKDIR.value, step=step)
    except config_checks.ConfigError as e:
      raise app.UsageError(str(e)) from e
    if config.mode != "act" or config.halting != "act":
      raise app.UsageError(f"{_WORKDIR.value!r} is not an ACT run (mode {config.mode!r}, "
                           f"halting {config.halting!r})")
    if batches is None:
      source = config_checks.validate(config).source(config)
      batches = [source.train(i) for i in range(_BATCHES.value)]
    rows.append({"step": step, **halting_probe.probe(model, config, batches)})
    row = rows[-1]
    print(f"step {step}: N {row['mean_steps']:.3f}, p1 {row['first_weight']:.4f}, "
          f"dL_task/db {row['task_grad_bias']:.3g} +- {row['task_grad_bias_std']:.3g}, "
          f"dL_halting/db {row['halting_grad_bias']:.3g}, Adam step {row['bias_step']:+.3f}",
          flush=True)
  if not rows:
    raise app.UsageError(f"{_WORKDIR.value!r} holds no checkpoint")
  out_dir = _OUT_DIR.value or _WORKDIR.value
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "halting_probe.jsonl"), "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
  if _PLOT.value:
    halting_probe.plot(rows, os.path.join(out_dir, "halting_probe.png"))
  print(halting_probe.table(rows))


if __name__ == "__main__":
  app.run(main)
