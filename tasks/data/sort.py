"""Sort task (Graves 2016, section 3.4; docs/equations.md section 12 item 8).

A count of numbers, uniform in min_length..max_length (2..15 in the paper), is
drawn from N(0, 1). They are presented one per step as [value, end_flag], with
end_flag 1 on the last number. Then come `count` zero-input steps whose
targets are the 0-based indices of the numbers in ascending order of value.
Only these output steps carry targets. A sequence therefore has 2 * count
steps and is padded to 2 * max_length. The difficulty is the count.

`figure_batch` gives the examples of the paper's Fig. 19: a chosen count per
example (`figure_levels`: min_length..max_length).
"""

import functools

import jax
import jax.numpy as jnp

from tasks.data.batch import Batch, check_int, lengths_to_mask

INPUT_SIZE = 2
MAX_LENGTH = 15  # most numbers to sort; a sequence has up to 2 * MAX_LENGTH steps
NUM_CLASSES = MAX_LENGTH
TARGET_SLOTS = 1
FIGURE_DIFFICULTY = "numbers to sort"


def generate(key: jax.Array, batch_size: int, *, min_length: int = 2, max_length: int = MAX_LENGTH) -> Batch:
  """Generates a batch of sort sequences.

  Args:
    key: PRNG key.
    batch_size: Number of sequences B.
    min_length: Fewest numbers to sort (at least 1).
    max_length: Most numbers to sort, in min_length..MAX_LENGTH.

  Returns:
    A `Batch` with inputs [B, 2 * max_length, 2] and targets
    [B, 2 * max_length, 1].

  Raises:
    ValueError: If an option is invalid.
  """
  check_int("batch_size", batch_size, 1)
  check_int("min_length", min_length, 1, MAX_LENGTH)
  check_int("max_length", max_length, min_length, MAX_LENGTH)
  return _generate(key, batch_size, min_length, max_length)


def figure_levels(*, min_length: int = 2, max_length: int = MAX_LENGTH) -> tuple[int, ...]:
  """The difficulties of Fig. 19: every count in min_length..max_length."""
  return tuple(range(min_length, max_length + 1))


@functools.partial(jax.jit, static_argnames=("min_length", "max_length"))
def figure_batch(key: jax.Array, difficulty: jax.Array, *, min_length: int = 2,
                 max_length: int = MAX_LENGTH) -> Batch:
  """Sort sequences of ``difficulty[i]`` numbers in example i, padded as the training batches."""
  del min_length
  _, value_key = jax.random.split(key)
  return _with_counts(value_key, difficulty, max_length)


@functools.partial(jax.jit, static_argnames=("batch_size", "min_length", "max_length"))
def _generate(key: jax.Array, batch_size: int, min_length: int, max_length: int) -> Batch:
  count_key, value_key = jax.random.split(key)
  count = jax.random.randint(count_key, (batch_size,), min_length, max_length + 1)
  return _with_counts(value_key, count, max_length)


def _with_counts(value_key: jax.Array, count: jax.Array, max_length: int) -> Batch:
  """Sequences of ``count[i]`` numbers, padded to ``2 * max_length`` steps."""
  batch_size = count.shape[0]
  is_number = lengths_to_mask(count, max_length)
  values = jnp.where(is_number, jax.random.normal(value_key, (batch_size, max_length)), 0.0)
  end_flag = jnp.arange(max_length) == count[:, None] - 1
  number_steps = jnp.stack([values, end_flag.astype(jnp.float32)], axis=-1)
  inputs = jnp.concatenate([number_steps, jnp.zeros_like(number_steps)], axis=1)

  order = jnp.argsort(jnp.where(is_number, values, jnp.inf), axis=1)
  output_index = jnp.arange(2 * max_length) - count[:, None]
  target_mask = (output_index >= 0) & (output_index < count[:, None])
  targets = jnp.take_along_axis(order, jnp.clip(output_index, 0, max_length - 1), axis=1)
  return Batch(
    inputs=inputs,
    targets=jnp.where(target_mask, targets, 0)[..., None].astype(jnp.int32),
    input_mask=lengths_to_mask(2 * count, 2 * max_length),
    target_mask=target_mask,
    difficulty=count.astype(jnp.int32),
  )
