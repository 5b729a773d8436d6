"""The `Batch` container and helpers shared by the synthetic task generators.

Every task of Graves (2016), sections 3.1-3.4, produces the same padded, statically shaped
`Batch`. Sequences shorter than the padded length carry zero inputs and zero
targets on the missing steps, and both masks are False there.
"""

from typing import NamedTuple

import jax

from act_jax.sequence import lengths_to_mask  # noqa: F401  (re-exported for the generators)

SPLITS = ("train", "eval", "figure")


class Batch(NamedTuple):
  """A padded minibatch of a task.

  Attributes:
    inputs: [B, T, input_size] float32 inputs, without the ACT first-step
      flag (the model appends it), or [B, T] int32 tokens (the bytes of the
      text task), which the model one-hot encodes.
    targets: [B, T, K] int32 class ids, K target slots per step; 0 where
      the step has no target.
    input_mask: [B, T] bool, True where the step exists.
    target_mask: [B, T] bool, True where the step carries a target.
    difficulty: [B] int32 per-example difficulty, defined by each task.
  """

  inputs: jax.Array
  targets: jax.Array
  input_mask: jax.Array
  target_mask: jax.Array
  difficulty: jax.Array


def batch_stream_key(seed: int, step: int | jax.Array, split: str) -> jax.Array:
  """Returns the PRNG key of one batch of a data stream.

  The key is a pure function of its arguments. The train, eval and figure
  streams are derived from different sub-keys of the seed, so they never share
  a batch (a key). They are draws from the same generators, so one example can
  occur in several: easy ones (few distinct examples) do.

  Args:
    seed: Seed of the run.
    step: Index of the batch within the stream (non-negative, < 2**32).
    split: "train", "eval" or "figure" (the difficulty figures' examples).

  Returns:
    A raw uint32 PRNG key.

  Raises:
    ValueError: If `split` is unknown or `step` is a negative Python int.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if isinstance(step, int) and not 0 <= step < 2**32:
    raise ValueError(f"step must be in [0, 2**32), got {step!r}")
  split_key = jax.random.fold_in(jax.random.PRNGKey(seed), SPLITS.index(split))
  return jax.random.fold_in(split_key, step)


def check_int(name: str, value: int, low: int, high: int | None = None) -> None:
  """Checks that an option is a Python int in [low, high].

  Args:
    name: Name of the option, used in the error message.
    value: The value to check.
    low: Smallest allowed value.
    high: Largest allowed value, or None for no upper bound.

  Raises:
    ValueError: If `value` is not an int (bools are rejected) or is out of
      range. The message names the value.
  """
  is_int = isinstance(value, int) and not isinstance(value, bool)
  if not is_int or value < low or (high is not None and value > high):
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
