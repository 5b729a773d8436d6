"""Tests of the synthetic task generators in `tasks.data`.

Each task is checked against a brute-force decoder that recomputes the targets
from the inputs alone, against distribution bounds that a wrong sampler would
fail, for deterministic keys, and for option validation.
"""

import re

import jax
import numpy as np
import pytest

from tasks.data import addition, batch_stream_key, logic, parity, sort

BATCH = 2048


def _numpy(batch):
  return type(batch)(*(np.asarray(x) for x in batch))


def _check_uniform(samples, low, high):
  """Asserts that integer samples cover low..high and pass a chi-square bound."""
  values, counts = np.unique(samples, return_counts=True)
  assert values.tolist() == list(range(low, high + 1))
  expected = len(samples) / len(values)
  chi2 = np.sum((counts - expected) ** 2 / expected)
  dof = len(values) - 1
  assert chi2 < dof + 6 * np.sqrt(2 * dof), (chi2, counts)


def _check_padding(batch, lengths):
  """Asserts prefix input masks of the given lengths and zeros past them."""
  steps = batch.input_mask.shape[1]
  np.testing.assert_array_equal(batch.input_mask, np.arange(steps) < lengths[:, None])
  assert not batch.inputs[~batch.input_mask].any()
  assert not batch.targets[~batch.target_mask].any()
  assert not (batch.target_mask & ~batch.input_mask).any()


# ---------------------------------------------------------------- parity


@pytest.fixture(scope="module")
def parity_random():
  return _numpy(parity.generate(batch_stream_key(1, 0, "train"), BATCH))


@pytest.fixture(scope="module")
def parity_first_k():
  return _numpy(parity.generate(batch_stream_key(1, 0, "train"), BATCH, layout="first_k"))


@pytest.mark.parametrize("layout", ["random", "first_k"])
def test_parity_matches_brute_force(layout, parity_random, parity_first_k):
  batch = parity_random if layout == "random" else parity_first_k
  assert batch.inputs.shape == (BATCH, 1, parity.INPUT_SIZE)
  assert batch.targets.shape == (BATCH, 1, parity.TARGET_SLOTS)
  assert batch.input_mask.all() and batch.target_mask.all()
  for bits, target, difficulty in zip(batch.inputs[:, 0], batch.targets[:, 0, 0], batch.difficulty):
    assert set(bits.tolist()) <= {-1.0, 0.0, 1.0}
    plus_ones = sum(1 for b in bits if b == 1.0)
    assert target == plus_ones % 2
    assert difficulty == sum(1 for b in bits if b != 0.0)


@pytest.mark.parametrize("layout", ["random", "first_k"])
def test_parity_distribution(layout, parity_random, parity_first_k):
  batch = parity_random if layout == "random" else parity_first_k
  bits = batch.inputs[:, 0]
  _check_uniform(batch.difficulty, 1, 64)
  nonzero = bits[bits != 0]
  assert abs(np.mean(nonzero > 0) - 0.5) < 0.02
  assert abs(batch.targets.mean() - 0.5) < 0.05


def test_parity_positions(parity_random, parity_first_k):
  k = parity_first_k.difficulty[:, None]
  np.testing.assert_array_equal(parity_first_k.inputs[:, 0] != 0, np.arange(64) < k)
  # Random layout: each position is non-zero with probability E[k] / 64.
  frequency = (parity_random.inputs[:, 0] != 0).mean(axis=0)
  assert np.all(np.abs(frequency - 32.5 / 64) < 0.06), frequency


def test_parity_random_positions_are_a_uniform_subset():
  """With k = 2 of 4 bits, each of the 6 position pairs is drawn about equally often."""
  difficulty = np.full(6000, 2, np.int32)
  batch = _numpy(parity.figure_batch(batch_stream_key(3, 0, "figure"), difficulty, num_bits=4))
  pairs, counts = np.unique(batch.inputs[:, 0] != 0, axis=0, return_counts=True)
  assert (pairs.sum(axis=1) == 2).all() and len(pairs) == 6
  assert np.all(np.abs(counts - 1000) < 120), counts  # about 4 standard deviations


