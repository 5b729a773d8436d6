"""What a training run records as it goes: ``metrics.jsonl`` and TensorBoard events.

Process 0 alone writes. Each row is one step's metrics of one split
(``train``: the means over the steps since the last row; ``eval``: the
held-out evaluation), pooled over the networks and, for an ensemble, per
network (``name/i``); ``metrics.jsonl`` is strict JSON (a NaN is ``null``),
TensorBoard gets each metric as the scalar ``split/name``. A resumed run
continues both from its checkpoint's step: what an interrupted run wrote
after it is dropped, so that no curve doubles back.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from tasks import networks

_EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's event files in a log directory


def _rows_up_to(path: str, step: int) -> dict[tuple[int, str], str]:
  """The lines of ``metrics.jsonl`` (if any) of steps up to ``step``, the resumed checkpoint's
  (the later ones are trained again), by step and split."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    rows = [(json.loads(line), line) for line in f if line.strip()]
  return {(row["step"], row["split"]): line for row, line in rows if row["step"] <= step}


class _Scalar(NamedTuple):
  """A TensorBoard scalar event."""

  tag: str
  value: float
  step: int
  wall_time: float


def _records(path: str) -> Iterator[bytes]:
  """The records of a TFRecord file (TensorBoard's event file format): each a
  little-endian uint64 length, 4 bytes of its checksum, the data, 4 bytes of the
  data's checksum. A record cut short (the writer was killed) ends the file."""
  with open(path, "rb") as f:
    while len(header := f.read(12)) == 12:
      data = f.read(struct.unpack("<Q", header[:8])[0])
      if len(f.read(4)) < 4:
        return
      yield data


def _scalars_up_to(logdir: str, step: int) -> dict[tuple[int, str], list[_Scalar]]:
  """The scalar events of ``logdir``'s event files (if any) of steps up to ``step``, by step
  and split (the tag's first part); of a tag written twice at a step, the later one."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  latest = {}
  for path in sorted(glob.glob(os.path.join(logdir, _EVENT_FILES)), key=os.path.getmtime):
    for record in _records(path):
      event = event_pb2.Event.FromString(record)
      if event.step <= step:
        for value in event.summary.value:
          latest[event.step, value.tag] = _Scalar(value.tag, value.simple_value, event.step,
                                                  event.wall_time)
  by_row = {}
  for scalar in latest.values():
    by_row.setdefault((scalar.step, scalar.tag.split("/")[0]), []).append(scalar)
  return by_row


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
    step: the step the run starts (or resumes) from: rows and events of later
      steps, written after the last checkpoint by an interrupted run, are
      dropped, and a row written again for a step and split (the final
      evaluation of a finished run that is resumed) replaces the old one, so
      that every row appears once, in ``metrics.jsonl`` and in TensorBoard.
  """

  def __init__(self, workdir: str, step: int):
    self._primary = networks.is_primary()
    if self._primary:
      self._path = os.path.join(workdir, "metrics.jsonl")
      self._logdir = os.path.join(workdir, "tensorboard")
      self._rows = _rows_up_to(self._path, step)
      self._scalars = _scalars_up_to(self._logdir, step)
      self._jsonl = self._tb = None
      self._rewrite()

  def _rewrite(self) -> None:
    """The files holding the earlier rows only, open for appending: ``metrics.jsonl``
    rewritten, the earlier TensorBoard events copied into a new event file (with
    their wall times) and the older event files removed."""
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self.close()
    with open(self._path, "w") as f:
      f.writelines(self._rows.values())
    self._jsonl = open(self._path, "a")
    older = glob.glob(os.path.join(self._logdir, _EVENT_FILES))
    # A suffix of its own: the file's name would otherwise be that of an older one
    # written in the same second.
    self._tb = SummaryWriter(self._logdir, filename_suffix=f".{time.time_ns()}")
    for scalars in self._scalars.values():
      for scalar in scalars:
        self._tb.add_scalar(scalar.tag, scalar.value, scalar.step, walltime=scalar.wall_time)
    self._tb.flush()
    for path in older:
      os.remove(path)

  def write(self, step: int, split: str, metrics: Mapping[str, float]) -> None:
    """Appends the row of ``step`` and ``split`` (``train`` or ``eval``)."""
    if not self._primary:
      return
    replaced = [d.pop((step, split), None) is not None for d in (self._rows, self._scalars)]
    if any(replaced):
      self._rewrite()
    row = strict_json({"step": step, "split": split, **metrics})
    self._jsonl.write(json.dumps(row, allow_nan=False) + "\n")
    self._jsonl.flush()
    for k, v in metrics.items():
      self._tb.add_scalar(f"{split}/{k}", v, step)
    self._tb.flush()

  def close(self) -> None:
    """Closes the files (a writer that is not process 0's has none)."""
    if self._primary and self._jsonl:
      self._jsonl.close()
      self._tb.close()


def metric_row(pooled: Mapping[str, Any],
               per_network: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """The scalar metrics: pooled (the mean over networks), and for K > 1 network i's as
  ``name/i``."""
  scalars = lambda metrics: {k: float(v) for k, v in metrics.items() if not isinstance(v, Mapping)}
  row = scalars(pooled)
  if len(per_network) > 1:
    row.update({f"{k}/{i}": v for i, metrics in enumerate(per_network)
                for k, v in scalars(metrics).items()})
  return row
