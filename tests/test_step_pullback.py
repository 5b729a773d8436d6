"""A ponder step's pullback rebuilt from its stored residuals equals ``jax.vjp``'s."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
from act_jax import PonderStep
from act_jax.backends import step_pullback

B, IN, HID = 5, 3, 4
SCALE = jnp.linspace(0.5, 1.5, HID)  # a constant the scaled step closes over


def _tanh_step(params, state, x, n):
  h = jnp.tanh(act_jax.with_first_step_flag(x, n) @ params["w_x"] + state @ params["w_s"])
  return PonderStep(h, h @ params["w_y"], h @ params["w_h"])


def _lstm_step(params, state, x, n):
  c, h = state
  z = jnp.concatenate([act_jax.with_first_step_flag(x, n), h], -1) @ params["w"]
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return PonderStep((c, h), h @ params["w_y"], h @ params["w_h"])


def _scaled_step(params, state, x, n):
  """A step whose residuals read a closed-over constant and the step index."""
  h = jnp.tanh(act_jax.with_first_step_flag(x, n) @ params["w_x"]
               + (state * SCALE) @ params["w_s"]) * (1.0 + n)
  return PonderStep(h, jnp.exp(h[:, :1] * SCALE[0]), jnp.sum(h * SCALE, -1))


def _params(key):
  k = jax.random.split(key, 5)
  return {"w_x": jax.random.normal(k[0], (IN + 1, HID)),
          "w_s": jax.random.normal(k[1], (HID, HID)),
          "w": jax.random.normal(k[2], (IN + 1 + HID, 4 * HID)) * 0.5,
          "w_y": jax.random.normal(k[3], (HID, 2)),
          "w_h": jax.random.normal(k[4], (HID,))}


@pytest.mark.parametrize("step_fn,lstm", [(_tanh_step, False), (_lstm_step, True),
                                          (_scaled_step, False)])
@pytest.mark.parametrize("step_index", [0, 2])
def test_rebuilt_pullback_matches_vjp(step_fn, lstm, step_index):
  params = _params(jax.random.PRNGKey(0))
  h = jax.random.normal(jax.random.PRNGKey(1), (B, HID))
  state = (h * 2.0, h) if lstm else h
  x = jax.random.normal(jax.random.PRNGKey(2), (B, IN))
  n = jnp.int32(step_index)
  ct = jax.tree.map(lambda y: jax.random.normal(jax.random.PRNGKey(3), y.shape),
                    step_fn(params, state, x, n))

  @jax.jit
  def both(params, state, x, n):
    lin, plan = step_pullback.linearize_step(step_fn, params, state, x, n)
    out, pullback = jax.vjp(lambda p, s, x: step_fn(p, s, x, n), params, state, x)
    rebuilt = plan.rebuild(lin.stored, params, state, x, n, lin.out.state)
    return rebuilt(ct), pullback(ct), lin.out, out, len(lin.stored), len(plan.stored)

  rebuilt_cts, direct_cts, out, direct_out, num_stored, num_residuals = both(params, state, x, n)
  for got, want in zip(jax.tree.leaves((rebuilt_cts, out)),
                       jax.tree.leaves((direct_cts, direct_out)), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  assert num_stored < num_residuals  # something was rebuilt rather than stored


def test_tanh_step_stores_nothing():
  """tanh's residual 1 - y is rebuilt from the new state, the cell input from x."""
  params = _params(jax.random.PRNGKey(0))
  plan = step_pullback.plan_residuals(_tanh_step, params, jnp.zeros((B, HID)),
                                      jnp.zeros((B, IN)), jnp.int32(1))
  assert not any(plan.stored)


def test_lstm_step_stores_the_gates():
  """The gate activations come from a matrix product: they are stored, not rebuilt."""
  params = _params(jax.random.PRNGKey(0))
  zeros = jnp.zeros((B, HID))
  plan = step_pullback.plan_residuals(_lstm_step, params, (zeros, zeros),
                                      jnp.zeros((B, IN)), jnp.int32(1))
  assert 0 < sum(plan.stored) < len(plan.stored)
