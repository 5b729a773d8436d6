"""The tasks of Graves (2016) section 3, by name: their data, sizes and metric.

A task hands the training loop a :class:`BatchSource`: training batches by
step, and a held-out stream for evaluation. The synthetic tasks (parity,
logic, addition, sort) generate both from ``(seed, step, split)``; the
Wikipedia task (``text``) reads them from a byte file.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np

from tasks.data import Batch, addition, batch_stream_key, logic, parity, sort, text

SEQUENCE_ERROR = "sequence_error"  # synthetic tasks: fraction of sequences with any mistake
BITS_PER_CHARACTER = "bits_per_character"  # language modelling
METRICS = (SEQUENCE_ERROR, BITS_PER_CHARACTER)


class BatchSource(Protocol):
  """Where a run's batches come from."""

  def train(self, step: int) -> Batch:
    """The training batch of ``step`` (a pure function of the seed and step)."""

  def held_out(self, max_batches: int) -> Iterator[Batch]:
    """Up to ``max_batches`` evaluation batches, none of them a training batch.

    Synthetic tasks: batches drawn from the training distribution with keys
    that no training batch uses. The batches differ but single examples can
    recur, easy ones often (parity with 16 bits has 32 examples with k = 1).
    Text: windows of the valid split, whose bytes training never reads.
    """

  def sampler(self) -> Sampler:
    """``train`` as a pure, jittable ``(sampler_data(), seed, step) -> Batch``.

    Hashable, and equal for runs that differ only in their seed, so that the
    training loop generates every batch inside its compiled call.
    """

  def sampler_data(self) -> Any:
    """The arrays :meth:`sampler` reads (placed on the devices once), or ``()``."""


class Sampler(Protocol):
  """A pure, jittable, hashable ``(data, seed, step) -> Batch``."""

  def __call__(self, data: Any, seed: int | jax.Array, step: int | jax.Array) -> Batch:
    """The training batch of ``step`` of the run of ``seed``."""


@dataclasses.dataclass(frozen=True)
class Task:
  """What the training loop needs to know about a task.

  Attributes:
    name: the task's name.
    input_size: input features per step (without the ACT flag), given the
      task options; integer (token) inputs are one-hot encoded to this size.
    num_classes: classes per target slot, given the task options.
    target_slots: simultaneous classifications per target step.
    difficulty: what ``by_difficulty`` tables are grouped by.
    metric: the headline metric, one of :data:`METRICS`.
    check_options: raises ValueError naming a bad option (before compiling).
    source: ``source(config) -> BatchSource`` for a run's config.
    figure: the paper's evaluation set of the task's difficulty figure, or
      None (text): see :class:`FigureSet`.
  """

  name: str
  input_size: Callable[[Mapping[str, Any]], int]
  num_classes: Callable[[Mapping[str, Any]], int]
  target_slots: int
  difficulty: str
  metric: str
  check_options: Callable[[Mapping[str, Any]], None]
  source: Callable[[ml_collections.ConfigDict], BatchSource]
  figure: FigureSet | None = None


@dataclasses.dataclass(frozen=True)
class FigureSet:
  """The examples of a task's difficulty figure in the paper (Figs. 6, 10, 14, 19).

  Unlike the held-out stream (the training distribution), every difficulty
  level gets the same number of examples, drawn at that level: parity, k
  non-zero bits; logic, sequences of 5 vectors with the same gate count in
  each; addition, sequences of 3 numbers with the same digit count each; sort,
  that many numbers.

  Attributes:
    difficulty: what the levels are.
    levels: ``levels(**task_options)``, the difficulty levels.
    batch: ``batch(key, difficulty [B], **task_options) -> Batch``: example
      ``i`` at level ``difficulty[i]``.
  """

  difficulty: str
  levels: Callable[..., tuple[int, ...]]
  batch: Callable[..., Batch]

  def batches(self, options: Mapping[str, Any], per_level: int, batch_size: int,
              seed: int) -> Iterator[tuple[Batch, int]]:
    """``per_level`` examples of each level in batches of ``batch_size``.

    Yields:
      Each batch and how many of its examples count (the last batch is
      padded with examples of the first level, which do not count).
    """
    levels = np.repeat(np.asarray(self.levels(**options), np.int32), per_level)
    for i, start in enumerate(range(0, len(levels), batch_size)):
      part = levels[start:start + batch_size]
      padded = np.pad(part, (0, batch_size - len(part)), constant_values=levels[0])
      yield self.batch(batch_stream_key(seed, i, "figure"), padded, **options), len(part)


