"""The compacting loop (independent_examples=True) against the scan backend."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
from act_jax.backends import compact
from act_jax.depth import DepthACT, ponder_depth
from test_ponder_loop import CELLS, TAU, _assert_tree_close, _inputs, _task_loss, batched_step

M = 16
LEVELS = (40, 10, 2)  # compact.level_sizes(40, 4): tests shrink by 4 (conftest.py)


def _mixed_batch(cell_name):
  """40 examples chosen from a pool for their N: mostly small, a few stragglers.

  N <= 5 for 28 examples, 6 <= N < M for 6, and N = M (the cap) for 2; the
  last 4 are masked out. So the loop shrinks to 10 and then 2 running examples.
  """
  params = CELLS[cell_name][0](jax.random.PRNGKey(1), halting_bias=-1.5)
  state, x = _inputs(jax.random.PRNGKey(2), 400, cell_name)
  steps = np.asarray(act_jax.ponder(batched_step(CELLS[cell_name][1]), params, state, x,
                                    max_steps=M, backend="scan").stats.steps)
  pick = np.concatenate([np.flatnonzero(steps <= 5)[:32], np.flatnonzero((steps > 5)
                                                                          & (steps < M))[:6],
                         np.flatnonzero(steps == M)[:2]])
  pick = np.concatenate([pick[4:34], pick[34:], pick[:4]])  # the 4 masked ones last
  mask = np.arange(40) < 36
  return params, jax.tree.map(lambda s: s[pick], state), x[pick], jnp.asarray(mask)


@functools.partial(jax.jit, static_argnames=("cell_name", "backend", "independent",
                                             "chunk_steps"))
def _loss_and_grads(params, state, x, mask, *, cell_name, backend, independent, chunk_steps):
  step_fn = batched_step(CELLS[cell_name][1])

  def loss(params, state, x):
    # As the task models run it: compacting, input projection hoisted (the cell
    # reads the step index only as the first-step flag).
    r = act_jax.ponder(step_fn, params, state, x, max_steps=M, mask=mask, backend=backend,
                       chunk_steps=chunk_steps, independent_examples=independent,
                       first_step_flag_only=independent)
    total = (_task_loss(r.state, r.output) + TAU * jnp.sum(r.stats.ponder_cost)
             + jnp.sum(r.stats.halting_probs * jnp.linspace(0.1, 1.0, M)))
    return total, r

  return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, state, x)


def test_level_sizes():
  assert compact.SHRINK == 4  # conftest.py, for these small batches
  assert compact.level_sizes(40, compact.SHRINK) == LEVELS
  assert compact.level_sizes(128) == (128, 8)  # the default: shrink by 16
  assert compact.level_sizes(1024) == (1024, 64, 4)
  assert compact.level_sizes(32) == (32, 2)
  assert compact.level_sizes(16) == (16,)
  assert compact.level_sizes(3, 4) == (3,)


# chunk_steps=1: segments start mid-chunk and later chunks are recomputed, at
# the levels of 40 (chunks of 1 step) and 10 (4 steps); the level of 2 records
# its steps at once (20, capped at M). chunk_steps=16: one chunk everywhere.
@pytest.mark.parametrize("chunk_steps", [1, 16])
@pytest.mark.parametrize("cell_name", ["tanh", "lstm"])
def test_compact_matches_scan_values_and_gradients(cell_name, chunk_steps):
  params, state, x, mask = _mixed_batch(cell_name)
  (value, r), grads = _loss_and_grads(params, state, x, mask, cell_name=cell_name,
                                      backend="while", independent=True,
                                      chunk_steps=chunk_steps)
  (ref_value, ref), ref_grads = _loss_and_grads(params, state, x, mask, cell_name=cell_name,
                                                backend="scan", independent=False,
                                                chunk_steps=chunk_steps)
  steps = np.asarray(ref.stats.steps)
  running_after = [(steps > n).sum() for n in range(M)]
  assert running_after[-1] == LEVELS[2], running_after  # two stragglers reach the cap
  assert any(LEVELS[2] < k <= LEVELS[1] for k in running_after), running_after
  np.testing.assert_array_equal(steps[36:], 0)
  np.testing.assert_array_equal(r.stats.steps, steps)
  _assert_tree_close((r.state, r.output, r.stats.remainder, r.stats.halting_probs),
                     (ref.state, ref.output, ref.stats.remainder, ref.stats.halting_probs))
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  _assert_tree_close(grads, ref_grads, rtol=1e-3, atol=1e-4)
  # Masked examples pass their state through and get its cotangent unchanged.
  assert float(jnp.abs(jax.tree.leaves(grads[1])[0][36:]).sum()) > 0


def test_every_level_records_the_same_number_of_example_steps(monkeypatch):
  chunks = []
  run_segment = compact.while_loop.run_segment

  def spy(step_fn, max_steps, threshold, chunk_steps, *args):
    chunks.append(chunk_steps)
    return run_segment(step_fn, max_steps, threshold, chunk_steps, *args)

  monkeypatch.setattr(compact.while_loop, "run_segment", spy)
  params, state, x, mask = _mixed_batch("tanh")
  jax.eval_shape(functools.partial(
      act_jax.ponder, batched_step(CELLS["tanh"][1]), max_steps=M, mask=mask, chunk_steps=3,
      independent_examples=True), params, state, x)
  assert chunks == [3, 12, 60]  # 3 * 40 example-steps over 40, 10 and 2 examples


def test_compact_sequence_with_lengths_matches_scan():
  params = CELLS["lstm"][0](jax.random.PRNGKey(3), halting_bias=-2.0)
  batch, time_steps = 12, 4
  x = jax.random.normal(jax.random.PRNGKey(4), (batch, time_steps, 3))
  state = tuple(jax.random.normal(k, (batch, 6)) * 0.5
                for k in jax.random.split(jax.random.PRNGKey(5)))
  lengths = jnp.array([4, 2, 3, 1, 4, 4, 0, 3, 2, 4, 1, 4])
  step_fn = batched_step(CELLS["lstm"][1])

  def loss(params, state, x, independent, backend):
    r = act_jax.ponder_sequence(step_fn, params, state, x, max_steps=M, lengths=lengths,
                                backend=backend, independent_examples=independent)
    return (jnp.sum(jnp.sin(r.outputs)) + jnp.sum(r.final_state[0] ** 2)
            + TAU * jnp.sum(r.stats.ponder_cost)), r.stats.steps

  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True),
                 static_argnums=(3, 4))
  (value, steps), grads = grad(params, state, x, True, "while")
  (ref_value, ref_steps), ref_grads = grad(params, state, x, False, "scan")
  assert len(set(np.asarray(ref_steps).ravel().tolist())) >= 4, ref_steps
  np.testing.assert_array_equal(steps, ref_steps)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  _assert_tree_close(grads, ref_grads, rtol=1e-3, atol=1e-4)


def test_unused_slots_never_see_made_up_examples():
  # The step is NaN for an all-zero input; the level of 2 slots has one unused.
  def step_fn(params, state, inputs, step_index):
    x, halt_at = inputs
    state = jnp.tanh(state * params["w"] + x / jnp.linalg.norm(x, axis=-1, keepdims=True))
    logit = jnp.sum(state, -1) * params["v"] + jnp.where(step_index + 1 >= halt_at, 20.0, -20.0)
    return act_jax.PonderStep(state, state, logit)

  params = {"w": jnp.float32(0.7), "v": jnp.float32(0.1)}
  x = jax.random.normal(jax.random.PRNGKey(6), (8, 3))
  halt_at = jnp.array([2, 3, 2, 9, 2, 3, 3, 2])  # after step 3 one of 2 slots is used
  state = jnp.zeros((8, 3))

  def loss(params, state, x, independent, backend):
    r = act_jax.ponder(step_fn, params, state, (x, halt_at), max_steps=M, backend=backend,
                       independent_examples=independent)
    return jnp.sum(jnp.sin(r.state)) + TAU * jnp.sum(r.stats.ponder_cost), r.stats.steps

  grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
  (value, steps), grads = grad(params, state, x, True, "while")
  (ref_value, _), ref_grads = grad(params, state, x, False, "scan")
  np.testing.assert_array_equal(steps, halt_at)
  assert np.isfinite(value) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  _assert_tree_close(grads, ref_grads, rtol=1e-3, atol=1e-5)


def test_compact_all_masked_passes_state_through():
  params = CELLS["tanh"][0](jax.random.PRNGKey(1), halting_bias=-1.5)
  state, x = _inputs(jax.random.PRNGKey(2), 8, "tanh")
  r = act_jax.ponder(batched_step(CELLS["tanh"][1]), params, state, x, max_steps=M,
                     mask=jnp.zeros(8, bool), independent_examples=True)
  np.testing.assert_array_equal(r.state, state)
  np.testing.assert_array_equal(r.stats.steps, 0)
  np.testing.assert_array_equal(r.output, 0.0)


def _step_fn_and_data():
  params = CELLS["tanh"][0](jax.random.PRNGKey(1), halting_bias=-1.5)
  state, x = _inputs(jax.random.PRNGKey(2), 8, "tanh")
  return batched_step(CELLS["tanh"][1]), params, state, x


def test_rejects_misuse():
  step_fn, params, state, x = _step_fn_and_data()
  with pytest.raises(ValueError, match="independent_examples must be a bool, got 'yes'"):
    act_jax.ponder(step_fn, params, state, x, max_steps=4, independent_examples="yes")
  with pytest.raises(ValueError, match="first_step_flag_only must be a bool, got 1"):
    act_jax.ponder(step_fn, params, state, x, max_steps=4, first_step_flag_only=1)
  with pytest.raises(ValueError, match=r"lead with the batch axis 8; leaf \[1\] has shape \[3\]"):
    act_jax.ponder(lambda p, s, xs, n: step_fn(p, s, xs[0] + xs[1], n), params, state,
                   (x, jnp.ones(3)), max_steps=4, independent_examples=True)
  with pytest.raises(ValueError, match=r"batch shape of one axis, got \[2, 4\]"):
    act_jax.ponder(step_fn, params, state.reshape(2, 4, -1), x.reshape(2, 4, -1),
                   max_steps=4, independent_examples=True)


def test_depth_act_rejects_independent_examples():
  block = lambda p, s: jnp.tanh(s @ p)
  halt = lambda p, s: s @ p
  state = jnp.ones((2, 3, 4))
  params = (jnp.eye(4), jnp.ones((4, 1)))
  with pytest.raises(ValueError, match="ACT over depth cannot use independent_examples=True"):
    ponder_depth(block, halt, params, state, max_steps=3, independent_examples=True)
  with pytest.raises(ValueError, match="mixes positions"):
    DepthACT(lambda s: s, 4, max_steps=3, independent_examples=True, rngs=None)
