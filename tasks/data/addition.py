"""Addition task (Graves 2016, section 3.3; docs/equations.md section 12 item 7).

A sequence of min_length..max_length numbers (1..5 in the paper; exactly
max_length with `fixed_length`),
one per step. Each number has D digits, D uniform in 1..max_digits, each digit
uniform in 0..9 (leading zeros allowed). The input of size 50 is 5 one-hot
10-way digit slots, most significant digit first; slots past the D-th are
zero. From the second step on, the target is the running sum of the numbers
so far, written as 6 digit classes most significant first without leading
zeros and padded after its last digit with class 10 ("*"). The first step has
no target, so a length-1 sequence has none. The difficulty is the largest
digit count D in the sequence.

`figure_batch` gives the examples of the paper's Fig. 14: sequences of 3
numbers, every number of example i with the same chosen digit count, which is
its difficulty (`figure_levels`: 1..max_digits).
"""

import functools

import jax
import jax.numpy as jnp

from tasks.data.batch import Batch, check_int, lengths_to_mask

DIGIT_SLOTS = 5
INPUT_SIZE = DIGIT_SLOTS * 10
TARGET_SLOTS = 6
BLANK = 10  # class "*": past the last digit of the sum
NUM_CLASSES = 11
MAX_LENGTH = 5
# max_length * (10**DIGIT_SLOTS - 1) must fit in TARGET_SLOTS digits.
LARGEST_MAX_LENGTH = 10
FIGURE_LENGTH = 3  # Fig. 14: all sequences have length 3
FIGURE_DIFFICULTY = "digits per number (sequences of 3 numbers)"


def generate(
  key: jax.Array,
  batch_size: int,
  *,
  min_length: int = 1,
  max_length: int = MAX_LENGTH,
  max_digits: int = DIGIT_SLOTS,
  fixed_length: bool = False,
) -> Batch:
  """Generates a batch of addition sequences.

  Args:
    key: PRNG key.
    batch_size: Number of sequences B.
    min_length: Shortest sequence length (1 in the paper; 2 in aakhundov's
      downsized runs, where every sequence has a target).
    max_length: Largest sequence length, in min_length..10 (so sums fit in 6
      digits).
    max_digits: Largest digit count D of a number (at most 5).
    fixed_length: If True every sequence has max_length numbers; otherwise
      lengths are uniform in min_length..max_length.

  Returns:
    A `Batch` with inputs [B, max_length, 50] and targets [B, max_length, 6].

  Raises:
    ValueError: If an option is invalid.
  """
  check_int("batch_size", batch_size, 1)
  check_int("min_length", min_length, 1, LARGEST_MAX_LENGTH)
  check_int("max_length", max_length, min_length, LARGEST_MAX_LENGTH)
  check_int("max_digits", max_digits, 1, DIGIT_SLOTS)
  if not isinstance(fixed_length, bool):
    raise ValueError(f"fixed_length must be a bool, got {fixed_length!r}")
  return _generate(key, batch_size, min_length, max_length, max_digits, fixed_length)


def _sum_to_classes(total: jax.Array) -> jax.Array:
  """Writes non-negative sums as digit classes.

  Args:
    total: [...] int32 sums below 10**TARGET_SLOTS.

  Returns:
    [..., TARGET_SLOTS] int32 digits, most significant first, without
    leading zeros, followed by BLANK.
  """
  powers = 10 ** jnp.arange(1, TARGET_SLOTS)
  num_digits = 1 + jnp.sum(total[..., None] >= powers, axis=-1)
  exponent = num_digits[..., None] - 1 - jnp.arange(TARGET_SLOTS)
  digit = total[..., None] // 10 ** jnp.maximum(exponent, 0) % 10
  return jnp.where(exponent >= 0, digit, BLANK)


def figure_levels(*, min_length: int = 1, max_length: int = MAX_LENGTH,
                  max_digits: int = DIGIT_SLOTS, fixed_length: bool = False) -> tuple[int, ...]:
  """The difficulties of Fig. 14: digit counts 1..max_digits."""
  del min_length, max_length, fixed_length
  return tuple(range(1, max_digits + 1))


@functools.partial(jax.jit, static_argnames=("min_length", "max_length", "max_digits", "fixed_length"))
def figure_batch(key: jax.Array, difficulty: jax.Array, *, min_length: int = 1,
                 max_length: int = MAX_LENGTH, max_digits: int = DIGIT_SLOTS,
                 fixed_length: bool = False) -> Batch:
  """Sequences of FIGURE_LENGTH numbers; every number of example i has ``difficulty[i]`` digits."""
  del min_length, max_length, max_digits, fixed_length
  _, _, digit_key = jax.random.split(key, 3)
  shape = (difficulty.shape[0], FIGURE_LENGTH)
  return _with_digit_counts(digit_key, jnp.ones(shape, bool),
                            jnp.broadcast_to(difficulty[:, None], shape))


@functools.partial(jax.jit, static_argnames=("batch_size", "min_length", "max_length", "max_digits",
                                             "fixed_length"))
def _generate(key: jax.Array, batch_size: int, min_length: int, max_length: int, max_digits: int,
              fixed_length: bool) -> Batch:
  length_key, count_key, digit_key = jax.random.split(key, 3)
  shape = (batch_size, max_length)
  if fixed_length:
    length = jnp.full((batch_size,), max_length)
  else:
    length = jax.random.randint(length_key, (batch_size,), min_length, max_length + 1)
  input_mask = lengths_to_mask(length, max_length)
  num_digits = jnp.where(input_mask, jax.random.randint(count_key, shape, 1, max_digits + 1), 0)
  return _with_digit_counts(digit_key, input_mask, num_digits)


def _with_digit_counts(digit_key: jax.Array, input_mask: jax.Array, num_digits: jax.Array) -> Batch:
  """Sequences with ``num_digits[i, t]`` digits in number t of example i, ``input_mask`` steps."""
  shape = num_digits.shape
  max_length = shape[1]
  digits = jax.random.randint(digit_key, shape + (DIGIT_SLOTS,), 0, 10)
  used = jnp.arange(DIGIT_SLOTS) < num_digits[..., None]

  exponent = jnp.maximum(num_digits[..., None] - 1 - jnp.arange(DIGIT_SLOTS), 0)
  numbers = jnp.sum(jnp.where(used, digits * 10**exponent, 0), axis=-1)
  target_mask = input_mask & (jnp.arange(max_length) >= 1)
  targets = _sum_to_classes(jnp.cumsum(numbers, axis=1))
  inputs = jax.nn.one_hot(digits, 10) * used[..., None]
  return Batch(
    inputs=inputs.reshape(shape + (INPUT_SIZE,)),
    targets=jnp.where(target_mask[..., None], targets, 0).astype(jnp.int32),
    input_mask=input_mask,
    target_mask=target_mask,
    difficulty=jnp.max(num_digits, axis=1).astype(jnp.int32),
  )
