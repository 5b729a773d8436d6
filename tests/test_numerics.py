"""The ponder loop's number policy, on both backends.

* Halting arithmetic runs in float32, or in the model's wider float type:
  float64 under x64 gives the float64 reference's N at the boundary cases
  where float32 is off by one, and float64 outputs and statistics.
* Masked examples and steps after an example halted contribute exact zeros,
  whatever their step computed (NaN and inf included).
* A NaN halting logit halts its example at once with NaN outputs and ponder
  cost; the rest of the batch is unaffected and the loop does not run to M.
* Integer or boolean state leaves are rejected at trace time.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
from act_jax import PonderStep
import reference

# The loop backends, and the while loop compacting its batch as examples halt.
LOOPS = {"while": {"backend": "while"}, "scan": {"backend": "scan"},
         "compact": {"backend": "while", "independent_examples": True}}
BACKENDS = tuple(LOOPS)


def _logit(h: float) -> float:
  return float(np.log(h) - np.log1p(-h))


def _constant_h_step(params, state, x, step_index):
  """A tanh step whose halting probability is ``sigmoid(params["b_h"])`` at every step."""
  del step_index
  state = jnp.tanh(state * params["w"] + x)
  logit = jnp.broadcast_to(params["b_h"], state.shape[:1]) + 0.0 * state[:, 0]
  return PonderStep(state, 2.0 * state, logit)


def _reference_steps_float64(h: float, max_steps: int, epsilon: float) -> int:
  """N from Eq. 7 in float64 for a constant halting probability ``h``."""
  threshold, total = np.float64(1.0) - np.float64(epsilon), np.float64(0.0)
  for n in range(1, max_steps + 1):
    if total + np.float64(h) >= threshold or n == max_steps:
      return n
    total = total + np.float64(h)
  raise AssertionError("unreachable")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("h,expected", [(0.495, 2), (0.2475, 4)])
def test_float64_halts_where_the_float64_reference_does(backend, h, expected):
  assert _reference_steps_float64(h, 10, 0.01) == expected  # the paper's N in float64
  with jax.enable_x64(True):
    params = {"w": jnp.float64(0.5), "b_h": jnp.float64(_logit(h))}
    state, x = jnp.zeros((3, 2), jnp.float64), jnp.ones((3, 2), jnp.float64)
    result = act_jax.ponder(_constant_h_step, params, state, x, max_steps=10, **LOOPS[backend])
    np.testing.assert_array_equal(result.stats.steps, [expected] * 3)
    assert result.state.dtype == jnp.float64
    assert result.output.dtype == jnp.float64
    assert result.stats.remainder.dtype == jnp.float64
    assert result.stats.halting_probs.dtype == jnp.float64
    assert result.stats.ponder_cost.dtype == jnp.float64
    np.testing.assert_allclose(result.stats.remainder, 1.0 - (expected - 1) * h, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_model_halts_in_float32_under_x64(backend):
  # x64 on, a float32 model: the halting arithmetic stays float32, the outputs too.
  with jax.enable_x64(True):
    params = {"w": jnp.float32(0.5), "b_h": jnp.float32(_logit(0.495))}
    state, x = jnp.zeros((2, 2), jnp.float32), jnp.ones((2, 2), jnp.float32)
    result = act_jax.ponder(_constant_h_step, params, state, x, max_steps=10, **LOOPS[backend])
    assert result.output.dtype == jnp.float32
    assert result.stats.remainder.dtype == jnp.float32
    assert result.stats.ponder_cost.dtype == jnp.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_model_halts_in_float32(backend):
  params = {"w": jnp.bfloat16(0.5), "b_h": jnp.bfloat16(-0.4)}
  state, x = jnp.zeros((2, 3), jnp.bfloat16), jnp.ones((2, 3), jnp.bfloat16)
  result = act_jax.ponder(_constant_h_step, params, state, x, max_steps=10, **LOOPS[backend])
  assert result.state.dtype == jnp.bfloat16
  assert result.stats.remainder.dtype == jnp.float32
  assert result.stats.halting_probs.dtype == jnp.float32
  h = float(jax.nn.sigmoid(jnp.float32(jnp.bfloat16(-0.4))))
  np.testing.assert_array_equal(result.stats.steps,
                                [_reference_steps_float64(h, 10, 0.01)] * 2)


def _tanh_params(dtype):
  k = jax.random.split(jax.random.PRNGKey(3), 4)
  return {"w_x": (jax.random.normal(k[0], (4, 5)) * 0.7).astype(dtype),
          "w_s": (jax.random.normal(k[1], (5, 5)) * 0.5).astype(dtype),
          "w_h": (jax.random.normal(k[2], (5,)) * 1.5).astype(dtype),
          "b_h": jnp.asarray(-1.5, dtype),
          "w_y": jax.random.normal(k[3], (5, 2)).astype(dtype)}


def _tanh_cell(params, state, x_with_flag):
  state = jnp.tanh(x_with_flag @ params["w_x"] + state @ params["w_s"])
  return state, state @ params["w_y"], state @ params["w_h"] + params["b_h"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_gradients_match_the_float64_reference(backend):
  max_steps, batch = 6, 8
  with jax.enable_x64(True):
    params = _tanh_params(jnp.float64)
    kx, ks = jax.random.split(jax.random.PRNGKey(4))
    x = jax.random.normal(kx, (batch, 3), jnp.float64)
    state = jax.random.normal(ks, (batch, 5), jnp.float64) * 0.5

    def step_fn(params, state, x, step_index):
      return PonderStep(*_tanh_cell(params, state, act_jax.with_first_step_flag(x, step_index)))

    def ref_step(params, state, x, n):
      return _tanh_cell(params, state, jnp.concatenate([x, jnp.array([float(n == 1)])]))

    def loss(params):
      r = act_jax.ponder(step_fn, params, state, x, max_steps=max_steps, **LOOPS[backend])
      return jnp.sum(jnp.sin(r.state)) + jnp.sum(r.output ** 2) + 0.3 * jnp.sum(
          r.stats.ponder_cost), r.stats.steps

    steps = np.array([reference.halting_steps(ref_step, params, state[b], x[b], max_steps, 0.01,
                                              dtype=np.float64) for b in range(batch)])

    def ref_loss(params):
      s, y, _, rho, _ = reference.batch_forward(ref_step, params, state, x, steps, max_steps)
      return jnp.sum(jnp.sin(s)) + jnp.sum(y ** 2) + 0.3 * jnp.sum(rho)

    (value, lib_steps), grads = jax.value_and_grad(loss, has_aux=True)(params)
    ref_value, ref_grads = jax.value_and_grad(ref_loss)(params)
    assert len(set(steps.tolist())) >= 2, steps
    np.testing.assert_array_equal(lib_steps, steps)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for name in params:
      assert grads[name].dtype == jnp.float64, name
      np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12,
                                 err_msg=name)


def _poisoned_step(params, state, x, step_index):
  """Example 0 halts at its first step (h = 0.9975); its later steps, and every step
  of example 2 (masked), output NaN and inf. Example 1 runs 3 steps."""
  state = jnp.tanh(state * params["w"] + x)
  logit = jnp.where(jnp.arange(3) == 0, 6.0, params["b_h"])
  poison = (jnp.arange(3) == 2) | ((jnp.arange(3) == 0) & (step_index > 0))
  output = jnp.where(poison[:, None], jnp.array([jnp.nan, jnp.inf]), state)
  return PonderStep(state, output, logit)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_and_halted_examples_give_exact_zeros(backend):
  params = {"w": jnp.float32(0.7), "b_h": jnp.float32(_logit(0.45))}
  state, x = jnp.ones((3, 2)), jnp.ones((3, 2))
  mask = jnp.array([True, True, False])

  def loss(params):
    r = act_jax.ponder(_poisoned_step, params, state, x, max_steps=5, mask=mask,
                       **LOOPS[backend])
    return jnp.sum(r.output) + jnp.sum(r.state) + jnp.sum(r.stats.ponder_cost), r

  (value, r), grads = jax.value_and_grad(loss, has_aux=True)(params)
  np.testing.assert_array_equal(r.stats.steps, [1, 3, 0])
  np.testing.assert_array_equal(r.output[2], [0.0, 0.0])  # masked: exact zero
  assert np.all(np.isfinite(r.output[0])), r.output  # halted before the NaN steps
  np.testing.assert_array_equal(r.state[2], state[2])  # masked: passed through
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads)), grads


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_halting_logit_halts_at_once_and_shows(backend):
  def step_fn(params, state, x, step_index):
    del step_index
    state = jnp.tanh(state * params["w"] + x)
    logit = jnp.where(jnp.arange(4) == 1, jnp.nan, params["b_h"] + 0.0 * state[:, 0])
    return PonderStep(state, state, logit)

  params = {"w": jnp.float32(0.7), "b_h": jnp.float32(_logit(0.3))}
  result = act_jax.ponder(step_fn, params, jnp.zeros((4, 2)), jnp.ones((4, 2)),
                          max_steps=50, **LOOPS[backend])
  healthy = _reference_steps_float64(float(jax.nn.sigmoid(jnp.float32(_logit(0.3)))), 50, 0.01)
  np.testing.assert_array_equal(result.stats.steps, [healthy, 1, healthy, healthy])
  assert np.all(np.isnan(result.output[1])) and np.isnan(result.stats.ponder_cost[1])
  for b in (0, 2, 3):
    assert np.all(np.isfinite(result.output[b])), result.output
    assert np.isfinite(result.stats.ponder_cost[b])


@pytest.mark.parametrize("backend", ["while", "compact"])
def test_nan_halting_does_not_run_the_loop_to_the_cap(backend):
  calls = []

  def step_fn(params, state, x, step_index):
    jax.debug.callback(lambda n: calls.append(int(n)), step_index)
    state = jnp.tanh(state + x)
    return PonderStep(state, state, jnp.full(state.shape[:1], jnp.nan) + params)

  result = act_jax.ponder(step_fn, jnp.float32(0.0), jnp.zeros((2, 2)), jnp.ones((2, 2)),
                          max_steps=100, **LOOPS[backend])
  jax.block_until_ready(result)
  np.testing.assert_array_equal(result.stats.steps, [1, 1])
  assert calls == [0], calls


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_state_is_rejected_at_trace_time(backend, dtype):
  def step_fn(params, state, x, step_index):
    del step_index
    h = jnp.tanh(state["h"] * params + x)
    return PonderStep({"h": h, "count": state["count"]}, h, h[:, 0])

  state = {"h": jnp.zeros((2, 3)), "count": jnp.zeros((2,), dtype)}
  with pytest.raises(ValueError, match=r"\['count'\].*(int|bool)"):
    act_jax.ponder(step_fn, jnp.float32(0.5), state, jnp.ones((2, 3)), max_steps=4,
                   **LOOPS[backend])


def _real_rows_loss(r, real):
  """A loss on the examples where ``real`` is True (the others' state is their own,
  NaN where poisoned, and selected away)."""
  state = jnp.where(real[:, None], r.state, 0.0)
  return jnp.sum(jnp.sin(state)) + jnp.sum(r.output ** 2) + 0.3 * jnp.sum(r.stats.ponder_cost)


@pytest.mark.parametrize("backend", BACKENDS)
def test_poisoned_masked_examples_reach_no_gradient(backend):
  # Masked examples are not computed, but the step runs on the whole batch: their
  # NaN state (and, declared per example with independent_examples, inf inputs)
  # must reach no gradient. Reference: the same batch without them.
  params = _tanh_params(jnp.float32)
  kx, ks = jax.random.split(jax.random.PRNGKey(5))
  x, state = jax.random.normal(kx, (8, 3)), jax.random.normal(ks, (8, 5)) * 0.5
  mask = jnp.array([False, True, True, False, True, True, False, True])  # example 0 too
  poisoned_state = jnp.where(mask[:, None], state, jnp.nan)
  poisoned_x = jnp.where(mask[:, None], x, jnp.inf) if backend == "compact" else x

  def step_fn(params, state, x, step_index):
    return PonderStep(*_tanh_cell(params, state, act_jax.with_first_step_flag(x, step_index)))

  def loss(params, state, x, mask):
    r = act_jax.ponder(step_fn, params, state, x, max_steps=6, mask=mask, **LOOPS[backend])
    return _real_rows_loss(r, mask), r

  (value, r), grads = jax.value_and_grad(loss, has_aux=True)(params, poisoned_state,
                                                             poisoned_x, mask)
  (ref_value, ref), ref_grads = jax.value_and_grad(loss, has_aux=True)(
      params, state[mask], x[mask], jnp.ones(5, bool))
  assert len(set(ref.stats.steps.tolist())) >= 2, ref.stats.steps
  np.testing.assert_array_equal(r.stats.steps[mask], ref.stats.steps)
  np.testing.assert_array_equal(r.stats.steps[~mask], 0)
  np.testing.assert_allclose(r.state[mask], ref.state, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  for name in params:
    np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-5, atol=2e-5,
                               err_msg=name)


@pytest.mark.parametrize("loop", ["while", "scan", "compact"])
def test_poisoned_padding_of_a_sequence_reaches_no_gradient(loop):
  # NaN and inf in a sequence's skipped steps: the gradients (the "while" backend's
  # sequence VJP, the scan, compaction) equal those with zero padding.
  params = _tanh_params(jnp.float32)
  x = 2.0 * jax.random.normal(jax.random.PRNGKey(6), (6, 5, 3))
  lengths = jnp.array([5, 2, 4, 1, 5, 3])
  padding = ~act_jax.lengths_to_mask(lengths, 5)[..., None]
  state = jnp.zeros((6, 5))

  def step_fn(params, state, x, step_index):
    return PonderStep(*_tanh_cell(params, state, act_jax.with_first_step_flag(x, step_index)))

  def loss(params, x):
    r = act_jax.ponder_sequence(step_fn, params, state, x, max_steps=6, lengths=lengths,
                                chunk_steps=2, **LOOPS[loop])
    return (jnp.sum(jnp.sin(r.outputs)) + jnp.sum(r.final_state ** 2)
            + 0.3 * jnp.sum(r.stats.ponder_cost)), r.stats.steps

  grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
  (value, steps), grads = grad(params, jnp.where(padding, jnp.array([jnp.nan, jnp.inf, 1.0]), x))
  (ref_value, ref_steps), ref_grads = grad(params, jnp.where(padding, 0.0, x))
  assert np.asarray(ref_steps).max() >= 2, ref_steps
  np.testing.assert_array_equal(steps, ref_steps)
  np.testing.assert_allclose(value, ref_value, rtol=1e-6)
  for name in params:
    np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-5, atol=2e-5,
                               err_msg=name)
