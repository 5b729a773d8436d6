"""A ponder step split into its loop-invariant part and the rest computes the same step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
from act_jax import PonderStep
from act_jax.backends import loop_invariant

B, IN, HID = 6, 3, 4
SCALE = jnp.linspace(0.5, 1.5, HID)  # a constant the scaled step closes over


def _tanh_step(params, state, x, n):
  h = jnp.tanh(act_jax.with_first_step_flag(x, n) @ params["w_x"] + params["b"]
               + state @ params["w_s"])
  return PonderStep(h, h @ params["w_y"], h @ params["w_h"])


def _scaled_step(params, state, x, n):
  """Reads a closed-over constant and the step index beyond the flag."""
  h = jnp.tanh(act_jax.with_first_step_flag(x, n) @ params["w_x"] * SCALE
               + (state * SCALE) @ params["w_s"]) * (1.0 + n)
  return PonderStep(h, jnp.exp(x[:, :1] * SCALE[0]), jnp.sum(h * SCALE, -1))


def _concatenated_kernel_step(params, state, x, n):
  """One kernel over ``[x; flag; s]``, as TensorFlow's RNN cells have it."""
  z = jnp.concatenate([act_jax.with_first_step_flag(x, n), state], axis=-1)
  h = jnp.tanh(z @ params["w_xs"] + params["b"])
  return PonderStep(h, h @ params["w_y"], h @ params["w_h"])


def _index_scaled_step(params, state, x, n):
  """Scales the input by the step index before its product: only layout is invariant."""
  h = jnp.tanh((x * (1.0 + n)) @ params["w_i"] + params["b"] + state @ params["w_s"])
  return PonderStep(h, h @ params["w_y"], h @ params["w_h"])


def _mixing_step(params, state, x, n):
  """Mixes examples: every example reads the batch mean of the input projection."""
  u = jnp.mean(x @ params["w_x"][:IN], axis=0)
  h = jnp.tanh(u + state @ params["w_s"])
  return PonderStep(h, (), h @ params["w_h"] + n)


def _args():
  k = jax.random.split(jax.random.PRNGKey(0), 9)
  params = {"w_x": jax.random.normal(k[0], (IN + 1, HID)),
            "b": jax.random.normal(k[1], (HID,)),
            "w_s": jax.random.normal(k[2], (HID, HID)),
            "w_y": jax.random.normal(k[3], (HID, 2)),
            "w_h": jax.random.normal(k[4], (HID,)),
            "w_xs": jax.random.normal(k[7], (IN + 1 + HID, HID)),
            "w_i": jax.random.normal(k[8], (IN, HID))}
  return params, jax.random.normal(k[5], (B, HID)), jax.random.normal(k[6], (B, IN))


def _at_index_one(step_fn):
  return lambda params, state, x, n: step_fn(params, state, x, jnp.int32(1))


@pytest.mark.parametrize("step_fn", [_tanh_step, _at_index_one(_tanh_step), _scaled_step,
                                     _concatenated_kernel_step, _mixing_step])
def test_split_step_equals_the_step(step_fn):
  """At several states and step indices, at the full batch and a gathered smaller one."""
  params, state, x = _args()

  @jax.jit
  def both(params, state, x):
    split = loop_invariant.hoist_loop_invariants(step_fn, params, state, x, jnp.int32(1))
    got, want = [], []
    for n in (1, 2, 5):
      n = jnp.int32(n)
      got.append(split.step_fn(split.shared, state * n, split.per_example, n))
      want.append(step_fn(params, state * n, x, n))
    if step_fn is not _mixing_step:  # a compaction level: the examples gathered
      index = jnp.array([4, 1])
      take = lambda a: a[index]
      got.append(split.step_fn(split.shared, take(state), jax.tree.map(take, split.per_example),
                               jnp.int32(3)))
      want.append(step_fn(params, take(state), take(x), jnp.int32(3)))
    return got, want

  got, want = both(params, state, x)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


