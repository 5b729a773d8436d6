"""PonderNet halting against the plain float64 reference: values, gradients, edge cases,
on every loop (scan, while, while with compaction)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
from act_jax import PonderStep, pondernet
import reference_pondernet as reference
from test_ponder_loop import CELLS, _inputs, _task_loss, batched_step, reference_step

LOOPS = {"scan": {"backend": "scan"},
         "while": {"backend": "while", "chunk_steps": 16},
         "while_chunked": {"backend": "while", "chunk_steps": 2},
         "while_flag_only": {"backend": "while", "chunk_steps": 2, "first_step_flag_only": True},
         "compact": {"backend": "while", "chunk_steps": 2, "independent_examples": True}}
LAMBDA_P, BETA = 0.3, 0.7
MAX_STEPS, EPSILON = 7, 0.05


def _step_loss(output, target):
  return jnp.sum((output - target) ** 2, axis=-1)


def _extra(probs, remainder):
  """Terms that send a cotangent into every step's weight and into R."""
  return jnp.sum(probs * jnp.linspace(0.1, 1.0, probs.shape[-1])) + 0.3 * jnp.sum(remainder)


def _float64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _case(cell_name, batch=16):
  params = _float64(CELLS[cell_name][0](jax.random.PRNGKey(1), halting_bias=-0.5))
  state, x = _float64(_inputs(jax.random.PRNGKey(2), batch, cell_name))
  targets = jax.random.normal(jax.random.PRNGKey(3), (batch, 2), jnp.float64)
  return params, state, x, targets


@functools.partial(jax.jit, static_argnames=("cell_name", "loop"))
def _library(params, state, x, targets, *, cell_name, loop):
  step_fn = pondernet.with_step_loss(batched_step(CELLS[cell_name][1]), _step_loss)

  def loss(params, state, x):
    r = act_jax.ponder(step_fn, params, state, (x, targets), max_steps=MAX_STEPS,
                       epsilon=EPSILON, halting="pondernet", **LOOPS[loop])
    output, expected_loss = r.output
    total = (_task_loss(r.state, output) + jnp.sum(expected_loss)
             + BETA * jnp.sum(pondernet.kl_divergence(r.stats, LAMBDA_P))
             + _extra(r.stats.halting_probs, r.stats.remainder))
    return total, (r, expected_loss)

  return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, state, x)


def _reference(params, state, x, targets, cell_name):
  step = reference_step(CELLS[cell_name][1])
  steps = [reference.halting_steps(step, params, jax.tree.map(lambda s: s[b], state), x[b],
                                   MAX_STEPS, EPSILON) for b in range(x.shape[0])]

  def loss(params, state, x):
    s, y, expected_loss, probs, remainder = reference.batch_forward(
        step, params, state, x, steps, MAX_STEPS, _step_loss, targets)
    kl = sum(reference.kl_divergence(probs[b], steps[b], LAMBDA_P) for b in range(len(steps)))
    total = (_task_loss(s, y) + jnp.sum(expected_loss) + BETA * kl
             + _extra(probs, remainder))
    return total, (s, y, expected_loss, probs, remainder)

  value_and_grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, state, x)
  return np.array(steps), value_and_grads


