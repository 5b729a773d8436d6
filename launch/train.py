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

Compiled programs are kept in a persistent cache (``--compilation_cache``, by
default ``$ACT_JAX_COMPILATION_CACHE`` or ``~/.cache/act_jax/jax``; empty: off),
so that a rerun, a resume or a sweep's next trial does not compile again.
"""

import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from tasks import train

DEFAULT_CACHE = os.environ.get(
    "ACT_JAX_COMPILATION_CACHE",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "act_jax",
                 "jax"))

_CONFIG = config_flags.DEFINE_config_file("config", None, "Task config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", DEFAULT_CACHE,
    "Directory of JAX's persistent compilation cache (default: $ACT_JAX_COMPILATION_CACHE or "
    "~/.cache/act_jax/jax); empty turns it off.")
flags.mark_flags_as_required(["config", "workdir"])


def use_compilation_cache(directory: str) -> None:
  """Keeps every compiled program in ``directory`` (JAX's persistent cache); "" turns it off."""
  if not directory:
    return
  jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


class _QuietOrbax:
  """Drops orbax's per-save INFO lines so that progress lines stay readable."""

  def filter(self, record) -> bool:
    return record.levelno > logging.converter.STANDARD_INFO or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  use_compilation_cache(_CACHE.value)
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
