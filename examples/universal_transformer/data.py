"""Binary addition as a token sequence: a task whose depth varies per position.

Two ``num_bits``-bit numbers ``a`` and ``b`` are read least-significant bit
first, one token per bit position: token ``a_i + 2 b_i``. The target at
position ``i`` is bit ``i`` of ``a + b``; one extra position (token 0) holds
the carry-out, so an example has ``num_bits + 1`` valid positions, padded to
``max_bits + 1``.

Bit ``i`` of the sum is ``a_i xor b_i xor c_i``, and the carry ``c_i`` is
decided by the nearest position below ``i`` where ``a_j = b_j`` (carry
generated or killed); positions in between, where ``a_j != b_j``, only pass
it on. A model that moves information one position per layer needs about
``chain + 1`` layers at position ``i``, where ``chain`` is the number of such
propagating positions directly below ``i``; :attr:`Batch.carry_chain` records
it. Chains are short on average (half the positions propagate) but reach 5-8
in many 24-bit examples, so the depth a position needs varies per position
and per example.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

VOCAB_SIZE = 4  # a_i + 2 b_i
NUM_CLASSES = 2


class Batch(NamedTuple):
  """A batch of additions, ``[batch, max_bits + 1]`` each.

  Attributes:
    tokens: int32 ``a_i + 2 b_i`` (0 at the carry-out position and padding).
    targets: int32 bit ``i`` of ``a + b``.
    valid: bool, True at the ``num_bits + 1`` positions of the example.
    carry_chain: int32, the number of carry-propagating positions
      (``a_j != b_j``) directly below position ``i``.
  """

  tokens: jax.Array
  targets: jax.Array
  valid: jax.Array
  carry_chain: jax.Array


@functools.partial(jax.jit, static_argnames=("batch_size", "min_bits", "max_bits"))
def generate(key: jax.Array, batch_size: int, min_bits: int, max_bits: int) -> Batch:
  """Random additions, ``num_bits`` uniform in ``[min_bits, max_bits]``, bits uniform."""
  length_key, a_key, b_key = jax.random.split(key, 3)
  num_bits = jax.random.randint(length_key, (batch_size, 1), min_bits, max_bits + 1)
  positions = jnp.arange(max_bits + 1)
  is_operand = positions < num_bits
  a = jax.random.bernoulli(a_key, 0.5, is_operand.shape) & is_operand
  b = jax.random.bernoulli(b_key, 0.5, is_operand.shape) & is_operand

  def ripple(carry_and_chain, bits):
    carry, chain = carry_and_chain
    a_i, b_i = bits
    propagates = a_i != b_i
    next_carry = (a_i & b_i) | (propagates & carry)
    next_chain = jnp.where(propagates, chain + 1, 0)
    return (next_carry, next_chain), (a_i ^ b_i ^ carry, chain)

  zeros = jnp.zeros(batch_size, bool), jnp.zeros(batch_size, jnp.int32)
  _, (sum_bits, chain) = jax.lax.scan(ripple, zeros, (a.T, b.T))
  return Batch(tokens=(a + 2 * b).astype(jnp.int32),
               targets=sum_bits.T.astype(jnp.int32),
               valid=positions <= num_bits,
               carry_chain=chain.T)