def test_parity_ranks_break_ties_by_position():
  keys = np.array([[5, 3, 5, 1, 3], [0, 0, 0, 0, 0]], np.uint32)
  np.testing.assert_array_equal(parity.ranks(keys), [[3, 1, 4, 0, 2], [0, 1, 2, 3, 4]])


def test_parity_num_bits():
  batch = _numpy(parity.generate(batch_stream_key(1, 0, "train"), 512, num_bits=3))
  assert batch.inputs.shape == (512, 1, 3)
  _check_uniform(batch.difficulty, 1, 3)


@pytest.mark.parametrize("layout", ["random", "first_k"])
def test_parity_extrapolation_split_draws_its_counts_and_keeps_the_labels(layout):
  options = {"num_bits": 96, "layout": layout, "train_nonzero": (1, 48),
             "eval_nonzero": [49, 96]}  # a list, as read back from config.json
  for split, (low, high) in (("train", (1, 48)), ("eval", (49, 96))):
    generator = parity.split_options(options, split)
    assert generator == {"num_bits": 96, "layout": layout, "nonzero": (low, high)}
    batch = _numpy(parity.generate(batch_stream_key(2, 0, split), BATCH, **generator))
    bits = batch.inputs[:, 0]
    np.testing.assert_array_equal((bits != 0).sum(axis=1), batch.difficulty)
    _check_uniform(batch.difficulty, low, high)
    np.testing.assert_array_equal(batch.targets[:, 0, 0], (bits > 0).sum(axis=1) % 2)
    assert abs(batch.targets.mean() - 0.5) < 0.05
  assert parity.figure_levels(**options) == tuple(range(49, 97))
  # Without the options, both splits span 1..num_bits and draw the batches they always did.
  default = parity.split_options({"num_bits": 64}, "eval")
  assert default == {"num_bits": 64, "nonzero": (1, 64)}
  for a, b in zip(parity.generate(batch_stream_key(1, 0, "train"), 64, **default),
                  parity.generate(batch_stream_key(1, 0, "train"), 64)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(("option", "value"), [
    ("train_nonzero", (0, 48)), ("eval_nonzero", (49, 97)), ("train_nonzero", (10, 5)),
    ("eval_nonzero", 49), ("train_nonzero", (1, 2, 3)), ("eval_nonzero", (1.0, 5)),
    ("train_nonzero", (True, 5)),
])
def test_parity_bad_nonzero_range_names_the_option_and_value(option, value):
  with pytest.raises(ValueError, match=(f"^{option} must be .* num_bits = 96, "
                                        f"got {re.escape(repr(value))}$")):
    parity.split_options({"num_bits": 96, option: value}, "train")


# ---------------------------------------------------------------- logic

# Gate id -> boolean function of (P, Q) = (b_i, b_{i-1}), named as in Table 1.
LOGIC_GATES = {
  1: lambda p, q: not (p or q),  # NOR
  2: lambda p, q: (not p) and q,  # Xq
  3: lambda p, q: p and not q,  # ABJ
  4: lambda p, q: p != q,  # XOR
  5: lambda p, q: not (p and q),  # NAND
  6: lambda p, q: p and q,  # AND
  7: lambda p, q: p == q,  # XNOR
  8: lambda p, q: (not p) or q,  # if/then
  9: lambda p, q: p or not q,  # then/if
  10: lambda p, q: p or q,  # OR
}


def _decode_logic_step(vector):
  """Returns (b0, b1, gate ids) of one input vector; chunks must be one-hot."""
  assert set(vector.tolist()) <= {0.0, 1.0}
  chunks = vector[2:].reshape(10, 10)
  used = chunks.sum(axis=1)
  assert set(used.tolist()) <= {0.0, 1.0}
  gates = [int(np.argmax(chunk)) + 1 for chunk in chunks if chunk.sum() == 1]
  assert used[: len(gates)].all(), "used chunks must come first"
  return int(vector[0]), int(vector[1]), gates


@pytest.fixture(scope="module")
def logic_batch():
  return _numpy(logic.generate(batch_stream_key(2, 0, "train"), BATCH))


def test_logic_matches_brute_force(logic_batch):
  batch = logic_batch
  assert batch.inputs.shape == (BATCH, 10, logic.INPUT_SIZE)
  lengths = batch.input_mask.sum(axis=1)
  _check_padding(batch, lengths)
  np.testing.assert_array_equal(batch.target_mask, batch.input_mask)
  for inputs, targets, length, difficulty in zip(batch.inputs, batch.targets, lengths, batch.difficulty):
    previous_target = None
    max_gates = 0
    for t in range(length):
      b0, b1, gates = _decode_logic_step(inputs[t])
      if t == 0:
        bits = [b0, b1]
      else:
        assert b0 == 0
        bits = [previous_target, b1]
      for gate in gates:
        bits.append(int(LOGIC_GATES[gate](bool(bits[-1]), bool(bits[-2]))))
      assert targets[t, 0] == bits[-1]
      previous_target = bits[-1]
      max_gates = max(max_gates, len(gates))
    assert difficulty == max_gates


def test_logic_distribution(logic_batch):
  batch = logic_batch
  mask = batch.input_mask
  _check_uniform(mask.sum(axis=1), 1, 10)
  chunks = batch.inputs[..., 2:].reshape(BATCH, 10, 10, 10)
  gate_counts = chunks.sum(axis=(2, 3))[mask]
  _check_uniform(gate_counts, 1, 10)
  gate_ids = np.argmax(chunks, axis=-1)[chunks.sum(axis=-1) == 1] + 1
  _check_uniform(gate_ids, 1, 10)
  assert abs(batch.inputs[:, 0, 0].mean() - 0.5) < 0.05
  assert abs(batch.inputs[..., 1][mask].mean() - 0.5) < 0.03
  assert abs(batch.targets[mask].mean() - 0.5) < 0.05


def test_logic_options():
  batch = _numpy(logic.generate(batch_stream_key(2, 0, "train"), 512, max_length=3, max_gates=2))
  assert batch.inputs.shape == (512, 3, logic.INPUT_SIZE)
  _check_uniform(batch.input_mask.sum(axis=1), 1, 3)
  assert np.unique(batch.difficulty).tolist() == [1, 2]
  _check_uniform(batch.inputs[..., 2:].sum(axis=-1)[batch.input_mask].astype(int), 1, 2)


# ---------------------------------------------------------------- addition


def _decode_number(vector):
  """Returns the digit string of one input vector; slots must be one-hot."""
  assert set(vector.tolist()) <= {0.0, 1.0}
  slots = vector.reshape(5, 10)
  used = slots.sum(axis=1)
  assert set(used.tolist()) <= {0.0, 1.0}
  digits = "".join(str(int(np.argmax(slot))) for slot in slots if slot.sum() == 1)
  assert used[: len(digits)].all(), "used slots must come first"
  return digits


@pytest.fixture(scope="module")
def addition_batch():
  return _numpy(addition.generate(batch_stream_key(3, 0, "train"), BATCH))


def test_addition_matches_brute_force(addition_batch):
  batch = addition_batch
  assert batch.inputs.shape == (BATCH, 5, addition.INPUT_SIZE)
  assert batch.targets.shape == (BATCH, 5, addition.TARGET_SLOTS)
  lengths = batch.input_mask.sum(axis=1)
  _check_padding(batch, lengths)
  np.testing.assert_array_equal(batch.target_mask[:, 1:], batch.input_mask[:, 1:])
  assert not batch.target_mask[:, 0].any()
  for inputs, targets, length, difficulty in zip(batch.inputs, batch.targets, lengths, batch.difficulty):
    total = 0
    max_digits = 0
    for t in range(length):
      digits = _decode_number(inputs[t])
      assert 1 <= len(digits) <= 5
      total += int(digits)
      max_digits = max(max_digits, len(digits))
      if t > 0:
        expected = [int(c) for c in str(total)] + [10] * (6 - len(str(total)))
        assert targets[t].tolist() == expected
    assert difficulty == max_digits


def test_addition_distribution(addition_batch):
  batch = addition_batch
  mask = batch.input_mask
  _check_uniform(mask.sum(axis=1), 1, 5)
  slots = batch.inputs.reshape(BATCH, 5, 5, 10)
  _check_uniform(slots.sum(axis=(2, 3))[mask].astype(int), 1, 5)
  _check_uniform(np.argmax(slots, axis=-1)[slots.sum(axis=-1) == 1], 0, 9)


def test_addition_fixed_length():
  batch = _numpy(addition.generate(batch_stream_key(3, 0, "train"), 512, max_length=3, fixed_length=True))
  assert batch.input_mask.shape == (512, 3) and batch.input_mask.all()
  np.testing.assert_array_equal(batch.target_mask, np.broadcast_to([False, True, True], (512, 3)))


def test_addition_min_length():
  batch = _numpy(addition.generate(batch_stream_key(3, 0, "train"), BATCH, min_length=2))
  _check_uniform(batch.input_mask.sum(axis=1), 2, 5)
  assert batch.target_mask.any(axis=1).all()  # every sequence has a target


# ---------------------------------------------------------------- sort


@pytest.fixture(scope="module")
def sort_batch():
  return _numpy(sort.generate(batch_stream_key(4, 0, "train"), BATCH))


def test_sort_matches_brute_force(sort_batch):
  batch = sort_batch
  assert batch.inputs.shape == (BATCH, 30, sort.INPUT_SIZE)
  for inputs, targets, input_mask, target_mask, difficulty in zip(*batch):
    count = int(np.flatnonzero(inputs[:, 1])[0]) + 1
    assert inputs[:, 1].sum() == 1
    values = inputs[:count, 0]
    assert not inputs[count:].any()
    np.testing.assert_array_equal(input_mask, np.arange(30) < 2 * count)
    np.testing.assert_array_equal(target_mask, (np.arange(30) >= count) & input_mask)
    np.testing.assert_array_equal(targets[count : 2 * count, 0], np.argsort(values, kind="stable"))
    assert not targets[~target_mask].any()
    assert difficulty == count


def test_sort_distribution(sort_batch):
  batch = sort_batch
  _check_uniform(batch.difficulty, 2, 15)
  values = batch.inputs[..., 0][np.arange(30) < batch.difficulty[:, None]]
  assert abs(values.mean()) < 0.04
  assert abs(values.std() - 1.0) < 0.03
  assert abs(np.mean(np.abs(values) < 1.0) - 0.6827) < 0.02


def test_sort_options():
  batch = _numpy(sort.generate(batch_stream_key(4, 0, "train"), 512, min_length=3, max_length=5))
  assert batch.inputs.shape == (512, 10, sort.INPUT_SIZE)
  _check_uniform(batch.difficulty, 3, 5)
  assert batch.targets.max() == 4


# ---------------------------------------------------------------- all tasks

TASKS = {"parity": parity, "logic": logic, "addition": addition, "sort": sort}


@pytest.mark.parametrize("task", TASKS)
def test_deterministic_streams(task):
  generate = TASKS[task].generate

  def batch(seed, step, split):
    return _numpy(generate(batch_stream_key(seed, step, split), BATCH))  # reuses the compiled config

  reference = batch(7, 3, "train")
  for same, other in zip(reference, batch(7, 3, "train")):
    np.testing.assert_array_equal(same, other)
  for changed in (batch(7, 4, "train"), batch(7, 3, "eval"), batch(8, 3, "train")):
    assert not np.array_equal(reference.inputs, changed.inputs)


def test_stream_keys():
  train = np.asarray(batch_stream_key(0, 5, "train"))
  np.testing.assert_array_equal(train, np.asarray(batch_stream_key(0, 5, "train")))
  keys = {
    tuple(np.asarray(batch_stream_key(0, step, split)).tolist())
    for step in range(50)
    for split in ("train", "eval")
  }
  assert len(keys) == 100
  with pytest.raises(ValueError, match="'test'"):
    batch_stream_key(0, 5, "test")
  with pytest.raises(ValueError, match="got -1"):
    batch_stream_key(0, -1, "train")


@pytest.mark.parametrize("task", TASKS)
def test_usable_under_jit(task):
  generate = TASKS[task].generate
  jitted = jax.jit(generate, static_argnames=("batch_size",))
  batch = jitted(batch_stream_key(0, 0, "eval"), batch_size=BATCH)
  direct = generate(batch_stream_key(0, 0, "eval"), BATCH)
  for a, b in zip(batch, direct):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
  ("generate", "options", "bad"),
  [
    (parity.generate, {"batch_size": 0}, "0"),
    (parity.generate, {"num_bits": 0}, "0"),
    (parity.generate, {"layout": "diagonal"}, "'diagonal'"),
    (parity.generate, {"num_bits": 8, "nonzero": (0, 8)}, "(0, 8)"),
    (logic.generate, {"max_length": 0}, "0"),
    (logic.generate, {"max_gates": 11}, "11"),
    (logic.generate, {"batch_size": 2.5}, "2.5"),
    (addition.generate, {"max_digits": 6}, "6"),
    (addition.generate, {"max_length": 11}, "11"),
    (addition.generate, {"fixed_length": "yes"}, "'yes'"),
    (addition.generate, {"min_length": 4, "max_length": 3}, "3"),
    (sort.generate, {"max_length": 16}, "16"),
    (sort.generate, {"min_length": 0}, "0"),
    (sort.generate, {"min_length": 5, "max_length": 4}, "4"),
  ],
)
def test_bad_options_raise(generate, options, bad):
  options = {"batch_size": 8, **options}
  with pytest.raises(ValueError, match=f"got {re.escape(bad)}$"):
    generate(batch_stream_key(0, 0, "train"), **options)


