"""ACT over depth against plainly written per-position references.

The reference for a block that mixes positions (a tiny attention layer) runs
one sequence at a time: a Python loop over depth that applies the block to the
whole sequence, frozen halted positions included, and a Python loop over
positions with the halting rule written out by hand (docs/equations.md section 10). As in
``reference.py``, it first finds every position's ``N`` from concrete values,
then unrolls with those ``N`` fixed, which ``jax.grad`` differentiates.
"""

import functools
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import act_jax
import reference
from act_jax import depth

F, L, B, M = 6, 5, 3, 6
EPSILON, TAU = 0.01, 0.37
X = jax.random.normal(jax.random.PRNGKey(0), (B, L, F))
VALID = np.array([[True] * 5, [True] * 3 + [False] * 2, [True] * 4 + [False]])
PROB_WEIGHTS = jnp.linspace(0.1, 1.0, M)  # puts a gradient on every p^n


class NnxMixer(nnx.Module):
  """One-head attention over the valid positions, with a tanh residual."""

  def __init__(self, features: int, rngs: nnx.Rngs):
    self.query = nnx.Linear(features, features, rngs=rngs)
    self.key = nnx.Linear(features, features, rngs=rngs)
    self.value = nnx.Linear(features, features, rngs=rngs)

  def __call__(self, x, key_valid):
    scores = jnp.einsum("...qf,...kf->...qk", self.query(x), self.key(x)) / np.sqrt(F)
    scores = jnp.where(key_valid[..., None, :], scores, -1e9)
    return jnp.tanh(x + jax.nn.softmax(scores, axis=-1) @ self.value(x))


class LinenMixer(nn.Module):
  """:class:`NnxMixer` in Linen, with the same parameter tree."""

  @nn.compact
  def __call__(self, x, key_valid):
    dense = lambda name: nn.Dense(F, name=name)(x)
    scores = jnp.einsum("...qf,...kf->...qk", dense("query"), dense("key")) / np.sqrt(F)
    scores = jnp.where(key_valid[..., None, :], scores, -1e9)
    return jnp.tanh(x + jax.nn.softmax(scores, axis=-1) @ dense("value"))


def _weights():
  """Weights under which N takes five values: 0 (padding), 1, 2, 5 and the cap."""
  model = depth.DepthACT(NnxMixer(F, nnx.Rngs(1)), F, max_steps=M, rngs=nnx.Rngs(2))
  weights = nnx.to_pure_dict(nnx.state(model))
  weights["halting"] = {"kernel": jax.random.normal(jax.random.PRNGKey(2), (F, 1)) * 2.5,
                        "bias": jnp.array([-1.5])}
  return weights


WEIGHTS = _weights()


# ----------------------------------------------------------------------------
# The plain reference: one sequence, loops over depth and positions.
# ----------------------------------------------------------------------------


