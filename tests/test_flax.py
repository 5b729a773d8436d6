"""The NNX module and the Linen adapter: every cell, same numbers, the reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import act_jax
import reference
from act_jax import linen as act_linen
from act_jax import nnx as act_nnx

IN, HID, OUT, B, T, M = 3, 8, 2, 4, 5, 12
X = jax.random.normal(jax.random.PRNGKey(0), (B, T, IN))

NNX_CELLS = [nnx.SimpleCell, nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell]


def _loss(result):
  return jnp.sum(result.outputs ** 2) + act_jax.ponder_penalty(result.stats.ponder_cost, 0.01)


@pytest.mark.parametrize("cell_cls", NNX_CELLS, ids=lambda c: c.__name__)
def test_nnx_cells_train_and_start_at_two_steps(cell_cls):
  rngs = nnx.Rngs(0)
  model = act_nnx.AdaptiveComputationTime(cell_cls(IN + 1, HID, rngs=rngs), out_features=OUT,
                                          max_steps=M, rngs=rngs)
  np.testing.assert_array_equal(model.halting.bias[...], [1.0])
  model.halting.kernel[...] = jnp.zeros_like(model.halting.kernel[...])

  @nnx.jit
  def grad_step(model):
    return nnx.value_and_grad(lambda m: _loss(m.ponder_sequence(X)))(model)

  result = model.ponder_sequence(X)
  # h = sigmoid(1) = 0.731 per step: N = 2, R = 1 - 0.731 (docs/equations.md section 9).
  np.testing.assert_array_equal(result.stats.steps, 2)
  np.testing.assert_allclose(result.stats.remainder, 1 - jax.nn.sigmoid(1.0), rtol=1e-6)
  assert result.outputs.shape == (B, T, OUT)
  loss, grads = grad_step(model)
  assert np.isfinite(float(loss))
  grads = nnx.to_pure_dict(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["cell"])) > 0
  assert float(jnp.abs(grads["halting"]["kernel"]).sum()) > 0


def test_nnx_step_matches_plain_reference():
  rngs = nnx.Rngs(1)
  cell = nnx.SimpleCell(IN + 1, HID, rngs=rngs)
  model = act_nnx.AdaptiveComputationTime(cell, out_features=OUT, max_steps=M,
                                          halting_bias_init=-0.5, rngs=rngs)
  w_i, b_i = cell.dense_i.kernel[...], cell.dense_i.bias[...]
  w_s = cell.dense_h.kernel[...]
  w_h, b_h = model.halting.kernel[...][:, 0], model.halting.bias[...][0]
  w_y, b_y = model.output.kernel[...], model.output.bias[...]

  def ref_step(params, s, x, n):  # written out: tanh RNN with the flag appended last
    x_flag = jnp.concatenate([x, jnp.array([1.0 if n == 1 else 0.0])])
    s = jnp.tanh(x_flag @ w_i + b_i + s @ w_s)
    return s, s @ w_y + b_y, s @ w_h + b_h

  carry = model.initialize_carry((B,))
  new_carry, (y, stats) = model(carry, X[:, 0])
  steps = [reference.halting_steps(ref_step, None, carry[b], X[b, 0], M, 0.01) for b in range(B)]
  s_ref, y_ref, r_ref, _, p_ref = reference.batch_forward(ref_step, None, carry, X[:, 0], steps, M)
  np.testing.assert_array_equal(stats.steps, steps)
  np.testing.assert_allclose(new_carry, s_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats.halting_probs, p_ref, rtol=1e-5, atol=1e-7)


def _nnx_to_linen_params(model):
  """NNX parameters renamed to the Linen module's tree (same weights)."""
  rename = {"if_": "if", "dense_i": "i", "dense_h": "h"}
  fix = lambda d: {rename.get(k, k): fix(v) if isinstance(v, dict) else v for k, v in d.items()}
  return {"params": fix(nnx.to_pure_dict(nnx.state(model, nnx.Param)))}


@pytest.mark.parametrize("backend", act_jax.BACKENDS)
@pytest.mark.parametrize("nnx_cls,linen_cls", [(nnx.LSTMCell, nn.LSTMCell),
                                               (nnx.SimpleCell, nn.SimpleCell)],
                         ids=["lstm", "simple"])
