"""What a training run records as it goes: ``metrics.jsonl`` and TensorBoard events.

Process 0 alone writes. Each row is one step's metrics of one split
(``train``: the means over the steps since the last row; ``eval``: the
held-out evaluation), pooled over the networks and, for an ensemble, per
network (``name/i``). The files are strict JSON: a NaN is ``null``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tasks import networks


def _rows_up_to(path: str, step: int) -> dict[tuple[int, str], str]:
  """The lines of ``metrics.jsonl`` (if any) of steps up to ``step``, the resumed checkpoint's
  (the later ones are trained again), by step and split."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = [(json.loads(line), line) for line in f if line.strip()]
  return {(row["step"], row["split"]): line for row, line in rows if row["step"] <= step}


def strict_json(value: Any) -> Any:
  """``value`` with every NaN or infinite float replaced by None (JSON ``null``).

  ``results.json`` and ``metrics.jsonl`` are strict JSON (``json.dump`` would
  otherwise write ``NaN`` and ``Infinity``, which JSON parsers reject): a
  diverged run's loss shows as ``null``.
  """
  if isinstance(value, Mapping):
    return {k: strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict_json(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if np.isfinite(value) else None
  return value


class MetricWriter:
  """Appends metrics to ``metrics.jsonl`` and TensorBoard event files (process 0 only).

  Args:
    workdir: the run's workdir.
    step: the step the run starts (or resumes) from: rows of later steps, written
      after the last checkpoint by an interrupted run, are dropped, and a row
      written again for a step and split (the final evaluation of a finished run
      that is resumed) replaces the old one, so that every row appears once.
  """

  def __init__(self, workdir: str, step: int):
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._primary = networks.is_primary()
    if self._primary:
      self._path = os.path.join(workdir, "metrics.jsonl")
      self._earlier = _rows_up_to(self._path, step)
      self._rewrite()
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _rewrite(self) -> None:
    """``metrics.jsonl`` holding the earlier rows only, open for appending."""
    with open(self._path, "w") as f:
      f.writelines(self._earlier.values())
    self._jsonl = open(self._path, "a")

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    """Appends the row of ``step`` and ``split`` (``train`` or ``eval``)."""
    if not self._primary:
      return
    if self._earlier.pop((step, split), None) is not None:
      self._jsonl.close()
      self._rewrite()
    row = strict_json({"step": step, "split": split, **metrics})
    self._jsonl.write(json.dumps(row, allow_nan=False) + "\n")
    self._jsonl.flush()
    for k, v in metrics.items():
      self._tb.add_scalar(f"{split}/{k}", v, step)
    self._tb.flush()

  def close(self) -> None:
    if self._primary:
      self._jsonl.close()
      self._tb.close()


def metric_row(pooled: Mapping[str, Any],
                networks: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """The scalar metrics: pooled (the mean over networks), and for K > 1 network i's as
  ``name/i``."""
  scalars = lambda metrics: {k: float(v) for k, v in metrics.items() if not isinstance(v, Mapping)}
  row = scalars(pooled)
  if len(networks) > 1:
    row.update({f"{k}/{i}": v for i, metrics in enumerate(networks)
                for k, v in scalars(metrics).items()})
  return row