def _close(a, b, rtol=1e-9, atol=1e-11):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("cell_name", ["tanh", "lstm"])
def test_matches_reference_values_and_gradients(loop, cell_name):
  with jax.enable_x64(True):
    params, state, x, targets = _case(cell_name)
    (value, (r, expected_loss)), grads = _library(params, state, x, targets,
                                                 cell_name=cell_name, loop=loop)
    steps, ((ref_value, (s, y, ref_loss, probs, remainder)), ref_grads) = _reference(
        params, state, x, targets, cell_name)
    # Mixed N, the cap included, and a batch that halts at different steps.
    assert len(set(steps.tolist())) >= 3 and MAX_STEPS in steps and steps.min() < 4, steps
    np.testing.assert_array_equal(r.stats.steps, steps)
    _close(r.state, s)
    _close(r.output[0], y)
    _close(expected_loss, ref_loss)
    _close(r.stats.halting_probs, probs)
    _close(r.stats.remainder, remainder, atol=1e-12)
    assert r.stats.halting_probs.dtype == jnp.float64
    np.testing.assert_array_equal(r.stats.remainder[steps == MAX_STEPS], 0.0)  # lambda_M = 1
    assert np.all(r.stats.remainder <= EPSILON)
    np.testing.assert_allclose(value, ref_value, rtol=1e-10)
    _close(grads, ref_grads, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("loop", ["scan", "while", "compact"])
def test_float32_model_matches_the_float64_reference(loop):
  with jax.enable_x64(True):
    params, state, x, targets = _case("tanh")
  params32, state32, x32, targets32 = jax.tree.map(
      lambda a: jnp.asarray(a, jnp.float32), (params, state, x, targets))
  (value, (r, _)), grads = _library(params32, state32, x32, targets32, cell_name="tanh",
                                    loop=loop)
  assert r.stats.halting_probs.dtype == jnp.float32
  with jax.enable_x64(True):
    steps, ((ref_value, _), ref_grads) = _reference(params, state, x, targets, "tanh")
  np.testing.assert_array_equal(r.stats.steps, steps)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  _close(grads, ref_grads, rtol=2e-3, atol=2e-4)


def test_truncated_geometric_and_kl_match_the_reference():
  steps = jnp.array([1, 3, 6, 0])
  q = pondernet.truncated_geometric(steps, 6, LAMBDA_P)
  for b, n in enumerate([1, 3, 6]):
    np.testing.assert_allclose(q[b], reference.truncated_geometric(n, 6, LAMBDA_P), rtol=1e-6)
  np.testing.assert_array_equal(q[3], 0.0)
  probs = jnp.array([[1.0, 0, 0, 0, 0, 0], [0.2, 0.5, 0.29, 0, 0, 0],
                     [0.1, 0.1, 0.2, 0.2, 0.2, 0.2], [0.0] * 6])
  stats = act_jax.PonderStats(steps, jnp.zeros(4), probs)
  kl = pondernet.kl_divergence(stats, LAMBDA_P)
  for b, n in enumerate([1, 3, 6]):
    np.testing.assert_allclose(kl[b], reference.kl_divergence(probs[b], n, LAMBDA_P),
                               rtol=1e-5, atol=1e-6)
  assert float(kl[3]) == 0.0
  np.testing.assert_allclose(pondernet.kl_penalty(stats, 2.0, LAMBDA_P), 2.0 * jnp.mean(kl),
                             rtol=1e-6)
  mean_steps = [sum((n + 1) * v for n, v in enumerate(row)) for row in probs.tolist()]
  np.testing.assert_allclose(pondernet.expected_steps(stats), mean_steps, rtol=1e-6)


def _halting_only_step(params, state, x, step_index):
  """The halting logit at step n is theta[n]; the output is the step number."""
  state = jnp.tanh(state + x + params["drive"])
  n = jnp.broadcast_to(step_index + 1, state.shape[:1]).astype(state.dtype)
  logit = jnp.broadcast_to(params["theta"][step_index], state.shape[:1])
  return PonderStep(state, n[:, None] * jnp.ones_like(state), logit)


@pytest.mark.parametrize("loop", ["scan", "while", "compact"])
def test_cap_puts_the_rest_on_the_last_step_and_logit_m_gets_no_gradient(loop):
  thetas = jnp.array([-3.0, -2.0, -2.5, 5.0])
  params = {"theta": thetas, "drive": jnp.float32(0.1)}

  def probs_sum(params):
    r = act_jax.ponder(_halting_only_step, params, jnp.ones((2, 2)), jnp.ones((2, 2)),
                       max_steps=4, halting="pondernet", **LOOPS[loop])
    return jnp.sum(r.stats.halting_probs * jnp.arange(1.0, 5.0)), r

  grads, r = jax.grad(probs_sum, has_aux=True)(params)
  lam = jax.nn.sigmoid(thetas[:3])
  p = [lam[0], lam[1] * (1 - lam[0]), lam[2] * (1 - lam[0]) * (1 - lam[1])]
  np.testing.assert_array_equal(r.stats.steps, [4, 4])
  np.testing.assert_allclose(r.stats.halting_probs[0], p + [1 - sum(p)], rtol=1e-6)
  np.testing.assert_array_equal(r.stats.remainder, [0.0, 0.0])
  assert float(grads["theta"][3]) == 0.0 and np.all(np.asarray(grads["theta"][:3]) != 0)


@pytest.mark.parametrize("loop", ["scan", "while", "compact"])
def test_evaluation_at_the_most_likely_and_a_sampled_step(loop):
  thetas = jnp.array([-1.0, 0.5, -0.5, 0.0, 0.0])
  params = {"theta": thetas, "drive": jnp.float32(0.1)}
  batch = 4000
  state, x = jnp.ones((batch, 1)), jnp.ones((batch, 1))
  r = act_jax.ponder(_halting_only_step, params, state, x, max_steps=5, epsilon=0.01,
                     halting="pondernet", **LOOPS[loop])
  probs = np.asarray(r.stats.halting_probs[0])
  np.testing.assert_array_equal(pondernet.most_likely_steps(r.stats),
                                np.full(batch, np.argmax(probs) + 1))
  sampled = pondernet.sampled_steps(r.stats, jax.random.PRNGKey(0))
  frequency = np.bincount(np.asarray(sampled), minlength=6)[1:] / batch
  np.testing.assert_allclose(frequency, probs / probs.sum(), atol=0.03)
  # Pondering again, halting exactly at the sampled step, gives that step's output.
  at_step = act_jax.ponder(pondernet.at_halting_step(_halting_only_step), params, state,
                           (x, sampled), max_steps=5, **LOOPS[loop])
  np.testing.assert_array_equal(at_step.stats.steps, sampled)
  np.testing.assert_array_equal(at_step.output[:, 0], sampled.astype(jnp.float32))


@pytest.mark.parametrize("loop", ["scan", "while", "compact"])
def test_nan_halting_logit_halts_at_once_and_shows(loop):
  def step_fn(params, state, x, step_index):
    del step_index
    state = jnp.tanh(state * params + x)
    logit = jnp.where(jnp.arange(4) == 1, jnp.nan, -1.0 + 0.0 * state[:, 0])
    return PonderStep(state, state, logit)

  result = act_jax.ponder(step_fn, jnp.float32(0.7), jnp.zeros((4, 2)), jnp.ones((4, 2)),
                          max_steps=50, halting="pondernet", **LOOPS[loop])
  lam = float(jax.nn.sigmoid(jnp.float32(-1.0)))
  healthy = int(np.ceil(np.log(0.01) / np.log1p(-lam)))  # (1 - lambda)^N <= epsilon
  np.testing.assert_array_equal(result.stats.steps, [healthy, 1, healthy, healthy])
  assert np.all(np.isnan(result.output[1])) and np.isnan(result.stats.remainder[1])
  for b in (0, 2, 3):
    assert np.all(np.isfinite(result.output[b])) and np.isfinite(result.stats.remainder[b])


def test_masked_examples_are_not_computed():
  params = {"theta": jnp.array([-1.0, 0.5, 0.0]), "drive": jnp.float32(0.1)}
  mask = jnp.array([True, False])
  for loop in ("scan", "while"):
    r = act_jax.ponder(_halting_only_step, params, jnp.ones((2, 2)), jnp.ones((2, 2)),
                       max_steps=3, mask=mask, halting="pondernet", **LOOPS[loop])
    np.testing.assert_array_equal(r.stats.steps, [3, 0])
    np.testing.assert_array_equal(r.stats.halting_probs[1], 0.0)
    np.testing.assert_array_equal(r.output[1], 0.0)
    assert float(pondernet.kl_divergence(r.stats, LAMBDA_P)[1]) == 0.0


def test_bad_settings_name_the_value():
  args = (_halting_only_step, {"theta": jnp.zeros(3), "drive": jnp.float32(0.0)},
          jnp.ones((2, 2)), jnp.ones((2, 2)))
  with pytest.raises(ValueError, match="halting must be one of .*'ponder'"):
    act_jax.ponder(*args, max_steps=3, halting="ponder")
  stats = act_jax.PonderStats(jnp.ones(2, jnp.int32), jnp.zeros(2), jnp.ones((2, 3)))
  for bad in (0.0, 1.0, -0.1, True, "0.5"):
    with pytest.raises(ValueError, match=f"lambda_p must be .*{bad!r}"):
      pondernet.kl_divergence(stats, bad)
  with pytest.raises(ValueError, match="beta must be .*-1.0"):
    pondernet.kl_penalty(stats, -1.0, 0.5)


def test_the_rule_is_part_of_the_threshold_identity():
  act, ponder_net = 0.99, pondernet.PonderNetThreshold(0.99)
  assert act != ponder_net and ponder_net != act and ponder_net == pondernet.PonderNetThreshold(0.99)
  assert hash(ponder_net) != hash(act) and float(ponder_net) == act
  assert pondernet.is_pondernet(ponder_net) and not pondernet.is_pondernet(act)


def _sequence_reference(params, state, xs, targets):
  """The reference over input steps, the p-weighted state carried on; per-example N
  found step by step with concrete values, then fixed for the differentiated pass."""
  step = reference_step(CELLS["tanh"][1])
  batch, time = xs.shape[:2]
  steps, concrete = np.zeros((batch, time), int), state
  for t in range(time):
    steps[:, t] = [reference.halting_steps(step, params, concrete[b], xs[b, t], MAX_STEPS,
                                           EPSILON) for b in range(batch)]
    concrete = reference.batch_forward(step, params, concrete, xs[:, t], steps[:, t],
                                       MAX_STEPS, _step_loss, targets[:, t])[0]

  def loss(params, state):
    total = 0.0
    for t in range(time):
      state, y, expected_loss, probs, _ = reference.batch_forward(
          step, params, state, xs[:, t], steps[:, t], MAX_STEPS, _step_loss, targets[:, t])
      kl = sum(reference.kl_divergence(probs[b], steps[b, t], LAMBDA_P) for b in range(batch))
      total = total + jnp.sum(expected_loss) + BETA * kl + jnp.sum(y ** 2)
    return total + jnp.sum(jnp.sin(state))

  value, grads = jax.value_and_grad(loss, argnums=(0, 1))(params, state)
  return value, grads, steps


@pytest.mark.parametrize("loop", ["scan", "while", "compact"])
def test_sequence_matches_the_reference(loop):
  with jax.enable_x64(True):
    params, state, _, _ = _case("tanh", batch=6)
    xs = jax.random.normal(jax.random.PRNGKey(4), (6, 3, 3), jnp.float64)
    targets = jax.random.normal(jax.random.PRNGKey(5), (6, 3, 2), jnp.float64)
    step_fn = pondernet.with_step_loss(batched_step(CELLS["tanh"][1]), _step_loss)
    options = {k: v for k, v in LOOPS[loop].items() if k != "first_step_flag_only"}

    def loss(params, state):
      r = act_jax.ponder_sequence(step_fn, params, state, (xs, targets), max_steps=MAX_STEPS,
                                  epsilon=EPSILON, halting="pondernet", **options)
      output, expected_loss = r.outputs
      kl = pondernet.kl_divergence(r.stats, LAMBDA_P)
      return (jnp.sum(expected_loss) + BETA * jnp.sum(kl) + jnp.sum(output ** 2)
              + jnp.sum(jnp.sin(r.final_state))), r.stats.steps

    (value, steps), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, state)
    ref_value, ref_grads, ref_steps = _sequence_reference(params, state, xs, targets)
    assert len(set(ref_steps.ravel().tolist())) >= 3, ref_steps
    np.testing.assert_array_equal(steps, ref_steps)
    np.testing.assert_allclose(value, ref_value, rtol=1e-10)
    _close(grads, ref_grads, rtol=1e-8, atol=1e-10)
