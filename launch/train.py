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

JAX's own options are flags too (``--helpfull`` lists them), e.g.
``--jax_platforms=cpu``, ``--jax_debug_nans`` or ``--jax_num_cpu_devices=8``.

The fields of a config, and their values with the overrides given, without training:

  python -m launch.train --config=tasks/configs/parity.py:quick --show_config
"""

import os
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from tasks import config_checks, train
from tasks.results import summary_table

DEFAULT_CACHE = os.environ.get(
    "ACT_JAX_COMPILATION_CACHE",
    os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "act_jax",
                 "jax"))

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Task config file[:variant]; set a field with --config.<field>=value "
    "(--show_config lists them).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_CACHE = flags.DEFINE_string(
    "compilation_cache", DEFAULT_CACHE,
    "Directory of JAX's persistent compilation cache (default: $ACT_JAX_COMPILATION_CACHE or "
    "~/.cache/act_jax/jax); empty turns it off.")
_SHOW_CONFIG = flags.DEFINE_bool(
    "show_config", False, "Print the config's fields and values (overrides applied) and exit.")
flags.mark_flag_as_required("config")


def _flag_error_line(error: Exception, argv: list[str]) -> str:
  """One line for a flag-parsing error: an unknown config field with a suggestion, a bad
  value, or a config file that does not load (its exception's last line)."""
  message = str(error)
  if isinstance(error, (AttributeError, KeyError)):
    suggestion = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', message)
    unknown = suggestion[2] if suggestion else re.search(r"\w+", message)[0]
    overrides = [arg[len("--config."):].split("=")[0] for arg in argv
                 if arg.startswith("--config.")]
    name = next((o for o in overrides if o.split(".")[-1] == unknown), unknown)
    hint = ""
    if suggestion:
      hint = f" (did you mean {'.'.join(name.split('.')[:-1] + [suggestion[1]])!r}?)"
    return f"unknown config field {name!r}{hint}; --show_config lists the fields"
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one-line errors instead of ml_collections' tracebacks."""
  try:
    remaining = flags.FLAGS(argv)
    _CONFIG.value.get("task")  # a config file that failed to load raises here
  except Exception as e:  # pylint: disable=broad-except  # any override or config file error
    print(f"error: {_flag_error_line(e, argv)}", file=sys.stderr)
    raise SystemExit(1) from None
  return remaining


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
  if _SHOW_CONFIG.value:
    print(config_checks.describe(_CONFIG.value))
    return
  if not _WORKDIR.value:
    print("error: --workdir is required (where checkpoints and results go)", file=sys.stderr)
    raise SystemExit(1)
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietOrbax())
  use_compilation_cache(_CACHE.value)
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except config_checks.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(1) from None
  except KeyboardInterrupt as e:
    if e.args:  # train_and_evaluate's stop after a checkpoint: the signal's name
      print("interrupted: the last step is checkpointed; run the same command to resume")
    else:
      print("interrupted before the run could save a checkpoint; run the same command to "
            "resume from its last saved one, if any")
    raise SystemExit(130) from None
  print(summary_table(results))
  print(f"results: {_WORKDIR.value}/results.json")


if __name__ == "__main__":
  jax.config.config_with_absl()  # JAX's options as --jax_... flags, applied after parsing
  app.run(main, flags_parser=_parse_flags)
