"""Stop requests of a training run: SIGINT and SIGTERM, read between compiled calls."""

from __future__ import annotations

import signal
import threading


class StopRequests:
  """SIGINT and SIGTERM as a request that the training loop reads between calls.

  The loop then stops after the current call (about half a second at most),
  saves a checkpoint and raises KeyboardInterrupt, so that no signal lands
  inside a checkpoint save. A
  second SIGINT interrupts at once. Handlers are installed only in the main
  thread (the only one that receives signals) and restored on exit.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.requested: str | None = None  # the name of the first signal received
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = signal.Signals(signum).name

  def __enter__(self) -> "StopRequests":
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
