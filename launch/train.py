r"""Trains one task model from the command line.

  python -m launch.train --config=tasks/configs/parity.py:quick --workdir=runs/parity
  python -m launch.train --config=tasks/configs/logic.py --workdir=runs/logic \
      --config.tau=0.01 --config.mode=none

Running the same command again resumes from the workdir's last checkpoint.

An ensemble of K networks in one jit-compiled step (network i: seed + i, tau taus[i]):

  python -m launch.train --config=tasks/configs/parity.py --workdir=runs/parity_taus \
      --config.num_networks=3 --config.taus='(0.01, 0.001, 0.0001)'

Every step shards the batch over all devices; on a multi-host GPU cluster or
TPU pod, start one process per host with ``--config.distributed`` (the devices of all hosts).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from tasks import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Task config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietOrbax:
  """Drops orbax's per-save INFO lines so that progress lines stay readable."""

  def filter(self, record) -> bool:
    return record.levelno > logging.converter.STANDARD_INFO or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except train.ConfigError as e:
    raise app.UsageError(str(e)) from e
  except KeyboardInterrupt:
    print("interrupted: the last step is checkpointed; run the same command to resume")
    raise SystemExit(130) from None
  print(train.summary_table(results))
  print(f"results: {_WORKDIR.value}/results.json")


if __name__ == "__main__":
  app.run(main)
