"""ponder_sequence against a loop of single-step reference calls; memory bound."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import act_jax
from act_jax import halting
from act_jax.backends import while_sequence
import reference
from test_ponder_loop import BACKENDS, CELLS, HID, IN, batched_step, reference_step

PARAMS = CELLS["lstm"][0](jax.random.PRNGKey(11), halting_bias=-1.0)
STEP_FN = batched_step(CELLS["lstm"][1])
REF_STEP = reference_step(CELLS["lstm"][1])
B, T, M, TAU = 3, 4, 6, 0.05


def _data():
  x = jax.random.normal(jax.random.PRNGKey(12), (B, T, IN))
  state = (jnp.zeros((B, HID)), jnp.zeros((B, HID)))
  lengths = jnp.array([4, 2, 3])
  return x, state, lengths


def _loss_from(outputs, rho, mask):
  return jnp.sum(jnp.where(mask[..., None], (outputs - 0.5) ** 2, 0.0)) + TAU * jnp.sum(rho)


def _reference(params, x, state, lengths):
  """Per example, per time step: the reference ACT step with N fixed."""
  total = 0.0
  all_steps = np.zeros((B, T), int)
  outputs = []
  for b in range(B):
    s = jax.tree.map(lambda a: a[b], state)
    for t in range(T):
      if t >= int(lengths[b]):
        continue
      n = reference.halting_steps(REF_STEP, params, s, x[b, t], M, 0.01)
      all_steps[b, t] = n
      s, y, _, rho, _ = reference.example_forward(REF_STEP, params, s, x[b, t], n, M)
      total = total + jnp.sum((y - 0.5) ** 2) + TAU * rho
      outputs.append(y)
  return total, all_steps


class SequenceMatchesReferenceTest(chex.TestCase):
  """ponder_sequence's values and gradients against the reference, jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*BACKENDS)
  def test_sequence_matches_reference(self, backend):
    x, state, lengths = _data()

    def loss(params):
      r = act_jax.ponder_sequence(STEP_FN, params, state, x, max_steps=M, lengths=lengths,
                                  backend=backend)
      mask = act_jax.lengths_to_mask(lengths, T)
      return _loss_from(r.outputs, r.stats.ponder_cost, mask), r

    (value, r), grads = self.variant(jax.value_and_grad(loss, has_aux=True))(PARAMS)
    steps = np.asarray(r.stats.steps)
    ref_value, ref_steps = _reference(PARAMS, x, state, lengths)
    np.testing.assert_array_equal(steps, ref_steps)
    assert np.all(steps[1, 2:] == 0) and np.all(np.asarray(r.outputs)[1, 2:] == 0)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)

    # Gradient of the reference, N fixed per (example, step) from the forward pass.
    def ref_loss(params):
      total = 0.0
      for b in range(B):
        s = jax.tree.map(lambda a: a[b], state)
        for t in range(int(lengths[b])):
          s, y, _, rho, _ = reference.example_forward(REF_STEP, params, s, x[b, t],
                                                      int(ref_steps[b, t]), M)
          total = total + jnp.sum((y - 0.5) ** 2) + TAU * rho
      return total

    chex.assert_trees_all_close(grads, jax.grad(ref_loss)(PARAMS), rtol=1e-3, atol=1e-5)


def test_mask_and_lengths_agree_and_validate():
  x, state, lengths = _data()
  by_len = act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M, lengths=lengths)
  by_mask = act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M,
                                    mask=act_jax.lengths_to_mask(lengths, T))
  chex.assert_trees_all_equal(by_len, by_mask)
  with pytest.raises(ValueError, match="not both"):
    act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M, lengths=lengths,
                            mask=jnp.ones((B, T), bool))
  with pytest.raises(ValueError, match=r"lengths must be integer \[3\], got int32\[2\]"):
    act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M, lengths=lengths[:2])
  with pytest.raises(ValueError, match=r"lengths must be integer \[3\], got float32\[3\]"):
    act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M,
                            lengths=jnp.asarray(lengths, jnp.float32))
  with pytest.raises(ValueError, match=r"\[batch, time, ...\]"):
    act_jax.ponder_sequence(STEP_FN, PARAMS, state, (x, x[:, :2]), max_steps=M)