def _sinusoid(position, features):
  """Vaswani et al.'s signal, written out: sin at even features, cos at odd."""
  signal = np.zeros(features, np.float32)
  for k in range(features):
    angle = position / 10000.0 ** (2 * (k // 2) / features)
    signal[k] = np.sin(angle) if k % 2 == 0 else np.cos(angle)
  return signal


def _dense(w, x):
  return x @ w["kernel"] + w["bias"]


def _reference_mixer(w, x, valid):
  """The attention block on one sequence ``x`` ``[L, F]``."""
  scores = _dense(w["query"], x) @ _dense(w["key"], x).T / np.sqrt(F)
  scores = jnp.where(np.asarray(valid)[None, :], scores, -1e9)
  attention = jnp.exp(scores - scores.max(axis=1, keepdims=True))
  attention = attention / attention.sum(axis=1, keepdims=True)
  return jnp.tanh(x + attention @ _dense(w["value"], x))


def _reference_sequence(weights, x, valid, steps=None):
  """UT with ACT on one sequence: state ``[L, F]``, halting per position.

  With ``steps`` None each position's ``N`` is found from concrete values
  (float32, as the paper's rule reads: halt at the first n with
  ``sum_{k<=n} h^k >= 1 - eps``, or at M); otherwise ``steps`` fixes it.
  Returns the mean-field state, N, R and p per position.
  """
  length = x.shape[0]
  threshold = np.float32(1.0) - np.float32(EPSILON)
  states = [x[i] for i in range(length)]
  mean = [x[i] for i in range(length)]  # padding keeps its input
  running = [bool(valid[i]) for i in range(length)]
  total_h = [0.0] * length
  n_steps, remainder = [0] * length, [0.0] * length
  probs = [[0.0] * M for _ in range(length)]
  for n in range(1, M + 1):
    if not any(running):
      break
    block_input = jnp.stack([states[i] + _sinusoid(i, F) + _sinusoid(n, F)
                             for i in range(length)])
    new_states = _reference_mixer(weights["block"], block_input, valid)
    for i in range(length):
      if not running[i]:
        continue  # halted (frozen) or padding
      states[i] = new_states[i]
      h = 1.0 / (1.0 + jnp.exp(-_dense(weights["halting"], states[i])[0]))
      if steps is None:
        halts = np.float32(total_h[i]) + np.float32(h) >= threshold or n == M
      else:
        halts = n == steps[i]
      if halts:
        p = 1.0 - total_h[i]
        running[i], n_steps[i], remainder[i] = False, n, p
      else:
        p = h
        total_h[i] = total_h[i] + h
      mean[i] = (0.0 if n == 1 else mean[i]) + p * states[i]
      probs[i][n - 1] = p
  return (jnp.stack(mean), np.array(n_steps), jnp.array(remainder),
          jnp.array([jnp.stack([jnp.float32(p) for p in row]) for row in probs]))


def _loss(state, steps, remainder, probs):
  """A task loss touching every feature and step, plus tau * sum(N + R)."""
  return (jnp.sum(jnp.sin(3.0 * state) * (1.0 + jnp.arange(F)))
          + TAU * jnp.sum(steps + remainder) + jnp.sum(probs * PROB_WEIGHTS))


def _reference_loss_and_grads(weights, x, valid):
  steps = [_reference_sequence(weights, x[b], valid[b])[1] for b in range(len(x))]

  def loss(weights, x):
    outs = [_reference_sequence(weights, x[b], valid[b], steps[b]) for b in range(len(x))]
    state, steps_, remainder, probs = (jnp.stack(a) for a in zip(*outs))
    return _loss(state, steps_, remainder, probs), (state, steps_, remainder, probs)

  (value, aux), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(weights, x)
  return value, aux, grads


# ----------------------------------------------------------------------------
# The library: the NNX module and the Linen adapter, jitted once per backend.
# ----------------------------------------------------------------------------

GRAPHDEFS = {
    backend: nnx.split(depth.DepthACT(
        NnxMixer(F, nnx.Rngs(0)), F, max_steps=M, epsilon=EPSILON,
        step_encoding=depth.add_position_and_depth_signal, backend=backend,
        rngs=nnx.Rngs(0)))[0]
    for backend in act_jax.BACKENDS
}


def _result_loss(result):
  stats = result.stats
  return _loss(result.state, stats.steps, stats.remainder, stats.halting_probs)


@functools.partial(jax.jit, static_argnames="backend")
def _nnx_loss_and_grads(weights, x, valid, backend):
  def loss(weights, x):
    result = nnx.merge(GRAPHDEFS[backend], weights)(x, valid, mask=valid)
    return _result_loss(result), result

  return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(weights, x)


def _linen_model(backend, **overrides):
  options = dict(max_steps=M, epsilon=EPSILON, backend=backend,
                 step_encoding=depth.add_position_and_depth_signal)
  return depth.LinenDepthACT(LinenMixer(), **{**options, **overrides})


@functools.partial(jax.jit, static_argnames="backend")
def _linen_loss_and_grads(weights, x, valid, backend):
  model = _linen_model(backend)

  def loss(weights, x):
    result = model.apply({"params": weights}, x, valid, mask=valid)
    return _result_loss(result), result

  return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(weights, x)


def _assert_tree_close(a, b, rtol=2e-4, atol=2e-5):
  chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def reference_run():
  return _reference_loss_and_grads(WEIGHTS, X, VALID)


@pytest.mark.parametrize("backend", act_jax.BACKENDS)
def test_attention_block_matches_reference(backend, reference_run):
  (value, result), grads = _nnx_loss_and_grads(WEIGHTS, X, VALID, backend)
  ref_value, (state, steps, remainder, probs), ref_grads = reference_run
  # Mixed N, the cap and padding all occur.
  assert {0, 1, M} <= set(steps.ravel().tolist()) and len(set(steps.ravel().tolist())) >= 4
  np.testing.assert_array_equal(result.stats.steps, steps)
  _assert_tree_close(result.state, state)
  _assert_tree_close(result.stats.remainder, remainder)
  _assert_tree_close(result.stats.halting_probs, probs)
  _assert_tree_close(result.stats.ponder_cost, steps + remainder)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  _assert_tree_close(grads, ref_grads, rtol=1e-3, atol=1e-4)  # block, halting, input


@pytest.mark.parametrize("backend", act_jax.BACKENDS)
def test_nnx_and_linen_agree_on_same_weights(backend):
  linen_model = _linen_model(backend)
  init_params = linen_model.init(jax.random.PRNGKey(0), X, VALID, mask=VALID)["params"]
  assert jax.tree.structure(init_params) == jax.tree.structure(WEIGHTS)
  np.testing.assert_array_equal(init_params["halting"]["bias"], [1.0])
  _assert_tree_close(_linen_loss_and_grads(WEIGHTS, X, VALID, backend),
                     _nnx_loss_and_grads(WEIGHTS, X, VALID, backend), rtol=1e-5, atol=1e-6)


# A per-pixel MLP over [batch, height, width, channels]: every pixel is an
# independent ACT example, checked against the one-example reference.
_pixel_keys = jax.random.split(jax.random.PRNGKey(4), 3)
PIXEL_PARAMS = ({"kernel": jax.random.normal(_pixel_keys[0], (F, F)), "bias": jnp.zeros(F)},
                {"kernel": jax.random.normal(_pixel_keys[1], (F, 1)), "bias": jnp.array([-1.0])})
IMAGE = jax.random.normal(_pixel_keys[2], (2, 2, 3, F))


def _pixel_mlp(w, x):
  return jnp.tanh(x @ w["kernel"] + w["bias"])


@pytest.fixture(scope="module")
def pixel_reference_run():
  def pixel_step(params, s, _, n):
    s = _pixel_mlp(params[0], s + _sinusoid(n, F))
    return s, s, _dense(params[1], s)[0]

  pixels = IMAGE.reshape(-1, F)
  steps = [reference.halting_steps(pixel_step, PIXEL_PARAMS, pixels[i], None, M, EPSILON)
           for i in range(len(pixels))]

  def loss(params, pixels):
    state, _, remainder, rho, probs = reference.batch_forward(
        pixel_step, params, pixels, jnp.zeros((len(pixels), 1)), steps, M)
    return jnp.sum(jnp.sin(state)) + TAU * jnp.sum(rho), (state, remainder, probs)

  (_, aux), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(PIXEL_PARAMS, pixels)
  return steps, aux, grads


@functools.partial(jax.jit, static_argnames="backend")
def _pixel_loss_and_grads(params, image, backend):
  def loss(params, image):
    r = depth.ponder_depth(_pixel_mlp, _dense, params, image, max_steps=M, backend=backend,
                           step_encoding=depth.add_depth_signal)
    return jnp.sum(jnp.sin(r.state)) + TAU * jnp.sum(r.stats.ponder_cost), r

  return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, image)


@pytest.mark.parametrize("backend", act_jax.BACKENDS)
def test_halts_per_pixel_over_any_leading_axes(backend, pixel_reference_run):
  (_, result), grads = _pixel_loss_and_grads(PIXEL_PARAMS, IMAGE, backend)
  steps, (state, remainder, probs), ref_grads = pixel_reference_run
  assert result.stats.steps.shape == (2, 2, 3)
  assert result.stats.halting_probs.shape == (2, 2, 3, M)
  assert len(set(steps)) >= 3, steps
  np.testing.assert_array_equal(result.stats.steps.ravel(), steps)
  _assert_tree_close(result.state.reshape(-1, F), state)
  _assert_tree_close(result.stats.remainder.ravel(), remainder)
  _assert_tree_close(result.stats.halting_probs.reshape(-1, M), probs)
  _assert_tree_close((grads[0], grads[1].reshape(-1, F)), ref_grads, rtol=1e-3, atol=1e-4)


def test_timing_signal_is_the_sinusoid():
  np.testing.assert_allclose(depth.timing_signal(jnp.arange(4), 7),
                             np.stack([_sinusoid(i, 7) for i in range(4)]), atol=1e-6)


def test_starts_at_two_steps_with_the_paper_init():
  # b_h = +1 and W_h = 0: h = sigmoid(1) = 0.731 per step, so N = 2 and
  # R = 1 - 0.731 everywhere (docs/equations.md section 9).
  model = depth.DepthACT(NnxMixer(F, nnx.Rngs(0)), F, max_steps=M, rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(model.halting.bias[...], [1.0])
  model.halting.kernel[...] = jnp.zeros_like(model.halting.kernel[...])
  result = model(X, VALID, mask=VALID)
  np.testing.assert_array_equal(result.stats.steps, np.where(VALID, 2, 0))
  np.testing.assert_allclose(result.stats.remainder,
                             np.where(VALID, 1 - jax.nn.sigmoid(1.0), 0.0), rtol=1e-6)
  np.testing.assert_array_equal(result.state[~VALID], X[~VALID])


def test_bad_input_is_a_clear_error():
  block = NnxMixer(F, nnx.Rngs(0))
  build = lambda **kw: depth.DepthACT(block, **{"features": F, "max_steps": M, **kw},
                                      rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="max_steps must be an integer >= 1, got 0"):
    build(max_steps=0)
  for epsilon in (0.0, 1.0, 1.5):
    with pytest.raises(ValueError, match=f"epsilon must be in \\(0, 1\\), got {epsilon}"):
      build(epsilon=epsilon)
  with pytest.raises(ValueError, match="features must be a positive int, got 0"):
    build(features=0)
  with pytest.raises(ValueError, match=r"x must be \[\*positions, 6\].*got \[3, 5, 4\]"):
    build()(X[..., :4], VALID)
  with pytest.raises(ValueError, match=r"state must be .* got float32\[6\]"):
    depth.ponder_depth(_pixel_mlp, _dense, ({}, {}), jnp.zeros(F), max_steps=M)
  with pytest.raises(ValueError, match=r"apply_halting must return \[\*positions, 1\] = "
                     r"\[3, 5, 1\], got \[3, 5\]"):  # would halt over the wrong axes
    depth.ponder_depth(lambda w, x: x, lambda w, x: x.sum(-1), ({}, {}), X, max_steps=M)
  variables = _linen_model("while").init(jax.random.PRNGKey(0), X, VALID)
  with pytest.raises(ValueError, match=r"x must be \[\*positions, 6\].*got \[3, 5, 4\]"):
    _linen_model("while").apply(variables, X[..., :4], VALID)
  with pytest.raises(ValueError, match="max_steps must be an integer >= 1, got 0"):
    _linen_model("while", max_steps=0).init(jax.random.PRNGKey(0), X, VALID)


def test_universal_transformer_example_runs():
  # A smoke test of examples/universal_transformer/train.py: a few steps, tiny.
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = os.path.join(repo, "examples", "universal_transformer", "train.py")
  for extra in ([], ["--fixed_depth=2"]):
    result = subprocess.run(
        [sys.executable, script, "--train_steps=3", "--batch_size=8", "--features=16",
         "--mlp_features=16", "--num_heads=2", "--max_steps=4", "--min_bits=4", "--max_bits=6",
         "--eval_size=16", "--log_every=1", *extra], capture_output=True, text=True, cwd=repo)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "accuracy" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("backend", act_jax.BACKENDS)
def test_poisoned_padding_reaches_no_gradient(backend):
  # NaN at padded positions: the attention block never reads them (weight 0), and
  # they are not computed; the result and gradients equal those of zero padding.
  def loss(weights, x):
    result = nnx.merge(GRAPHDEFS[backend], weights)(x, VALID, mask=VALID)
    state = jnp.where(VALID[..., None], result.state, 0.0)
    return _loss(state, result.stats.steps, result.stats.remainder,
                 result.stats.halting_probs), state

  grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
  (value, state), grads = grad(WEIGHTS, jnp.where(VALID[..., None], X, jnp.nan))
  (ref_value, ref_state), ref_grads = grad(WEIGHTS, jnp.where(VALID[..., None], X, 0.0))
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  np.testing.assert_allclose(state, ref_state, rtol=1e-6, atol=1e-7)
  _assert_tree_close(grads, ref_grads, rtol=1e-5, atol=1e-6)
