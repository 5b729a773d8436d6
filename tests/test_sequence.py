"""ponder_sequence against a loop of single-step reference calls; memory bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
import reference
from test_ponder_loop import BACKENDS, CELLS, IN, HID, batched_step, reference_step

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


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequence_matches_reference(backend):
  x, state, lengths = _data()

  def loss(params):
    r = act_jax.ponder_sequence(STEP_FN, params, state, x, max_steps=M, lengths=lengths,
                                backend=backend)
    mask = act_jax.lengths_to_mask(lengths, T)
    return _loss_from(r.outputs, r.stats.ponder_cost, mask), r

  (value, r), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(PARAMS)
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

  ref_grads = jax.grad(ref_loss)(PARAMS)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               grads, ref_grads)


def test_mask_and_lengths_agree_and_validate():
  x, state, lengths = _data()
  by_len = act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M, lengths=lengths)
  by_mask = act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M,
                                    mask=act_jax.lengths_to_mask(lengths, T))
  jax.tree.map(np.testing.assert_array_equal, by_len, by_mask)
  with pytest.raises(ValueError, match="not both"):
    act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M, lengths=lengths,
                            mask=jnp.ones((B, T), bool))
  with pytest.raises(ValueError, match=r"lengths must have shape \[3\]"):
    act_jax.ponder_sequence(STEP_FN, PARAMS, state, x, max_steps=M, lengths=lengths[:2])
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
