"""A training run's orbax checkpoints: when it saves, what they hold, how it resumes.

:class:`TrainingCheckpoints` is the training loop's policy: resume from the
latest checkpoint (or ``config.restore_step``'s, deleting the later ones),
save every ``config.checkpoint_every`` steps and when the run ends or stops,
keep the last ``config.keep_checkpoints`` (0: every one). :func:`load_trained_model`
reads a network back.

A checkpoint that cannot be read is a :class:`~tasks.config_checks.ConfigError`
whose one-line message names the checkpoint's directory and says how to resume
from the previous one (``--config.restore_step``) if that one reads, instead
of orbax's and TensorStore's log lines and tracebacks.
"""

from __future__ import annotations

import contextlib
import logging as python_logging
import os
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tasks import config_checks, models, networks
from tasks.config_checks import ConfigError

_ERROR_CHARS = 160  # of the underlying error, in the one-line message


@contextlib.contextmanager
def quiet() -> Iterator[None]:
  """Silences absl and Python logging for a while (orbax logs at INFO on every open and
  close, and a failed restore as errors)."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.FATAL)
  python_logging.disable(python_logging.CRITICAL)
  try:
    yield
  finally:
    python_logging.disable(python_logging.NOTSET)
    logging.set_verbosity(verbosity)


def open_manager(workdir: str, **options: Any) -> ocp.CheckpointManager:
  """The checkpoint manager of ``workdir/checkpoints`` (``options``: of
  ``ocp.CheckpointManagerOptions``), opened without orbax's log lines about
  unreadable checkpoints (:func:`restore` reports those)."""
  with quiet():
    return ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                 options=ocp.CheckpointManagerOptions(**options))


def _read(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  with quiet():
    return manager.restore(step, args=ocp.args.StandardRestore(target))


def _short(error: Exception) -> str:
  text = " ".join(str(error).split())
  cut = text[:_ERROR_CHARS] + ("..." if len(text) > _ERROR_CHARS else "")
  return f"{type(error).__name__}: {cut}"


def restore(manager: ocp.CheckpointManager, target: Any, workdir: str,
            step: int = 0, step_name: str = "config.restore_step") -> tuple[int, Any]:
  """Reads checkpoint ``step`` (0: the latest) of ``manager`` into the layout of ``target``.

  Args:
    manager: the run's checkpoint manager.
    target: the checkpoint's layout (``jax.ShapeDtypeStruct`` leaves).
    workdir: the run's workdir (for messages).
    step: the step to restore, one of the saved ones; 0: the latest.
    step_name: what the user set ``step`` as, for messages.

  Returns:
    The step and the restored tree, or ``(0, None)`` if there is no checkpoint.

  Raises:
    ConfigError: if ``step`` was not saved, or the checkpoint cannot be read
      (corrupt, or of another layout): one line naming its directory and, if
      the previous checkpoint reads, the ``restore_step`` that resumes from it.
  """
  with quiet():  # orbax logs an error for each unreadable checkpoint metadata file
    steps = sorted(manager.all_steps())
  if not steps:
    if step:
      raise ConfigError(f"{step_name}={step}, but {workdir!r} holds no checkpoint")
    return 0, None
  if step and step not in steps:
    raise ConfigError(f"{step_name}={step} is not a checkpoint of {workdir!r}; "
                      f"its checkpoints are at steps {steps}")
  step = step or steps[-1]
  try:
    return step, _read(manager, step, target)
  except Exception as e:  # pylint: disable=broad-except  # orbax raises many types
    path = os.path.join(workdir, "checkpoints", str(step))
    message = f"cannot read the checkpoint {path} ({_short(e)})"
    for previous in reversed([s for s in steps if s < step]):
      try:
        _read(manager, previous, target)
      except Exception:  # pylint: disable=broad-except
        continue
      raise ConfigError(
          f"{message}; the checkpoint at step {previous} reads: resume from it with "
          f"--config.restore_step={previous} (later checkpoints are then deleted), or "
          f"remove {path}") from None
    raise ConfigError(f"{message}, nor does an earlier one; use a new workdir or remove "
                      f"{os.path.join(workdir, 'checkpoints')}") from None


def delete_after(manager: ocp.CheckpointManager, step: int) -> list[int]:
  """Deletes the checkpoints saved after ``step`` (a run resumed from an earlier one
  saves those steps again); returns their steps."""
  later = [s for s in manager.all_steps() if s > step]
  for s in later:
    manager.delete(s)
  return later


def checkpoint_layout(state: networks.TrainState, num_networks: int) -> dict[str, Any]:
  """What a checkpoint holds: the model and optimizer states as pure dicts.

  With one network, without the network axis: the layout of every
  single-network run, before ensembles too.
  """
  layout = {"model": nnx.to_pure_dict(state.model),
            "optimizer": nnx.to_pure_dict(state.optimizer)}
  return layout if num_networks > 1 else jax.tree.map(lambda x: x[0], layout)


def restore_state(manager: ocp.CheckpointManager, state: networks.TrainState, num_networks: int,
                  workdir: str, mesh: Mesh, step: int = 0,
                  step_name: str = "config.restore_step") -> tuple[int, networks.TrainState]:
  """Checkpoint ``step``'s (0: the latest's) step and state; step 0 and ``state`` if
  there is no checkpoint. ConfigError (one line) if it cannot be read."""
  replicated = NamedSharding(mesh, PartitionSpec())
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                        checkpoint_layout(state, num_networks))
  step, restored = restore(manager, target, workdir, step, step_name)
  if restored is None:
    return 0, state
  if num_networks == 1:
    restored = jax.tree.map(lambda x: np.asarray(x)[None], restored)
  nnx.replace_by_pure_dict(state.model, restored["model"])
  nnx.replace_by_pure_dict(state.optimizer, restored["optimizer"])
  return step, networks.place(state, replicated)


class TrainingCheckpoints:
  """The checkpoints of a training run in ``workdir/checkpoints``: resume, save, close.

  Args:
    config: the run's config (``num_networks``, ``checkpoint_every``,
      ``keep_checkpoints``, ``restore_step``).
    workdir: the run's workdir (absolute).
    mesh: the devices the restored state is placed on (replicated).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, mesh: Mesh):
    self._config, self._workdir, self._mesh = config, workdir, mesh
    self._manager = open_manager(workdir, max_to_keep=config.keep_checkpoints or None,
                                 create=True)

  def resume(self, state: networks.TrainState) -> tuple[int, networks.TrainState]:
    """The latest checkpoint's step and state (``config.restore_step``'s, the later ones
    deleted), or step 0 and ``state`` if there is none."""
    config = self._config
    step, state = restore_state(self._manager, state, config.num_networks, self._workdir,
                                self._mesh, config.restore_step)
    if step:
      logging.info("resumed from the checkpoint at step %d", step)
    if config.restore_step:
      deleted = delete_after(self._manager, step)
      if deleted:
        logging.info("deleted the checkpoints after step %d: steps %s", step, deleted)
    return step, state

  def save(self, step: int, state: networks.TrainState) -> None:
    """Saves ``step`` (in the background; a step already saved is not saved again)."""
    self._manager.save(step, args=ocp.args.StandardSave(
        checkpoint_layout(state, self._config.num_networks)))

  def after_step(self, step: int, state: networks.TrainState) -> None:
    """Saves every ``config.checkpoint_every`` steps."""
    if step % self._config.checkpoint_every == 0:
      self.save(step, state)

  def finish(self, step: int, state: networks.TrainState) -> None:
    """Saves the run's last step (it ended or stopped), waits for the saves and closes."""
    self.save(step, state)
    self._manager.wait_until_finished()
    self._manager.close()