def test_training_memory_does_not_grow_with_time_times_max_steps():
  # Compiled temp memory of one gradient step: the while backend with remat keeps
  # O(T * state) + O(M * state); storing every ponder step of every input step
  # would need T * M * state.
  batch, hidden, time_steps, max_steps = 8, 64, 64, 64

  def step_fn(params, state, x, n):
    state = jnp.tanh(act_jax.with_first_step_flag(x, n) @ params["w_x"]
                     + state @ params["w_s"])
    return act_jax.PonderStep(state, (), state @ params["w_h"] - 4.0)

  params = {"w_x": jnp.zeros((2, hidden)), "w_s": jnp.zeros((hidden, hidden)),
            "w_h": jnp.zeros((hidden,))}
  x = jnp.zeros((batch, time_steps, 1))

  def grad_step(params):
    loss = lambda p: jnp.sum(act_jax.ponder_sequence(
        step_fn, p, jnp.zeros((batch, hidden)), x, max_steps=max_steps).final_state)
    return jax.grad(loss)(params)

  analysis = jax.jit(grad_step).lower(params).compile().memory_analysis()
  if analysis is None:
    pytest.skip("this backend reports no memory analysis")
  per_state = batch * hidden * 4
  assert analysis.temp_size_in_bytes < time_steps * max_steps * per_state / 8, (
      analysis.temp_size_in_bytes, time_steps * max_steps * per_state)


# The "while" backend differentiates a whole sequence at once (one custom VJP,
# act_jax/backends/while_sequence.py); the "scan" backend is plain autodiff.
SEQ_B, SEQ_T, SEQ_M = 8, 6, 7


def _sequence_data(cell_name):
  # Biases that give each cell a spread of N from 1 to the cap.
  params = CELLS[cell_name][0](jax.random.PRNGKey(21),
                               halting_bias={"tanh": 3.0, "lstm": 4.0}[cell_name])
  kx, ks, km = jax.random.split(jax.random.PRNGKey(22), 3)
  x = 3.0 * jax.random.normal(kx, (SEQ_B, SEQ_T, IN))
  state = jax.random.normal(ks, (SEQ_B, HID)) * 0.5
  if cell_name == "lstm":
    state = (state, -state)
  mask = jax.random.bernoulli(km, 0.8, (SEQ_B, SEQ_T)).at[:, 2].set(False)
  return params, state, x, mask


@functools.partial(jax.jit, static_argnames=("cell_name", "backend", "independent_examples",
                                             "remat", "first_step_flag_only", "argnums"))
def _sequence_loss_and_grads(params, state, x, mask, *, cell_name, backend, argnums,
                             independent_examples=False, remat=True,
                             first_step_flag_only=False):
  def loss(params, state, x):
    r = act_jax.ponder_sequence(
        batched_step(CELLS[cell_name][1]), params, state, x, max_steps=SEQ_M, mask=mask,
        backend=backend, chunk_steps=2, independent_examples=independent_examples,
        remat=remat, first_step_flag_only=first_step_flag_only)
    final = sum(jnp.sum(jnp.sin(s)) for s in jax.tree.leaves(r.final_state))
    return jnp.sum((r.outputs - 0.3) ** 2) + final + TAU * jnp.sum(r.stats.ponder_cost), r
  (value, r), grads = jax.value_and_grad(loss, argnums, has_aux=True)(params, state, x)
  return value, r.stats.steps, grads


@pytest.mark.parametrize("cell_name", ["tanh", "lstm"])
@pytest.mark.parametrize(  # argnums 0: the inputs and state are not differentiated
    "independent_examples,remat,first_step_flag_only,argnums",
    [(False, False, False, (0, 1, 2)), (True, False, True, 0), (False, True, True, 0),
     (True, True, False, (0, 1, 2))])
