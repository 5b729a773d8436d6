"""The synthetic tasks of Graves (2016) section 3, by name: data and output shapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax

from tasks.data import Batch, addition, logic, parity, sort


@dataclasses.dataclass(frozen=True)
class Task:
  """What the training loop needs to know about a task.

  Attributes:
    name: the task's name.
    generate: ``generate(key, batch_size, **options) -> Batch``.
    input_size: the input features per step (without the ACT flag), given the
      generator options.
    num_classes: classes per target slot.
    target_slots: simultaneous classifications per target step.
    difficulty: what ``Batch.difficulty`` counts, for tables and plots.
  """

  name: str
  generate: Callable[..., Batch]
  input_size: Callable[[Mapping[str, Any]], int]
  num_classes: Callable[[Mapping[str, Any]], int]
  target_slots: int
  difficulty: str

  def batch(self, key: jax.Array, batch_size: int, options: Mapping[str, Any]) -> Batch:
    return self.generate(key, batch_size, **options)


TASKS: dict[str, Task] = {
    "parity": Task("parity", parity.generate, lambda o: o.get("num_bits", parity.INPUT_SIZE),
                   lambda o: parity.NUM_CLASSES, parity.TARGET_SLOTS, "non-zero bits"),
    "logic": Task("logic", logic.generate, lambda o: logic.INPUT_SIZE,
                  lambda o: logic.NUM_CLASSES, logic.TARGET_SLOTS, "gates per vector (max)"),
    "addition": Task("addition", addition.generate, lambda o: addition.INPUT_SIZE,
                     lambda o: addition.NUM_CLASSES, addition.TARGET_SLOTS,
                     "digits per number (max)"),
    "sort": Task("sort", sort.generate, lambda o: sort.INPUT_SIZE,
                 lambda o: o.get("max_length", sort.MAX_LENGTH), sort.TARGET_SLOTS,
                 "numbers to sort"),
}


def get_task(name: str) -> Task:
  """The task called ``name``; ValueError naming it if there is none."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
  return TASKS[name]