def test_input_projection_is_hoisted():
  """At the constant index 1 the cell input [x; 0] W_x + b is computed once, per
  example; the loop gets neither x nor W_x."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_at_index_one(_tanh_step), params, state, x,
                                               jnp.int32(1))
  assert [a.shape for a in split.per_example] == [(B, HID)]
  projection = act_jax.with_first_step_flag(x, 1) @ params["w_x"] + params["b"]
  np.testing.assert_allclose(split.per_example[0], projection, rtol=1e-6, atol=1e-6)
  shared_shapes = sorted(a.shape for a in split.shared)
  assert shared_shapes == sorted([(HID, HID), (HID, 2), (HID,)])  # w_s, w_y, w_h


def test_flag_row_stays_in_the_step():
  """With the step index read as a value, [x; flag] W_x is taken piece by piece:
  x W_x[:IN] is computed once per example (for step 1 too), the flag's row
  W_x[IN:] stays in the step."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_tanh_step, params, state, x, jnp.int32(1))
  assert [a.shape for a in split.per_example] == [(B, HID)]
  np.testing.assert_allclose(split.per_example[0], x @ params["w_x"][:IN], rtol=1e-6)
  assert sum(a.shape == (1, HID) and bool(jnp.all(a == params["w_x"][IN:]))
             for a in split.shared) == 1


def test_concatenated_kernel_is_taken_piece_by_piece():
  """One kernel over [x; flag; s]: only x's rows are invariant; the flag's and the
  state's stay in the step, as one slice of the kernel."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_concatenated_kernel_step, params, state, x,
                                               jnp.int32(1))
  assert [a.shape for a in split.per_example] == [(B, HID)]
  np.testing.assert_allclose(split.per_example[0], x @ params["w_xs"][:IN], rtol=1e-6)
  rows = lambda a: next((i for i, b in enumerate(split.shared) if b.shape == a.shape
                         and bool(jnp.all(b == a))), None)
  assert rows(params["w_xs"][IN:]) is not None  # the flag and state pieces: one product
  assert rows(params["w_xs"]) is None and rows(params["w_xs"][:IN]) is None


def test_index_read_before_the_product_leaves_the_step_whole():
  """An input scaled by the step index: only the bias's broadcast would be
  invariant, so nothing is split off."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_index_scaled_step, params, state, x,
                                               jnp.int32(1))
  assert split.step_fn is _index_scaled_step and split.shared is params and split.per_example is x


def test_mixing_step_is_not_split():
  """An input-dependent invariant value without the batch axis: nothing is hoisted."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_mixing_step, params, state, x, jnp.int32(1))
  assert split.step_fn is _mixing_step and split.shared is params and split.per_example is x


@pytest.mark.parametrize("step_fn", [_at_index_one(_tanh_step), _tanh_step,
                                     _concatenated_kernel_step])
def test_gradients_through_the_split(step_fn):
  """JAX differentiates the invariant part once; gradients equal the step's own,
  over steps 1, 2 and 3 (the flag's row in the step)."""
  params, state, x = _args()

  def loss(params, state, split):
    if split:
      s = loop_invariant.hoist_loop_invariants(step_fn, params, state, x, jnp.int32(1))
      run = lambda state, n: s.step_fn(s.shared, state, s.per_example, jnp.int32(n))
    else:
      run = lambda state, n: step_fn(params, state, x, jnp.int32(n))
    total = 0.0
    for n in range(3):  # the same invariant values at every step
      out = run(state, n)
      state = out.state
      total += jnp.sum(out.output ** 2) + jnp.sum(jnp.sin(out.halting_logit))
    return total

  got = jax.grad(loss, argnums=(0, 1))(params, state, True)
  want = jax.grad(loss, argnums=(0, 1))(params, state, False)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("step_fn", [_tanh_step, _concatenated_kernel_step])
def test_split_of_a_split(step_fn):
  """The sequence backend splits at a traced index, and the loop after step 2
  splits that again at the constant index 1, where the flag is a constant
  broadcast over the batch: its row is never a batch-shaped shared value, so
  the twice-split step is right at a gathered smaller batch too."""
  params, state, x = _args()

  @jax.jit
  def both(params, state, x):
    outer = loop_invariant.split_loop_invariants(step_fn, params, state, x, jnp.int32(0))
    shared, per_example = outer.invariant(params, x)
    inner = loop_invariant.hoist_loop_invariants(_at_index_one(outer.step_fn), shared, state,
                                                 per_example, jnp.int32(1))
    index = jnp.array([4, 1])
    take = lambda a: a[index]
    got = inner.step_fn(inner.shared, take(state), jax.tree.map(take, inner.per_example),
                        jnp.int32(2))
    return got, step_fn(params, take(state), take(x), jnp.int32(1))

  got, want = both(params, state, x)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