@functools.lru_cache(maxsize=None)
def _generator(generate: Callable[..., Batch], batch_size: int,
               options: tuple[tuple[str, Any], ...]) -> Callable[[jax.Array], Batch]:
  """The jitted ``key -> Batch`` of a generator, built once per size and options."""
  return jax.jit(lambda key: generate(key, batch_size, **dict(options)))


@dataclasses.dataclass(frozen=True)
class GeneratorSampler:
  """A synthetic generator's training batches as ``((), seed, step) -> Batch``."""

  generate: Callable[..., Batch]
  batch_size: int
  options: tuple[tuple[str, Any], ...]

  def __call__(self, data: Any, seed: int | jax.Array, step: int | jax.Array) -> Batch:
    del data  # generated, not read
    return self.generate(batch_stream_key(seed, step, "train"), self.batch_size,
                         **dict(self.options))


@dataclasses.dataclass(frozen=True)
class GeneratedBatches:
  """Batches of a synthetic generator, drawn from ``(seed, step, split)``.

  Attributes:
    options: the generator's options for the training batches;
    eval_options: for the held-out batches (the same, except parity's extrapolation split).
  """

  generate: Callable[..., Batch]
  options: tuple[tuple[str, Any], ...]
  eval_options: tuple[tuple[str, Any], ...]
  batch_size: int
  eval_batch_size: int
  seed: int

  def train(self, step: int) -> Batch:
    generate = _generator(self.generate, self.batch_size, self.options)
    return generate(batch_stream_key(self.seed, step, "train"))

  def held_out(self, max_batches: int) -> Iterator[Batch]:
    generate = _generator(self.generate, self.eval_batch_size, self.eval_options)
    for i in range(max_batches):
      yield generate(batch_stream_key(self.seed, i, "eval"))

  def sampler(self) -> GeneratorSampler:
    return GeneratorSampler(self.generate, self.batch_size, self.options)

  def sampler_data(self) -> tuple[()]:
    return ()


def same_options(options: Mapping[str, Any], split: str) -> dict[str, Any]:
  """The generator's options of a split: the task options, whatever the split."""
  del split
  return dict(options)


def _synthetic(name: str, module, input_size, num_classes, difficulty: str,
               split_options: Callable[[Mapping[str, Any], str], dict[str, Any]] = same_options
               ) -> Task:
  """A generated task; ``split_options(task_options, split)``: the generator's options of the
  ``"train"`` or ``"eval"`` split (ValueError naming a bad option)."""
  def generator_options(options, split):
    return tuple(sorted(split_options(options, split).items()))

  def check_options(options):
    for split in ("train", "eval"):
      generator = dict(generator_options(options, split))
      jax.eval_shape(lambda key: module.generate(key, 1, **generator), jax.random.PRNGKey(0))

  def source(config):
    options = config.task_options.to_dict()
    return GeneratedBatches(module.generate, generator_options(options, "train"),
                            generator_options(options, "eval"), config.batch_size,
                            config.eval_batch_size, config.seed)

  figure = FigureSet(module.FIGURE_DIFFICULTY, module.figure_levels, module.figure_batch)
  return Task(name, input_size, num_classes, module.TARGET_SLOTS, difficulty, SEQUENCE_ERROR,
              check_options, source, figure)


def _text_source(config: ml_collections.ConfigDict) -> text.TextBatches:
  options = config.task_options
  data = text.load_bytes(options.path, check_sha1=options.get("check_sha1", True))
  return text.TextBatches(data, window=options.window,
                          batch_size=config.batch_size,
                          eval_batch_size=config.eval_batch_size, seed=config.seed)


TASKS: dict[str, Task] = {
    "parity": _synthetic("parity", parity, lambda o: o.get("num_bits", parity.INPUT_SIZE),
                         lambda o: parity.NUM_CLASSES, "non-zero bits", parity.split_options),
    "logic": _synthetic("logic", logic, lambda o: logic.INPUT_SIZE,
                        lambda o: logic.NUM_CLASSES, "gates per vector (max)"),
    "addition": _synthetic("addition", addition, lambda o: addition.INPUT_SIZE,
                           lambda o: addition.NUM_CLASSES, "digits per number (max)"),
    "sort": _synthetic("sort", sort, lambda o: sort.INPUT_SIZE,
                       lambda o: o.get("max_length", sort.MAX_LENGTH), "numbers to sort"),
    "text": Task("text", lambda o: text.NUM_SYMBOLS, lambda o: text.NUM_SYMBOLS, 1,
                 "input character class", BITS_PER_CHARACTER, text.check_options,
                 _text_source),
}


def get_task(name: str) -> Task:
  """The task called ``name``; ValueError naming it if there is none."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
  return TASKS[name]