def test_sequence_while_matches_scan(cell_name, independent_examples, remat,
                                     first_step_flag_only, argnums):
  params, state, x, mask = _sequence_data(cell_name)
  run = functools.partial(_sequence_loss_and_grads, params, state, x, mask,
                          cell_name=cell_name, argnums=argnums)
  value, steps, grads = run(backend="while", independent_examples=independent_examples,
                            remat=remat, first_step_flag_only=first_step_flag_only)
  ref_value, ref_steps, ref_grads = run(backend="scan")
  steps = np.asarray(steps)
  np.testing.assert_array_equal(steps, ref_steps)
  # The data exercise masked steps, halting at step 1, several steps, the cap, an
  # input step with no example past ponder step 1, and one with none past step 2.
  assert {0, 1, SEQ_M} <= set(steps.ravel().tolist()) and np.any((steps > 1) & (steps < SEQ_M))
  assert np.any(np.all(steps <= 1, axis=0))
  assert np.any(np.max(steps, axis=0) == 2)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  chex.assert_trees_all_close(grads, ref_grads, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("cell_name", ["tanh", "lstm"])
def test_sequence_while_matches_scan_where_every_example_halts_at_once(cell_name):
  # Every unmasked example halts at ponder step 1 (N = 1, as in a trained LM):
  # the sequence VJP's closed-form backward step against plain autodiff.
  params, state, x, mask = _sequence_data(cell_name)
  params = dict(params, b_h=jnp.float32(30.0))
  run = functools.partial(_sequence_loss_and_grads, params, state, x, mask,
                          cell_name=cell_name, argnums=(0, 1, 2))
  value, steps, grads = run(backend="while", independent_examples=True)
  ref_value, ref_steps, ref_grads = run(backend="scan")
  np.testing.assert_array_equal(steps, ref_steps)
  assert set(np.asarray(steps).ravel().tolist()) == {0, 1}
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  chex.assert_trees_all_close(grads, ref_grads, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("cell_name", ["tanh", "lstm"])
@pytest.mark.parametrize("independent_examples", [False, True])
def test_sequence_while_matches_scan_where_no_example_passes_step_two(cell_name,
                                                                     independent_examples):
  # Every example halts at ponder step 1 or 2 (an LM at N ~ 1.5): the backward
  # pass's straight-line branch for step 2 against plain autodiff of the scan
  # backend. NaN and inf in the skipped inputs reach no gradient.
  params, state, x, mask = _sequence_data(cell_name)
  params = dict(params, b_h=jnp.float32(4.6), w_h=0.2 * params["w_h"])
  poisoned = jnp.where(mask[..., None], x, jnp.array([jnp.nan, jnp.inf, 1.0]))
  run = functools.partial(_sequence_loss_and_grads, params, state, mask=mask,
                          cell_name=cell_name, argnums=(0, 1, 2))
  value, steps, grads = run(poisoned, backend="while",
                            independent_examples=independent_examples, remat=False)
  ref_value, ref_steps, ref_grads = run(jnp.where(mask[..., None], x, 0.0), backend="scan")
  steps = np.asarray(steps)
  np.testing.assert_array_equal(steps, ref_steps)
  assert set(steps.ravel().tolist()) == {0, 1, 2}
  assert np.all(np.max(steps, axis=0) <= 2) and np.any(np.max(steps, axis=0) == 2)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  chex.assert_trees_all_close(grads, ref_grads, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("independent_examples", [False, True])
def test_sequence_step_fn_closing_over_traced_values(independent_examples):
  # A step function that closes over a traced value: the while backend hoists it
  # (closure conversion) and differentiates it; with compaction the sequence
  # falls back to per-input-step loops.
  params, state, x, mask = _sequence_data("tanh")

  def loss(scale, backend):
    cell = lambda p, s, x_: _scale_state(CELLS["tanh"][1](p, s, x_), scale)
    r = act_jax.ponder_sequence(batched_step(cell), params, state, x, max_steps=SEQ_M,
                                mask=mask, backend=backend,
                                independent_examples=independent_examples and backend == "while")
    return jnp.sum((r.outputs - 0.3) ** 2) + TAU * jnp.sum(r.stats.ponder_cost)

  grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
  value, d_scale = grad(jnp.float32(0.9), "while")
  ref_value, ref_d_scale = grad(jnp.float32(0.9), "scan")
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  np.testing.assert_allclose(d_scale, ref_d_scale, rtol=2e-4)
  assert abs(float(d_scale)) > 1e-3


def _scale_state(cell_out, scale):
  state, output, logit = cell_out
  return scale * state, output, logit


def test_step_two_sizes_halve_down_to_two():
  assert while_sequence.step_two_sizes(16) == (16, 8, 4)
  assert while_sequence.step_two_sizes(4) == (4, 2)
  assert while_sequence.step_two_sizes(3) == (3,)


@pytest.mark.parametrize("size", [4, 2])
def test_second_step_on_fewer_slots_matches_the_whole_batch(size):
  # Ponder step 2 on `size` slots holding the running examples and a stand-in
  # (dropped on the way out) equals step 2 on the whole batch of 8, values and
  # gradients.
  params, state, x, mask = _sequence_data("lstm")
  x_t, mask_t = x[:, 0], mask[:, 0]
  step_fn = batched_step(CELLS["lstm"][1])
  out = step_fn(params, state, x_t, jnp.int32(0))
  carry = halting.initial_halting(out, state, mask_t, SEQ_M)
  carry = halting.advance(carry, out, jnp.int32(0), SEQ_M, 0.99)
  running = np.zeros(SEQ_B, bool)
  running[[1, 4, 6][:size - 1]] = True  # one slot fewer than `size` examples still run
  carry = carry._replace(tally=carry.tally.at[:, halting.RUNNING].set(running))

  def loss(params, state_sum, at):
    c = while_sequence._second_step_at(step_fn, SEQ_M, 0.99, at, params, x_t,
                                       carry._replace(state_sum=state_sum))
    return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(c))

  grad = jax.value_and_grad(loss, argnums=(0, 1))
  value, grads = grad(params, carry.state_sum, size)
  ref_value, ref_grads = grad(params, carry.state_sum, SEQ_B)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  chex.assert_trees_all_close(grads, ref_grads, rtol=1e-5, atol=1e-6)
