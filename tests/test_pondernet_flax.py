"""PonderNet halting in the NNX and Linen wrappers: the plain reference, same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import act_jax
import reference_pondernet as reference
from act_jax import linen as act_linen
from act_jax import nnx as act_nnx
from act_jax import pondernet
from test_flax import _nnx_to_linen_params

IN, HID, OUT, B, T, M, EPSILON, LAMBDA_P = 3, 8, 2, 6, 3, 6, 0.05, 0.4
X = jax.random.normal(jax.random.PRNGKey(0), (B, T, IN))
TARGETS = jax.random.normal(jax.random.PRNGKey(1), (B, T, OUT))


def _step_loss(output, target):
  return jnp.sum((output - target) ** 2, axis=-1)


def _nnx_model(backend="while"):
  rngs = nnx.Rngs(3)
  return act_nnx.AdaptiveComputationTime(
      nnx.SimpleCell(IN + 1, HID, rngs=rngs), out_features=OUT, max_steps=M, epsilon=EPSILON,
      halting_bias_init=-0.5, backend=backend, independent_examples=backend == "while",
      halting_rule="pondernet", rngs=rngs)


def _loss(result):
  output, expected_loss = result.outputs
  return (jnp.sum(expected_loss) + jnp.sum(output ** 2)
          + 0.1 * jnp.sum(pondernet.kl_divergence(result.stats, LAMBDA_P)))


def test_nnx_step_with_loss_matches_plain_reference():
  model = _nnx_model()
  cell = model.cell
  w_i, b_i, w_s = cell.dense_i.kernel[...], cell.dense_i.bias[...], cell.dense_h.kernel[...]
  w_h, b_h = model.halting.kernel[...][:, 0], model.halting.bias[...][0]
  w_y, b_y = model.output.kernel[...], model.output.bias[...]

  def ref_step(params, s, x, n):  # written out: tanh RNN, flag last, output layer per step
    x_flag = jnp.concatenate([x, jnp.array([1.0 if n == 1 else 0.0])])
    s = jnp.tanh(x_flag @ w_i + b_i + s @ w_s)
    return s, s @ w_y + b_y, s @ w_h + b_h

  carry = model.initialize_carry((B,))
  new_carry, ((y, expected_loss), stats) = model(carry, X[:, 0], targets=TARGETS[:, 0],
                                                 step_loss=_step_loss)
  with jax.enable_x64(True):
    steps = [reference.halting_steps(ref_step, None, carry[b], X[b, 0], M, EPSILON)
             for b in range(B)]
    s_ref, y_ref, loss_ref, p_ref, _ = reference.batch_forward(
        ref_step, None, carry, X[:, 0], steps, M, _step_loss, TARGETS[:, 0])
  assert len(set(steps)) >= 2, steps
  np.testing.assert_array_equal(stats.steps, steps)
  np.testing.assert_allclose(new_carry, s_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(expected_loss, loss_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats.halting_probs, p_ref, rtol=1e-5, atol=1e-7)
  # Without a step loss the mean-field output is the same (the output layer is linear).
  _, (y_mean_field, _) = model(carry, X[:, 0])
  np.testing.assert_allclose(y_mean_field, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", act_jax.BACKENDS)
def test_nnx_and_linen_agree_on_same_weights(backend):
  model = _nnx_model(backend)
  linen_model = act_linen.AdaptiveComputationTime(
      nn.SimpleCell(features=HID), out_features=OUT, max_steps=M, epsilon=EPSILON,
      halting_bias_init=-0.5, backend=backend, independent_examples=backend == "while",
      halting_rule="pondernet")
  init_vars = linen_model.init(jax.random.PRNGKey(0), X, targets=TARGETS, step_loss=_step_loss,
                               method=linen_model.ponder_sequence)
  variables = _nnx_to_linen_params(model)
  assert jax.tree.structure(variables) == jax.tree.structure(init_vars)
  run_nnx = lambda m: m.ponder_sequence(X, targets=TARGETS, step_loss=_step_loss)
  run_linen = lambda v: linen_model.apply(v, X, targets=TARGETS, step_loss=_step_loss,
                                          method=linen_model.ponder_sequence)
  a, b = run_nnx(model), run_linen(variables)
  assert len(set(np.asarray(a.stats.steps).ravel().tolist())) >= 2
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)
  grads_nnx = nnx.grad(lambda m: _loss(run_nnx(m)))(model)
  grads_linen = jax.grad(lambda v: _loss(run_linen(v)))(variables)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6),
               _nnx_to_linen_params(grads_nnx), grads_linen)
  assert float(jnp.abs(grads_linen["params"]["halting"]["kernel"]).sum()) > 0


def test_bad_settings_are_clear_errors():
  rngs = nnx.Rngs(0)
  with pytest.raises(ValueError, match="halting must be one of .*'geometric'"):
    act_nnx.AdaptiveComputationTime(nnx.SimpleCell(IN + 1, HID, rngs=rngs),
                                    halting_rule="geometric", rngs=rngs)
  model = _nnx_model()
  with pytest.raises(ValueError, match="step_loss and targets go together"):
    model.ponder_sequence(X, targets=TARGETS)
  linen_model = act_linen.AdaptiveComputationTime(nn.SimpleCell(features=HID),
                                                  halting_rule="PonderNet")
  with pytest.raises(ValueError, match="halting must be one of .*'PonderNet'"):
    linen_model.init(jax.random.PRNGKey(0), X, method=linen_model.ponder_sequence)
