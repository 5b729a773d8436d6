"""Restoring a run's orbax checkpoints: which step, quietly, and what to do when one is corrupt.

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

import orbax.checkpoint as ocp
from absl import logging

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


def manager(workdir: str, **options: Any) -> ocp.CheckpointManager:
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