# ---------------------------------------------------------------- difficulty figures' examples


def _figure_batch(module, levels, per_level=3, **options):
  difficulty = np.repeat(np.asarray(levels, np.int32), per_level)
  return _numpy(module.figure_batch(batch_stream_key(4, 0, "figure"), difficulty, **options))


def test_parity_figure_examples_have_the_chosen_number_of_bits():
  levels = parity.figure_levels(num_bits=12)
  assert levels == tuple(range(1, 13))
  batch = _figure_batch(parity, levels, num_bits=12, layout="random")
  nonzero = (batch.inputs[:, 0] != 0).sum(axis=1)
  np.testing.assert_array_equal(nonzero, batch.difficulty)
  np.testing.assert_array_equal(batch.difficulty, np.repeat(levels, 3))
  np.testing.assert_array_equal(batch.targets[:, 0, 0], (batch.inputs[:, 0] > 0).sum(axis=1) % 2)


def test_logic_figure_examples_are_length_5_with_the_same_gates_in_every_vector():
  """Fig. 10: sequences of 5 vectors, grouped by gates per vector (not the most in any)."""
  batch = _figure_batch(logic, logic.figure_levels(), per_level=20)
  assert batch.inputs.shape[:2] == (200, 5) and batch.input_mask.all()
  for inputs, targets, difficulty in zip(batch.inputs, batch.targets, batch.difficulty):
    previous_target = None
    for t in range(5):
      b0, b1, gates = _decode_logic_step(inputs[t])
      assert len(gates) == difficulty
      bits = [b0, b1] if t == 0 else [previous_target, b1]
      for gate in gates:
        bits.append(int(LOGIC_GATES[gate](bool(bits[-1]), bool(bits[-2]))))
      assert targets[t, 0] == bits[-1]
      previous_target = bits[-1]


def test_addition_figure_examples_are_length_3_with_the_same_digits_in_every_number():
  """Fig. 14: sequences of 3 numbers, grouped by digits per number; each has targets."""
  batch = _figure_batch(addition, addition.figure_levels(max_digits=4), per_level=20,
                        max_digits=4)
  assert batch.inputs.shape[:2] == (80, 3) and batch.input_mask.all()
  np.testing.assert_array_equal(batch.target_mask, [[False, True, True]] * 80)
  for inputs, targets, difficulty in zip(batch.inputs, batch.targets, batch.difficulty):
    total = 0
    for t in range(3):
      digits = _decode_number(inputs[t])
      assert len(digits) == difficulty
      total += int(digits)
      if t > 0:
        assert targets[t].tolist() == [int(c) for c in str(total)] + [10] * (6 - len(str(total)))


def test_sort_figure_examples_have_the_chosen_count():
  levels = sort.figure_levels(min_length=2, max_length=6)
  batch = _figure_batch(sort, levels, min_length=2, max_length=6)
  np.testing.assert_array_equal(batch.input_mask.sum(axis=1), 2 * batch.difficulty)
  np.testing.assert_array_equal(batch.target_mask.sum(axis=1), batch.difficulty)
