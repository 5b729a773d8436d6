"""Parity task (Graves 2016, section 3.1; docs/equations.md section 12 item 6).

Each example is a single step (T = 1) holding a vector of `num_bits` elements
(64 in the paper). A number k, uniform in 1..num_bits, of its elements are set
to +1 or -1 with equal probability; the rest are 0. With the "random" layout
(the project default) the k non-zero positions are a uniformly random subset;
with the "first_k" layout they are the first k positions. The target is 1 if
the number of +1 entries is odd, else 0. The difficulty is k.

PonderNet's extrapolation split (Banino et al. 2021, section 3.1) draws k from
other ranges in training and in evaluation: the task options ``train_nonzero``
and ``eval_nonzero`` (``(low, high)``, inclusive; by default 1..num_bits
both), which :func:`split_options` turns into the generator's ``nonzero`` for
each split.

`figure_batch` gives the examples of the paper's Fig. 6: a chosen k per
example (`figure_levels`: every k of the evaluation range, 1..num_bits by
default).
"""

import functools
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from tasks.data.batch import Batch, check_int

INPUT_SIZE = 64  # paper value of num_bits; the input size is num_bits
NUM_CLASSES = 2
TARGET_SLOTS = 1
MAX_LENGTH = 1
LAYOUTS = ("random", "first_k")
FIGURE_DIFFICULTY = "non-zero bits"


def generate(
  key: jax.Array, batch_size: int, *, num_bits: int = INPUT_SIZE, layout: str = "random",
  nonzero: tuple[int, int] | None = None
) -> Batch:
  """Generates a batch of parity examples.

  Args:
    key: PRNG key.
    batch_size: Number of examples B.
    num_bits: Size of the input vector.
    layout: "random" (non-zeros at a random subset of positions) or
      "first_k" (non-zeros at the first k positions).
    nonzero: ``(low, high)``: k is uniform in low..high (inclusive); None:
      1..num_bits.

  Returns:
    A `Batch` with inputs [B, 1, num_bits] and targets [B, 1, 1].

  Raises:
    ValueError: If an option is invalid.
  """
  check_int("batch_size", batch_size, 1)
  check_int("num_bits", num_bits, 1)
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  low, high = nonzero_range("nonzero", nonzero, num_bits)
  return _generate(key, batch_size, num_bits, layout, low, high)


def nonzero_range(name: str, value: Any, num_bits: int) -> tuple[int, int]:
  """``value`` as ``(low, high)`` (None: ``(1, num_bits)``); ValueError naming ``name`` and
  the value unless it is a pair of ints with 1 <= low <= high <= num_bits."""
  if value is None:
    return 1, num_bits
  pair = tuple(value) if isinstance(value, (tuple, list)) else ()
  if not (len(pair) == 2 and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 for v in pair) and 1 <= pair[0] <= pair[1] <= num_bits):
    raise ValueError(f"{name} must be (low, high), ints with 1 <= low <= high <= num_bits = "
                     f"{num_bits}, got {value!r}")
  return int(pair[0]), int(pair[1])


def split_options(options: Mapping[str, Any], split: str) -> dict[str, Any]:
  """The generator's options for ``split`` (``"train"`` or ``"eval"``): the task options with
  ``train_nonzero`` and ``eval_nonzero`` replaced by ``nonzero``, that split's range.

  Raises:
    ValueError: naming the option, for a range that is not within 1..num_bits.
  """
  options = dict(options)
  num_bits = options.get("num_bits", INPUT_SIZE)
  check_int("num_bits", num_bits, 1)
  ranges = {name: nonzero_range(f"{name}_nonzero", options.pop(f"{name}_nonzero", None), num_bits)
            for name in ("train", "eval")}
  return {**options, "nonzero": ranges[split]}


def figure_levels(*, num_bits: int = INPUT_SIZE, layout: str = "random",
                  train_nonzero: tuple[int, int] | None = None,
                  eval_nonzero: tuple[int, int] | None = None) -> tuple[int, ...]:
  """The difficulties of Fig. 6: every number of non-zero bits k of the evaluation range
  (``eval_nonzero``; 1..num_bits by default)."""
  del layout, train_nonzero
  low, high = nonzero_range("eval_nonzero", eval_nonzero, num_bits)
  return tuple(range(low, high + 1))


def figure_batch(key: jax.Array, difficulty: jax.Array, *, num_bits: int = INPUT_SIZE,
                 layout: str = "random", train_nonzero: tuple[int, int] | None = None,
                 eval_nonzero: tuple[int, int] | None = None) -> Batch:
  """Parity examples with ``difficulty[i]`` (in 1..num_bits) non-zero bits in example i
  (the ranges are those of :func:`figure_levels`)."""
  del train_nonzero, eval_nonzero
  return _figure_batch(key, difficulty, num_bits, layout)


@functools.partial(jax.jit, static_argnames=("num_bits", "layout"))
def _figure_batch(key: jax.Array, difficulty: jax.Array, num_bits: int, layout: str) -> Batch:
  _, sign_key, position_key = jax.random.split(key, 3)
  return _with_counts(sign_key, position_key, difficulty, num_bits, layout)


@functools.partial(jax.jit, static_argnames=("batch_size", "num_bits", "layout", "low", "high"))
def _generate(key: jax.Array, batch_size: int, num_bits: int, layout: str, low: int,
              high: int) -> Batch:
  count_key, sign_key, position_key = jax.random.split(key, 3)
  count = jax.random.randint(count_key, (batch_size,), low, high + 1)
  return _with_counts(sign_key, position_key, count, num_bits, layout)


def ranks(keys: jax.Array) -> jax.Array:
  """Each key's rank in its row (0 for the smallest), ties broken by position.

  Every row of the result is a permutation of ``0..n-1``; for i.i.d. uniform 32-bit
  keys it is a uniformly random one, but for ties (probability below n² / 2³³ per
  row: 5e-7 for n = 64), which favour the earlier position. Counting the keys below
  each key ([..., n, n] comparisons) runs about 7x faster than sorting them
  (``jax.random.permutation``) on a CPU core for a batch of 128 rows of 64.

  Args:
    keys: [..., n] integers.

  Returns:
    [..., n] int32 ranks.
  """
  position = jnp.arange(keys.shape[-1])
  other, this = keys[..., None, :], keys[..., :, None]  # [..., i, j]: key j against key i
  below = (other < this) | ((other == this) & (position < position[:, None]))
  return jnp.sum(below, axis=-1, dtype=jnp.int32)


def _with_counts(sign_key: jax.Array, position_key: jax.Array, count: jax.Array, num_bits: int,
                 layout: str) -> Batch:
  """Examples with ``count[i]`` non-zero bits."""
  batch_size = count.shape[0]
  signs = jnp.where(jax.random.bernoulli(sign_key, shape=(batch_size, num_bits)), 1.0, -1.0)
  if layout == "random":
    # A uniformly random rank per position; the k lowest ranks are non-zero.
    rank = ranks(jax.random.bits(position_key, (batch_size, num_bits)))
  else:
    rank = jnp.broadcast_to(jnp.arange(num_bits), (batch_size, num_bits))
  bits = jnp.where(rank < count[:, None], signs, 0.0)
  target = jnp.sum(bits > 0, axis=1) % 2
  ones = jnp.ones((batch_size, 1), bool)
  return Batch(
    inputs=bits[:, None, :],
    targets=target[:, None, None].astype(jnp.int32),
    input_mask=ones,
    target_mask=ones,
    difficulty=count.astype(jnp.int32),
  )
