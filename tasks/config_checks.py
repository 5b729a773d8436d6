"""Config checks shared by the training loop and the CLI: errors, validation, the workdir's match.

``ConfigError`` is the one exception a bad config (or a workdir that does not
match it) raises; the CLI prints its message as one line. :func:`validate`
checks a config before anything is compiled; :func:`check_same_config` checks
that a workdir holds a run of the same config (or none) and records it there.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import ml_collections

import act_jax
from act_jax import pondernet
from tasks import models, networks
from tasks.configs import common
from tasks.registry import Task, get_task

# Fields a resumed run may change; every other field must match the checkpoint's.
RESUMABLE_CHANGES = frozenset(
    {"num_steps", "time_budget_minutes", "log_every", "eval_every", "eval_batch_size",
     "eval_batches", "checkpoint_every", "keep_checkpoints", "plot", "distributed",
     "steps_per_call", "restore_step", "figure_examples", "independent_examples", "remat",
     "chunk_steps", "solved_at", "solved_evals"})
# Fields added to the configs after runs were saved: a saved config.json without
# them holds their default values (common.base_config).
ADDED_FIELDS = ("num_networks", "taus", "distributed", "steps_per_call", "restore_step",
                "independent_examples", "solved_at", "solved_evals", "weight_init", "remat",
                "chunk_steps", "grad_clip_norm", "halting", "beta", "lambda_p",
                "keep_checkpoints")
# Task options added after runs were saved, with the value those runs had.
_ADDED_TASK_OPTIONS = {"text": {"check_sha1": True}}


class ConfigError(ValueError):
  """The config, or its match with a workdir's checkpoint, is invalid."""


def flat_fields(config: ml_collections.ConfigDict | Mapping[str, Any],
                prefix: str = "") -> Iterator[tuple[str, Any]]:
  """Every leaf field of ``config`` as ``(dotted name, value)``, nested dicts flattened."""
  items = config.items() if isinstance(config, Mapping) else config.to_dict().items()
  for name, value in sorted(items):
    if isinstance(value, (Mapping, ml_collections.ConfigDict)):
      yield from flat_fields(value, f"{prefix}{name}.")
    else:
      yield f"{prefix}{name}", value


