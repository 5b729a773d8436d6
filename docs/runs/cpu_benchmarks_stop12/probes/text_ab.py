import sys
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")  # run from the repository root
import jax, importlib
import train_loop as tl, timing
import act_jax.sequence as seq
from act_jax.backends import while_sequence as new_mod
old_mod = importlib.import_module("act_jax.backends._ws_old")
fns = {}
for name, mod in [("old", old_mod), ("new", new_mod)]:
  seq.while_sequence = mod
  f, a = tl.bare_value_and_grad(tl._text(80, halting_bias=30.0)); jax.block_until_ready(f(*a)); fns[name] = (f, a)
seq.while_sequence = new_mod
fns["none"] = tl.bare_value_and_grad(tl._text(80, mode="none"))
calls = {k: (lambda f, a: (lambda *_: f(*a)))(*v) for k, v in fns.items()}
for r in range(4):
  res = timing.median_seconds(calls, (), 15)
  print({k: round(v*1e3, 1) for k, v in res.items()}, "old/none", round(res["old"]/res["none"], 3), "new/none", round(res["new"]/res["none"], 3), flush=True)
