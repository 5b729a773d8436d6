"""Stop requests of a training run: SIGINT, SIGTERM and the time budget, agreed by all processes."""

from __future__ import annotations

import signal
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

TIME_BUDGET = "time budget"  # the reason to stop once config.time_budget_minutes is spent
# Every reason, as the codes that processes exchange; a larger code wins.
_REASONS = (None, TIME_BUDGET, "SIGTERM", "SIGINT")


class StopRequests:
  """SIGINT, SIGTERM and the time budget as requests that the training loop reads between calls.

  The loop asks :meth:`agree` after every compiled call. After a signal it
  stops (about half a second later at most), saves a checkpoint and raises
  KeyboardInterrupt, so that no signal lands inside a checkpoint save; once
  the time budget is spent it ends as if finished. In a multi-host run every
  process asks at the same point, and every process gets the same answer: a
  request that reaches one process (a preempted host's SIGTERM, its clock)
  stops them all at the same step. A second SIGINT interrupts at once.
  Handlers are installed only in the main thread (the only one that receives
  signals) and restored on exit.

  Args:
    time_budget_minutes: > 0: stop this long after entering; 0: no budget.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self, time_budget_minutes: float = 0.0):
    self.requested: str | None = None  # the agreed reason to stop, once there is one
    self._budget_seconds = 60 * time_budget_minutes
    self._signal: str | None = None  # the name of the first signal this process received
    self._start = 0.0
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self._signal and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self._signal = signal.Signals(signum).name

  def agree(self) -> str | None:
    """The reason to stop now, the same in every process (None: go on).

    This process's request (a signal, else the spent time budget) combined with
    every other process's (a collective call: every process must make it, at
    the same step); a signal outranks the time budget.
    """
    spent = self._budget_seconds > 0 and time.time() - self._start > self._budget_seconds
    code = _REASONS.index(self._signal or (TIME_BUDGET if spent else None))
    if jax.process_count() > 1:
      code = int(np.max(multihost_utils.process_allgather(np.int32(code))))
    self.requested = _REASONS[code]
    return self.requested

  @property
  def interrupted(self) -> bool:
    """Whether the agreed reason is a signal (the run stops without finishing)."""
    return self.requested in ("SIGINT", "SIGTERM")

  def __enter__(self) -> "StopRequests":
    self._start = time.time()
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
