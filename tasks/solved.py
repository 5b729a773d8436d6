"""When a run counts as solved: its held-out metric, smoothed over consecutive evaluations.

Fojo et al. (2018) count parity as solved once the held-out accuracy, smoothed,
reaches 98 % (Fojo et al. 2018). Here a network is solved at the first
evaluation step where the mean of its metric (sequence error, or bits per
character) over the last ``config.solved_evals`` evaluations, that one
included, is at most ``config.solved_at``; that step is its ``solved_step``.
With ``config.solved_at > 0`` the training loop stops once every network is
solved (``tasks/train.py``), and a resumed run rebuilds the history from
``metrics.jsonl``, so that stopping does not depend on where it was resumed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np


def first_solved_step(evaluations: Sequence[tuple[int, float]], solved_at: float,
                      window: int) -> int | None:
  """The first step whose last ``window`` evaluations average at most ``solved_at``.

  Args:
    evaluations: ``(step, metric)`` pairs in step order.
    solved_at: the threshold on the smoothed metric (> 0).
    window: how many consecutive evaluations are averaged (>= 1).

  Returns:
    The step of the evaluation that completes the first such window, or None.
  """
  values = [value for _, value in evaluations]
  for end in range(window, len(values) + 1):
    if np.mean(values[end - window:end]) <= solved_at:
      return evaluations[end - 1][0]
  return None


class SolvedTracker:
  """The evaluation history of K networks and the step each was solved at.

  Args:
    solved_at: the threshold on the smoothed metric; 0: never solved (no
      early stop).
    window: consecutive evaluations averaged.
    num_networks: K.
    history: earlier evaluations ``(step, [metric of network i])``, e.g. from
      :func:`eval_history`.
  """

  def __init__(self, solved_at: float, window: int, num_networks: int,
               history: Sequence[tuple[int, Sequence[float]]] = ()):
    self.solved_at, self.window = solved_at, window
    self._evaluations: list[list[tuple[int, float]]] = [[] for _ in range(num_networks)]
    self._solved_steps: list[int | None] = [None] * num_networks
    for step, values in history:
      self.add(step, values)

  def add(self, step: int, values: Sequence[float]) -> None:
    """Records one evaluation: network i's metric ``values[i]`` at ``step``; a network
    not yet solved is solved here if its last ``window`` evaluations qualify."""
    for i, (evaluations, value) in enumerate(zip(self._evaluations, values, strict=True)):
      if evaluations and evaluations[-1][0] >= step:
        continue
      evaluations.append((step, float(value)))
      if self._solved_steps[i] is None and self.solved_at > 0:
        self._solved_steps[i] = first_solved_step(evaluations[-self.window:], self.solved_at,
                                                  self.window)

  @property
  def solved_steps(self) -> list[int | None]:
    """Each network's solved step (None: not solved, or no threshold set)."""
    return list(self._solved_steps)

  @property
  def all_solved(self) -> bool:
    """Whether every network is solved (training may stop)."""
    return None not in self._solved_steps


def eval_history(workdir: str, metric: str, num_networks: int,
                 up_to_step: int) -> list[tuple[int, list[float]]]:
  """The evaluations of ``workdir/metrics.jsonl`` up to ``up_to_step``, in step order.

  Args:
    workdir: a run's workdir (no ``metrics.jsonl``: no history).
    metric: the metric's name in the rows (``sequence_error``,
      ``bits_per_character``); with K > 1 network i's is ``metric/i``.
    num_networks: K.
    up_to_step: the step the run resumes from (later rows are trained again).
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  names = [metric] if num_networks == 1 else [f"{metric}/{i}" for i in range(num_networks)]
  history = {}
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      row = json.loads(line)
      if row["split"] == "eval" and row["step"] <= up_to_step:
        history[row["step"]] = [np.nan if row[n] is None else row[n] for n in names]
  return sorted(history.items())
