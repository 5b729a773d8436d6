"""Per-step cost of the ponder loop at a small batch, all examples N = 90."""
import sys, time, functools
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax, jax.numpy as jnp
import act_jax
import ponder_loop as pl

B = int(sys.argv[1]); N = 90
params, state, x, targets = pl._parity_args(B, 0.0)
halt_at = jnp.full((B,), N)

def counter_step_fn(params, state, inputs, n):
  x, halt_at = inputs
  h, count = state
  h = pl._tanh_cell(params, h, act_jax.with_first_step_flag(x, n))
  count = count + 1.0
  schedule = jnp.where(count >= halt_at, 20.0, -20.0)
  return act_jax.PonderStep((h, count), (), h @ params["w_h"] + params["b_h"] + schedule)

def make(step_fn, flag_only, backend="while"):
  def loss(params, state, inputs, targets):
    r = act_jax.ponder(step_fn, params, state, inputs, max_steps=100, backend=backend,
                       first_step_flag_only=flag_only)
    h = jax.tree.leaves(r.state)[0]
    return pl._bce(h @ params["w_y"], targets) + act_jax.ponder_penalty(r.stats.ponder_cost, 1e-3)
  return jax.jit(jax.value_and_grad(loss)), jax.jit(loss)

def bare(params, state, x, targets):
  def body(h, _):
    return pl._tanh_cell(params, h, act_jax.with_first_step_flag(x, 1)), None
  h = jax.lax.scan(body, state, None, length=N)[0]
  return pl._bce(h @ params["w_y"], targets)
bare_g = jax.jit(jax.value_and_grad(bare)); bare_f = jax.jit(bare)

cases = {
  "index_g": (make(pl._scheduled_step_fn(pl._tanh_cell), False)[0], (params, state, (x, halt_at), targets)),
  "index_f": (make(pl._scheduled_step_fn(pl._tanh_cell), False)[1], (params, state, (x, halt_at), targets)),
  "counter_g": (make(counter_step_fn, True)[0], (params, (state, jnp.zeros(B)), (x, halt_at), targets)),
  "counter_f": (make(counter_step_fn, True)[1], (params, (state, jnp.zeros(B)), (x, halt_at), targets)),
  "bare_g": (bare_g, (params, state, x, targets)),
  "bare_f": (bare_f, (params, state, x, targets)),
}
for k, (f, a) in cases.items():
  jax.block_until_ready(f(*a))
res = {k: [] for k in cases}
for _ in range(40):
  for k, (f, a) in cases.items():
    t = time.perf_counter(); jax.block_until_ready(f(*a)); res[k].append(time.perf_counter() - t)
for k, v in res.items():
  v.sort(); print(f"B={B} {k:10s} {v[len(v)//2]*1e6/N:7.2f} us/step")