def test_nnx_and_linen_agree_on_same_weights(nnx_cls, linen_cls, backend):
  rngs = nnx.Rngs(2)
  model = act_nnx.AdaptiveComputationTime(nnx_cls(IN + 1, HID, rngs=rngs), out_features=OUT,
                                          max_steps=M, halting_bias_init=-1.0,
                                          backend=backend, rngs=rngs)
  linen_model = act_linen.AdaptiveComputationTime(linen_cls(features=HID), out_features=OUT,
                                                  max_steps=M, halting_bias_init=-1.0,
                                                  backend=backend)
  init_vars = linen_model.init(jax.random.PRNGKey(0), X, method=linen_model.ponder_sequence)
  variables = _nnx_to_linen_params(model)
  assert jax.tree.structure(variables) == jax.tree.structure(init_vars)
  lengths = jnp.array([5, 3, 1, 4])
  a = model.ponder_sequence(X, lengths=lengths)
  b = linen_model.apply(variables, X, lengths=lengths, method=linen_model.ponder_sequence)
  assert len(set(np.asarray(a.stats.steps).ravel().tolist())) >= 2
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)
  grads_nnx = nnx.grad(lambda m: _loss(m.ponder_sequence(X, lengths=lengths)))(model)
  grads_linen = jax.grad(lambda v: _loss(linen_model.apply(
      v, X, lengths=lengths, method=linen_model.ponder_sequence)))(variables)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6),
               _nnx_to_linen_params(grads_nnx), grads_linen)
  # The single-step call agrees too.
  carry = model.initialize_carry((B,))
  _, (y_a, stats_a) = model(carry, X[:, 0])
  _, (y_b, stats_b) = linen_model.apply(variables, carry, X[:, 0])
  np.testing.assert_allclose(y_a, y_b, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(stats_a.steps, stats_b.steps)


def test_bad_construction_is_a_clear_error():
  rngs = nnx.Rngs(0)
  with pytest.raises(ValueError, match="in_features.*got 1"):
    act_nnx.AdaptiveComputationTime(nnx.SimpleCell(1, HID, rngs=rngs), rngs=rngs)
  with pytest.raises(ValueError, match="out_features.*got 0"):
    act_nnx.AdaptiveComputationTime(nnx.SimpleCell(4, HID, rngs=rngs), out_features=0,
                                    rngs=rngs)
  with pytest.raises(ValueError, match="epsilon"):
    act_nnx.AdaptiveComputationTime(nnx.SimpleCell(4, HID, rngs=rngs), epsilon=2.0, rngs=rngs)
  model = act_nnx.AdaptiveComputationTime(nnx.SimpleCell(4, HID, rngs=rngs), rngs=rngs)
  with pytest.raises(ValueError, match=r"inputs have 2 features, but the cell reads 4 = 3 input"):
    model.ponder_sequence(jnp.zeros((4, 5, 2)))
  with pytest.raises(ValueError, match=r"inputs must be \[batch, time, 3\], got \[4, 3\]"):
    model.ponder_sequence(jnp.zeros((4, 3)))
  linen_model = act_linen.AdaptiveComputationTime(nn.SimpleCell(features=HID), max_steps=0)
  with pytest.raises(ValueError, match="max_steps.*got 0"):
    linen_model.init(jax.random.PRNGKey(0), X, method=linen_model.ponder_sequence)


def test_cell_without_the_flag_input_is_a_clear_error():
  rngs = nnx.Rngs(0)
  model = act_nnx.AdaptiveComputationTime(nnx.SimpleCell(8, 16, rngs=rngs), max_steps=5,
                                          rngs=rngs)
  x = jnp.ones((2, 3, 8))
  message = (r"inputs have 8 features, but the cell reads 8 = 7 input features \+ 1 first-step "
             r"flag; for 8 input features build the cell with in_features=8 \+ 1")
  with pytest.raises(ValueError, match=message):
    model.ponder_sequence(x)
  with pytest.raises(ValueError, match=message):
    model(model.initialize_carry((2,)), x[:, 0])


def test_float64_models_have_float64_halting_and_output_layers():
  # dtype / param_dtype reach the wrappers' own layers, as Flax layers take them.
  from act_jax import depth

  with jax.enable_x64(True):
    f64 = jnp.float64
    x = X.astype(f64)
    rngs = nnx.Rngs(0)
    model = act_nnx.AdaptiveComputationTime(
        nnx.SimpleCell(IN + 1, HID, dtype=f64, param_dtype=f64, rngs=rngs), out_features=OUT,
        max_steps=M, param_dtype=f64, rngs=rngs)
    _, grads = nnx.value_and_grad(lambda m: _loss(m.ponder_sequence(x)))(model)
    linen_model = act_linen.AdaptiveComputationTime(nn.SimpleCell(HID, dtype=f64, param_dtype=f64),
                                                    out_features=OUT, max_steps=M,
                                                    param_dtype=f64)
    variables = linen_model.init(jax.random.PRNGKey(0), x, method="ponder_sequence")
    linen_result = linen_model.apply(variables, x, method="ponder_sequence")
    depth_model = depth.DepthACT(nnx.Linear(HID, HID, param_dtype=f64, rngs=rngs), HID,
                                 max_steps=M, param_dtype=f64, rngs=rngs)
    linen_depth = depth.LinenDepthACT(nn.Dense(HID, param_dtype=f64), max_steps=M,
                                      param_dtype=f64)
    state = jnp.ones((B, T, HID), f64)
    depth_variables = linen_depth.init(jax.random.PRNGKey(0), state)
    for tree in (nnx.state(model, nnx.Param), grads, variables, nnx.state(depth_model),
                 depth_variables):
      dtypes = {leaf.dtype for leaf in jax.tree.leaves(tree)}
      assert dtypes == {jnp.dtype(f64)}, dtypes
    for outputs in (model.ponder_sequence(x).outputs, linen_result.outputs,
                    depth_model(state).state, linen_depth.apply(depth_variables, state).state):
      assert outputs.dtype == f64
