"""The ponder loop against the plain reference: values, gradients, edge cases."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import act_jax
from act_jax import PonderStep
import reference

BACKENDS = ("while", "scan")
IN, HID, OUT = 3, 6, 2


def _tanh_params(key, halting_bias):
  k = jax.random.split(key, 5)
  return {
      "w_x": jax.random.normal(k[0], (IN + 1, HID)) * 0.7,
      "w_s": jax.random.normal(k[1], (HID, HID)) * 0.5,
      "b": jax.random.normal(k[2], (HID,)) * 0.1,
      "w_h": jax.random.normal(k[3], (HID,)) * 1.5,
      "b_h": jnp.float32(halting_bias),
      "w_y": jax.random.normal(k[4], (HID, OUT)),
      "b_y": jnp.arange(OUT, dtype=jnp.float32),
  }


def _tanh_cell(params, state, x_with_flag):
  state = jnp.tanh(x_with_flag @ params["w_x"] + state @ params["w_s"] + params["b"])
  return state, state @ params["w_y"] + params["b_y"], state @ params["w_h"] + params["b_h"]


def _lstm_params(key, halting_bias):
  k = jax.random.split(key, 4)
  return {
      "w": jax.random.normal(k[0], (IN + 1 + HID, 4 * HID)) * 0.5,
      "b": jax.random.normal(k[1], (4 * HID,)) * 0.1,
      "w_h": jax.random.normal(k[2], (2 * HID,)) * 1.5,
      "b_h": jnp.float32(halting_bias),
      "w_y": jax.random.normal(k[3], (HID, OUT)),
      "b_y": jnp.zeros(OUT),
  }


def _lstm_cell(params, state, x_with_flag):
  c, h = state
  z = jnp.concatenate([x_with_flag, h], axis=-1) @ params["w"] + params["b"]
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  logit = jnp.concatenate([c, h], axis=-1) @ params["w_h"] + params["b_h"]
  return (c, h), h @ params["w_y"] + params["b_y"], logit


CELLS = {"tanh": (_tanh_params, _tanh_cell), "lstm": (_lstm_params, _lstm_cell)}


def batched_step(cell):
  """The cell as an act_jax step function (flag appended by the library helper)."""

  def step_fn(params, state, x, step_index):
    state, output, logit = cell(params, state, act_jax.with_first_step_flag(x, step_index))
    return PonderStep(state, output, logit)

  return step_fn


def reference_step(cell):
  """The cell as a reference step: one example, 1-based n, flag written out."""

  def step(params, state, x, n):
    flag = jnp.array([1.0 if n == 1 else 0.0])
    return cell(params, state, jnp.concatenate([x, flag]))

  return step


def _inputs(key, batch, cell_name):
  kx, ks = jax.random.split(key)
  x = jax.random.normal(kx, (batch, IN))
  if cell_name == "tanh":
    state = jax.random.normal(ks, (batch, HID)) * 0.5
  else:
    state = tuple(jax.random.normal(k, (batch, HID)) * 0.5 for k in jax.random.split(ks))
  return state, x


def _task_loss(state, output):
  leaves = jax.tree.leaves(state)
  return (sum(jnp.sum(jnp.sin(3.0 * s) * (1 + jnp.arange(s.shape[-1]))) for s in leaves)
          + jnp.sum((output - 0.3) ** 2))


TAU = 0.37


def _library_loss_and_grads(params, state, x, *, cell_name, backend, max_steps, epsilon,
                            chunk_steps=16, first_step_flag_only=False):
  step_fn = batched_step(CELLS[cell_name][1])

  def loss(params, state, x):
    r = act_jax.ponder(step_fn, params, state, x, max_steps=max_steps, epsilon=epsilon,
                       backend=backend, chunk_steps=chunk_steps,
                       first_step_flag_only=first_step_flag_only)
    total = (_task_loss(r.state, r.output) + TAU * jnp.sum(r.stats.ponder_cost)
             + jnp.sum(r.stats.halting_probs * jnp.linspace(0.1, 1.0, max_steps)))
    return total, r

  (value, result), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
      params, state, x)
  return value, result, grads


def _reference_loss_and_grads(params, state, x, *, cell_name, max_steps, epsilon):
  step = reference_step(CELLS[cell_name][1])
  steps = np.array([
      reference.halting_steps(step, params, jax.tree.map(lambda s: s[b], state), x[b],
                              max_steps, epsilon) for b in range(x.shape[0])])

  def loss(params, state, x):
    s, y, remainder, rho, probs = reference.batch_forward(step, params, state, x, steps,
                                                          max_steps)
    total = (_task_loss(s, y) + TAU * jnp.sum(rho)
             + jnp.sum(probs * jnp.linspace(0.1, 1.0, max_steps)))
    return total, (s, y, remainder, rho, probs)

  (value, aux), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
      params, state, x)
  return value, steps, aux, grads


def _assert_tree_close(a, b, rtol=2e-4, atol=2e-5):
  chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


class MatchesReferenceTest(chex.TestCase):
  """Values and gradients against the plain reference, jitted and not."""

  # "while" with chunk_steps=2 recomputes all but the first two steps' residuals
  # from checkpoints in the backward pass; with 16 (> max_steps) it records all.
  # first_step_flag_only: the steps after the first get the constant index 1 (the
  # cell reads it only as the flag), in the forward, recomputing and backward loops.
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(
      (dict(backend="while", chunk_steps=16, first_step_flag_only=False),
       dict(backend="while", chunk_steps=2, first_step_flag_only=False),
       dict(backend="while", chunk_steps=2, first_step_flag_only=True),
       dict(backend="scan", chunk_steps=16, first_step_flag_only=False)),
      cell_name=("tanh", "lstm"))
  def test_values_and_gradients(self, backend, chunk_steps, first_step_flag_only, cell_name):
    max_steps, batch = 7, 12
    params = CELLS[cell_name][0](jax.random.PRNGKey(1), halting_bias=-1.5)
    state, x = _inputs(jax.random.PRNGKey(2), batch, cell_name)
    value, result, grads = self.variant(functools.partial(
        _library_loss_and_grads, cell_name=cell_name, backend=backend, max_steps=max_steps,
        epsilon=0.01, chunk_steps=chunk_steps, first_step_flag_only=first_step_flag_only))(
            params, state, x)
    ref_value, ref_steps, (s, y, remainder, rho, probs), ref_grads = (
        _reference_loss_and_grads(params, state, x, cell_name=cell_name, max_steps=max_steps,
                                  epsilon=0.01))
    # The batch must exercise mixed N, including the cap.
    assert len(set(ref_steps.tolist())) >= 3, ref_steps
    np.testing.assert_array_equal(result.stats.steps, ref_steps)
    _assert_tree_close((result.state, result.output, result.stats.remainder,
                        result.stats.ponder_cost, result.stats.halting_probs),
                       (s, y, remainder, rho, probs))
    np.testing.assert_allclose(result.stats.halting_probs.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    _assert_tree_close(grads, ref_grads, rtol=1e-3, atol=1e-4)


def _halting_only_step(params, state, x, step_index):
  """A cell whose halting logit at step n is the parameter theta[n]."""
  state = jnp.tanh(state + x + params["drive"])
  logit = jnp.broadcast_to(params["theta"][step_index], state.shape[:1])
  return PonderStep(state, state, logit)


def _halting_only_params(thetas):
  return {"theta": jnp.asarray(thetas, jnp.float32), "drive": jnp.float32(0.1)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_halt_at_first_step(backend):
  # h^1 = sigmoid(6) = 0.9975 >= 0.99: N = 1, R = 1, rho = 2, no halting gradient.
  params = _halting_only_params([6.0, 0.0, 0.0, 0.0])
  state, x = jnp.ones((3, 2)), jnp.ones((3, 2))

  def loss(params):
    r = act_jax.ponder(_halting_only_step, params, state, x, max_steps=4, backend=backend)
    return jnp.sum(r.state ** 2) + TAU * jnp.sum(r.stats.ponder_cost), r

  (_, r), grads = jax.value_and_grad(loss, has_aux=True)(params)
  np.testing.assert_array_equal(r.stats.steps, [1, 1, 1])
  np.testing.assert_array_equal(r.stats.remainder, [1.0, 1.0, 1.0])
  np.testing.assert_array_equal(r.stats.ponder_cost, [2.0, 2.0, 2.0])
  np.testing.assert_array_equal(grads["theta"], np.zeros(4))
  assert float(jnp.abs(grads["drive"])) > 0  # the task loss still trains the cell


@pytest.mark.parametrize("backend", BACKENDS)
def test_cap_reached(backend):
  thetas = [-3.0, -2.0, -2.5, -1.0]  # sum of h over all 4 steps < 0.99
  h = 1 / (1 + np.exp(-np.array(thetas)))
  params = _halting_only_params(thetas)
  r = act_jax.ponder(_halting_only_step, params, jnp.ones((2, 2)), jnp.ones((2, 2)),
                     max_steps=4, backend=backend)
  np.testing.assert_array_equal(r.stats.steps, [4, 4])
  np.testing.assert_allclose(r.stats.remainder, 1 - h[:3].sum(), rtol=1e-6)
  np.testing.assert_allclose(r.stats.halting_probs[0], list(h[:3]) + [1 - h[:3].sum()],
                             rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_threshold_uses_greater_or_equal(backend):
  # sigmoid(0) = 0.5 exactly; with epsilon = 0.5 the threshold is exactly 0.5.
  params = _halting_only_params([0.0, 0.0, 0.0])
  run = lambda eps: act_jax.ponder(_halting_only_step, params, jnp.ones((1, 1)),
                                   jnp.ones((1, 1)), max_steps=3, epsilon=eps,
                                   backend=backend).stats
  at_boundary = run(0.5)
  assert int(at_boundary.steps[0]) == 1 and float(at_boundary.remainder[0]) == 1.0
  above = run(0.49)  # threshold 0.51: 0.5 < 0.51 continues, 1.0 >= 0.51 halts
  assert int(above.steps[0]) == 2 and float(above.remainder[0]) == 0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_ponder_gradient_wrt_halting_units(backend):
  # dP/dh^n = -1 for n < N and 0 for n = N (Eq. 14); theta[n] = logit of h^n.
  thetas = np.array([-1.0, -0.5, 0.3, 0.0, 0.0], np.float32)
  h = 1 / (1 + np.exp(-thetas))
  assert h[:2].sum() < 0.99 <= h[:3].sum()  # N = 3
  params = _halting_only_params(thetas)

  def ponder_cost(params):
    r = act_jax.ponder(_halting_only_step, params, jnp.ones((1, 1)), jnp.ones((1, 1)),
                       max_steps=5, backend=backend)
    return jnp.sum(r.stats.ponder_cost), r.stats.steps

  grads, steps = jax.grad(ponder_cost, has_aux=True)(params)
  assert int(steps[0]) == 3
  dp_dh = np.asarray(grads["theta"]) / (h * (1 - h))
  np.testing.assert_allclose(dp_dh, [-1.0, -1.0, 0.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_example_runs_to_cap_while_others_halt_at_once(backend):
  max_steps = 6

  def step_fn(params, state, x, step_index):
    state = jnp.tanh(state * params["w"] + x)
    return PonderStep(state, state, params["bias"] + x[:, 0] * 20.0)

  params = {"w": jnp.float32(0.9), "bias": jnp.float32(-5.0)}
  x = jnp.array([[0.0], [1.0], [1.0], [1.0]])  # example 0: h = sigmoid(-5) per step
  state = jnp.zeros((4, 1))

  def loss(params, backend):
    r = act_jax.ponder(step_fn, params, state, x, max_steps=max_steps, backend=backend)
    return jnp.sum(r.state) + TAU * jnp.sum(r.stats.ponder_cost), r

  (_, r), grads = jax.value_and_grad(loss, has_aux=True)(params, backend)
  np.testing.assert_array_equal(r.stats.steps, [max_steps, 1, 1, 1])
  h = 1 / (1 + np.exp(5.0))
  np.testing.assert_allclose(r.stats.remainder, [1 - 5 * h, 1, 1, 1], rtol=1e-5)
  step = lambda p, s, x_, n: tuple(step_fn(p, s[None], x_[None], n - 1))
  ref = reference.batch_forward(lambda p, s, x_, n: jax.tree.map(lambda a: a[0], step(p, s, x_, n)),
                                params, state, x, [max_steps, 1, 1, 1], max_steps)
  ref_grads = jax.grad(
      lambda p: jnp.sum(reference.batch_forward(
          lambda p_, s, x_, n: jax.tree.map(lambda a: a[0], step(p_, s, x_, n)),
          p, state, x, [max_steps, 1, 1, 1], max_steps)[0])
      + TAU * jnp.sum(reference.batch_forward(
          lambda p_, s, x_, n: jax.tree.map(lambda a: a[0], step(p_, s, x_, n)),
          p, state, x, [max_steps, 1, 1, 1], max_steps)[3]))(params)
  _assert_tree_close(r.state, ref[0])
  _assert_tree_close(grads, ref_grads, rtol=1e-4)