def check_finite(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first float field (or tuple element) that is NaN or inf."""
  for name, value in flat_fields(config):
    values = value if isinstance(value, (tuple, list)) else (value,)
    for i, v in enumerate(values):
      if isinstance(v, float) and not math.isfinite(v):
        where = f"config.{name}" + (f"[{i}]" if values is value else "")
        raise ConfigError(f"{where} must be a finite number, got {v!r}")


def describe(config: ml_collections.ConfigDict) -> str:
  """One ``name = value  (type)`` line per field: what ``--config.<name>=...`` can set."""
  rows = list(flat_fields(config))
  width = max(len(name) for name, _ in rows)
  return "\n".join(f"{name:<{width}} = {value!r}  ({type(value).__name__})"
                   for name, value in rows)


def _positive_int(config: ml_collections.ConfigDict, name: str) -> None:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")


def _non_negative_int(config: ml_collections.ConfigDict, name: str, zero_means: str) -> None:
  value = config[name]
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ConfigError(f"config.{name} must be an integer >= 0 ({zero_means}), got {value!r}")


def validate(config: ml_collections.ConfigDict, device_count: int | None = None) -> Task:
  """Checks ``config`` before anything is compiled; returns its task.

  Args:
    config: a task config.
    device_count: the devices the batches are sharded over (default: all of
      ``jax.devices()``, every process's).
  """
  check_finite(config)
  try:
    task = get_task(config.task)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  for name in ("num_steps", "batch_size", "eval_batch_size", "eval_batches", "log_every",
               "eval_every", "checkpoint_every", "hidden_size", "steps_per_call", "solved_evals",
               "chunk_steps"):
    _positive_int(config, name)
  for name, default in common.base_config().items():  # on/off fields: True or False only
    if isinstance(default, bool) and not isinstance(config.get(name), bool):
      raise ConfigError(f"config.{name} must be True or False, got {config.get(name)!r}")
  solved_at = config.solved_at
  if isinstance(solved_at, bool) or not isinstance(solved_at, (int, float)) or not solved_at >= 0:
    raise ConfigError(f"config.solved_at must be >= 0 (0: train to num_steps), got {solved_at!r}")
  budget = config.time_budget_minutes
  if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
    raise ConfigError(f"config.time_budget_minutes must be >= 0 (0: none), got {budget!r}")
  if not isinstance(config.learning_rate, (int, float)) or not config.learning_rate > 0:
    raise ConfigError(f"config.learning_rate must be > 0, got {config.learning_rate!r}")
  clip = config.grad_clip_norm
  if isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0:
    raise ConfigError(f"config.grad_clip_norm must be >= 0 (0: no clipping), got {clip!r}")
  try:
    act_jax.check_time_penalty(config.tau)
    act_jax.check_ponder_config(config.max_steps, config.epsilon, config.backend)
    pondernet.check_halting_rule(config.halting)
    pondernet.check_beta(config.beta)
    pondernet.check_prior(config.lambda_p)
  except ValueError as e:
    raise ConfigError(f"config: {e}") from e
  if config.halting == "pondernet" and config.mode != "act":
    raise ConfigError(f"config.halting='pondernet' needs config.mode='act', got {config.mode!r}")
  if config.mode not in models.MODES:
    raise ConfigError(f"config.mode must be one of {models.MODES}, got {config.mode!r}")
  if config.cell not in models.CELLS:
    raise ConfigError(f"config.cell must be one of {sorted(models.CELLS)}, got {config.cell!r}")
  if config.weight_init not in models.WEIGHT_INITS:
    raise ConfigError(f"config.weight_init must be one of {models.WEIGHT_INITS}, "
                      f"got {config.weight_init!r}")
  if config.weight_init == "tf_glorot" and config.cell != "tanh":
    raise ConfigError(f"config.weight_init='tf_glorot' needs config.cell='tanh', "
                      f"got {config.cell!r}")
  if config.mode == "repeat":
    _positive_int(config, "repeats")
  _check_networks(config)
  _non_negative_int(config, "restore_step", "0: the latest checkpoint")
  _non_negative_int(config, "keep_checkpoints", "0: every one")
  _non_negative_int(config, "figure_examples", "0: no figure set")
  if config.figure_examples and task.figure is None:
    raise ConfigError(f"config.figure_examples must be 0 for task {task.name!r} (it has no "
                      f"difficulty figure), got {config.figure_examples!r}")
  devices = jax.device_count() if device_count is None else device_count
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % devices:
      raise ConfigError(
          f"config.{name} ({config[name]}) must be divisible by the number of devices "
          f"({devices}): every step shards the batch over all of them")
  try:
    task.check_options(config.task_options.to_dict())
  except (ValueError, OSError) as e:  # OSError: a missing or unreadable data file
    raise ConfigError(f"config.task_options: {e}") from e
  return task


def _check_networks(config: ml_collections.ConfigDict) -> None:
  """Checks ``num_networks`` and ``taus``: one non-negative tau per network, or none."""
  _positive_int(config, "num_networks")
  taus = config.taus
  if not isinstance(taus, (tuple, list)):
    raise ConfigError(f"config.taus must be a tuple of floats (or () for config.tau), "
                      f"got {taus!r}")
  if taus and len(taus) != config.num_networks:
    raise ConfigError(
        f"config.taus has {len(taus)} values {tuple(taus)!r} but config.num_networks is "
        f"{config.num_networks}: give one tau per network, or () for config.tau")
  for i, tau in enumerate(taus):
    try:
      act_jax.check_time_penalty(tau)
    except ValueError as e:
      raise ConfigError(f"config.taus[{i}]: {e}") from e


def check_workdir(workdir: str) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")  # one per process
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir!r} is not writable: {e}") from e


def saved_config(path: str) -> dict[str, Any]:
  """A run's ``config.json``, with the defaults of fields added since it was written."""
  with open(path) as f:
    saved = json.load(f)
  defaults = json.loads(common.base_config().to_json())
  options = {**_ADDED_TASK_OPTIONS.get(saved.get("task"), {}), **saved.get("task_options", {})}
  return {**{name: defaults[name] for name in ADDED_FIELDS}, "figure_examples": 0, **saved,
          "task_options": options}


def check_same_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Raises ConfigError if ``workdir`` holds a run of a different config."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json())
  if os.path.exists(path):
    saved = saved_config(path)
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k))
    if changed:
      detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
      raise ConfigError(
          f"workdir {workdir!r} holds a run with another config ({detail}); "
          "use a new workdir or the same config")
  if networks.is_primary():  # atomically: the other processes of a multi-host run read it too
    with open(f"{path}.tmp", "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)
    os.replace(f"{path}.tmp", path)
