"""Logic task (Graves 2016, section 3.2, Table 1; docs/equations.md section 12 item 9).

A sequence of 1..max_length vectors of size 102. Element 0 holds b_0 and
element 1 holds b_1; the other 100 elements are 10 chunks of 10. For each
vector a gate count B is drawn uniformly in 1..max_gates, and the first B
chunks one-hot encode gate ids drawn uniformly in 1..10 (id g sets element
g - 1 of its chunk; ids follow the order of `TRUTH_TABLE`); the other chunks
are zero. The target of a vector is the bit b_{B+1} of the recursion
b_{i+1} = T_i(b_i, b_{i-1}), where T_i is the gate of chunk i applied to
P = b_i, Q = b_{i-1}.

The first vector holds random b_0 and b_1. Later vectors hold 0 in element 0
and a fresh random b_1; their b_0 is the previous vector's target, which the
network has to remember. Every existing step carries a target. The difficulty
is the largest gate count B over the vectors of the sequence.

`figure_batch` gives the examples of the paper's Fig. 10: sequences of 5
vectors, every vector of example i with the same chosen gate count, which is
its difficulty (`figure_levels`: 1..max_gates).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from tasks.data.batch import Batch, check_int, lengths_to_mask

NUM_GATES = 10  # gate ids 1..10; also the number of chunks per vector
INPUT_SIZE = 2 + NUM_GATES * NUM_GATES
NUM_CLASSES = 2
TARGET_SLOTS = 1
MAX_LENGTH = 10
FIGURE_LENGTH = 5  # Fig. 10: all sequences have length 5
FIGURE_DIFFICULTY = "gates per vector (sequences of 5 vectors)"

# Table 1 of the paper: the output of each gate for (P, Q) = TT, TF, FT, FF.
TRUTH_TABLE = (
  (0, 0, 0, 1),  # 1: NOR
  (0, 0, 1, 0),  # 2: Xq
  (0, 1, 0, 0),  # 3: ABJ
  (0, 1, 1, 0),  # 4: XOR
  (0, 1, 1, 1),  # 5: NAND
  (1, 0, 0, 0),  # 6: AND
  (1, 0, 0, 1),  # 7: XNOR
  (1, 0, 1, 1),  # 8: if/then
  (1, 1, 0, 1),  # 9: then/if
  (1, 1, 1, 0),  # 10: OR
)


def generate(
  key: jax.Array, batch_size: int, *, max_length: int = MAX_LENGTH, max_gates: int = NUM_GATES
) -> Batch:
  """Generates a batch of logic sequences.

  Args:
    key: PRNG key.
    batch_size: Number of sequences B.
    max_length: Largest sequence length; lengths are uniform in 1..max_length.
    max_gates: Largest gate count per vector (at most 10); counts are
      uniform in 1..max_gates.

  Returns:
    A `Batch` with inputs [B, max_length, 102] and targets [B, max_length, 1].

  Raises:
    ValueError: If an option is invalid.
  """
  check_int("batch_size", batch_size, 1)
  check_int("max_length", max_length, 1)
  check_int("max_gates", max_gates, 1, NUM_GATES)
  return _generate(key, batch_size, max_length, max_gates)


def _apply_gates(b_prev: jax.Array, b_cur: jax.Array, gates: jax.Array, used: jax.Array) -> jax.Array:
  """Runs the gate recursion of one step for a batch.

  Args:
    b_prev: [B] int32 bit b_0.
    b_cur: [B] int32 bit b_1.
    gates: [B, NUM_GATES] int32 gate ids in 1..10.
    used: [B, NUM_GATES] bool, True on the first B chunks.

  Returns:
    [B] int32 bit b_{B+1}.
  """
  table = jnp.array(TRUTH_TABLE, jnp.int32)
  for chunk in range(NUM_GATES):
    active = used[:, chunk]  # the used chunks come first; later ones leave the bits as they are
    b_next = table[gates[:, chunk] - 1, 3 - 2 * b_cur - b_prev]  # column of (P, Q)
    b_prev, b_cur = jnp.where(active, b_cur, b_prev), jnp.where(active, b_next, b_cur)
  return b_cur


def figure_levels(*, max_length: int = MAX_LENGTH, max_gates: int = NUM_GATES) -> tuple[int, ...]:
  """The difficulties of Fig. 10: gate counts 1..max_gates."""
  del max_length
  return tuple(range(1, max_gates + 1))


@functools.partial(jax.jit, static_argnames=("max_length", "max_gates"))
def figure_batch(key: jax.Array, difficulty: jax.Array, *, max_length: int = MAX_LENGTH,
                 max_gates: int = NUM_GATES) -> Batch:
  """Sequences of FIGURE_LENGTH vectors; every vector of example i has ``difficulty[i]`` gates."""
  del max_length, max_gates
  _, _, gate_key, b0_key, b1_key = jax.random.split(key, 5)
  shape = (difficulty.shape[0], FIGURE_LENGTH)
  gate_count = jnp.broadcast_to(difficulty[:, None], shape)
  return _with_gate_counts(gate_key, b0_key, b1_key, jnp.ones(shape, bool), gate_count)


@functools.partial(jax.jit, static_argnames=("batch_size", "max_length", "max_gates"))
def _generate(key: jax.Array, batch_size: int, max_length: int, max_gates: int) -> Batch:
  length_key, count_key, gate_key, b0_key, b1_key = jax.random.split(key, 5)
  shape = (batch_size, max_length)
  input_mask = lengths_to_mask(jax.random.randint(length_key, (batch_size,), 1, max_length + 1), max_length)
  gate_count = jax.random.randint(count_key, shape, 1, max_gates + 1)
  return _with_gate_counts(gate_key, b0_key, b1_key, input_mask, gate_count)


def _with_gate_counts(gate_key: jax.Array, b0_key: jax.Array, b1_key: jax.Array,
                      input_mask: jax.Array, gate_count: jax.Array) -> Batch:
  """Sequences with ``gate_count[i, t]`` gates in vector t of example i, ``input_mask`` steps."""
  shape = gate_count.shape
  batch_size = shape[0]
  gates = jax.random.randint(gate_key, shape + (NUM_GATES,), 1, NUM_GATES + 1)
  used = jnp.arange(NUM_GATES) < gate_count[..., None]
  first_b0 = jax.random.bernoulli(b0_key, shape=(batch_size,)).astype(jnp.int32)
  b1 = jax.random.bernoulli(b1_key, shape=shape).astype(jnp.int32)

  def step(b0, step_inputs):
    target = _apply_gates(b0, *step_inputs)
    return target, target

  _, targets = lax.scan(step, first_b0, (b1.T, gates.swapaxes(0, 1), used.swapaxes(0, 1)))
  targets = targets.T

  b0 = jnp.zeros(shape, jnp.int32).at[:, 0].set(first_b0)
  chunks = jax.nn.one_hot(gates - 1, NUM_GATES) * used[..., None]
  inputs = jnp.concatenate(
    [b0[..., None], b1[..., None], chunks.reshape(shape + (NUM_GATES * NUM_GATES,))], axis=-1
  )
  return Batch(
    inputs=jnp.where(input_mask[..., None], inputs, 0.0).astype(jnp.float32),
    targets=jnp.where(input_mask, targets, 0)[..., None],
    input_mask=input_mask,
    target_mask=input_mask,
    difficulty=jnp.max(jnp.where(input_mask, gate_count, 0), axis=1),
  )
