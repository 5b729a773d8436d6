import sys
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
import jax, numpy as np
import train_loop as tl, ponder_loop as pl, timing
from act_jax.backends import compact
orig = compact.level_sizes
def sizes(shrink, minimum):
  def f(batch):
    s=[batch]
    while s[-1]//shrink >= minimum: s.append(s[-1]//shrink)
    return tuple(s)
  return f
VARIANTS = {"cur": orig, "min8": sizes(4, 8), "sh8": sizes(8, 2), "sh8min16": sizes(8, 16), "sh16": sizes(16, 8)}
pl._CHUNK_STEPS = type("F", (), {"value": None})()
fns = {}
fns["nocompact"] = tl.bare_value_and_grad(tl._parity(2000, independent_examples=False))
fns["repeat3"] = tl.bare_value_and_grad(tl._parity(2000, mode="repeat", repeats=3))
# mixed setting pieces
import jax.numpy as jnp, functools
batch=128; params, state, x, targets = pl._parity_args(batch, halting_bias=0.0)
k1,k2,k3=jax.random.split(jax.random.PRNGKey(3),3)
halt_at=jax.random.permutation(k3, jnp.concatenate([jax.random.randint(k1,(batch-3,),2,9), jax.random.randint(k2,(3,),50,101)]))
margs=(params,state,(x,halt_at),targets)
step_fn=pl._scheduled_step_fn(pl._tanh_cell)
mixed = {}
for name, f in VARIANTS.items():
  compact.level_sizes = f
  g, a = tl.bare_value_and_grad(tl._parity(2000))
  jax.block_until_ready(g(*a)); fns["act_"+name] = (g, a)
  ms, _, _ = pl._act_train_step(pl._tanh_cell, "while", 100, False, True, step_fn)
  jax.block_until_ready(ms(*margs)); mixed["mixed_"+name] = ms
compact.level_sizes = orig
calls = {k: (lambda f, a: (lambda *_: f(*a)))(*v) for k, v in fns.items()}
for r in range(3):
  res = timing.median_seconds(calls, (), 60)
  print({k: round(v/res["repeat3"], 2) for k, v in res.items()}, "repeat3 ms", round(res["repeat3"]*1e3,3), flush=True)
  mres = timing.median_seconds(mixed, margs, 15)
  print({k: round(v*1e3, 2) for k, v in mres.items()}, flush=True)
