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


def _mixing_step(params, state, x, n):
  """Mixes examples: every example reads the batch mean of the input projection."""
  u = jnp.mean(x @ params["w_x"][:IN], axis=0)
  h = jnp.tanh(u + state @ params["w_s"])
  return PonderStep(h, (), h @ params["w_h"] + n)


def _args():
  k = jax.random.split(jax.random.PRNGKey(0), 8)
  params = {"w_x": jax.random.normal(k[0], (IN + 1, HID)),
            "b": jax.random.normal(k[1], (HID,)),
            "w_s": jax.random.normal(k[2], (HID, HID)),
            "w_y": jax.random.normal(k[3], (HID, 2)),
            "w_h": jax.random.normal(k[4], (HID,))}
  return params, jax.random.normal(k[5], (B, HID)), jax.random.normal(k[6], (B, IN))


def _at_index_one(step_fn):
  return lambda params, state, x, n: step_fn(params, state, x, jnp.int32(1))


@pytest.mark.parametrize("step_fn", [_tanh_step, _at_index_one(_tanh_step), _scaled_step,
                                     _mixing_step])
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
  np.testing.assert_allclose(split.per_example[0], projection, rtol=1e-6)
  shared_shapes = sorted(a.shape for a in split.shared)
  assert shared_shapes == sorted([(HID, HID), (HID, 2), (HID,)])  # w_s, w_y, w_h


def test_step_index_keeps_the_flag_in_the_loop():
  """With the step index read as a value, [x; flag] and its product depend on it:
  only the bias's broadcast would be invariant, so the step is left whole."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_tanh_step, params, state, x, jnp.int32(1))
  assert split.step_fn is _tanh_step and split.shared is params and split.per_example is x


def test_mixing_step_is_not_split():
  """An input-dependent invariant value without the batch axis: nothing is hoisted."""
  params, state, x = _args()
  split = loop_invariant.hoist_loop_invariants(_mixing_step, params, state, x, jnp.int32(1))
  assert split.step_fn is _mixing_step and split.shared is params and split.per_example is x


def test_gradients_through_the_split():
  """JAX differentiates the invariant part once; gradients equal the step's own."""
  params, state, x = _args()
  step_fn = _at_index_one(_tanh_step)

  def loss(params, state, split):
    if split:
      s = loop_invariant.hoist_loop_invariants(step_fn, params, state, x, jnp.int32(1))
      run = lambda state: s.step_fn(s.shared, state, s.per_example, jnp.int32(1))
    else:
      run = lambda state: step_fn(params, state, x, jnp.int32(1))
    total = 0.0
    for _ in range(3):  # the same invariant values at every step
      out = run(state)
      state = out.state
      total += jnp.sum(out.output ** 2) + jnp.sum(jnp.sin(out.halting_logit))
    return total

  got = jax.grad(loss, argnums=(0, 1))(params, state, True)
  want = jax.grad(loss, argnums=(0, 1))(params, state, False)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