def saved_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints ``workdir`` holds, in order (none: [])."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return []
  manager = open_manager(os.path.abspath(workdir))
  steps = sorted(manager.all_steps())
  with quiet():
    manager.close()
  return steps


def load_trained_model(workdir: str, network: int = 0, step: int = 0
                       ) -> tuple[models.TaskModel, ml_collections.ConfigDict, int]:
  """A network of a training run's checkpoint, with its config and step.

  Args:
    workdir: the run's workdir.
    network: which network of an ensemble (0 for a single-network run).
    step: the checkpoint's step, one of the saved ones (a training run keeps
      its last ``keep_checkpoints``); 0: the latest.

  Returns:
    The model, the config of the single-network run it equals
    (:func:`~tasks.networks.network_config`: ``evaluation.evaluate(model,
    config)`` evaluates it), and the checkpoint's step.

  Raises:
    ConfigError: if ``workdir`` holds no run or no checkpoint, ``step`` was
      not saved, the checkpoint is unreadable, or there is no such network.
  """
  workdir = os.path.abspath(workdir)  # orbax needs absolute paths
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ConfigError(f"{workdir!r} holds no training run (no config.json)")
  config = ml_collections.ConfigDict(config_checks.saved_config(path))
  task = config_checks.validate(config)
  if not 0 <= network < config.num_networks:
    raise ConfigError(f"{workdir!r} holds networks 0..{config.num_networks - 1}, not {network}")
  mesh = networks.data_mesh()
  graphdefs, state = networks.initial_networks(config, task, mesh)
  manager = open_manager(workdir)
  step, state = restore_state(manager, state, config.num_networks, workdir, mesh, step, "step")
  with quiet():
    manager.close()
  if not step:
    raise ConfigError(f"{workdir!r} holds no checkpoint yet")
  model = nnx.merge(graphdefs.model, jax.tree.map(lambda x: np.asarray(x)[network], state.model))
  return model, networks.network_config(config, network), step
