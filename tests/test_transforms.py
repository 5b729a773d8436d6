"""The ponder loop under jit, vmap, grad, checkpoint, jvp; bfloat16; bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import act_jax
from act_jax import PonderStep
from test_ponder_loop import BACKENDS, CELLS, batched_step, _inputs

TANH_PARAMS = CELLS["tanh"][0](jax.random.PRNGKey(3), halting_bias=-1.0)
TANH_STEP = batched_step(CELLS["tanh"][1])


def _run(params, state, x, backend="while", max_steps=8, **kw):
  return act_jax.ponder(TANH_STEP, params, state, x, max_steps=max_steps, backend=backend, **kw)


def test_compiles_once_per_shape():
  traces = []

  def step_fn(params, state, x, n):
    traces.append(None)
    return TANH_STEP(params, state, x, n)

  @jax.jit
  def loss_grad(params, state, x):
    f = lambda p: jnp.sum(act_jax.ponder(step_fn, p, state, x, max_steps=8).stats.ponder_cost)
    return jax.grad(f)(params)

  for seed in range(3):  # new data, different N: no retrace
    state, x = _inputs(jax.random.PRNGKey(seed), 5, "tanh")
    loss_grad(TANH_PARAMS, state, x * (seed + 1))
  traces_after_first = len(traces)
  assert traces_after_first > 0
  state, x = _inputs(jax.random.PRNGKey(9), 5, "tanh")
  loss_grad(TANH_PARAMS, state, x)
  assert len(traces) == traces_after_first
  assert loss_grad._cache_size() == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_over_networks_matches_loop(backend):
  keys = jax.random.split(jax.random.PRNGKey(4), 3)
  stacked = jax.vmap(lambda k: CELLS["tanh"][0](k, halting_bias=-1.0))(keys)
  state, x = _inputs(jax.random.PRNGKey(5), 4, "tanh")

  def loss(params):
    r = _run(params, state, x, backend)
    return jnp.sum(r.state ** 2) + 0.1 * jnp.sum(r.stats.ponder_cost)

  batched = jax.jit(jax.vmap(jax.value_and_grad(loss)))(stacked)
  one_network = jax.jit(jax.value_and_grad(loss))  # compiled once, called for each network
  for i in range(3):
    one = one_network(jax.tree.map(lambda a: a[i], stacked))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, rtol=2e-5, atol=1e-6),
                 batched, one)


def test_checkpoint_and_backends_agree():
  state, x = _inputs(jax.random.PRNGKey(6), 6, "tanh")

  def loss(params, backend, remat):
    f = lambda p: jnp.sum(_run(p, state, x, backend).state ** 2)
    return jax.grad(jax.checkpoint(f) if remat else f)(params)

  ref = loss(TANH_PARAMS, "scan", False)
  for backend in BACKENDS:
    chex.assert_trees_all_close(jax.jit(loss, static_argnums=(1, 2))(TANH_PARAMS, backend, True),
                                ref, rtol=1e-4, atol=1e-6)


def test_forward_mode_with_scan_backend():
  state, x = _inputs(jax.random.PRNGKey(7), 4, "tanh")
  f = lambda b: jnp.sum(_run({**TANH_PARAMS, "b": b}, state, x, "scan").stats.ponder_cost)
  b = TANH_PARAMS["b"]
  _, tangent = jax.jvp(f, (b,), (jnp.ones_like(b),))
  np.testing.assert_allclose(tangent, jax.grad(f)(b).sum(), rtol=1e-4)
  with pytest.raises(TypeError, match='reverse-mode only.*backend="scan"'):
    jax.jvp(lambda b: jnp.sum(_run({**TANH_PARAMS, "b": b}, state, x).state), (b,), (b,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_model_keeps_float32_halting(backend):
  state, x = _inputs(jax.random.PRNGKey(8), 16, "tanh")
  bf16 = lambda t: jax.tree.map(lambda a: a.astype(jnp.bfloat16), t)
  r16 = _run(bf16(TANH_PARAMS), bf16(state), bf16(x), backend)
  r32 = _run(TANH_PARAMS, state, x, backend)
  assert r16.state.dtype == jnp.bfloat16
  assert r16.stats.remainder.dtype == jnp.float32
  assert r16.stats.halting_probs.dtype == jnp.float32
  assert r16.output.dtype == jnp.float32
  np.testing.assert_allclose(r16.stats.halting_probs.sum(-1), 1.0, rtol=1e-6)
  agree = np.mean(np.asarray(r16.stats.steps) == np.asarray(r32.stats.steps))
  assert agree >= 0.75, agree
  g = jax.grad(lambda p: jnp.sum(_run(p, bf16(state), bf16(x), backend).stats.ponder_cost
                                 ).astype(jnp.float32))(bf16(TANH_PARAMS))
  assert all(l.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(l)))
             for l in jax.tree.leaves(g))


@pytest.mark.parametrize("backend", BACKENDS)
def test_mask_skips_examples(backend):
  state, x = _inputs(jax.random.PRNGKey(10), 4, "tanh")
  mask = jnp.array([True, False, True, False])

  def loss(params, state):
    r = _run(params, state, x, backend, mask=mask)
    return jnp.sum(r.state * jnp.arange(1.0, 7.0)) + jnp.sum(r.stats.ponder_cost), r

  (_, r), (g_params, g_state) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
      TANH_PARAMS, state)
  full = _run(TANH_PARAMS, state, x, backend)
  np.testing.assert_array_equal(r.stats.steps, jnp.where(mask, full.stats.steps, 0))
  np.testing.assert_array_equal(r.state[1], state[1])  # passed through
  np.testing.assert_allclose(r.state[0], full.state[0], rtol=1e-6)
  np.testing.assert_allclose(g_state[1], jnp.arange(1.0, 7.0))  # identity
  assert float(jnp.abs(g_state[0]).sum()) > 0


@pytest.mark.parametrize("chunk_steps", [2, 8])
def test_step_that_mixes_examples_gets_scan_gradients(chunk_steps):
  # Depth-wise ACT (Universal Transformers) halts per position while attention
  # keeps reading halted positions' frozen states: the custom VJP must carry
  # gradient through a halted example's state. The scan backend is plain autodiff.
  def step_fn(params, state, x, n):
    mixed = jnp.tanh(state @ params["w"] + jnp.mean(state, axis=0) * params["mix"] + x)
    return PonderStep(mixed, mixed[:, :2], mixed @ params["h"] + params["b"])

  k = jax.random.split(jax.random.PRNGKey(13), 4)
  params = {"w": jax.random.normal(k[0], (5, 5)) * 0.6, "mix": jnp.float32(0.8),
            "h": jax.random.normal(k[1], (5,)), "b": jnp.float32(-1.5)}
  state, x = jax.random.normal(k[2], (6, 5)), jax.random.normal(k[3], (6, 5))
  mask = jnp.array([True, True, False, True, True, True])

  def loss(params, state, x, backend):
    r = act_jax.ponder(step_fn, params, state, x, max_steps=7, mask=mask, backend=backend,
                       chunk_steps=chunk_steps)
    return (jnp.sum(jnp.sin(r.state)) + jnp.sum(r.output ** 2)
            + 0.3 * jnp.sum(r.stats.ponder_cost)), r.stats.steps

  grad = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)
  (g_while, steps), (g_scan, _) = grad(params, state, x, "while"), grad(params, state, x, "scan")
  assert len(set(np.asarray(steps).tolist())) >= 3, steps
  chex.assert_trees_all_close(g_while, g_scan, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("epsilon", [0.0, 1.0, -0.1, 1.5, "0.1", True, None])
def test_bad_epsilon(epsilon):
  state, x = _inputs(jax.random.PRNGKey(0), 2, "tanh")
  with pytest.raises(ValueError, match="epsilon.*" + repr(epsilon).replace("'", ".")[:3]):
    _run(TANH_PARAMS, state, x, epsilon=epsilon)


@pytest.mark.parametrize("max_steps", [0, -3, 2.5, True, "10", None])
def test_bad_max_steps(max_steps):
  state, x = _inputs(jax.random.PRNGKey(0), 2, "tanh")
  with pytest.raises(ValueError, match="max_steps"):
    _run(TANH_PARAMS, state, x, max_steps=max_steps)


def test_bad_backend_and_tau():
  state, x = _inputs(jax.random.PRNGKey(0), 2, "tanh")
  with pytest.raises(ValueError, match="'fast'"):
    _run(TANH_PARAMS, state, x, backend="fast")
  with pytest.raises(ValueError, match="chunk_steps.*got 0"):
    _run(TANH_PARAMS, state, x, chunk_steps=0)
  for tau in (-0.1, float("nan"), "x", jnp.array([0.1, -1.0])):
    with pytest.raises(ValueError, match="tau"):
      act_jax.ponder_penalty(jnp.ones((2,)), tau)
  assert float(act_jax.ponder_penalty(jnp.ones((2, 3)) * 2.0, 0.5)) == 3.0


def test_mismatched_shapes_and_dtypes_name_the_leaf():
  state, x = _inputs(jax.random.PRNGKey(0), 4, "tanh")
  with pytest.raises(ValueError, match=r"step_fn failed on state float32\[3, 6\]"):
    _run(TANH_PARAMS, state[:3], x)  # batch 3 state, batch 4 inputs
  wide_logit = lambda p, s, x_, n: PonderStep(s, s, jnp.zeros((5,)))
  with pytest.raises(ValueError, match=r"state leaf <state> has shape \[4, 6\].*\[5\]"):
    act_jax.ponder(wide_logit, {}, state, x, max_steps=3)
  casting = lambda p, s, x_, n: PonderStep(s.astype(jnp.float16), s, jnp.sum(s, -1))
  with pytest.raises(ValueError, match=r"changed state leaf.*float32.*float16"):
    act_jax.ponder(casting, {}, state, x, max_steps=3)
  with pytest.raises(ValueError, match="mask"):
    _run(TANH_PARAMS, state, x, mask=jnp.ones((3,), bool))
  int_logit = lambda p, s, x_, n: PonderStep(s, s, jnp.zeros(s.shape[:1], jnp.int32))
  with pytest.raises(ValueError, match="halting_logit must be floating"):
    act_jax.ponder(int_logit, {}, state, x, max_steps=3)


@pytest.mark.parametrize("chunk_steps", [2, 8])
def test_integer_inputs_get_no_gradient_and_params_match_scan(chunk_steps):
  # Byte or token inputs (a language model) are integers: the while backend's
  # custom VJP must give them float0 cotangents and still differentiate the
  # embedding they index.
  def step_fn(params, state, tokens, n):
    x = params["embed"][tokens]
    x = act_jax.with_first_step_flag(x, n)
    state = jnp.tanh(x @ params["w_x"] + state @ params["w_s"])
    return PonderStep(state, state, state @ params["w_h"] + params["b_h"])

  k = jax.random.split(jax.random.PRNGKey(14), 4)
  params = {"embed": jax.random.normal(k[0], (10, 3)), "w_x": jax.random.normal(k[1], (4, 5)),
            "w_s": jax.random.normal(k[2], (5, 5)) * 0.5,
            "w_h": jax.random.normal(k[3], (5,)), "b_h": jnp.float32(-1.0)}
  tokens = jnp.array([1, 4, 4, 9, 0, 7])
  state = jnp.zeros((6, 5))

  def loss(params, tokens, backend):
    r = act_jax.ponder(step_fn, params, state, tokens, max_steps=6, backend=backend,
                       chunk_steps=chunk_steps)
    return jnp.sum(r.output ** 2) + 0.1 * jnp.sum(r.stats.ponder_cost)

  g_while, g_tokens = jax.grad(loss, argnums=(0, 1), allow_int=True)(params, tokens, "while")
  g_scan = jax.grad(loss)(params, tokens, "scan")
  assert g_tokens.dtype == jax.dtypes.float0
  chex.assert_trees_all_close(g_while, g_scan, rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(g_while["embed"][4]).sum()) > 0
  np.testing.assert_array_equal(g_while["embed"][2], 0.0)  # token 2 never appears


@pytest.mark.parametrize("independent_examples", [False, True])
@pytest.mark.parametrize("over", ["one step", "sequence"])
def test_higher_order_through_the_while_backend_is_one_clear_error(independent_examples, over):
  state, x = _inputs(jax.random.PRNGKey(8), 4, "tanh")

  def f(b):
    params = {**TANH_PARAMS, "b": b}
    if over == "one step":
      r = _run(params, state, x, independent_examples=independent_examples)
      return jnp.sum(r.state ** 2)
    r = act_jax.ponder_sequence(TANH_STEP, params, state, jnp.stack([x, -x], 1), max_steps=8,
                                independent_examples=independent_examples)
    return jnp.sum(r.final_state ** 2)

  b = TANH_PARAMS["b"]
  assert np.all(np.isfinite(jax.grad(f)(b)))  # reverse mode works
  for higher_order in (jax.hessian(f), jax.grad(lambda b: jnp.sum(jax.grad(f)(b) ** 2)),
                       jax.jit(jax.jacfwd(jax.grad(f)))):
    with pytest.raises(TypeError, match='reverse-mode only.*backend="scan"'):
      higher_order(b)
  with pytest.raises(TypeError, match='reverse-mode only.*backend="scan"'):
    jax.jvp(f, (b,), (b,))
  with pytest.raises(TypeError, match="forward-mode"):  # under jit, JAX's own error
    jax.jit(lambda b: jax.jvp(f, (b,), (b,)))(b)
  scan_f = lambda b: jnp.sum(_run({**TANH_PARAMS, "b": b}, state, x, "scan").state ** 2)
  assert np.all(np.isfinite(jax.hessian(scan_f)(b)))
